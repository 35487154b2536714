//! Where the cost layer's records go: one per upstream attempt, to the
//! metrics, the providers' health and the spend ledger.

use std::sync::Arc;

use tollgate_balance::TokenCounter;
use tollgate_cost::{Charge, CostRecord, Outcome};

use crate::grace::GracePeriod;
use crate::ledger::{CostSource, LedgerHandle, LedgerRow, Outcome as LedgerOutcome};
use crate::metrics::{AttemptMetrics, Metrics};
use crate::providers::{AttemptOutcome, ProviderHealth};

/// Where the gateway's cost records go (through
/// [`AfterWriteSink`](crate::after_write::AfterWriteSink), the cost layer's
/// sink): never blocks — the metrics and the health
/// counters are atomics, the ledger takes rows through a bounded queue.
#[derive(Debug, Clone)]
pub(crate) struct GatewaySink {
    pub(crate) metrics: Metrics,
    pub(crate) providers: ProviderHealth,
    pub(crate) ledger: Option<LedgerHandle>,
    /// Counts each attempt's tokens against its deployment's `tpm`, when
    /// any deployment has one.
    pub(crate) deployment_tokens: Option<TokenCounter>,
    /// The server's grace period: an attempt cancelled once it is over was
    /// cut by the shutdown.
    pub(crate) grace: GracePeriod,
}

/// How an attempt ended, as the gateway records it: the cost layer's
/// outcome, with the attempts the shutdown cut told from those a client
/// left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AttemptEnd {
    /// As the cost layer says.
    Recorded(Outcome),
    /// Cancelled when the grace period was over.
    Shutdown,
}

impl GatewaySink {
    /// How the attempt of `record` ended, judged now — when it ends, not
    /// when the record is taken.
    pub(crate) fn attempt_end(&self, record: &CostRecord) -> AttemptEnd {
        match record.outcome {
            Outcome::Cancelled if self.grace.is_over() => AttemptEnd::Shutdown,
            outcome => AttemptEnd::Recorded(outcome),
        }
    }

    /// Counts `record`, which ended as `end` says, in the metrics and the
    /// providers' health, and hands its row to the ledger.
    pub(crate) fn take(&self, record: CostRecord, end: AttemptEnd) {
        let usage = record.usage.unwrap_or_default();
        let class = match record.outcome {
            Outcome::Failed(class) => Some(class),
            Outcome::Success | Outcome::Cancelled => None,
        };
        let deployment = record.deployment.as_deref().unwrap_or("");
        self.metrics.attempt(&AttemptMetrics {
            model_group: record.model_group.as_deref().unwrap_or(""),
            deployment,
            outcome: outcome_name(end),
            class: class.map(|c| c.as_str()),
            upstream: record.upstream_time,
            first_byte: record.first_byte,
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            cached_prompt_tokens: usage.cached_prompt_tokens,
            reasoning_tokens: usage.reasoning_tokens,
            cost_usd: record.billed().map(|usd| usd.as_f64_dollars()),
            cost_source: cost_source(record.cost).as_str(),
        });
        self.providers.observe(
            deployment,
            match record.outcome {
                Outcome::Success => AttemptOutcome::Success,
                Outcome::Failed(class) => AttemptOutcome::Failure(class),
                Outcome::Cancelled => AttemptOutcome::Cancelled,
            },
            record.first_byte.unwrap_or(record.upstream_time),
        );
        if let Some(counter) = &self.deployment_tokens {
            counter.count(deployment, usage.total_tokens());
        }
        if let Some(ledger) = &self.ledger {
            ledger.record(ledger_row(&record, end));
        }
    }
}

fn outcome_name(end: AttemptEnd) -> &'static str {
    match end {
        AttemptEnd::Recorded(Outcome::Success) => "success",
        AttemptEnd::Recorded(Outcome::Failed(_)) => "failure",
        AttemptEnd::Recorded(Outcome::Cancelled) => "cancelled",
        AttemptEnd::Shutdown => "shutdown",
    }
}

fn cost_source(cost: Charge) -> CostSource {
    match cost {
        Charge::Provider(_) => CostSource::Provider,
        Charge::Priced(_) => CostSource::PriceTable,
        Charge::Free => CostSource::Free,
        Charge::Unknown => CostSource::Unknown,
        Charge::NotBilled => CostSource::NotBilled,
    }
}

/// The ledger's row of a record: the key's name only, money in picos.
fn ledger_row(record: &CostRecord, end: AttemptEnd) -> LedgerRow {
    let usage = record.usage.unwrap_or_default();
    LedgerRow {
        request_id: record.request_id.clone().unwrap_or_else(|| Arc::from("")),
        attempt: record.attempt,
        ts_ms: tollgate_core::time::unix_ms(record.started_at),
        key: record.key.clone(),
        team: record.team.clone(),
        end_user: record.end_user.clone(),
        model_group: record.model_group.clone(),
        deployment: record.deployment.clone(),
        upstream_model: record.upstream_model.clone(),
        stream: record.stream,
        outcome: match end {
            AttemptEnd::Recorded(Outcome::Success) => LedgerOutcome::Success,
            AttemptEnd::Recorded(Outcome::Failed(_)) => LedgerOutcome::Failure,
            AttemptEnd::Recorded(Outcome::Cancelled) => LedgerOutcome::Cancelled,
            AttemptEnd::Shutdown => LedgerOutcome::Shutdown,
        },
        error_class: match record.outcome {
            Outcome::Failed(class) => Some(class.as_str().to_owned()),
            _ => None,
        },
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
        cached_prompt_tokens: usage.cached_prompt_tokens,
        reasoning_tokens: usage.reasoning_tokens,
        usage_estimated: usage.estimated,
        cost_picos: record.billed().map(|usd| usd.picos()),
        cost_source: cost_source(record.cost),
    }
}
