//! Google's Gemini API (`gemini/` models, Google AI Studio).
//!
//! Requests go to `https://generativelanguage.googleapis.com/v1beta/models/{model}:generateContent`
//! (or `:streamGenerateContent?alt=sse`, under another `api_base` when one
//! is set) with `x-goog-api-key`; see [`Gemini`]
//! for what is translated. The translation does not depend on that URL or
//! key: [`Gemini::with_models_url`] serves the same bodies at another
//! address (Gemini models on Vertex AI, whose credentials a layer below
//! adds).

mod classify;
mod embed;
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

pub use stream::GeminiStream;

/// Google AI Studio's Gemini API, used unless `api_base` names another.
pub const DEFAULT_API_BASE: &str = "https://generativelanguage.googleapis.com";

/// The API version path under the base: Gemini's current models and
/// features (`systemInstruction`, `responseSchema`, thinking) are on
/// `v1beta`, which is what LiteLLM calls.
pub const API_VERSION_PATH: &str = "/v1beta";

/// The [`ProviderLayer`] for Gemini.
pub type GeminiLayer = ProviderLayer<Gemini>;

/// Gemini's `generateContent` protocol, from Google AI for Developers'
/// "Gemini API reference" (<https://ai.google.dev/api>: "Generating
/// content", "Caching"-free `Content`/`Part`, `GenerationConfig`, `Tool`,
/// `UsageMetadata`, `FinishReason`, `PromptFeedback`) and its
/// "Troubleshooting" page for error codes
/// (<https://ai.google.dev/gemini-api/docs/troubleshooting>).
///
/// - **Request**: `system`/`developer` messages → `systemInstruction`;
///   `user`/`assistant` → `contents` with roles `user`/`model` (consecutive
///   turns of one role merged); `image_url` parts → `inlineData` (`data:`
///   URLs) or `fileData` (other URLs, their MIME type from the extension);
///   assistant `tool_calls` → `functionCall` parts and `tool` messages →
///   `functionResponse` parts named after the call they answer; `tools` →
///   `functionDeclarations` (schema keys Gemini rejects removed),
///   `tool_choice` → `toolConfig.functionCallingConfig` (`AUTO`/`NONE`/
///   `ANY`, a named function as `allowedFunctionNames`); `max_tokens`
///   (or `max_completion_tokens`), `temperature`, `top_p`, `top_k`, `stop`,
///   `n`, `seed`, `presence_penalty`, `frequency_penalty` →
///   `generationConfig`; `response_format` → `responseMimeType`
///   (+ `responseSchema`); `reasoning_effort` → `thinkingConfig`;
///   `safety_settings` and `cached_content` passed on. Other OpenAI
///   parameters are dropped (see DECISIONS).
/// - **Answer**: each candidate a choice — text, thoughts (as
///   `reasoning_content`), `functionCall` parts as `tool_calls` (Gemini
///   gives no ids: each gets one, carrying the part's `thoughtSignature`
///   so that the next turn can send it back); `finishReason` →
///   `finish_reason`; `usageMetadata` → `usage` (cached prompt tokens as
///   `cached_tokens`, thoughts as `reasoning_tokens`, counted in the
///   completion). A blocked prompt (`promptFeedback.blockReason`) or a
///   candidate stopped by a safety filter with nothing in it is a
///   `content_policy` failure naming the reason, never an empty success.
/// - **Stream**: each `GenerateContentResponse` event translated as it
///   arrives (see [`GeminiStream`]); Gemini sends no end event, so the
///   chunk whose candidates all carry a `finishReason` ends the stream
///   (usage chunk, `data: [DONE]`).
/// - **Errors**: Google's `{"error":{"code","message","status","details"}}`:
///   `RESOURCE_EXHAUSTED` → `rate_limited` (with `RetryInfo`'s delay),
///   `UNAVAILABLE` → `upstream_unavailable` (subkind `overloaded`), "exceeds
///   the maximum number of tokens" → `context_window_exceeded`, an invalid
///   key (`API_KEY_INVALID`, 401, 403) → `auth`, `NOT_FOUND` →
///   `model_not_found`, other 400s → `bad_request`, 5xx → unavailable.
#[derive(Debug)]
pub struct Gemini {
    models: BaseUrl,
    headers: Headers,
}

