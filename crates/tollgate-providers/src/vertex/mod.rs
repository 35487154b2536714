//! Google Vertex AI (`vertex_ai/` models): Gemini and Claude models in a
//! Google Cloud project, authenticated as a service account.
//!
//! - **Gemini models** take Gemini's own bodies (the [`gemini`](crate::gemini)
//!   translation) at `…/publishers/google/models/{model}:generateContent`
//!   and `:streamGenerateContent?alt=sse` (Google Cloud's "Vertex AI API
//!   reference", `projects.locations.publishers.models.generateContent`).
//! - **Claude models** take Anthropic's Messages bodies (the
//!   [`anthropic`](crate::anthropic) translation) at
//!   `…/publishers/anthropic/models/{model}:rawPredict` and
//!   `:streamRawPredict`, with `anthropic_version: "vertex-2023-10-16"` in
//!   the body and no `model` (Anthropic's "Claude on Vertex AI").
//! - **Credentials**: a service account's key (LiteLLM's
//!   `vertex_credentials`) traded for an OAuth2 access token with the
//!   JWT-bearer grant, sent as `Authorization: Bearer`: see
//!   [`GoogleAuthLayer`].
//!
//! [`Vertex::layer`] builds both from one [`ProviderConfig`].

mod account;
mod auth;
mod embed;
mod token;

#[cfg(test)]
mod tests;

use std::borrow::Cow;

use bytes::Bytes;
use http::{HeaderMap, StatusCode, request::Parts};
use serde::Deserialize;
use tollgate_core::{ErrorClass, Failure};
use tower::Layer;

use crate::anthropic::{Anthropic, AnthropicStream};
use crate::config::ProviderConfig;
use crate::endpoint::BaseUrl;
use crate::error::InvalidConfig;
use crate::events::TranslatedEvents;
use crate::gemini::{Gemini, GeminiStream};
use crate::layer::{Provider, ProviderLayer};
use crate::protocol::{Exchange, Protocol, TranslateStream};
use crate::stream::SseStream;

pub use account::{DEFAULT_TOKEN_URI, SCOPE, ServiceAccount};
pub use auth::{GoogleAuth, GoogleAuthLayer, ResponseFuture};

/// The region used when the configuration names none (LiteLLM's default).
pub const DEFAULT_LOCATION: &str = "us-central1";

/// Vertex AI's protocol: the request's model picks the translation —
/// `claude…` models Anthropic's (on Vertex), `gemini…` models Gemini's.
/// Other models (Gemma, Llama, Mistral... served from Model Garden
/// endpoints) are a bad request naming the two families.
///
/// Answers, streams and errors are translated by the same family's rules;
/// an error body is read by its shape, since Vertex answers quota and
/// permission errors in Google's shape whatever the model.
#[derive(Debug)]
pub struct Vertex {
    gemini: Gemini,
    anthropic: Anthropic,
}

/// The models a request can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Gemini,
    Claude,
}

impl Family {
    fn of(model: &str) -> Option<Family> {
        if model.starts_with("claude") {
            Some(Family::Claude)
        } else if model.starts_with("gemini") {
            Some(Family::Gemini)
        } else {
            None
        }
    }
}

