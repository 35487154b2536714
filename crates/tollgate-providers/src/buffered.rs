//! [`BufferedBody`]: request bodies the layer can read without waiting.

use bytes::Bytes;
use tollgate_core::RequestBody;

/// A request body held in memory, which the layer reads, translates and
/// replaces synchronously in `call`.
///
/// A translation needs the whole request, and a tower service cannot wait
/// for a body between `poll_ready` and `call`; the gateway reads requests
/// once at ingress anyway ([`RequestBody`]), so bodies are taken as they
/// are held.
pub trait BufferedBody: Sized {
    /// The bytes of the body (empty for an empty one).
    fn buffered(&self) -> Bytes;

    /// A body of `bytes`.
    fn from_bytes(bytes: Bytes) -> Self;
}

impl BufferedBody for RequestBody {
    fn buffered(&self) -> Bytes {
        self.bytes().cloned().unwrap_or_default()
    }

    fn from_bytes(bytes: Bytes) -> Self {
        RequestBody::new(bytes)
    }
}

impl BufferedBody for Bytes {
    fn buffered(&self) -> Bytes {
        self.clone()
    }

    fn from_bytes(bytes: Bytes) -> Self {
        bytes
    }
}