impl Gemini {
    /// The protocol for `config` on Google AI Studio: `api_base` (default
    /// [`DEFAULT_API_BASE`]; requests go to `{api_base}/models/…` as
    /// LiteLLM sends them, with [`API_VERSION_PATH`] added to a bare host),
    /// `api_key` (sent as `x-goog-api-key`) and extra headers.
    ///
    /// # Errors
    ///
    /// When `api_base` is not an absolute `http(s)` URL, or a value cannot
    /// go in a header.
    pub fn new(config: &ProviderConfig) -> Result<Self, InvalidConfig> {
        let base = BaseUrl::new(config.api_base.as_deref(), DEFAULT_API_BASE)?;
        // LiteLLM sends to `{api_base}/models/…`: a base with a path names
        // its version (`…/v1beta`, a Cloudflare gateway's
        // `…/google-ai-studio/v1beta`); a bare host gets Gemini's.
        let version = if base.path().is_empty() {
            API_VERSION_PATH
        } else {
            ""
        };
        let models = format!(
            "{}/models",
            base.join(version).ok_or(InvalidConfig::ApiBase)?
        );
        Gemini::with_models_url(&models, config)
    }

    /// The same translation, sent to `{models_url}/{model}:generateContent`
    /// (and `:streamGenerateContent?alt=sse`): for a host that serves
    /// Gemini's bodies under another path, such as Vertex AI's
    /// `https://{location}-aiplatform.googleapis.com/v1/projects/{project}/locations/{location}/publishers/google/models`.
    /// `config`'s `api_key` (as `x-goog-api-key`), `bearer_token` (as
    /// `Authorization: Bearer …`, for a fixed OAuth token; a token that
    /// expires is better added by a layer below this one) and extra headers
    /// are sent, each when set; its `api_base` is not read.
    ///
    /// # Errors
    ///
    /// When `models_url` is not an absolute `http(s)` URL, or a value
    /// cannot go in a header.
    pub fn with_models_url(
        models_url: &str,
        config: &ProviderConfig,
    ) -> Result<Self, InvalidConfig> {
        let models = BaseUrl::new(Some(models_url), models_url)?;
        let mut headers = Headers::default();
        headers.credentials(config, "x-goog-api-key")?;
        headers.extra(config)?;
        Ok(Gemini { models, headers })
    }

    /// The layer for `config`: [`Gemini::new`] in a [`ProviderLayer`].
    ///
    /// # Errors
    ///
    /// As [`Gemini::new`].
    pub fn layer(config: &ProviderConfig) -> Result<GeminiLayer, InvalidConfig> {
        Gemini::new(config).map(ProviderLayer::new)
    }

    /// The URL of `model`'s method.
    fn uri(&self, model: &str, stream: bool) -> Result<Uri, Failure> {
        let method = if stream {
            ":streamGenerateContent?alt=sse"
        } else {
            ":generateContent"
        };
        self.models
            .join(&format!("/{model}{method}"))
            .ok_or_else(|| Failure::new(ErrorClass::Internal, "the Gemini URL could not be built"))
    }
}

impl Protocol for Gemini {
    type Stream = SseStream<GeminiStream>;

    fn prepare(
        &self,
        head: &mut Parts,
        body: &[u8],
        created: u64,
    ) -> Result<(Bytes, Exchange), Failure> {
        let (body, facts) = request::translate(body)?;
        let uri = self.uri(&facts.model, facts.stream)?;
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

    fn stream(&self, exchange: &Exchange) -> SseStream<GeminiStream> {
        SseStream::new(GeminiStream::new(exchange))
    }

    fn classify(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Failure {
        classify::classify(status, headers, body)
    }
}
