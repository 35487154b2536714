//! Anthropic's Messages API (`anthropic/` models).
//!
//! Requests go to `{api_base}/v1/messages` with `x-api-key` and
//! `anthropic-version`; see [`Anthropic`] for what is translated.

mod classify;
mod request;
mod response;
mod stream;

#[cfg(test)]
mod tests;

use bytes::Bytes;
use http::{HeaderMap, StatusCode, Uri, request::Parts};
use tollgate_core::{ErrorClass, Failure};

use crate::config::ProviderConfig;
use crate::endpoint::{BaseUrl, Headers};
use crate::error::InvalidConfig;
use crate::layer::ProviderLayer;
use crate::protocol::{Exchange, Protocol};
use crate::stream::SseStream;

pub use stream::AnthropicStream;

/// Anthropic's API, used unless `api_base` names another.
pub const DEFAULT_API_BASE: &str = "https://api.anthropic.com";

/// The `anthropic-version` sent unless `api_version` names another (the
/// version LiteLLM sends).
pub const DEFAULT_VERSION: &str = "2023-06-01";

/// The `max_tokens` sent when neither the client nor the configuration
/// gives one: LiteLLM's `DEFAULT_ANTHROPIC_CHAT_MAX_TOKENS`.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// The [`ProviderLayer`] for Anthropic.
pub type AnthropicLayer = ProviderLayer<Anthropic>;

/// The top-level fields of a Messages request sent on as the client wrote
/// them (see `Protocol::native`).
const NATIVE_FIELDS: [&str; 12] = [
    "model",
    "messages",
    "max_tokens",
    "system",
    "stop_sequences",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "tools",
    "tool_choice",
    "metadata",
];

/// Anthropic's Messages protocol, from Anthropic's API reference
/// ("Messages", "Streaming Messages", "Errors").
///
/// - **Request**: `system`/`developer` messages lifted to the top-level
///   `system` (as text blocks when one has a `cache_control`);
///   `max_tokens` (or `max_completion_tokens`) or the configured default;
///   `stop` → `stop_sequences`; `image_url` parts → `image` blocks (base64
///   for `data:` URLs, by URL otherwise); `tools` → `input_schema` tools,
///   `tool_choice` (`auto`/`none`/`required`/a function → `auto`/`none`/
///   `any`/`tool`) and `parallel_tool_calls: false` →
///   `disable_parallel_tool_use`; assistant `tool_calls` → `tool_use`
///   blocks and `tool` messages → `tool_result` blocks (consecutive ones
///   merged into one user turn); `cache_control` on parts and tools kept;
///   `user` → `metadata.user_id`. A last assistant message is sent as it
///   is: Anthropic continues it (a prefill), which is how a fallback
///   layer's stream continuation resumes a broken answer.
/// - **Answer**: text, `thinking` (as `reasoning_content`) and `tool_use`
///   blocks (as `tool_calls`), `stop_reason` → `finish_reason`, and usage
///   with the cache: `prompt_tokens` counts input, cache-read and
///   cache-write tokens; `prompt_tokens_details.cached_tokens` the reads,
///   `cache_creation_input_tokens` the writes (priced apart by the cost
///   layer).
/// - **Stream**: translated event by event (see [`AnthropicStream`]), a
///   usage chunk before `data: [DONE]` when the client asked for
///   `stream_options.include_usage`.
/// - **Errors**: `rate_limit_error` → `rate_limited`, `overloaded_error`
///   (529, or an event mid-stream) → `upstream_unavailable` (subkind
///   `overloaded`), "prompt is too long" → `context_window_exceeded`,
///   `authentication_error`/`permission_error` → `auth`, `not_found_error`
///   → `model_not_found`, other 400s → `bad_request` (or
///   `content_policy`), 5xx → `upstream_unavailable`.
#[derive(Debug)]
pub struct Anthropic {
    uri: Uri,
    headers: Headers,
    default_max_tokens: u64,
}