impl Vertex {
    /// The protocol for `project` in `config`'s `vertex_location` (default
    /// [`DEFAULT_LOCATION`]; `global` is served by
    /// `aiplatform.googleapis.com`, any other by
    /// `{location}-aiplatform.googleapis.com`). `api_base`, when set,
    /// replaces that host (a proxy, or a test's fake). `default_max_tokens`
    /// and extra headers are sent as for Anthropic and Gemini.
    ///
    /// # Errors
    ///
    /// When the project or location is not a plain name, `api_base` is not
    /// an absolute `http(s)` URL, or a header value cannot be sent.
    pub fn new(config: &ProviderConfig, project: &str) -> Result<Self, InvalidConfig> {
        let location = config
            .vertex_location
            .as_deref()
            .unwrap_or(DEFAULT_LOCATION);
        let plain = |name: &str| {
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        };
        if !plain(project) {
            return Err(InvalidConfig::Invalid("vertex_project".into()));
        }
        if !plain(location) {
            return Err(InvalidConfig::Invalid("vertex_location".into()));
        }
        let host = if location == "global" {
            "https://aiplatform.googleapis.com".to_owned()
        } else {
            format!("https://{location}-aiplatform.googleapis.com")
        };
        let base = BaseUrl::new(config.api_base.as_deref(), &host)?;
        let publisher = |name: &str| {
            base.join(&format!(
                "/v1/projects/{project}/locations/{location}/publishers/{name}/models"
            ))
            .map(|uri| uri.to_string())
            .ok_or(InvalidConfig::ApiBase)
        };
        Ok(Vertex {
            gemini: Gemini::with_models_url(&publisher("google")?, &no_key(config))?,
            anthropic: Anthropic::on_vertex(&publisher("anthropic")?, config)?,
        })
    }

    /// The layers for `config`: the protocol over [`GoogleAuthLayer`], as
    /// the service account of `vertex_credentials` (required; its token
    /// [shared](GoogleAuthLayer::shared) with other layers of the account), in
    /// `vertex_project` (by default the account's `project_id`).
    ///
    /// # Errors
    ///
    /// When the credentials are missing or unreadable, no project is known,
    /// or as [`Vertex::new`].
    pub fn layer(config: &ProviderConfig) -> Result<VertexLayer, InvalidConfig> {
        let credentials = config
            .vertex_credentials
            .as_ref()
            .ok_or(InvalidConfig::Missing("vertex_credentials"))?;
        let account = ServiceAccount::load(&credentials.0)?;
        let project = match &config.vertex_project {
            Some(project) => project.clone(),
            None => account
                .project_id()
                .ok_or(InvalidConfig::Missing("vertex_project"))?
                .to_owned(),
        };
        let vertex = Vertex::new(config, &project)?;
        Ok(VertexLayer::new(
            ProviderLayer::new(vertex),
            GoogleAuthLayer::shared(account),
        ))
    }

    /// Whether `model` can count tokens in Anthropic's shape here: Claude
    /// models can ([`count_tokens`](Self::count_tokens)); Gemini counts in
    /// its own shape.
    pub fn counts_tokens(&self, model: &str) -> bool {
        Family::of(model) == Some(Family::Claude)
    }

    /// Points `head` at Claude's token counting on Vertex AI
    /// (`…/publishers/anthropic/models/count-tokens:rawPredict`, Google's
    /// "Count tokens for Claude models", which takes Anthropic's body with
    /// the `model` in it), for a model that
    /// [`counts_tokens`](Self::counts_tokens). The bearer token is added
    /// below, by [`GoogleAuth`].
    pub fn count_tokens(&self, head: &mut Parts) {
        self.anthropic.count_tokens(head);
    }

    /// The family `model` belongs to, or the bad request naming the
    /// supported ones.
    fn family(model: &str) -> Result<Family, Failure> {
        Family::of(model).ok_or_else(|| {
            Failure::new(
                ErrorClass::BadRequest,
                "Vertex AI serves Gemini (`gemini-…`) and Claude (`claude-…`) models here",
            )
            .with_param("model")
        })
    }
}

/// `config` without an `api_key`: Vertex authenticates with a bearer token,
/// never Gemini's `x-goog-api-key`.
fn no_key(config: &ProviderConfig) -> ProviderConfig {
    ProviderConfig {
        api_key: None,
        ..config.clone()
    }
}

/// The request's `model`, read without building the rest.
#[derive(Deserialize)]
struct ModelOnly<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
}

/// An error body's `type`: `"error"` in Anthropic's shape.
#[derive(Deserialize)]
struct ErrorShape<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
}

impl Protocol for Vertex {
    type Stream = VertexStream;

