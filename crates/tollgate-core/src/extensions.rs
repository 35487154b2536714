//! The request and response extensions the layers share.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use crate::chat_fallbacks::RequestFallbacks;
pub use crate::usage_report::UsageReport;

/// Where a request is going: the model group the client asked for, the
/// deployment chosen to serve it and the model name that deployment knows.
///
/// Set by whatever picks the deployment (the gateway's router, a balancer);
/// read by the breaker (its key), cost (its price) and the upstream client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The model group, as the client named it.
    pub model_group: Arc<str>,
    /// The deployment's id (`model_info.id`).
    pub deployment_id: Arc<str>,
    /// The model name sent upstream.
    pub upstream_model: Arc<str>,
}

/// When the whole request must be done by: a request extension set once at
/// ingress (or by the caller), read by every layer that waits — a retry does
/// not sleep past it, a fallback does not start a target it cannot finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deadline(pub tokio::time::Instant);

impl Deadline {
    /// A deadline `after` from now.
    pub fn after(after: std::time::Duration) -> Self {
        Deadline(tokio::time::Instant::now() + after)
    }

    /// Time left before the deadline (zero once it has passed).
    pub fn remaining(&self) -> std::time::Duration {
        self.0
            .saturating_duration_since(tokio::time::Instant::now())
    }
}

/// Retries a retry layer made for a response (a response extension, also
/// sent to clients as `x-tollgate-attempted-retries`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AttemptedRetries(pub u32);

/// The model group a request is routed to: set at ingress from the client's
/// `model`, and rewritten by a fallback cascade for each target it tries.
/// Whatever picks a deployment reads it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelGroup(pub Arc<str>);

/// Fallback groups a cascade tried, the one that answered included — 0 when
/// the client's own group answered (LiteLLM's meaning; a response extension,
/// also sent as `x-tollgate-attempted-fallbacks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AttemptedFallbacks(pub u32);

/// Which attempt this is for the request: 0 for the first, then one more per
/// retry or fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Attempt(pub u32);

/// The deployments the attempts of one request tried, shared by those
/// attempts: a retry layer puts one on a request it may resend (each
/// attempt is a clone of that request, and the clones share it), and
/// whatever picks a deployment for each attempt (`tollgate-balance`) reads
/// it and marks its pick there, so that a retry prefers a deployment not
/// tried yet. Per-request state in the request, not in a service: a
/// fallback cascade's groups and a hedge's requests each go through the
/// retry layer anew, and get their own.
///
/// Deployment `i` of the request's model group is bit `i`; those past the
/// 64th are not remembered.
#[derive(Debug, Clone, Default)]
pub struct TriedDeployments(Arc<AtomicU64>);

impl TriedDeployments {
    /// The deployments tried so far, as bits.
    pub fn mask(&self) -> u64 {
        // One request's attempts run one after the other: no ordering with
        // other memory is needed.
        self.0.load(Ordering::Relaxed)
    }

    /// Marks deployment `index` tried.
    pub fn insert(&self, index: usize) {
        if index < 64 {
            self.0.fetch_or(1 << index, Ordering::Relaxed);
        }
    }
}

/// Token usage reported by the upstream (or estimated, when `estimated`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Prompt tokens, cached ones included.
    pub prompt_tokens: u64,
    /// Completion tokens, reasoning ones included.
    pub completion_tokens: u64,
    /// Prompt tokens read from the provider's cache.
    pub cached_prompt_tokens: u64,
    /// Completion tokens spent on reasoning.
    pub reasoning_tokens: u64,
    /// True when the counts are an estimate, not the provider's report.
    pub estimated: bool,
}

