//! What the upstream saw.

use bytes::Bytes;
use http::{HeaderMap, Method, Uri, Version};
use tokio::time::Instant;

/// One request as the upstream received it, recorded before its reply was produced.
///
/// A request whose body failed to arrive (the client went away) is not recorded.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// The request method.
    pub method: Method,
    /// The request target: origin-form on HTTP/1.1 (`/v1/chat/completions?x=1`),
    /// absolute on h2c; [`Uri::path`] reads the same on both.
    pub uri: Uri,
    /// The HTTP version the request came in on.
    pub version: Version,
    /// The request headers.
    pub headers: HeaderMap,
    /// The whole request body.
    pub body: Bytes,
    /// When the request head arrived (tokio's clock, so it follows paused time).
    pub received_at: Instant,
}

impl RecordedRequest {
    /// Parses the body as JSON.
    ///
    /// # Panics
    ///
    /// If the body is not JSON; the message shows the body.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!(
                "testkit: request body is not JSON ({err}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}
