-- Takes a parallel-request permit: a lease in a sorted set, scored by when
-- it expires, so a permit whose holder died goes away on its own.
--
-- KEYS[1]: the key's leases (a sorted set).
-- ARGV[1]: max permits.
-- ARGV[2]: lease TTL, milliseconds.
-- ARGV[3]: the lease's member (unique per replica and lease).
-- Returns 1 when taken, 0 when all permits are in use.
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now_ms + ttl, ARGV[3])
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
