-- Moves a GCRA key's TAT by a number of cells, whatever the limit says:
-- reconciles a token reservation with the real usage. Never before now.
--
-- KEYS[1]: the TAT (see gcra.lua).
-- ARGV[1]: emission interval, nanoseconds.
-- ARGV[2]: delta in cells (negative gives back).
local t = redis.call('TIME')
local now = (tonumber(t[1]) - 1735689600) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1]) / 1000
local delta = tonumber(ARGV[2])

local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then
  tat = now
end
local new_tat = tat + delta * interval
if new_tat <= now then
  redis.call('DEL', KEYS[1])
  return 0
end
local ttl_ms = math.ceil((new_tat - now) / 1000) + 1
redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', ttl_ms)
return 1
