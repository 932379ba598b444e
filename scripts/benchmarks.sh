#!/usr/bin/env bash
# Reproduces the figures in BENCHMARKS.md: each scenario RUNS times (default 3), each
# run against a freshly started release server, one JSON line per run appended to
# $OUT/<scenario>.jsonl. Medians: scripts/bench-medians.py $OUT.
#
#   scripts/benchmarks.sh [scenario ...]    # default: all
#   scenarios: connect-1000 connect-5000 connect-15000 connect-15000-bare
#              broadcast-1000 broadcast-10000 fanout-ceiling presence-churn
#              connect-cookie (signed-cookie auth + subscribe at 3,000/s)
#              connect-cookie-ceiling (the same offered at 3,000-9,000/s: where it
#              saturates; CEILING_RATES overrides the rates)
#              presence-churn-5k presence-churn-1k (presence targets; run them with
#              SERVER=ferrocable-redis)
#
# SERVER selects what is measured (results go to $OUT/$SERVER-<scenario>.jsonl unless
# SERVER=ferrocable):
#   ferrocable        embedded mode, dev auth, declared ChatChannel (the default)
#   ferrocable-redis  Redis mode (its own redis-server on $REDIS_PORT): Turbo signed
#                     streams, broadcasts PUBLISHed into Redis as Rails does
#   anycable          anycable-go at $ANYCABLE_GO_BIN (built outside this repository,
#                     see BENCHMARKS.md) with JWT identification, Turbo signed streams
#                     and broadcasts PUBLISHed as AnyCable's broadcaster does
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
OUT=${OUT:-target/bench-results}
SERVER=${SERVER:-ferrocable}
FERROCABLE=${CARGO_TARGET_DIR:-target}/release/ferrocable
BENCH=${CARGO_TARGET_DIR:-target}/release/ferrocable-bench
REDIS_PORT=${REDIS_PORT:-16380}
REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
SECRET=bench-secret-key-base
TURBO_KEY=bench-turbo-key
JWT_KEY=bench-jwt-key
case $SERVER in
  ferrocable) PREFIX= ;;
  ferrocable-redis | anycable) PREFIX="$SERVER-" ;;
  *) echo "unknown SERVER=$SERVER" >&2; exit 2 ;;
esac
mkdir -p "$OUT"
cargo build --release -p ferrocable -p ferrocable-bench >&2

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
  case $SERVER in
    anycable)
      redis-server --port "$REDIS_PORT" --save "" --appendonly no > "$OUT/redis.log" 2>&1 &
      RPID=$!
      "$ANYCABLE_GO_BIN" --host 127.0.0.1 --port 18081 --redis_url "$REDIS_URL" \
        --jwt_id_key "$JWT_KEY" --turbo_rails_key "$TURBO_KEY" --disable_disconnect \
        --log_level warn > "$OUT/server.out" 2> "$OUT/server.log" &
      PID=$!
      URL=ws://127.0.0.1:18081/cable
      for _ in $(seq 100); do
        curl -fs http://127.0.0.1:18081/health > /dev/null 2>&1 && break
        sleep 0.05
      done
      return
      ;;
    ferrocable-redis)
      redis-server --port "$REDIS_PORT" --save "" --appendonly no > "$OUT/redis.log" 2>&1 &
      RPID=$!
      until redis-cli -p "$REDIS_PORT" ping > /dev/null 2>&1; do sleep 0.05; done
      set -- --redis-url "$REDIS_URL" --turbo-verifier-key "$TURBO_KEY" ;;
    *) set -- ;;
  esac
  RUST_LOG=warn SECRET_KEY_BASE=$SECRET "$FERROCABLE" --port 0 --dev-user-param user_id \
    --identifiers signed_cookie:user_id --channels-file "$CHANNELS" \
    --max-connections 20000 "$@" > "$OUT/server.out" 2> "$OUT/server.log" &
  PID=$!
  for _ in $(seq 100); do
    grep -q listening "$OUT/server.out" 2>/dev/null && break
    sleep 0.05
  done
  URL="ws://$(sed -n 's#.*http://\([^/]*\)/.*#\1#p' "$OUT/server.out")/cable"
}

stop_server() {
  kill "$PID" 2>/dev/null || true
  # anycable-go 1.2 can take minutes to shut down with thousands of clients gone.
  for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  if [ -n "${RPID:-}" ]; then
    kill "$RPID" 2>/dev/null || true
    wait "$RPID" 2>/dev/null || true
    RPID=
  fi
}

