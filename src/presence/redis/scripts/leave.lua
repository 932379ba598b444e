-- A subscription leaves a room (store.rs, `leave`; the sweeper's queued leaves).
-- KEYS[1] room:<room>:members       KEYS[2] <ns>:subs:<uid>:<room>
-- KEYS[3] <ns>:node:<node>:subs     KEYS[4] presence:user:<uid>:room:<room>
-- ARGV[1] uid   ARGV[2] subs field <node>/<conn>/<seq>   ARGV[3] node entry <uid>/<conn>/<seq>/<room>
-- Returns {last (1 when this was the user's last subscription and they were a
-- member), {members...}}.
local removed = redis.call('HDEL', KEYS[2], ARGV[2])
redis.call('SREM', KEYS[3], ARGV[3])
local last = 0
if redis.call('HLEN', KEYS[2]) == 0 then
  local srem = redis.call('SREM', KEYS[1], ARGV[1])
  if removed == 1 or srem == 1 then
    last = 1
    redis.call('DEL', KEYS[4])
  end
end
return {last, redis.call('SMEMBERS', KEYS[1])}
