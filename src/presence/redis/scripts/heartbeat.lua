-- The seed's `heartbeat` action plus `PresenceService.mark_online` (store.rs).
-- KEYS[1] presence:user:<uid>:room:<room>   KEYS[2] user:<uid>:last_seen
-- ARGV[1] now (unix seconds)   ARGV[2] heartbeat TTL   ARGV[3] last_seen TTL (seconds)
-- Returns 1.
redis.call('SETEX', KEYS[1], ARGV[2], ARGV[1])
redis.call('SETEX', KEYS[2], ARGV[3], ARGV[1])
return 1
