-- GCRA (generic cell rate algorithm), as in redis-cell and Brandur Leach's
-- "Rate limiting, cells, and GCRA"; the same arithmetic as gcra.rs.
--
-- KEYS[1]: the key's theoretical arrival time (TAT), in microseconds of the
--          server's clock since 2025-01-01 (small numbers keep Lua's doubles
--          precise to well under a microsecond for decades).
-- ARGV[1]: emission interval, nanoseconds (period / limit).
-- ARGV[2]: limit (the burst).
-- ARGV[3]: cost in cells (0 only looks).
-- Returns {allowed (0|1), retry_after_us, remaining, reset_after_us}.
local t = redis.call('TIME')
local now = (tonumber(t[1]) - 1735689600) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1]) / 1000
local tolerance = interval * tonumber(ARGV[2])
local cost = tonumber(ARGV[3])

local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then
  tat = now
end
local new_tat = tat + cost * interval
local allow_at = new_tat - tolerance
-- Up to a microsecond early: the stored TAT is rounded, and a burst must not
-- lose its last cell to rounding.
if allow_at - now > 1 then
  local remaining = math.floor((now + tolerance - tat) / interval + 1e-3)
  if remaining < 0 then
    remaining = 0
  end
  return {0, math.ceil(allow_at - now), remaining, math.ceil(tat - now)}
end
if cost > 0 then
  -- The key disappears once the bucket is full again: a fresh key.
  local ttl_ms = math.ceil((new_tat - now) / 1000) + 1
  redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', ttl_ms)
end
local remaining = math.floor((now + tolerance - new_tat) / interval + 1e-3)
if remaining < 0 then
  remaining = 0
end
return {1, 0, remaining, math.ceil(new_tat - now)}
