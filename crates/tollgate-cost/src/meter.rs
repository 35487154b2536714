//! [`Meter`]: one call's record in the making, made exactly once.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use http::Extensions;
use tokio::time::Instant;
use tollgate_core::ErrorClass;
use tollgate_core::extensions::{
    Attempt, EndUser, KeyName, ModelGroup, RequestId, Target, TeamId, UsageReport,
};

use crate::price::{PriceMatch, PriceTable};
use crate::record::{Charge, CostRecord, Outcome};
use crate::sink::CostSink;
use crate::tally::RequestTally;
use crate::usage::{Reported, TokenUsage};
use tollgate_core::Usd;

/// Unpriced model names warned about, at most.
const MAX_WARNED: usize = 1024;

/// What every service and body of one [`CostLayer`](crate::CostLayer)
/// shares.
pub(crate) struct Shared {
    pub(crate) prices: ArcSwap<PriceTable>,
    pub(crate) sink: Arc<dyn CostSink>,
    /// Models already warned about as unpriced.
    warned: Mutex<HashSet<Box<str>>>,
}

impl Shared {
    pub(crate) fn new(prices: Arc<PriceTable>, sink: Arc<dyn CostSink>) -> Shared {
        Shared {
            prices: ArcSwap::new(prices),
            sink,
            warned: Mutex::new(HashSet::new()),
        }
    }

    /// Warns, once per model name (for the first [`MAX_WARNED`] names),
    /// that a model has no price.
    fn warn_unpriced(&self, model: &str) {
        let Ok(mut warned) = self.warned.lock() else {
            return;
        };
        if warned.len() >= MAX_WARNED || warned.contains(model) {
            return;
        }
        warned.insert(model.into());
        drop(warned);
        tracing::warn!(
            model,
            "cost: no price for this model; its calls are recorded with an unknown cost \
             (add it with PriceTable::with_model or the deployment's model_info)"
        );
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("prices", &self.prices.load().len())
            .finish_non_exhaustive()
    }
}

/// One call's record in the making. It is finished exactly once: by
/// [`finish`](Meter::finish), or — when the future or body holding it is
/// dropped first — on drop, as [`Outcome::Cancelled`].
#[derive(Default)]
pub(crate) struct Meter(Option<Box<Pending>>);

struct Pending {
    shared: Arc<Shared>,
    tally: Option<Arc<RequestTally>>,
    report: Option<Arc<UsageReport>>,
    request_id: Option<Arc<str>>,
    key: Option<Arc<str>>,
    team: Option<Arc<str>>,
    end_user: Option<Arc<str>>,
    model_group: Option<Arc<str>>,
    deployment: Option<Arc<str>>,
    target_model: Option<Arc<str>>,
    request_model: Option<Arc<str>>,
    attempt: u32,
    stream: bool,
    started_at: SystemTime,
    start: Instant,
    first_byte: Option<Duration>,
    request_bytes: u64,
    /// False for an `Err` or an error response.
    billed: bool,
    failure: Option<ErrorClass>,
    usage: Option<TokenUsage>,
    provider_cost: Option<Usd>,
    content_events: u64,
    /// Whether a missing usage report may be estimated.
    estimable: bool,
}

/// What the request said about itself, for its meter.
pub(crate) struct Call<'a> {
    pub(crate) extensions: &'a Extensions,
    pub(crate) model: Option<&'a str>,
    pub(crate) stream: bool,
    /// The client's request body length; `None` when the layer could not
    /// read the request (then nothing is estimated).
    pub(crate) request_bytes: Option<usize>,
}

impl Meter {
    pub(crate) fn new(shared: Arc<Shared>, call: Call<'_>) -> Meter {
        let ext = call.extensions;
        let target = ext.get::<Target>();
        Meter(Some(Box::new(Pending {
            shared,
            tally: ext.get::<Arc<RequestTally>>().cloned(),
            report: ext.get::<Arc<UsageReport>>().cloned(),
            request_id: ext.get::<RequestId>().map(|id| id.0.clone()),
            key: ext.get::<KeyName>().map(|key| key.0.clone()),
            team: ext.get::<TeamId>().map(|team| team.0.clone()),
            end_user: ext.get::<EndUser>().map(|user| user.0.clone()),
            model_group: target
                .map(|t| t.model_group.clone())
                .or_else(|| ext.get::<ModelGroup>().map(|g| g.0.clone())),
            deployment: target.map(|t| t.deployment_id.clone()),
            target_model: target.map(|t| t.upstream_model.clone()),
            request_model: call.model.map(Arc::from),
            attempt: ext.get::<Attempt>().map_or(0, |a| a.0),
            stream: call.stream,
            started_at: SystemTime::now(),
            start: Instant::now(),
            first_byte: None,
            request_bytes: call.request_bytes.unwrap_or(0) as u64,
            billed: true,
            failure: None,
            usage: None,
            provider_cost: None,
            content_events: 0,
            estimable: call.request_bytes.is_some(),
        })))
    }

