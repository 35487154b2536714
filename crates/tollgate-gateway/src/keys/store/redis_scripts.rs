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

/// Replaces a key's record: its new settings (`/key/update`, `/key/block`)
/// or, with a tombstone for the old hash, its new secret
/// (`/key/regenerate`), moving its alias. 0 when the key was deleted
/// meanwhile, 2 when the new alias belongs to another key, 1 when done.
///
/// KEYS: old record, old tombstone, seq, changes, new record, new alias,
/// old alias; ARGV: new record JSON, new hex hash, old hex hash, the old
/// hash's tombstone JSON (empty for an update), whether there is a new
/// alias (`1`), whether there was an old alias (`1`).
pub(super) const REPLACE: &str = r"
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if ARGV[5] == '1' then
  local owner = redis.call('GET', KEYS[6])
  if owner and owner ~= ARGV[3] and owner ~= ARGV[2] then return 2 end
end
if ARGV[6] == '1' and redis.call('GET', KEYS[7]) == ARGV[3] then
  redis.call('DEL', KEYS[7])
end
if ARGV[4] ~= '' then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], ARGV[4])
  redis.call('ZADD', KEYS[4], redis.call('INCR', KEYS[3]), ARGV[3])
end
redis.call('SET', KEYS[5], ARGV[1])
if ARGV[5] == '1' then redis.call('SET', KEYS[6], ARGV[2]) end
redis.call('ZADD', KEYS[4], redis.call('INCR', KEYS[3]), ARGV[2])
return 1
";
