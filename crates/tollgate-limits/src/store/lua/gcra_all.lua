-- GCRA on several keys at once, all or nothing: the same arithmetic as
-- gcra.lua and gcra.rs's check_all. Every key's `need` must fit; only then
-- is each key's `take` taken. One round trip, atomic: two replicas asking
-- for the last cell cannot both get it.
--
-- KEYS[i]: key i's TAT (see gcra.lua).
-- ARGV[4i-3]: key i's emission interval, nanoseconds.
-- ARGV[4i-2]: key i's limit (the burst).
-- ARGV[4i-1]: key i's need, in cells (0 only looks).
-- ARGV[4i]:   key i's take, in cells (at most its need).
-- Returns, per key, {allowed (0|1), retry_after_us, remaining, reset_after_us}
-- flattened: whether its need fit, and what is left after what was taken.
local t = redis.call('TIME')
local now = (tonumber(t[1]) - 1735689600) * 1000000 + tonumber(t[2])

local keys = {}
local admitted = true
for i = 1, #KEYS do
  local interval = tonumber(ARGV[4 * i - 3]) / 1000
  local tolerance = interval * tonumber(ARGV[4 * i - 2])
  local need = tonumber(ARGV[4 * i - 1])
  local take = math.min(tonumber(ARGV[4 * i]), need)
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if tat < now then
    tat = now
  end
  local allow_at = tat + need * interval - tolerance
  -- Up to a microsecond early, as in gcra.lua.
  local allowed, retry = 1, 0
  if allow_at - now > 1 then
    allowed, retry = 0, math.ceil(allow_at - now)
    admitted = false
  end
  keys[i] = {interval, tolerance, take, tat, allowed, retry}
end

local out = {}
for i = 1, #KEYS do
  local interval, tolerance, take, tat, allowed, retry = unpack(keys[i])
  if admitted and take > 0 then
    tat = tat + take * interval
    local ttl_ms = math.ceil((tat - now) / 1000) + 1
    redis.call('SET', KEYS[i], string.format('%.3f', tat), 'PX', ttl_ms)
  end
  local remaining = math.floor((now + tolerance - tat) / interval + 1e-3)
  if remaining < 0 then
    remaining = 0
  end
  table.insert(out, allowed)
  table.insert(out, retry)
  table.insert(out, remaining)
  table.insert(out, math.ceil(tat - now))
end
return out
