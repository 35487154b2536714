//! How keys are written: their `sk-` prefix, the aliases that cannot be
//! mistaken for a key, and the SHA-256 of key text, hex, and the
//! constant-time comparison. Shared by the config (configured keys) and the
//! key registry.
//!
//! A key is only ever kept as the SHA-256 of its text. Keys are 256 random
//! bits, so a fast unsalted hash is the right tool: there is nothing to
//! brute-force, and a lookup by hash costs one digest per request.

use ring::digest;

/// What every generated key starts with.
pub(crate) const KEY_PREFIX: &str = "sk-";
/// The longest `key_alias` accepted, in characters.
pub(crate) const MAX_ALIAS_CHARS: usize = 128;

/// The SHA-256 of a key's text: how a key is stored and looked up.
pub(crate) type KeyHash = [u8; 32];

/// The SHA-256 of `text`.
pub(crate) fn sha256(text: &[u8]) -> KeyHash {
    let digest = digest::digest(&digest::SHA256, text);
    let mut hash = [0u8; 32];
    hash.copy_from_slice(digest.as_ref());
    hash
}

/// Whether two hashes are equal, in a time that does not depend on where
/// they first differ.
pub(crate) fn ct_eq(a: &KeyHash, b: &KeyHash) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Lowercase hex of a hash (64 digits): the `token` of LiteLLM's API, and
/// the form stored in SQLite and Redis keys.
pub(crate) fn to_hex(hash: &KeyHash) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for byte in hash {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// Parses 64 hex digits (either case) into a hash.
pub(crate) fn from_hex(text: &str) -> Option<KeyHash> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let nibble = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    let mut hash = [0u8; 32];
    for (slot, pair) in hash.iter_mut().zip(bytes.chunks_exact(2)) {
        *slot = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(hash)
}

/// Why `alias` cannot name a key, if it cannot. Aliases go into logs,
/// metrics labels and the ledger, and `/key/info` and `/key/delete` take
/// key texts and hashes, so an alias may look like neither.
pub(crate) fn check_alias(alias: &str) -> Result<(), &'static str> {
    if alias.trim().is_empty() {
        return Err("must not be empty");
    }
    if alias.chars().count() > MAX_ALIAS_CHARS {
        return Err("must be at most 128 characters");
    }
    if alias.chars().any(char::is_control) {
        return Err("must not contain control characters");
    }
    if alias.starts_with(KEY_PREFIX) || crate::key_format::from_hex(alias).is_some() {
        return Err("must not look like a key or a key hash");
    }
    // `key-` and 12 hex digits is the name of a key without an alias: the
    // name its limits, budget and ledger rows go by.
    if alias
        .strip_prefix("key-")
        .is_some_and(|rest| rest.len() == 12 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err("must not look like the name of a key without an alias (key-<12 hex digits>)");
    }
    Ok(())
}
