//! [`LedgerRow`]: one upstream attempt's cost record, as the ledger stores it.

use std::fmt;
use std::sync::Arc;

/// How an upstream attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Outcome {
    /// The upstream answered and the answer was delivered.
    Success,
    /// The attempt failed (error status, transport error, timeout...).
    Failure,
    /// The client went away before the attempt finished.
    Cancelled,
    /// The shutdown's grace period ended before the attempt finished.
    Shutdown,
}

impl Outcome {
    /// The stored and rendered name.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Cancelled => "cancelled",
            Outcome::Shutdown => "shutdown",
        }
    }

    /// The outcome named `name`, if any.
    pub(crate) fn parse(name: &str) -> Option<Self> {
        [
            Outcome::Success,
            Outcome::Failure,
            Outcome::Cancelled,
            Outcome::Shutdown,
        ]
        .into_iter()
        .find(|outcome| outcome.as_str() == name)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an attempt's cost came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum CostSource {
    /// The provider reported the cost (OpenRouter's `usage.cost`).
    Provider,
    /// Computed from the usage and the configured price table.
    PriceTable,
    /// The model is free.
    Free,
    /// No price is known: `cost_picos` is `None`.
    Unknown,
    /// The attempt is not billed (it failed before any usage): cost 0.
    NotBilled,
}

impl CostSource {
    /// The stored and rendered name.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            CostSource::Provider => "provider",
            CostSource::PriceTable => "price_table",
            CostSource::Free => "free",
            CostSource::Unknown => "unknown",
            CostSource::NotBilled => "not_billed",
        }
    }

    /// The source named `name`, if any.
    pub(crate) fn parse(name: &str) -> Option<Self> {
        [
            CostSource::Provider,
            CostSource::PriceTable,
            CostSource::Free,
            CostSource::Unknown,
            CostSource::NotBilled,
        ]
        .into_iter()
        .find(|source| source.as_str() == name)
    }
}

impl fmt::Display for CostSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One upstream attempt's cost record.
///
/// Plain owned data, so the ledger depends on no other crate's types: the
/// gateway converts its cost records into rows (the names are shared
/// `Arc<str>`s: a row costs no copy of them). It holds names, never
/// secrets: `key` is the key's alias, not the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LedgerRow {
    /// The gateway request id (shared by every attempt of one request).
    pub(crate) request_id: Arc<str>,
    /// The attempt number within the request, from 0 or 1 as the producer
    /// counts; the ledger only stores it.
    pub(crate) attempt: u32,
    /// When the attempt ended, unix milliseconds (wall clock). Its UTC day
    /// files the row.
    pub(crate) ts_ms: i64,
    /// The virtual key's name or alias; never the key itself.
    pub(crate) key: Option<Arc<str>>,
    /// The key's team id.
    pub(crate) team: Option<Arc<str>>,
    /// The end user the request was for (its `user` field).
    pub(crate) end_user: Option<Arc<str>>,
    /// The model group the client asked for.
    pub(crate) model_group: Option<Arc<str>>,
    /// The deployment that served the attempt.
    pub(crate) deployment: Option<Arc<str>>,
    /// The model name sent upstream.
    pub(crate) upstream_model: Option<Arc<str>>,
    /// Whether the attempt was streamed.
    pub(crate) stream: bool,
    /// How the attempt ended.
    pub(crate) outcome: Outcome,
    /// The error class of a failed attempt (`rate_limited`, `timeout`...).
    pub(crate) error_class: Option<String>,
    /// Prompt tokens (including cached ones).
    pub(crate) prompt_tokens: u64,
    /// Completion tokens (including reasoning ones).
    pub(crate) completion_tokens: u64,
    /// Prompt tokens served from the provider's cache.
    pub(crate) cached_prompt_tokens: u64,
    /// Reasoning tokens.
    pub(crate) reasoning_tokens: u64,
    /// Whether the token counts are the gateway's estimate rather than the
    /// provider's report.
    pub(crate) usage_estimated: bool,
    /// The cost in pico-dollars (1e-12 $); `None` when no price is known.
    /// Failed attempts carry 0.
    pub(crate) cost_picos: Option<u64>,
    /// Where the cost came from.
    pub(crate) cost_source: CostSource,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for outcome in [
            Outcome::Success,
            Outcome::Failure,
            Outcome::Cancelled,
            Outcome::Shutdown,
        ] {
            assert_eq!(Outcome::parse(outcome.as_str()), Some(outcome));
        }
        for source in [
            CostSource::Provider,
            CostSource::PriceTable,
            CostSource::Free,
            CostSource::Unknown,
            CostSource::NotBilled,
        ] {
            assert_eq!(CostSource::parse(source.as_str()), Some(source));
        }
        assert_eq!(Outcome::parse("ok"), None);
        assert_eq!(CostSource::parse(""), None);
    }
}