impl Usage {
    /// Prompt plus completion tokens.
    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

/// On a response: the token counts in its answer are the provider
/// translation's estimate, not the provider's report (Gemini's embeddings
/// carry none). The cost layer bills them and marks its record estimated,
/// so an audit of the ledger can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UsageEstimated;

/// The request's id (the gateway's `x-request-id`), for records and logs
/// that must be joined back to one request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(pub Arc<str>);

/// Who is paying for a request: the name of the API key that made it — its
/// alias or a hash of it, never the key itself — for cost records, limits
/// and logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyName(pub Arc<str>);

/// The team whose key made a request (the team's id), for cost records:
/// spend is reported per team as well as per key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TeamId(pub Arc<str>);
/// The end user a request is for — the client's own user, as its `user`
/// field names them ([`ChatRequest::user`](crate::ChatRequest::user)) —
/// for cost records and the ledger. Whoever sends it chooses it: it names,
/// it does not authenticate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EndUser(pub Arc<str>);

/// The model groups a request may be answered by — a key limited to some
/// groups — for anything that moves a request to another group (a
/// fallback cascade skips the others). Absent: every group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedGroups(pub Arc<[Arc<str>]>);

impl AllowedGroups {
    /// Whether `group` is one of them.
    pub fn allows(&self, group: &str) -> bool {
        self.0.iter().any(|allowed| &**allowed == group)
    }
}

/// A request as the client wrote it in a provider's own API, carried beside
/// its chat translation (`tollgate-inbound` sets it): a provider layer that
/// speaks that API may send it as it is instead of translating the chat
/// request back, so what chat has no room for (Anthropic's `cache_control`,
/// `thinking`, `top_k`, documents...) reaches the provider untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeRequest {
    /// The API the body is written in.
    pub api: NativeApi,
    /// The body as the client sent it.
    pub body: bytes::Bytes,
    /// How many chat messages its translation has: a request changed since
    /// (a fallback's continuation adds the text already sent) no longer
    /// matches it, and must be translated.
    pub message_count: usize,
}

impl NativeRequest {
    /// The body with its top-level `model` replaced by `model`, every other
    /// byte as the client wrote it; `None` when the body is not a JSON
    /// object with a `model`.
    pub fn with_model(&self, model: &str) -> Option<bytes::Bytes> {
        #[derive(serde::Deserialize)]
        struct View<'a> {
            #[serde(borrow)]
            model: Option<&'a serde_json::value::RawValue>,
        }
        // serde reads a one-field struct from an array too: an object only.
        let first = self.body.iter().find(|b| !b.is_ascii_whitespace());
        if first != Some(&b'{') {
            return None;
        }
        let view: View<'_> = serde_json::from_slice(&self.body).ok()?;
        let raw = view.model?.get();
        // The raw value borrows from the body: its address gives its span.
        let start = raw.as_ptr() as usize - self.body.as_ptr() as usize;
        let literal = serde_json::to_string(model).ok()?;
        let mut out = Vec::with_capacity(self.body.len() - raw.len() + literal.len());
        out.extend_from_slice(&self.body[..start]);
        out.extend_from_slice(literal.as_bytes());
        out.extend_from_slice(&self.body[start + raw.len()..]);
        Some(out.into())
    }
}

/// The APIs a [`NativeRequest`] may be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NativeApi {
    /// Anthropic's Messages API.
    AnthropicMessages,
    /// OpenAI's Responses API (`POST /v1/responses`).
    OpenAiResponses,
}

/// A response extension: the answer is in a provider's own API — the
/// client's [`NativeRequest`] was sent as written and its answer (JSON, or
/// that API's event stream) comes back untouched — not in chat's shape.
/// Set by the provider that sent it; an inbound layer of the same API then
/// passes the answer on instead of translating it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NativeAnswer(pub NativeApi);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_native_body_gets_the_model_and_keeps_every_other_byte() {
        let native = NativeRequest {
            api: NativeApi::OpenAiResponses,
            body: bytes::Bytes::from_static(
                br#"{"input":"a \"model\": x", "model" : "group","n":{"model":"inner"}}"#,
            ),
            message_count: 1,
        };
        assert_eq!(
            native.with_model("gpt-4o").unwrap(),
            r#"{"input":"a \"model\": x", "model" : "gpt-4o","n":{"model":"inner"}}"#
        );
        let without = NativeRequest {
            body: bytes::Bytes::from_static(br#"{"input":"x"}"#),
            ..native.clone()
        };
        assert_eq!(without.with_model("m"), None);
        let not_json = NativeRequest {
            body: bytes::Bytes::from_static(b"[1]"),
            ..native
        };
        assert_eq!(not_json.with_model("m"), None);
    }
}
