-- Adds to a budget window's spend. The counter of a window expires a window
-- (plus a grace period) after its first spend — relative to the server's
-- clock, so replica clock skew cannot expire it early. A lifetime budget's
-- counter never expires.
--
-- KEYS[1]: the window's spend, picodollars.
-- ARGV[1]: picodollars to add.
-- ARGV[2]: the counter's time to live, milliseconds (0: forever).
-- Returns the new spend.
local total = redis.call('INCRBY', KEYS[1], ARGV[1])
local ttl = tonumber(ARGV[2])
if ttl > 0 and redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return total
