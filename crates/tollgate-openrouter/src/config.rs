//! [`OpenRouterConfig`]: where OpenRouter is and how to present ourselves.

use std::fmt;

use serde::Deserialize;
use tollgate_core::{Valid, Validate};

use crate::error::InvalidConfig;
use crate::request::Prepare;

/// OpenRouter's API base, used unless the configuration names another.
pub const DEFAULT_API_BASE: &str = "https://openrouter.ai/api/v1";

/// The largest complete (non-streaming) response read, in bytes: 8 MiB.
/// Image outputs arrive as base64 inside the JSON body.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// The configuration of an [`OpenRouterLayer`](crate::OpenRouterLayer).
///
/// Built with the methods below or deserialised (every field optional):
///
/// ```
/// use tollgate_openrouter::OpenRouterConfig;
///
/// let config = OpenRouterConfig::new()
///     .api_key("sk-or-v1-0123456789")
///     .http_referer("https://gateway.example")
///     .x_title("Example gateway");
/// // The key never shows in debug output.
/// assert!(!format!("{config:?}").contains("0123456789"));
/// // Checked once, where it is loaded: the layer's `new` cannot fail.
/// let config = config.build().expect("a valid configuration");
/// let layer = tollgate_openrouter::OpenRouterLayer::new(config);
/// # let _ = layer;
/// assert!(OpenRouterConfig::new().max_body_bytes(0).build().is_err());
/// ```
///
/// There is no switch for OpenRouter's own `models` fallback list: the layer
/// never parses or adds to request bodies, so it never sends one of its own.
/// A `models` list a client put in its body reaches OpenRouter untouched;
/// dropping it belongs where the request is parsed anyway (the gateway's
/// `ChatRequest`).
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenRouterConfig {
    pub(crate) api_base: String,
    pub(crate) api_key: Option<ApiKey>,
    pub(crate) http_referer: Option<String>,
    pub(crate) x_title: Option<String>,
    pub(crate) max_body_bytes: usize,
}

impl OpenRouterConfig {
    /// The default: OpenRouter's public API, no key, no attribution headers.
    pub fn new() -> Self {
        OpenRouterConfig {
            api_base: DEFAULT_API_BASE.to_owned(),
            api_key: None,
            http_referer: None,
            x_title: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }

    /// Sends requests to `api_base` (an absolute `http` or `https` URL)
    /// instead of [`DEFAULT_API_BASE`].
    pub fn api_base(mut self, api_base: impl Into<String>) -> Self {
        self.api_base = api_base.into();
        self
    }

    /// Sends `Authorization: Bearer <key>` with requests that carry none.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(ApiKey(key.into()));
        self
    }

    /// Sends `HTTP-Referer` (LiteLLM's `OR_SITE_URL`): the site OpenRouter
    /// attributes requests to in its rankings.
    pub fn http_referer(mut self, url: impl Into<String>) -> Self {
        self.http_referer = Some(url.into());
        self
    }

    /// Sends `X-Title` (LiteLLM's `OR_APP_NAME`): the app name OpenRouter
    /// shows for these requests.
    pub fn x_title(mut self, title: impl Into<String>) -> Self {
        self.x_title = Some(title.into());
        self
    }

    /// Bounds the complete (non-streaming) responses read, in bytes (default
    /// [`DEFAULT_MAX_BODY_BYTES`]); a larger one fails as
    /// `upstream_unavailable`.
    pub fn max_body_bytes(mut self, max: usize) -> Self {
        self.max_body_bytes = max;
        self
    }
}

impl OpenRouterConfig {
    /// The configuration, checked once (where it is loaded): what
    /// [`OpenRouterLayer::new`](crate::OpenRouterLayer::new) takes.
    ///
    /// # Errors
    ///
    /// When the base URL is not an absolute `http`/`https` URL, a header
    /// value (the key included) cannot go in a header, or `max_body_bytes`
    /// is zero.
    pub fn build(self) -> Result<Valid<Self>, InvalidConfig> {
        Valid::new(self)
    }
}

impl Validate for OpenRouterConfig {
    type Error = InvalidConfig;

    fn validate(&self) -> Result<(), InvalidConfig> {
        if self.max_body_bytes == 0 {
            return Err(InvalidConfig::MaxBodyBytes);
        }
        // What the layer will encode, encoded once to see that it can be.
        Prepare::new(self).map(drop)
    }
}

impl Default for OpenRouterConfig {
    fn default() -> Self {
        OpenRouterConfig::new()
    }
}

impl fmt::Debug for OpenRouterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenRouterConfig")
            .field("api_base", &self.api_base)
            .field("api_key", &self.api_key)
            .field("http_referer", &self.http_referer)
            .field("x_title", &self.x_title)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
}

/// A key whose `Debug` never shows it.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub(crate) struct ApiKey(pub(crate) String);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deserialises_with_defaults_and_rejects_unknown_keys() {
        let config: OpenRouterConfig =
            serde_json::from_str(r#"{"api_key":"sk-or-secret","x_title":"T"}"#).unwrap();
        assert_eq!(config.api_base, DEFAULT_API_BASE);
        assert_eq!(config.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(config.x_title.as_deref(), Some("T"));
        let debug = format!("{config:?}");
        assert!(
            debug.contains("[redacted]") && !debug.contains("secret"),
            "{debug}"
        );
        assert!(serde_json::from_str::<OpenRouterConfig>(r#"{"models":[]}"#).is_err());
    }
}
