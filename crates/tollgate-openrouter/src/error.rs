//! The errors the layer adds.

/// An [`OpenRouterConfig`](crate::OpenRouterConfig) that cannot be used.
/// Messages name the setting, never the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidConfig {
    /// `api_base` is not an absolute `http://` or `https://` URL.
    #[error("api_base must be an absolute http:// or https:// URL")]
    ApiBase,
    /// The key holds a character that cannot go in a header.
    #[error("api_key contains characters that cannot go in a header")]
    ApiKey,
    /// `http_referer` or `x_title` holds a character that cannot go in a
    /// header.
    #[error("{0} contains characters that cannot go in a header")]
    Header(&'static str),
    /// `max_body_bytes` is zero.
    #[error("max_body_bytes must be at least 1")]
    MaxBodyBytes,
}
