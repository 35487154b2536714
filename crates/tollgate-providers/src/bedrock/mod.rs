//! AWS Bedrock's Converse API (`bedrock/` models), signed with SigV4.
//!
//! Requests go to `https://bedrock-runtime.{region}.amazonaws.com/model/{modelId}/converse`
//! (or `/converse-stream`), signed with the deployment's AWS credentials;
//! see [`Bedrock`] for what is translated.

mod classify;
mod embed;
mod eventstream;
mod request;
mod response;
mod sigv4;
mod stream;

#[cfg(test)]
mod tests;

use std::fmt::Write as _;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts};
use ring::rand::{SecureRandom, SystemRandom};
use tollgate_core::Failure;

use crate::config::ProviderConfig;
use crate::endpoint::{BaseUrl, Headers};
use crate::error::InvalidConfig;
use crate::failures::{bad_request, stream_answered_as_json};
use crate::layer::ProviderLayer;
use crate::protocol::{Exchange, Protocol};

pub use embed::INPUT_TOKEN_COUNT_HEADER;
pub use stream::BedrockStream;

/// The service name requests are signed for.
pub const SIGNING_SERVICE: &str = "bedrock";

/// The content type of ConverseStream's answer: AWS's binary event stream.
pub const EVENT_STREAM_CONTENT_TYPE: &str = "application/vnd.amazon.eventstream";

/// The [`ProviderLayer`] for Bedrock.
pub type BedrockLayer = ProviderLayer<Bedrock>;

/// Bedrock's Converse and ConverseStream, from the Amazon Bedrock API
/// Reference ("Converse", "ConverseStream", their data types and errors),
/// AWS's "Signature Version 4" pages and "Event stream encoding".
///
/// - **Request**: `POST {base}/model/{modelId}/converse` (`converse-stream`
///   for a stream), the model id percent-encoded (`:` → `%3A`), signed
///   with SigV4 (service `bedrock`) at the layer's clock: `x-amz-date`,
///   `x-amz-security-token` with a session token, `Authorization`.
///   `system`/`developer` messages → `system` blocks; messages → content
///   blocks (`text`, base64 `image`s from `data:` URLs, assistant
///   `tool_calls` → `toolUse`, `tool` messages → `toolResult`, consecutive
///   roles merged); `max_tokens`/`max_completion_tokens`, `temperature`,
///   `top_p`, `stop` → `inferenceConfig`; `tools` → `toolConfig.tools`
///   (`toolSpec` with `inputSchema.json`), `tool_choice` `auto`/`required`/
///   a function → `auto`/`any`/`tool`; `cache_control` → a `cachePoint`
///   block; other model parameters (`top_k`...) →
///   `additionalModelRequestFields`. A last assistant message is sent as
///   a prefill.
/// - **Answer**: text, `reasoningContent` (as `reasoning_content`) and
///   `toolUse` blocks (as `tool_calls`), `stopReason` → `finish_reason`,
///   usage with the cache (`prompt_tokens` counts input, cache-read and
///   cache-write tokens). `guardrail_intervened` / `content_filtered` is a
///   `content_policy` failure naming the reason, never an empty success.
/// - **Stream**: the binary event stream decoded incrementally, every
///   message's CRCs checked (a mismatch is a broken upstream, never
///   skipped), translated event by event (see [`BedrockStream`]); the
///   usage chunk, when asked for, from the final `metadata` event.
/// - **Errors**: by `x-amzn-errortype` (or `:exception-type` mid-stream):
///   `ThrottlingException` → `rate_limited`, `ValidationException` "too
///   long" → `context_window_exceeded` (else `bad_request`),
///   `ServiceUnavailableException` / `ModelNotReadyException` →
///   `upstream_unavailable` (subkind `overloaded`), `AccessDenied` /
///   `UnrecognizedClient` / signature errors → `auth`,
///   `ResourceNotFoundException` → `model_not_found`, the rest
///   `upstream_unavailable`.
#[derive(Debug)]
pub struct Bedrock {
    base: BaseUrl,
    headers: Headers,
    signer: sigv4::Signer,
}

