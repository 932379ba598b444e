-- A subscription joins a room (store.rs, `join` and the restore).
-- KEYS[1] room:<room>:members       KEYS[2] <ns>:subs:<uid>:<room>
-- KEYS[3] <ns>:node:<node>:subs     KEYS[4] user:<uid>:last_seen
-- KEYS[5] <ns>:nodes
-- ARGV[1] uid   ARGV[2] subs field <node>/<conn>/<seq>   ARGV[3] node entry <uid>/<conn>/<seq>/<room>
-- ARGV[4] now (unix seconds)   ARGV[5] node id   ARGV[6] last_seen TTL (seconds)
-- Returns {first (1 when the user had no subscription to the room), added (1 when
-- SADD added the user to the members), {members...}}.
local first = 0
if redis.call('HLEN', KEYS[2]) == 0 then first = 1 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[4])
redis.call('SADD', KEYS[3], ARGV[3])
redis.call('SADD', KEYS[5], ARGV[5])
local added = redis.call('SADD', KEYS[1], ARGV[1])
redis.call('SETEX', KEYS[4], ARGV[6], ARGV[4])
return {first, added, redis.call('SMEMBERS', KEYS[1])}
