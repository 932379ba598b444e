#!/usr/bin/env bash
# Reproduces the figures in BENCHMARKS.md: each scenario RUNS times (default 3), each
# run against a freshly started release server, one JSON line per run appended to
# $OUT/<scenario>.jsonl. Medians: scripts/bench-medians.py $OUT.
#
#   scripts/benchmarks.sh [scenario ...]    # default: all
#   scenarios: connect-1000 connect-5000 connect-15000 connect-15000-bare
#              broadcast-1000 broadcast-10000 fanout-ceiling presence-churn
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
OUT=${OUT:-target/bench-results}
SERVER=target/release/ferrocable
BENCH=target/release/ferrocable-bench
mkdir -p "$OUT"
cargo build --release --bins >&2

CHANNELS="$OUT/channels.toml"
cat > "$CHANNELS" <<'TOML'
[[channels]]
name = "ChatChannel"
stream = "chat_{room}"
[channels.actions]
speak = ["text"]
TOML

# Starts a server; sets PID and URL. Logs at warn: per-connection info lines would be
# part of what is measured otherwise.
start_server() {
  RUST_LOG=warn "$SERVER" --port 0 --dev-user-param user_id --channels-file "$CHANNELS" \
    --max-connections 20000 > "$OUT/server.out" 2> "$OUT/server.log" &
  PID=$!
  for _ in $(seq 100); do
    grep -q listening "$OUT/server.out" 2>/dev/null && break
    sleep 0.05
  done
  URL="ws://$(sed -n 's#.*http://\([^/]*\)/.*#\1#p' "$OUT/server.out")/cable"
}

stop_server() {
  kill "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
}

PRESENCE_ID='{"channel":"PresenceChannel","room_id":"{room}"}'

run() {
  local name=$1
  shift
  for i in $(seq "$RUNS"); do
    start_server
    echo "== $name run $i: $BENCH $* --url $URL --server-pid $PID" >&2
    "$BENCH" "$@" --url "$URL" --server-pid "$PID" >> "$OUT/$name.jsonl" || true
    stop_server
    sleep 2 # let TIME_WAIT sockets and the CPU settle
  done
}

scenario() {
  case $1 in
    connect-1000) run "$1" connect --n 1000 --rate 2000 --hold 10 --source-ips 4 \
      --identifier "$PRESENCE_ID" --room-size 10 ;;
    connect-5000) run "$1" connect --n 5000 --rate 2000 --hold 10 --source-ips 4 \
      --identifier "$PRESENCE_ID" --room-size 10 ;;
    connect-15000) run "$1" connect --n 15000 --rate 2000 --hold 10 --source-ips 4 \
      --identifier "$PRESENCE_ID" --room-size 10 ;;
    connect-15000-bare) run "$1" connect --n 15000 --rate 2000 --hold 10 --source-ips 4 ;;
    broadcast-1000) run "$1" broadcast --n 1000 --m 100 --rate 10 --source-ips 4 ;;
    broadcast-10000) run "$1" broadcast --n 10000 --m 100 --rate 10 --source-ips 4 ;;
    fanout-ceiling) run "$1" fanout-ceiling --n 1000 --start-rate 20 --factor 1.5 \
      --step-seconds 3 --max-seconds 120 --source-ips 4 ;;
    presence-churn) run "$1" presence-churn --rooms 50 --clients 2000 \
      --observers-per-room 2 --duration 10 --source-ips 4 ;;
    *) echo "unknown scenario $1" >&2; exit 2 ;;
  esac
}

if [ $# -eq 0 ]; then
  set -- connect-1000 connect-5000 connect-15000 connect-15000-bare broadcast-1000 broadcast-10000 \
    fanout-ceiling presence-churn
fi
for s in "$@"; do scenario "$s"; done
