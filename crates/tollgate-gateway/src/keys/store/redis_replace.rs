//! [`RedisStore::replace`]: a key's record changed in place (`/key/update`,
//! `/key/block`) or given a new secret (`/key/regenerate`), in one script.

use super::{RedisFailure, RedisStore};
use crate::key_format::to_hex;
use crate::keys::key::VirtualKey;
use crate::keys::store::{Record, Tombstone};

/// What [`RedisStore::replace`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replaced {
    Done,
    /// The key has a tombstone: it was deleted meanwhile.
    Deleted,
    AliasTaken,
}

impl RedisStore {
    /// Writes `new` in place of `old`, atomically: the same hash with new
    /// settings, or (with `tombstone`, the old hash's) a new secret for
    /// the same key. Refused when `old` was deleted, or when `new`'s alias
    /// belongs to a third key.
    pub(crate) async fn replace(
        &self,
        old: &VirtualKey,
        new: &VirtualKey,
        tombstone: Option<&Tombstone>,
    ) -> Result<Replaced, RedisFailure> {
        let json = serde_json::to_string(&Record::of(new))
            .map_err(|e| RedisFailure::Corrupt(e.to_string()))?;
        let flag = |alias: Option<&str>| if alias.is_some() { "1" } else { "0" };
        let answer: i64 = self
            .run(self.op_timeout, |mut conn| {
                let mut invocation = self.replace.prepare_invoke();
                invocation
                    .key(self.key_key(&old.hash))
                    .key(self.tombstone_key(&old.hash))
                    .key(self.seq_key())
                    .key(self.changes_key())
                    .key(self.key_key(&new.hash))
                    .key(self.alias_key(new.alias().unwrap_or_default()))
                    .key(self.alias_key(old.alias().unwrap_or_default()))
                    .arg(&json)
                    .arg(to_hex(&new.hash))
                    .arg(to_hex(&old.hash))
                    .arg(tombstone.map(Tombstone::to_json).unwrap_or_default())
                    .arg(flag(new.alias()))
                    .arg(flag(old.alias()));
                async move { invocation.invoke_async(&mut conn).await }
            })
            .await?;
        match answer {
            1 => Ok(Replaced::Done),
            0 => Ok(Replaced::Deleted),
            2 => Ok(Replaced::AliasTaken),
            other => Err(RedisFailure::Corrupt(format!(
                "replacing a key answered {other}"
            ))),
        }
    }
}
