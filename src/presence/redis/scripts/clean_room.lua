-- The seed's CleanupStalePresenceJob for one room, with a grace (sweeper.rs).
-- KEYS[1] room:<room>:members   KEYS[2] <ns>:stale:<room> (the suspects)
-- ARGV[1] room   ARGV[2] namespace   ARGV[3] now (unix seconds)   ARGV[4] grace (seconds)
-- Also reads keys it computes (see keys.rs): <ns>:subs:<uid>:<room>,
-- presence:user:<uid>:room:<room>.
-- A member with no live subscription on any node and no heartbeat key becomes a
-- suspect (HSET suspects uid first-seen); it is removed once it has stayed so for
-- `grace` seconds. Returns {{removed uid...}, {members...}}.
local now, grace = tonumber(ARGV[3]), tonumber(ARGV[4])
local removed = {}
for _, uid in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[2] .. ':subs:' .. uid .. ':' .. ARGV[1]) == 0
     and redis.call('EXISTS', 'presence:user:' .. uid .. ':room:' .. ARGV[1]) == 0 then
    local since = tonumber(redis.call('HGET', KEYS[2], uid) or '')
    if since == nil then
      since = now
      redis.call('HSET', KEYS[2], uid, now)
    end
    if now - since >= grace then
      redis.call('SREM', KEYS[1], uid)
      redis.call('HDEL', KEYS[2], uid)
      table.insert(removed, uid)
    end
  else
    redis.call('HDEL', KEYS[2], uid)
  end
end
for _, uid in ipairs(redis.call('HKEYS', KEYS[2])) do
  if redis.call('SISMEMBER', KEYS[1], uid) == 0 then
    redis.call('HDEL', KEYS[2], uid)
  end
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('EXPIRE', KEYS[2], math.max(60, grace * 4))
end
return {removed, redis.call('SMEMBERS', KEYS[1])}