    fn pending(&mut self) -> Option<&mut Pending> {
        self.0.as_deref_mut()
    }

    /// The response head arrived.
    pub(crate) fn responded(&mut self) {
        if let Some(p) = self.pending() {
            p.first_byte = Some(p.start.elapsed());
        }
    }

    /// The attempt failed in a way the provider does not bill (an `Err`, an
    /// error response).
    pub(crate) fn not_billed(&mut self, class: ErrorClass) {
        if let Some(p) = self.pending() {
            p.billed = false;
            p.failure = Some(class);
        }
    }

    /// A failure after a successful head; the first one counts.
    pub(crate) fn fail(&mut self, class: ErrorClass) {
        if let Some(p) = self.pending() {
            p.failure.get_or_insert(class);
        }
    }

    /// Whether a failure has been noted.
    pub(crate) fn failed(&self) -> bool {
        self.0.as_ref().is_some_and(|p| p.failure.is_some())
    }

    /// A body or chunk reported usage and maybe a cost; the last report
    /// wins.
    pub(crate) fn reported(&mut self, reported: &Reported) {
        if let Some(p) = self.pending() {
            if reported.usage.is_some() {
                p.usage = reported.usage;
            }
            if reported.cost.is_some() {
                p.provider_cost = reported.cost;
            }
        }
    }

    /// One more content-bearing data event.
    pub(crate) fn content_event(&mut self) {
        if let Some(p) = self.pending() {
            p.content_events += 1;
        }
    }

    /// The usage cannot be known and must not be estimated (a complete
    /// body without a report, or one too large to read).
    pub(crate) fn usage_unknown(&mut self) {
        if let Some(p) = self.pending() {
            p.estimable = false;
        }
    }

    /// Makes the record and hands it to the tally and the sink; returns its
    /// cost and usage. Does nothing (and returns `None`) the second time.
    pub(crate) fn finish(&mut self, cancelled: bool) -> Option<(Charge, Option<TokenUsage>)> {
        let p = self.0.take()?;
        let outcome = match (p.failure, cancelled) {
            (Some(class), _) => Outcome::Failed(class),
            (None, true) => Outcome::Cancelled,
            (None, false) => Outcome::Success,
        };
        let (usage, cost) = if p.billed {
            let usage = p.usage.or_else(|| {
                p.estimable
                    .then(|| TokenUsage::estimate(p.request_bytes, p.content_events))
            });
            let cost = p.cost(usage.as_ref());
            (usage, cost)
        } else {
            (None, Charge::NotBilled)
        };
        let record = CostRecord {
            request_id: p.request_id,
            key: p.key,
            team: p.team,
            end_user: p.end_user,
            model_group: p.model_group,
            deployment: p.deployment,
            upstream_model: p.target_model.or(p.request_model),
            attempt: p.attempt,
            stream: p.stream,
            outcome,
            usage,
            cost,
            started_at: p.started_at,
            upstream_time: p.start.elapsed(),
            first_byte: p.first_byte,
        };
        tracing::debug!(
            model = record.upstream_model.as_deref(),
            outcome = ?record.outcome,
            cost = ?record.cost,
            "cost: attempt recorded"
        );
        if let Some(tally) = &p.tally {
            tally.add(&record);
        }
        if let Some(report) = &p.report {
            report.add_tokens(record.usage.map_or(0, |usage| usage.total_tokens()));
            match record.cost.billed() {
                Some(billed) => report.add_picos(billed.picos()),
                None => report.add_unknown_cost(),
            }
        }
        p.shared.sink.record(record);
        Some((cost, usage))
    }
}

impl Pending {
    /// The provider's cost, else the price table's.
    fn cost(&self, usage: Option<&TokenUsage>) -> Charge {
        if let Some(cost) = self.provider_cost {
            return Charge::Provider(cost);
        }
        let prices = self.shared.prices.load();
        let found = prices.price_for(
            self.deployment.as_deref(),
            self.target_model.as_deref(),
            self.request_model.as_deref(),
        );
        match found {
            Some(PriceMatch::Free) => Charge::Free,
            Some(PriceMatch::Listed(prices)) => {
                usage.map_or(Charge::Unknown, |u| Charge::Priced(prices.cost(u)))
            }
            None => {
                let model = self
                    .target_model
                    .as_deref()
                    .or(self.request_model.as_deref());
                if let Some(model) = model {
                    self.shared.warn_unpriced(model);
                }
                Charge::Unknown
            }
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.finish(true);
    }
}

impl fmt::Debug for Meter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Meter")
            .field("finished", &self.0.is_none())
            .finish_non_exhaustive()
    }
}