# Flags that make the generator speak to $SERVER: credentials, and for broadcasts the
# Turbo subscription and the Redis publisher.
auth_flags() {
  case $SERVER in
    anycable) echo --auth anycable-jwt --jwt-secret "$JWT_KEY" --jwt-param jid ;;
    *) echo --auth dev ;;
  esac
}
broadcast_flags() {
  case $SERVER in
    anycable) echo --publisher anycable --redis-url "$REDIS_URL" --turbo-key "$TURBO_KEY" ;;
    ferrocable-redis) echo --publisher redis --redis-url "$REDIS_URL" --turbo-key "$TURBO_KEY" ;;
    *) ;;
  esac
}
# Idle subscribers: PresenceChannel rooms of 10 on ferrocable; anycable-go has no
# presence without its Ruby RPC, so its clients subscribe to one Turbo stream.
held_identifier() {
  case $SERVER in
    anycable)
      echo "{\"channel\":\"Turbo::StreamsChannel\",\"signed_stream_name\":\"$("$BENCH" sign-turbo --key "$TURBO_KEY" --stream chat_bench)\"}" ;;
    *) echo "$PRESENCE_ID" ;;
  esac
}

PRESENCE_ID='{"channel":"PresenceChannel","room_id":"{room}"}'

run() {
  local name=$1
  shift
  for i in $(seq "$RUNS"); do
    start_server
    echo "== $SERVER $name run $i: $BENCH $* --url $URL --server-pid $PID" >&2
    # shellcheck disable=SC2046 # the flag helpers print words on purpose
    local auth
    auth=$(auth_flags)
    case " $* " in *" --auth "*) auth= ;; esac
    # shellcheck disable=SC2086
    "$BENCH" "$@" $auth --url "$URL" --server-pid "$PID" \
      >> "$OUT/$PREFIX$name.jsonl" || true
    stop_server
    sleep 2 # let TIME_WAIT sockets and the CPU settle
  done
}

scenario() {
  case $1 in
    connect-1000) run "$1" connect --n 1000 --rate 2000 --hold 10 --source-ips 4 \
      --identifier "$(held_identifier)" --room-size 10 ;;
    connect-5000) run "$1" connect --n 5000 --rate 2000 --hold 10 --source-ips 4 \
      --identifier "$(held_identifier)" --room-size 10 ;;
    connect-15000) run "$1" connect --n 15000 --rate 2000 --hold 10 --source-ips 4 \
      --identifier "$(held_identifier)" --room-size 10 ;;
    connect-cookie)
      [ "$SERVER" = anycable ] && { echo "connect-cookie: ferrocable only" >&2; return; }
      run "$1" connect --n 15000 --rate 3000 --hold 2 --source-ips 4 \
        --identifier "$PRESENCE_ID" --room-size 10 \
        --auth signed-cookie --secret-key-base "$SECRET" ;;
    connect-cookie-ceiling)
      # The same connects offered faster than the target, to find where the server
      # saturates: connects/s achieved vs offered, confirm p99 and failures per rate.
      [ "$SERVER" = anycable ] && { echo "connect-cookie-ceiling: ferrocable only" >&2; return; }
      for rate in ${CEILING_RATES:-3000 4500 6000 9000}; do
        local n=$((rate * 4))
        [ "$n" -gt 18000 ] && n=18000
        run "$1-$rate" connect --n "$n" --rate "$rate" --hold 2 --source-ips 4 \
          --identifier "$PRESENCE_ID" --room-size 10 \
          --auth signed-cookie --secret-key-base "$SECRET"
      done ;;
    connect-15000-bare) run "$1" connect --n 15000 --rate 2000 --hold 10 --source-ips 4 ;;
    broadcast-1000) run "$1" broadcast --n 1000 --m 100 --rate 10 --source-ips 4 \
      $(broadcast_flags) ;;
    broadcast-10000) run "$1" broadcast --n 10000 --m 100 --rate 10 --source-ips 4 \
      $(broadcast_flags) ;;
    fanout-ceiling) run "$1" fanout-ceiling --n 1000 --start-rate 20 --factor 1.5 \
      --step-seconds 3 --max-seconds 120 --source-ips 4 $(broadcast_flags) ;;
    presence-churn)
      [ "$SERVER" = anycable ] && { echo "presence-churn: anycable-go has no presence" >&2; return; }
      run "$1" presence-churn --rooms 50 --clients 2000 \
      --observers-per-room 2 --duration 10 --source-ips 4 ;;
    # The issue's presence targets: >= 5,000 joins/s offered (4,000 churners, each
    # joining every ~0.75 s, in rooms of ~9), and latency at ~1,000 joins/s.
    presence-churn-5k)
      [ "$SERVER" = anycable ] && { echo "$1: anycable-go has no presence" >&2; return; }
      run "$1" presence-churn --rooms 500 --clients 4500 \
      --observers-per-room 1 --duration 10 --source-ips 4 ;;
    presence-churn-1k)
      [ "$SERVER" = anycable ] && { echo "$1: anycable-go has no presence" >&2; return; }
      run "$1" presence-churn --rooms 250 --clients 1000 \
      --observers-per-room 1 --duration 10 --source-ips 4 ;;
    *) echo "unknown scenario $1" >&2; exit 2 ;;
  esac
}

if [ $# -eq 0 ]; then
  set -- connect-1000 connect-5000 connect-15000 connect-15000-bare broadcast-1000 broadcast-10000 \
    fanout-ceiling presence-churn
fi
for s in "$@"; do scenario "$s"; done