    fn prepare(
        &self,
        head: &mut Parts,
        body: &[u8],
        created: u64,
    ) -> Result<(Bytes, Exchange), Failure> {
        let model = serde_json::from_slice::<ModelOnly<'_>>(body)
            .ok()
            .and_then(|m| m.model)
            .ok_or_else(|| {
                Failure::new(ErrorClass::BadRequest, "`model` must be a string").with_param("model")
            })?;
        match Vertex::family(&model)? {
            Family::Claude => self.anthropic.prepare(head, body, created),
            Family::Gemini => self.gemini.prepare(head, body, created),
        }
    }

    /// A client's Anthropic Messages request goes to Claude as written
    /// (Vertex's body); Gemini models get the translation.
    fn native(
        &self,
        native: &tollgate_core::extensions::NativeRequest,
        exchange: &Exchange,
    ) -> Option<Bytes> {
        match Family::of(&exchange.model)? {
            Family::Claude => self.anthropic.native(native, exchange),
            Family::Gemini => None,
        }
    }

    fn answer(&self, exchange: &Exchange, body: Bytes) -> Result<Bytes, Failure> {
        match Vertex::family(&exchange.model)? {
            Family::Claude => self.anthropic.answer(exchange, body),
            Family::Gemini => self.gemini.answer(exchange, body),
        }
    }

    fn stream(&self, exchange: &Exchange) -> VertexStream {
        match Family::of(&exchange.model) {
            Some(Family::Claude) => VertexStream::Claude(self.anthropic.stream(exchange)),
            _ => VertexStream::Gemini(self.gemini.stream(exchange)),
        }
    }

    fn classify(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Failure {
        let anthropic_shaped = serde_json::from_slice::<ErrorShape<'_>>(body)
            .ok()
            .and_then(|e| e.kind)
            .is_some_and(|kind| kind == "error");
        if anthropic_shaped {
            self.anthropic.classify(status, headers, body)
        } else {
            self.gemini.classify(status, headers, body)
        }
    }
}

/// One Vertex stream, translated by its model's family.
#[derive(Debug)]
pub enum VertexStream {
    /// A Gemini model's `streamGenerateContent` events.
    Gemini(SseStream<GeminiStream>),
    /// A Claude model's `streamRawPredict` events.
    Claude(SseStream<AnthropicStream>),
}

impl TranslateStream for VertexStream {
    fn push(&mut self, chunk: Bytes, out: &mut TranslatedEvents) -> Result<(), Failure> {
        match self {
            VertexStream::Gemini(stream) => stream.push(chunk, out),
            VertexStream::Claude(stream) => stream.push(chunk, out),
        }
    }

    fn committed(&self) -> bool {
        match self {
            VertexStream::Gemini(stream) => stream.committed(),
            VertexStream::Claude(stream) => stream.committed(),
        }
    }

    fn finished(&self) -> bool {
        match self {
            VertexStream::Gemini(stream) => stream.finished(),
            VertexStream::Claude(stream) => stream.finished(),
        }
    }
}

/// [`Vertex`] over [`GoogleAuthLayer`]: what [`Vertex::layer`] builds.
#[derive(Debug, Clone)]
pub struct VertexLayer {
    protocol: ProviderLayer<Vertex>,
    auth: GoogleAuthLayer,
}

impl VertexLayer {
    /// The translation `protocol` over the credentials `auth`.
    pub fn new(protocol: ProviderLayer<Vertex>, auth: GoogleAuthLayer) -> Self {
        VertexLayer { protocol, auth }
    }
}

impl<S> Layer<S> for VertexLayer {
    type Service = VertexService<S>;

    fn layer(&self, inner: S) -> VertexService<S> {
        self.protocol.layer(self.auth.layer(inner))
    }
}

/// A Vertex AI deployment's service over the HTTP client `S`.
pub type VertexService<S> = Provider<GoogleAuth<S>, Vertex>;
