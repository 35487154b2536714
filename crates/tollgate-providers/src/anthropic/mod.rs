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
use tollgate_core::Failure;

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
///   `user` → `metadata.user_id`; `response_format` of type `json_schema`
///   → `output_config.format` (structured outputs; `json_object` and
///   `n > 1` are refused with a 400). A last assistant message is sent as it
///   is: Anthropic continues it (a prefill), which is how a fallback
///   layer's stream continuation resumes a broken answer.
/// - **Answer**: text, `thinking` (as `reasoning_content`) and `tool_use`
///   blocks (as `tool_calls`), `stop_reason` → `finish_reason` (a
///   `refusal` with nothing before it is a `content_policy` failure, code
///   `refusal`, in a complete answer and in a stream), and usage
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
    target: Target,
    headers: Headers,
    default_max_tokens: u64,
}

/// Where requests go.
#[derive(Debug)]
enum Target {
    /// Anthropic's own `/v1/messages`.
    Messages(Uri),
    /// Claude on Vertex AI: `{models}/{model}:rawPredict` (or
    /// `:streamRawPredict`), the version in the body, no `model` field.
    Vertex(BaseUrl),
}

/// The `anthropic_version` Claude on Vertex AI takes in the body
/// (Anthropic's "Claude on Vertex AI").
pub const VERTEX_VERSION: &str = "vertex-2023-10-16";

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
            target: Target::Messages(uri),
            headers,
            default_max_tokens: config.default_max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        })
    }

    /// The same translation for Claude on Vertex AI (Anthropic's "Claude on
    /// Vertex AI"): sent to `{models_url}/{model}:rawPredict` (or
    /// `:streamRawPredict` for a stream), with `anthropic_version:
    /// "vertex-2023-10-16"` in the body and no `model` field. Only
    /// `config`'s `default_max_tokens` and extra headers are read: the
    /// credentials are a bearer token a layer below adds.
    ///
    /// # Errors
    ///
    /// When `models_url` is not an absolute `http(s)` URL, or a header
    /// value cannot be sent.
    pub fn on_vertex(models_url: &str, config: &ProviderConfig) -> Result<Self, InvalidConfig> {
        let models = BaseUrl::new(Some(models_url), models_url)?;
        let mut headers = Headers::default();
        headers.extra(config)?;
        Ok(Anthropic {
            target: Target::Vertex(models),
            headers,
            default_max_tokens: config.default_max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        })
    }

    /// Points `head` at Anthropic's token counting
    /// (`/v1/messages/count_tokens`, reference "Count Message tokens") with
    /// this deployment's credentials and version: for a caller that sends
    /// an Anthropic-shaped request on as it is. A caller's `Authorization`
    /// is dropped, as for every request.
    ///
    /// Claude on Vertex AI counts at `{models}/count-tokens:rawPredict`
    /// (Google's "Count tokens for Claude models").
    pub fn count_tokens(&self, head: &mut Parts) {
        let uri = match &self.target {
            Target::Messages(uri) => format!("{uri}/count_tokens")
                .parse()
                .unwrap_or_else(|_| uri.clone()),
            Target::Vertex(models) => {
                match crate::endpoint::model_uri(models, "count-tokens", ":rawPredict") {
                    Ok(uri) => uri,
                    Err(_) => return,
                }
            }
        };
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
        let (body, facts, uri) = match &self.target {
            Target::Messages(uri) => {
                let (body, facts) = request::translate(body, self.default_max_tokens)?;
                (body, facts, uri.clone())
            }
            Target::Vertex(models) => {
                let (mut out, facts) = request::translate_object(body, self.default_max_tokens)?;
                out.remove("model");
                out.insert("anthropic_version".into(), VERTEX_VERSION.into());
                let method = if facts.stream {
                    ":streamRawPredict"
                } else {
                    ":rawPredict"
                };
                let uri = crate::endpoint::model_uri(models, &facts.model, method)?;
                let body = serde_json::to_vec(&out).unwrap_or_default();
                (body, facts, uri)
            }
        };
        self.headers.apply(head, uri);
        facts.accept(head, "text/event-stream");
        Ok((Bytes::from(body), facts.into_exchange(created)))
    }

    fn answer(&self, exchange: &Exchange, body: Bytes) -> Result<Bytes, Failure> {
        if exchange.stream {
            return Err(crate::failures::stream_answered_as_json());
        }
        response::translate(exchange, &body)
    }

    fn stream(&self, exchange: &Exchange) -> SseStream<AnthropicStream> {
        SseStream::new(AnthropicStream::new(exchange))
    }

    /// An Anthropic Messages request goes as the client wrote it: the
    /// deployment's model (on Vertex AI: in the URL, with Vertex's
    /// `anthropic_version` in the body), and `stream` as the exchange has it. Only the
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
        match self.target {
            Target::Messages(_) => {
                body.insert("model".into(), serde_json::Value::from(&*exchange.model));
            }
            // Claude on Vertex AI takes the same body with the version
            // inside and the model in the URL ("Claude on Vertex AI").
            Target::Vertex(_) => {
                body.remove("model");
                body.insert("anthropic_version".into(), VERTEX_VERSION.into());
            }
        }
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
