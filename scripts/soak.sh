#!/usr/bin/env bash
# Soak test (not part of CI): hold N connections with churn for a while against a
# ferrocable server, sample its RSS, and report RSS drift and errors.
#
#   scripts/soak.sh                      # spawns a server: 500 conns, 60 s, 20 churn/s
#   N=5000 SECONDS_=600 CHURN=100 scripts/soak.sh
#   URL=ws://127.0.0.1:8080/cable PID=1234 scripts/soak.sh   # a running server
#
# Environment: N (connections, 500), SECONDS_ (run time, 60), CHURN (reconnects per
# second, 20), IDENTIFIER (subscribe each connection, e.g.
# '{"channel":"PresenceChannel","room_id":"{room}"}'; none by default), PROFILE
# (cargo profile for the spawned server and the generator, "dev"), URL and PID (use a
# running server; its --dev-user-param must be user_id), SERVER_ARGS (extra flags for a
# spawned server). Prints the generator's JSON line, then a one-line summary; exits 1
# when there were errors or the RSS grew by more than MAX_DRIFT_PCT (10) percent.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-500}
SECS=${SECONDS_:-60}
CHURN=${CHURN:-20}
PROFILE=${PROFILE:-dev}
MAX_DRIFT_PCT=${MAX_DRIFT_PCT:-10}
dir=$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")

cargo build --profile "$PROFILE" -p ferrocable -p ferrocable-bench >&2
bin="${CARGO_TARGET_DIR:-target}/$dir"
bench="$bin/ferrocable-bench"

server_pid=""
cleanup() { if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi; }
trap cleanup EXIT

if [ -z "${URL:-}" ]; then
  log=$(mktemp -t ferrocable-soak.XXXXXX)
  out=$(mktemp -t ferrocable-soak-out.XXXXXX)
  # shellcheck disable=SC2086
  RUST_LOG=${RUST_LOG:-warn} "$bin/ferrocable" --port 0 --dev-user-param user_id \
    --max-connections $((N * 2 + 100)) ${SERVER_ARGS:-} >"$out" 2>"$log" &
  server_pid=$!
  for _ in $(seq 100); do grep -q "listening on" "$out" && break; sleep 0.1; done
  URL=$(sed -n 's|^ferrocable listening on http://|ws://|p' "$out" | head -1)
  [ -n "$URL" ] || { echo "server did not start; log in $log" >&2; exit 2; }
  PID=$server_pid
  echo "spawned ferrocable pid $PID at $URL (log: $log)" >&2
fi

args=(soak --url "$URL" --n "$N" --seconds "$SECS" --churn "$CHURN"
      --max-seconds $((SECS + 60)) --sample-every 5)
[ -n "${PID:-}" ] && args+=(--server-pid "$PID")
[ -n "${IDENTIFIER:-}" ] && args+=(--identifier "$IDENTIFIER")
result=$("$bench" "${args[@]}")
echo "$result"

python3 - "$result" "$MAX_DRIFT_PCT" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); limit = float(sys.argv[2])
if "error" in r:
    print("soak failed:", r["error"]); sys.exit(1)
drift = r.get("rss_drift_pct")
print(f"soak: {r['n']} conns for {r['seconds']} s, {r['connects']} connects, "
      f"{r['errors']} errors {r['failures']}; RSS after ramp {r['server_rss_after_ramp_kb']} KB, "
      f"end {r['server_rss_end_kb']} KB (drift {r['rss_drift_kb']} KB, {drift} %), "
      f"after close {r['server_rss_after_close_kb']} KB")
sys.exit(1 if r["errors"] or (drift is not None and drift > limit) else 0)
PY
