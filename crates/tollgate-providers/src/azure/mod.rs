//! Azure OpenAI deployments (`azure/` models).
//!
//! Azure speaks OpenAI's chat-completions shape, at its own URL, with its
//! own credentials and a content filter of its own; see [`Azure`].

mod classify;
mod stream;

#[cfg(test)]
mod tests;

use std::borrow::Cow;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, request::Parts};
use serde::Deserialize;
use tollgate_core::{ErrorClass, Failure};

use crate::config::ProviderConfig;
use crate::endpoint::{BaseUrl, Headers};
use crate::error::InvalidConfig;
use crate::layer::ProviderLayer;
use crate::protocol::{Exchange, Protocol};
use crate::stream::SseStream;

pub use stream::AzureStream;

/// The `api-version` sent unless `api_version` names another: LiteLLM's
/// `AZURE_DEFAULT_API_VERSION`.
pub const DEFAULT_API_VERSION: &str = "2025-02-01-preview";

/// The [`ProviderLayer`] for Azure OpenAI.
pub type AzureLayer = ProviderLayer<Azure>;

/// Azure OpenAI's chat completions, from Microsoft's "Azure OpenAI REST API
/// reference" (data plane, inference: Chat completions —
/// <https://learn.microsoft.com/azure/ai-foundry/openai/reference>) and "Content
/// filtering" (<https://learn.microsoft.com/azure/ai-foundry/openai/concepts/content-filter>).
///
/// - **Request**: sent as the client wrote it (no re-serialisation) to
///   `{api_base}/openai/deployments/{deployment}/chat/completions?api-version={api_version}`
///   (`/embeddings` or `/completions` in place of `/chat/completions` when
///   the request's path names that operation),
///   with `api-key: <api_key>` or `Authorization: Bearer <token>` (an
///   Entra ID token). The deployment is the configured one, else the
///   request's model without its `azure/` prefix.
/// - **Answer**: passed on untouched — unless the content filter blocked it
///   (`finish_reason: "content_filter"` and nothing in the message), which
///   is a `content_policy` failure naming the filtered categories, never an
///   empty success.
/// - **Stream**: events passed on as they are, minus the chunks that carry
///   only filter annotations (`choices: []`, `prompt_filter_results`); a
///   `content_filter` finish before any content is a `content_policy`
///   failure, after content it stays (OpenAI's own meaning).
/// - **Errors**: `code: "content_filter"` (or `innererror.code:
///   "ResponsibleAIPolicyViolation"`) → `content_policy` with the filtered
///   categories; the rest as OpenAI's (429 with `retry-after(-ms)` →
///   `rate_limited`, `context_length_exceeded`, 401 → `auth`, 5xx...).
#[derive(Debug)]
pub struct Azure {
    base: BaseUrl,
    deployment: Option<String>,
    query: String,
    /// Where the Responses API is (see [`Azure::responses`]).
    responses_path: String,
    headers: Headers,
}

