//! Why the key registry failed: its start-up errors, and the failures the
//! gateway answers requests and admin calls with. No message holds a key.

use std::path::PathBuf;

use tollgate_core::{ErrorClass, Failure};

use super::generate;
use super::key::{self, VirtualKey};
use super::store::StoreError;

/// Why [`Keys::new`](super::Keys::new) failed. Messages name config paths, aliases and files,
/// never a key.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KeysError {
    /// `general_settings.master_key` is set to an empty value.
    #[error("general_settings.master_key is empty; set a key or remove the setting")]
    EmptyMasterKey,
    /// A config key's text is empty.
    #[error("tollgate.keys[{index}].key ({alias}) is empty")]
    EmptyKey {
        /// Position in `tollgate.keys`.
        index: usize,
        /// Its alias.
        alias: String,
    },
    /// A config key is the master key.
    #[error("tollgate.keys[{index}] ({alias}) is the master key; give each virtual key its own")]
    MasterKeyReused {
        /// Position in `tollgate.keys`.
        index: usize,
        /// Its alias.
        alias: String,
    },
    /// Two config keys are the same key.
    #[error("tollgate.keys[{index}] ({alias}) is the same key as {other}")]
    DuplicateKey {
        /// Position in `tollgate.keys`.
        index: usize,
        /// Its alias.
        alias: String,
        /// The other key's alias.
        other: String,
    },
    /// Two config keys have one alias.
    #[error("tollgate.keys[{index}].key_alias: {alias:?} is used by another key")]
    DuplicateAlias {
        /// Position in `tollgate.keys`.
        index: usize,
        /// The alias.
        alias: String,
    },
    /// A config key's budget is not a whole number of pico-dollars.
    #[error(
        "tollgate.keys[{index}].max_budget ({alias}) must be at most 18446744 dollars with at most 12 decimals"
    )]
    Budget {
        /// Position in `tollgate.keys`.
        index: usize,
        /// Its alias.
        alias: String,
    },
    /// A config key and a stored generated key have one alias.
    #[error(
        "key_alias {alias:?} of tollgate.keys is also the alias of a generated key in {}; \
         rename the config key, or delete the generated key \
         (DELETE FROM virtual_keys WHERE hash = '{hash}')",
        path.display()
    )]
    AliasClash {
        /// The alias.
        alias: String,
        /// The SQLite file.
        path: PathBuf,
        /// The generated key's hash, in hex.
        hash: String,
    },
    /// The store could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub(super) fn missing_key() -> Failure {
    Failure::new(
        ErrorClass::Auth,
        "Missing API key. Send it as `Authorization: Bearer <key>` (or in an `x-api-key` header).",
    )
}

pub(super) fn incorrect_key() -> Failure {
    Failure::new(ErrorClass::Auth, "Incorrect API key provided.")
}

pub(super) fn expired_key(key: &VirtualKey) -> Failure {
    let at = key.expires_at_ms.map(key::rfc3339).unwrap_or_default();
    Failure::new(
        ErrorClass::Auth,
        format!("The API key {} expired at {at}.", key.name()),
    )
    .with_code("expired_api_key")
}

pub(super) fn blocked_key(key: &VirtualKey) -> Failure {
    Failure::new(
        ErrorClass::Auth,
        format!(
            "The API key {} is blocked. An admin can unblock it with POST /key/unblock.",
            key.name()
        ),
    )
    .with_code("key_blocked")
}

/// A 400 for a change the API cannot make to a config key.
pub(super) fn config_key(key: &VirtualKey, what: &str) -> Failure {
    generate::bad_request(
        format!(
            "{} is defined in the config file (tollgate.keys) and cannot be {what} through \
             the API; change it in the config",
            key.name()
        ),
        Some("key"),
    )
}

pub(super) fn alias_taken(alias: &str) -> Failure {
    generate::bad_request(
        format!("key_alias {alias:?} is already in use"),
        Some("key_alias"),
    )
}

pub(super) fn not_found(message: String) -> Failure {
    Failure::new(ErrorClass::BadRequest, message)
        .with_status(http::StatusCode::NOT_FOUND)
        .with_code("not_found")
}

pub(super) fn store_unavailable() -> Failure {
    Failure::new(
        ErrorClass::Internal,
        "the virtual key store is unavailable; try again shortly",
    )
    .with_status(http::StatusCode::SERVICE_UNAVAILABLE)
}

pub(super) fn store_failed(error: &StoreError) -> Failure {
    tracing::error!(%error, "the virtual key store failed");
    Failure::new(ErrorClass::Internal, "the virtual key store failed")
}
