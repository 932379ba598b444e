-- This node is alive (sweeper.rs, every sweep and at connect).
-- KEYS[1] <ns>:node:<node>:alive   KEYS[2] <ns>:nodes
-- ARGV[1] node id   ARGV[2] node TTL (milliseconds)   ARGV[3] now (unix seconds)
-- Returns 1 when the alive key existed, 0 when it had expired or was lost (the
-- caller then restores this node's subscriptions).
local existed = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
return existed
