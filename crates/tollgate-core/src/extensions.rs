//! The request and response extensions the layers share.

use std::sync::Arc;

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

/// The request's id (the gateway's `x-request-id`), for records and logs
/// that must be joined back to one request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(pub Arc<str>);

/// Who is paying for a request: the name of the API key that made it — its
/// alias or a hash of it, never the key itself — for cost records, limits
/// and logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyName(pub Arc<str>);

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

/// The APIs a [`NativeRequest`] may be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NativeApi {
    /// Anthropic's Messages API.
    AnthropicMessages,
}
