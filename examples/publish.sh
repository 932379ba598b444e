#!/usr/bin/env bash
# Broadcasts a message exactly as a Rails app's Action Cable Redis adapter does
# (`ActionCable.server.broadcast(stream, message)`): one PUBLISH of the JSON payload on
# the Redis channel "<channel_prefix>:<stream>". ferrocable in Redis mode (--redis-url)
# and Rails' own cable servers on the same Redis deliver it to the stream's subscribers.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: examples/publish.sh [-u REDIS_URL] [-p CHANNEL_PREFIX | -P] [-n] STREAM JSON

  STREAM   the broadcasting, as in ActionCable.server.broadcast(STREAM, …),
           e.g. presence_room_1, chat_lobby, chat:Z2lkOi8vbXktYXBwL1Jvb20vNw
  JSON     the message, e.g. '{"action":"user_joined","user":{"id":9,"name":"Dan"}}'

  -u URL   Redis URL (default: $REDIS_URL, else redis://127.0.0.1:6379/1; the database
           number does not matter, pub/sub channels are global to the Redis server)
  -p PFX   the channel_prefix from the app's config/cable.yml (default:
           $CABLE_CHANNEL_PREFIX when it is set). Must equal ferrocable's --channel-prefix.
  -P       no prefix at all (cable.yml without channel_prefix)
  -n       dry run: print the redis-cli command instead of running it

Prefix rule (Rails' ChannelPrefix): the Redis channel is [prefix, stream] with a
missing prefix dropped, joined by ":". So no prefix -> "STREAM"; "myapp_production"
-> "myapp_production:STREAM"; an empty string prefix ("") is kept -> ":STREAM".

The payload is sent as ActiveSupport::JSON.encode writes it: compact, with < > & and
U+2028/U+2029 escaped as \u003c \u003e \u0026 \u2028 \u2029 (needs python3; without it
the JSON is sent as given, after a warning).

Example:
  examples/publish.sh -p myapp_production presence_room_1 \
    '{"action":"user_left","user":{"id":2,"name":"Bob","avatar_url":null},"member_ids":[1],"member_count":1}'
USAGE
}

redis_url="${REDIS_URL:-redis://127.0.0.1:6379/1}"
if [ -n "${CABLE_CHANNEL_PREFIX+set}" ]; then has_prefix=1; prefix="$CABLE_CHANNEL_PREFIX"; else has_prefix=0; prefix=""; fi
dry_run=0
while getopts ":u:p:Pnh" opt; do
  case "$opt" in
    u) redis_url="$OPTARG" ;;
    p) has_prefix=1; prefix="$OPTARG" ;;
    P) has_prefix=0; prefix="" ;;
    n) dry_run=1 ;;
    h) usage; exit 0 ;;
    :) echo "publish.sh: -$OPTARG needs a value" >&2; usage >&2; exit 2 ;;
    *) echo "publish.sh: unknown option -$OPTARG" >&2; usage >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
if [ $# -ne 2 ]; then usage >&2; exit 2; fi
stream="$1"
json="$2"

if [ "$has_prefix" = 1 ]; then channel="$prefix:$stream"; else channel="$stream"; fi

if command -v python3 >/dev/null; then
  payload="$(printf '%s' "$json" | python3 -c '
import json, sys
try:
    value = json.loads(sys.stdin.read())
except ValueError as e:
    sys.exit(f"publish.sh: JSON is not valid: {e}")
out = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
for c, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
    out = out.replace(c, esc)
sys.stdout.write(out)
')"
else
  echo "publish.sh: python3 not found; sending the JSON unvalidated, as given" >&2
  payload="$json"
fi

if [ "$dry_run" = 1 ]; then
  printf 'redis-cli -u %q PUBLISH %q %q\n' "$redis_url" "$channel" "$payload"
  exit 0
fi
command -v redis-cli >/dev/null || { echo "publish.sh: redis-cli not found (Debian: apt-get install redis-tools)" >&2; exit 1; }
receivers="$(redis-cli -u "$redis_url" PUBLISH "$channel" "$payload")"
echo "published to $channel ($receivers Redis subscriber(s) received it): $payload"