impl Anthropic {
    /// The protocol for `config`: `api_base` (default
    /// [`DEFAULT_API_BASE`]; `/v1/messages` is appended unless it is
    /// there), `api_key` (sent as `x-api-key`), `api_version` (the
    /// `anthropic-version`, default [`DEFAULT_VERSION`]),
    /// `default_max_tokens` (default [`DEFAULT_MAX_TOKENS`]) and extra
    /// headers (`anthropic-beta`, say).
    ///
    /// # Errors
    ///
    /// When `api_base` is not an absolute `http(s)` URL, or a value cannot
    /// go in a header.
    pub fn new(config: &ProviderConfig) -> Result<Self, InvalidConfig> {
        let base = BaseUrl::new(config.api_base.as_deref(), DEFAULT_API_BASE)?;
        let uri = if base.path().ends_with("/v1/messages") {
            base.join("")
        } else {
            base.join("/v1/messages")
        }
        .ok_or(InvalidConfig::ApiBase)?;
        let mut headers = Headers::default();
        if let Some(key) = &config.api_key {
            headers.secret("x-api-key", &key.0, "api_key")?;
        }
        headers.plain(
            "anthropic-version",
            config.api_version.as_deref().unwrap_or(DEFAULT_VERSION),
            "api_version",
        )?;
        headers.extra(config)?;
        Ok(Anthropic {
            uri,
            headers,
            default_max_tokens: config.default_max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        })
    }

    /// Points `head` at Anthropic's token counting
    /// (`/v1/messages/count_tokens`, reference "Count Message tokens") with
    /// this deployment's credentials and version: for a caller that sends
    /// an Anthropic-shaped request on as it is. A caller's `Authorization`
    /// is dropped, as for every request.
    pub fn count_tokens(&self, head: &mut Parts) {
        let uri = format!("{}/count_tokens", self.uri)
            .parse()
            .unwrap_or_else(|_| self.uri.clone());
        self.headers.apply(head, uri);
    }

    /// The layer for `config`: [`Anthropic::new`] in a [`ProviderLayer`].
    ///
    /// # Errors
    ///
    /// As [`Anthropic::new`].
    pub fn layer(config: &ProviderConfig) -> Result<AnthropicLayer, InvalidConfig> {
        Anthropic::new(config).map(ProviderLayer::new)
    }
}

impl Protocol for Anthropic {
    type Stream = SseStream<AnthropicStream>;

    fn prepare(
        &self,
        head: &mut Parts,
        body: &[u8],
        created: u64,
    ) -> Result<(Bytes, Exchange), Failure> {
        let (body, facts) = request::translate(body, self.default_max_tokens)?;
        self.headers.apply(head, self.uri.clone());
        let accept = if facts.stream {
            "text/event-stream"
        } else {
            "application/json"
        };
        head.headers
            .insert(http::header::ACCEPT, http::HeaderValue::from_static(accept));
        Ok((
            Bytes::from(body),
            Exchange {
                stream: facts.stream,
                include_usage: facts.include_usage,
                model: facts.model.into(),
                created,
            },
        ))
    }

    fn answer(&self, exchange: &Exchange, body: Bytes) -> Result<Bytes, Failure> {
        if exchange.stream {
            // Asked for a stream, answered in JSON: not what the client can
            // read.
            return Err(Failure::new(
                ErrorClass::UpstreamUnavailable,
                "the provider answered a stream request without a stream",
            )
            .with_subkind("malformed_response"));
        }
        response::translate(exchange, &body)
    }

    fn stream(&self, exchange: &Exchange) -> SseStream<AnthropicStream> {
        SseStream::new(AnthropicStream::new(exchange))
    }

    /// An Anthropic Messages request goes as the client wrote it: the
    /// deployment's model, and `stream` as the exchange has it. Only the
    /// generally available fields of "Messages" go (`NATIVE_FIELDS`): a
    /// beta field (`context_management`...) needs the client's
    /// `anthropic-beta` header, which the gateway does not forward; and
    /// not `thinking`: the answer comes back through chat's shape, which
    /// has no room for thinking blocks' signatures, and Anthropic refuses a
    /// next turn of tool use whose thinking blocks are missing.
    fn native(
        &self,
        native: &tollgate_core::extensions::NativeRequest,
        exchange: &Exchange,
    ) -> Option<Bytes> {
        if native.api != tollgate_core::extensions::NativeApi::AnthropicMessages {
            return None;
        }
        let mut body: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&native.body).ok()?;
        body.retain(|key, _| NATIVE_FIELDS.contains(&key.as_str()));
        body.insert("model".into(), serde_json::Value::from(&*exchange.model));
        if exchange.stream {
            body.insert("stream".into(), serde_json::Value::Bool(true));
        } else {
            body.remove("stream");
        }
        serde_json::to_vec(&body).ok().map(Bytes::from)
    }

    fn classify(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Failure {
        classify::classify(status, headers, body)
    }
}
