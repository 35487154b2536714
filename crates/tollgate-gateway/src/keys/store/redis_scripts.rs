//! The Lua scripts the Redis key store runs: each change of a key and
//! its change-log entry in one atomic step.

/// Stores a new key's record and claims its alias; 0 when the alias
/// belongs to another key.
///
/// KEYS: record, seq, changes, (alias, if any); ARGV: record JSON, hex hash.
pub(super) const PUT: &str = r"
if KEYS[4] then
  local owner = redis.call('GET', KEYS[4])
  if owner and owner ~= ARGV[2] then return 0 end
  redis.call('SET', KEYS[4], ARGV[2])
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[3], redis.call('INCR', KEYS[2]), ARGV[2])
return 1
";

/// Puts back a key Redis lost: the tombstone's JSON when there is one (the
/// key was deleted), 1 when the record is there already, 2 when written, 3
/// when written but its alias belongs to another key.
///
/// KEYS: record, tombstone, seq, changes, (alias, if any); ARGV: record JSON, hex
/// hash.
pub(super) const RESTORE: &str = r"
local tombstone = redis.call('GET', KEYS[2])
if tombstone then return tombstone end
if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[4], redis.call('INCR', KEYS[3]), ARGV[2])
if KEYS[5] then
  local owner = redis.call('GET', KEYS[5])
  if not owner then
    redis.call('SET', KEYS[5], ARGV[2])
  elseif owner ~= ARGV[2] then
    return 3
  end
end
return 2
";

/// Records a deletion: drops the record, and the alias if it still points
/// at this key, and writes the tombstone unless one is there; 1 when
/// anything changed.
///
/// KEYS: record, tombstone, seq, changes, (alias, if any); ARGV: tombstone JSON,
/// hex hash.
pub(super) const BURY: &str = r"
local changed = redis.call('DEL', KEYS[1])
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('SET', KEYS[2], ARGV[1])
  changed = 1
end
if KEYS[5] and redis.call('GET', KEYS[5]) == ARGV[2] then
  redis.call('DEL', KEYS[5])
end
if changed == 1 then
  redis.call('ZADD', KEYS[4], redis.call('INCR', KEYS[3]), ARGV[2])
end
return changed
";

/// Adds each hex hash of ARGV to the change set unless it is there: for
/// records written before the change set existed. How many were added.
///
/// KEYS: seq, changes.
pub(super) const INDEX: &str = r"
local added = 0
for _, hex in ipairs(ARGV) do
  if not redis.call('ZSCORE', KEYS[2], hex) then
    redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[1]), hex)
    added = added + 1
  end
end
return added
";
