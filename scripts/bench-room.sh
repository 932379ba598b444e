#!/usr/bin/env bash
# The cost of joining a big PresenceChannel room (BENCHMARKS.md, "Joining a big room").
#
#   scripts/bench-room.sh                 # MEMBERS=10000 WATCHERS=10000 JOINS=3
#
# Starts its own redis-server (on $REDIS_PORT, never 6379) and a release ferrocable in
# Redis mode, seeds room:big:members with ids 1..MEMBERS plus their heartbeat keys (as
# members on other nodes or Rails would be; the sweep keeps them), connects WATCHERS
# clients listening on the room's stream through a declared channel (the members'
# browsers, without joining one by one: filling the room with Rails-shaped
# broadcasts costs bytes in the cube of the room), then has JOINS newcomers join and
# leave one after another. One JSON line is appended to $OUT/presence-room.jsonl.
# FERROCABLE/BENCH override the binaries (NO_BUILD=1 skips the release build).
set -euo pipefail
cd "$(dirname "$0")/.."
MEMBERS=${MEMBERS:-10000}
WATCHERS=${WATCHERS:-$MEMBERS}
JOINS=${JOINS:-3}
OUT=${OUT:-target/bench-results}
REDIS_PORT=${REDIS_PORT:-16381}
FERROCABLE=${FERROCABLE:-${CARGO_TARGET_DIR:-target}/release/ferrocable}
BENCH=${BENCH:-${CARGO_TARGET_DIR:-target}/release/ferrocable-bench}
mkdir -p "$OUT"
[ -n "${NO_BUILD:-}" ] || cargo build --release -p ferrocable -p ferrocable-bench >&2

CHANNELS="$OUT/room-channels.toml"
cat > "$CHANNELS" <<'TOML'
[[channels]]
name = "RoomWatchChannel"
stream = "presence_room_{room_id}"
TOML

redis-server --port "$REDIS_PORT" --save "" --appendonly no > "$OUT/room-redis.log" 2>&1 &
RPID=$!
PID=
trap 'kill $PID $RPID 2>/dev/null || true' EXIT
until redis-cli -p "$REDIS_PORT" ping > /dev/null 2>&1; do sleep 0.05; done
now=$(date +%s)
for i in $(seq 1 "$MEMBERS"); do
  echo "SADD room:big:members $i"
  echo "SETEX presence:user:$i:room:big 3600 $now"
done | redis-cli -p "$REDIS_PORT" --pipe > /dev/null

RUST_LOG=warn "$FERROCABLE" --port 0 --dev-user-param user_id \
  --redis-url "redis://127.0.0.1:$REDIS_PORT" --channels-file "$CHANNELS" \
  --max-connections 20000 > "$OUT/room-server.out" 2> "$OUT/room-server.log" &
PID=$!
for _ in $(seq 100); do
  grep -q listening "$OUT/room-server.out" 2>/dev/null && break
  sleep 0.05
done
URL="ws://$(sed -n 's#.*http://\([^/]*\)/.*#\1#p' "$OUT/room-server.out")/cable"

"$BENCH" presence-room --url "$URL" --server-pid "$PID" --members "$MEMBERS" \
  --watchers "$WATCHERS" --joins "$JOINS" --max-seconds 600 \
  | tee -a "$OUT/presence-room.jsonl"
