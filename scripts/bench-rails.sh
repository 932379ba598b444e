#!/usr/bin/env bash
# Measures the Rails 6.1 reference server (tests/rails-app: Puma, Action
# Cable, the Redis adapter) with ferrocable-bench, for the side-by-side table in
# BENCHMARKS.md. The app is copied to $OUT/rails-app (runs write pids, logs, a database),
# seeded with $USERS users (Rails' connection looks each one up in its database), and
# started fresh for every run on its own redis-server. Clients authenticate as the
# lab does, with an HS256 JWT in `?token=`.
#
#   scripts/bench-rails.sh [scenario ...]      # RAILS_LAB=<dir>: another copy of the app
#   scenarios: connect-2000 broadcast-1000 presence-churn
#
# Rails accepts ~160 connections/s here, so the scenarios are scaled down from
# scripts/benchmarks.sh (N and rates below); per-connection and per-delivery figures
# stay comparable.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
OUT=${OUT:-target/bench-results}
LAB=${RAILS_LAB:-tests/rails-app}
USERS=${USERS:-3000}
BENCH=${CARGO_TARGET_DIR:-target}/release/ferrocable-bench
APP_PORT=${APP_PORT:-18090}
REDIS_PORT=${REDIS_PORT:-16390}
JWT_SECRET=refapp-jwt-secret
mkdir -p "$OUT"
cargo build --release -p ferrocable-bench >&2
APP="$OUT/rails-app"
if [ ! -d "$APP" ]; then
  cp -r "$LAB" "$APP"
  rm -rf "$APP/tmp" "$APP/log"
fi

start_rails() {
  (cd "$APP" && APP_PORT=$APP_PORT REDIS_PORT=$REDIS_PORT SKIP_APT=1 LOG_LEVEL=warn \
    CABLE_DISABLE_FORGERY_PROTECTION=1 PUMA_LOW_LATENCY=1 ./run.sh > /dev/null)
  PID=$(awk '$1 == "puma" {print $2}' "$APP/tmp/pids/lab.pids")
  # run.sh re-seeds users 1-4; add 5..$USERS (the app looks every user up).
  (cd "$APP" && LOG_LEVEL=warn REDIS_PORT=$REDIS_PORT ruby bin/runner.rb \
    "User.insert_all((5..$USERS).map { |i| { id: i, name: %(user#{i}) } })")
  URL=ws://127.0.0.1:$APP_PORT/cable
}
stop_rails() { (cd "$APP" && ./stop.sh > /dev/null) || true; }
trap stop_rails EXIT

run() {
  local name=$1
  shift
  for i in $(seq "$RUNS"); do
    start_rails
    echo "== rails $name run $i: $BENCH $* --url $URL --server-pid $PID" >&2
    "$BENCH" "$@" --auth jwt --jwt-secret "$JWT_SECRET" --jwt-param token \
      --url "$URL" --server-pid "$PID" >> "$OUT/rails-$name.jsonl" || true
    stop_rails
    sleep 2
  done
}

scenario() {
  case $1 in
    connect-2000) run "$1" connect --n 2000 --rate 150 --hold 10 --source-ips 4 \
      --identifier '{"channel":"PresenceChannel","room_id":"{room}"}' --room-size 10 ;;
    broadcast-1000) run "$1" broadcast --n 1000 --m 20 --rate 2 --source-ips 4 \
      --connect-rate 150 --publisher redis --redis-url "redis://127.0.0.1:$REDIS_PORT" \
      --channel-prefix refapp ;;
    presence-churn) run "$1" presence-churn --rooms 50 --clients 500 \
      --observers-per-room 2 --duration 10 --connect-rate 150 --source-ips 4 ;;
    *) echo "unknown scenario $1" >&2; exit 2 ;;
  esac
}

if [ $# -eq 0 ]; then set -- connect-2000 broadcast-1000 presence-churn; fi
for s in "$@"; do scenario "$s"; done
