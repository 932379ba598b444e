-- Removes up to a batch of a dead node's subscriptions (sweeper.rs).
-- KEYS[1] <ns>:node:<node>:alive   KEYS[2] <ns>:node:<node>:subs
-- KEYS[3] <ns>:nodes               KEYS[4] <ns>:node:<node>:swept
-- ARGV[1] node id   ARGV[2] namespace   ARGV[3] batch size   ARGV[4] now (unix seconds)
-- Also touches keys it computes (see keys.rs): <ns>:subs:<uid>:<room>,
-- room:<room>:members, presence:user:<uid>:room:<room>.
-- Returns {done, {{room, uid, {members...}}, ...}}: done is 1 when the node is alive
-- or has nothing left; each triple is a user whose last subscription went.
if redis.call('EXISTS', KEYS[1]) == 1 then return {1, {}} end
local out = {}
local entries = redis.call('SPOP', KEYS[2], tonumber(ARGV[3]))
if #entries > 0 then
  -- The node's users are announced as gone: when it comes back, its restore must
  -- announce them again (and only then).
  redis.call('SET', KEYS[4], ARGV[4], 'EX', 86400)
end
for _, e in ipairs(entries) do
  local uid, conn, seq, room = string.match(e, '^([^/]*)/([^/]*)/([^/]*)/(.*)$')
  if uid then
    local subs = ARGV[2] .. ':subs:' .. uid .. ':' .. room
    local removed = redis.call('HDEL', subs, ARGV[1] .. '/' .. conn .. '/' .. seq)
    if removed == 1 and redis.call('HLEN', subs) == 0 then
      local members = 'room:' .. room .. ':members'
      redis.call('SREM', members, uid)
      redis.call('DEL', 'presence:user:' .. uid .. ':room:' .. room)
      table.insert(out, {room, uid, redis.call('SMEMBERS', members)})
    end
  end
end
if redis.call('SCARD', KEYS[2]) == 0 then
  redis.call('SREM', KEYS[3], ARGV[1])
  return {1, out}
end
return {0, out}