impl Azure {
    /// The protocol for `config`: `api_base` (required: the resource's
    /// endpoint, `https://<resource>.openai.azure.com`), `api_version`
    /// (default [`DEFAULT_API_VERSION`]), `deployment`, `api_key` or
    /// `bearer_token`, and extra headers.
    ///
    /// # Errors
    ///
    /// Without `api_base`, or when a setting cannot be sent.
    pub fn new(config: &ProviderConfig) -> Result<Self, InvalidConfig> {
        let api_base = config
            .api_base
            .as_deref()
            .ok_or(InvalidConfig::Missing("api_base"))?;
        let base = BaseUrl::new(Some(api_base), api_base)?;
        let version = config.api_version.as_deref().unwrap_or(DEFAULT_API_VERSION);
        if !version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err(InvalidConfig::Invalid("api_version".into()));
        }
        let mut headers = Headers::default();
        headers.credentials(config, "api-key")?;
        headers.extra(config)?;
        let deployment = match &config.deployment {
            Some(name) if valid_segment(name) => Some(name.clone()),
            Some(_) => return Err(InvalidConfig::Invalid("deployment".into())),
            None => None,
        };
        Ok(Azure {
            base,
            deployment,
            query: format!("?api-version={version}"),
            responses_path: responses_path(config.api_version.as_deref()),
            headers,
        })
    }

    /// Points `head` at this resource's Responses API, with its
    /// credentials, and returns the client's Responses request (`native`)
    /// to send there, its `model` the deployment's name (the configured
    /// `deployment`, else `model` without its `azure/` prefix); every other
    /// byte as the client wrote it. The answer is the Responses API's own,
    /// for the caller to pass on.
    ///
    /// The URL is Azure's, from Microsoft's "Azure OpenAI Responses API"
    /// (<https://learn.microsoft.com/azure/ai-foundry/openai/how-to/responses>)
    /// and LiteLLM's `AzureOpenAIResponsesAPIConfig`: with a dated
    /// `api_version`, `{api_base}/openai/responses?api-version={api_version}`;
    /// without one (or `v1`, `latest`), the v1 API, `{api_base}/openai/v1/responses`,
    /// which takes no version; with `preview`, the v1 API's preview
    /// (`?api-version=preview`).
    ///
    /// # Errors
    ///
    /// A body that is not a JSON object with a `model` (a `bad_request`),
    /// a model that cannot name a deployment.
    pub fn responses(
        &self,
        head: &mut Parts,
        native: &tollgate_core::extensions::NativeRequest,
        model: &str,
    ) -> Result<Bytes, Failure> {
        let deployment = self.deployment_for(model)?;
        let body = native.with_model(deployment).ok_or_else(|| {
            Failure::new(
                ErrorClass::BadRequest,
                "the request body must be a JSON object with a `model`",
            )
        })?;
        let uri = self.base.join(&self.responses_path).ok_or_else(|| {
            Failure::new(ErrorClass::Internal, "the Azure URL could not be built")
        })?;
        self.headers.apply(head, uri);
        Ok(body)
    }

    /// The deployment a request for `model` goes to: the configured
    /// `deployment`, else `model` without its `azure/` prefix when it can
    /// stand in the URL's path as it is.
    fn deployment_for<'a>(&'a self, model: &'a str) -> Result<&'a str, Failure> {
        let model = model.strip_prefix("azure/").unwrap_or(model);
        match &self.deployment {
            Some(deployment) => Ok(deployment.as_str()),
            None if valid_segment(model) => Ok(model),
            None => Err(Failure::new(
                ErrorClass::BadRequest,
                "`model` must name an Azure deployment",
            )
            .with_param("model")),
        }
    }

    /// The layer for `config`: [`Azure::new`] in a [`ProviderLayer`].
    ///
    /// # Errors
    ///
    /// As [`Azure::new`].
    pub fn layer(config: &ProviderConfig) -> Result<AzureLayer, InvalidConfig> {
        Azure::new(config).map(ProviderLayer::new)
    }
}

/// The operation a request's path names, as Azure's deployment URL ends:
/// `/embeddings` and `/completions` (legacy text completions) as they are,
/// anything else chat completions — the layer's own shape.
fn operation_path(path: &str) -> &'static str {
    if path.ends_with("/embeddings") {
        "/embeddings"
    } else if path.ends_with("/completions") && !path.ends_with("/chat/completions") {
        "/completions"
    } else {
        "/chat/completions"
    }
}

/// The path (and query) of the Responses API for `api_version` (see
/// [`Azure::responses`]).
fn responses_path(api_version: Option<&str>) -> String {
    match api_version {
        None | Some("v1" | "latest") => "/openai/v1/responses".to_owned(),
        Some("preview") => "/openai/v1/responses?api-version=preview".to_owned(),
        Some(version) => format!("/openai/responses?api-version={version}"),
    }
}

/// A deployment name that can stand in a URL path as it is.
fn valid_segment(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The fields of the request the layer reads; the rest is skipped.
#[derive(Deserialize)]
struct RequestView<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

impl Protocol for Azure {
    type Stream = SseStream<AzureStream>;

    fn prepare(
        &self,
        head: &mut Parts,
        body: &[u8],
        created: u64,
    ) -> Result<(Bytes, Exchange), Failure> {
        let view: RequestView<'_> = serde_json::from_slice(body).map_err(|_| {
            Failure::new(
                ErrorClass::BadRequest,
                "the request body must be a JSON object",
            )
        })?;
        let model = view.model.unwrap_or_default();
        let deployment = self.deployment_for(&model)?;
        let path = format!(
            "/openai/deployments/{deployment}{}{}",
            operation_path(head.uri.path()),
            self.query
        );
        let uri = self.base.join(&path).ok_or_else(|| {
            Failure::new(ErrorClass::Internal, "the Azure URL could not be built")
        })?;
        self.headers.apply(head, uri);
        let stream = view.stream.unwrap_or(false);
        if stream {
            head.headers.insert(
                http::header::ACCEPT,
                HeaderValue::from_static("text/event-stream"),
            );
        }
        let exchange = Exchange {
            stream,
            include_usage: view
                .stream_options
                .and_then(|o| o.include_usage)
                .unwrap_or(false),
            model: model.into(),
            created,
        };
        Ok((Bytes::copy_from_slice(body), exchange))
    }

    fn answer(&self, _exchange: &Exchange, body: Bytes) -> Result<Bytes, Failure> {
        classify::check_answer(&body)?;
        Ok(body)
    }

    fn stream(&self, _exchange: &Exchange) -> SseStream<AzureStream> {
        SseStream::new(AzureStream::new())
    }

    fn classify(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Failure {
        classify::classify(status, headers, body)
    }
}