impl Bedrock {
    /// The protocol for `config`: `aws_region` (required), the AWS
    /// credentials (required; a session token optional), `api_base` (by
    /// default `https://bedrock-runtime.{region}.amazonaws.com`; LiteLLM's
    /// `aws_bedrock_runtime_endpoint`) and extra headers.
    ///
    /// # Errors
    ///
    /// Without a region or credentials, or when `api_base` is not an
    /// absolute `http(s)` URL or a value cannot be sent.
    pub fn new(config: &ProviderConfig) -> Result<Self, InvalidConfig> {
        let region = config
            .aws_region
            .as_deref()
            .filter(|r| !r.is_empty())
            .ok_or(InvalidConfig::Missing("aws_region_name"))?;
        // It goes into the host name and the credential scope.
        if !region
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(InvalidConfig::Invalid("aws_region_name".to_owned()));
        }
        let key_id = config
            .aws_access_key_id
            .as_ref()
            .ok_or(InvalidConfig::Missing("aws_access_key_id"))?;
        let secret = config
            .aws_secret_access_key
            .as_ref()
            .ok_or(InvalidConfig::Missing("aws_secret_access_key"))?;
        // It goes into the `Credential=…/…,` field of the signature.
        if key_id.0.is_empty()
            || !key_id
                .0
                .bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b'/' | b',' | b'='))
        {
            return Err(InvalidConfig::Invalid("aws_access_key_id".to_owned()));
        }
        if secret.0.is_empty() {
            return Err(InvalidConfig::Missing("aws_secret_access_key"));
        }
        let session_token = config.aws_session_token.as_ref().map(|t| t.0.clone());
        if let Some(token) = &session_token
            && HeaderValue::from_str(token).is_err()
        {
            return Err(InvalidConfig::Invalid("aws_session_token".to_owned()));
        }
        let credentials = sigv4::Credentials {
            access_key_id: key_id.0.clone(),
            secret_access_key: secret.0.clone(),
            session_token,
        };
        let default = format!("https://bedrock-runtime.{region}.amazonaws.com");
        let base = BaseUrl::new(config.api_base.as_deref(), &default)?;
        let mut headers = Headers::default();
        headers.extra(config)?;
        Ok(Bedrock {
            base,
            headers,
            signer: sigv4::Signer {
                credentials,
                region: region.to_owned(),
                service: SIGNING_SERVICE,
            },
        })
    }

    /// The layer for `config`: [`Bedrock::new`] in a [`ProviderLayer`].
    ///
    /// # Errors
    ///
    /// As [`Bedrock::new`].
    pub fn layer(config: &ProviderConfig) -> Result<BedrockLayer, InvalidConfig> {
        Bedrock::new(config).map(ProviderLayer::new)
    }
}

impl Protocol for Bedrock {
    type Stream = BedrockStream;

    fn prepare(
        &self,
        head: &mut Parts,
        body: &[u8],
        created: u64,
    ) -> Result<(Bytes, Exchange), Failure> {
        let (body, facts) = request::translate(body)?;
        let action = if facts.stream {
            "converse-stream"
        } else {
            "converse"
        };
        let tail = format!("/model/{}/{action}", encode_model_id(&facts.model));
        let uri = self
            .base
            .join(&tail)
            .ok_or_else(|| bad_request("the model id cannot be sent", Some("model")))?;
        self.headers.apply(head, uri);
        facts.accept(head, EVENT_STREAM_CONTENT_TYPE);
        // Signed last: the signature covers the URL, content type and body
        // as they leave.
        self.signer.sign(head, &body, created);
        Ok((Bytes::from(body), facts.into_exchange(created)))
    }

    fn answer(&self, exchange: &Exchange, body: Bytes) -> Result<Bytes, Failure> {
        if exchange.stream {
            return Err(stream_answered_as_json());
        }
        response::translate(exchange, &completion_id(), &body)
    }

    fn stream(&self, exchange: &Exchange) -> BedrockStream {
        BedrockStream::new(exchange, completion_id())
    }

    fn is_stream(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with(EVENT_STREAM_CONTENT_TYPE))
    }

    fn classify(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Failure {
        classify::classify(status, headers, body)
    }
}

/// The model id as one path segment: everything but RFC 3986's unreserved
/// characters percent-encoded (`:` of a version, `/` of an ARN).
fn encode_model_id(model: &str) -> String {
    let mut out = String::with_capacity(model.len() + 8);
    for byte in model.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// An id for an answer: Converse answers carry none.
fn completion_id() -> String {
    let mut bytes = [0u8; 12];
    // The system's random source does not fail on the platforms ring
    // supports; an all-zero id would still be a valid one.
    let _ = SystemRandom::new().fill(&mut bytes);
    let mut id = String::with_capacity(9 + 24);
    id.push_str("chatcmpl-");
    for byte in bytes {
        let _ = write!(id, "{byte:02x}");
    }
    id
}
