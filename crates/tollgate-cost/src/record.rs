//! [`CostRecord`]: what one call cost.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tollgate_core::ErrorClass;

use crate::usage::TokenUsage;
use tollgate_core::Usd;

/// How an attempt ended, for its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A complete answer.
    Success,
    /// A failure of this class: an `Err`, an error status, an error inside
    /// a 200 body or stream, a stream cut or broken.
    Failed(ErrorClass),
    /// The caller went away first: the response future or its body was
    /// dropped before the end.
    Cancelled,
}

/// What an attempt cost, and how that is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Charge {
    /// As the provider reported it (OpenRouter's `usage.cost`).
    Provider(Usd),
    /// Tokens times prices from the [`PriceTable`](crate::PriceTable).
    Priced(Usd),
    /// A `:free` model.
    Free,
    /// Not known: the model has no price, or the usage is unknown.
    Unknown,
    /// A failed attempt, which the provider does not bill: an `Err` or an
    /// error response.
    NotBilled,
}

impl Charge {
    /// The amount billed: zero for [`Free`](Charge::Free) and
    /// [`NotBilled`](Charge::NotBilled), `None` when
    /// [`Unknown`](Charge::Unknown).
    pub fn billed(&self) -> Option<Usd> {
        match *self {
            Charge::Provider(usd) | Charge::Priced(usd) => Some(usd),
            Charge::Free | Charge::NotBilled => Some(Usd::ZERO),
            Charge::Unknown => None,
        }
    }

    /// Whether the cost is [`Unknown`](Charge::Unknown).
    pub fn is_unknown(&self) -> bool {
        matches!(self, Charge::Unknown)
    }
}

/// One call of the inner service: who made it, where it went, what it used
/// and what it cost. A [`CostLayer`](crate::CostLayer) hands exactly one to
/// its [`CostSink`](crate::CostSink) per call, when the response body ends
/// (or, for a complete JSON answer, once the layer has read it), when the
/// call fails, or when the caller drops the future or the body.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CostRecord {
    /// The request's id (core's `RequestId` extension).
    pub request_id: Option<Arc<str>>,
    /// Who pays (core's `KeyName` extension).
    pub key: Option<Arc<str>>,
    /// The key's team (core's `TeamId` extension).
    pub team: Option<Arc<str>>,
    /// The end user it was for (core's `EndUser` extension).
    pub end_user: Option<Arc<str>>,
    /// The model group (the `Target` extension's, else core's `ModelGroup`).
    pub model_group: Option<Arc<str>>,
    /// The deployment (the `Target` extension's `deployment_id`).
    pub deployment: Option<Arc<str>>,
    /// The model sent upstream (the `Target` extension's, else the
    /// request's `model`).
    pub upstream_model: Option<Arc<str>>,
    /// Which attempt of the request this is (core's `Attempt` extension;
    /// 0 without one).
    pub attempt: u32,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// How the attempt ended.
    pub outcome: Outcome,
    /// The tokens used: reported by the provider, or estimated (then
    /// `estimated` is set); `None` when unknown or not billed.
    pub usage: Option<TokenUsage>,
    /// What it cost.
    pub cost: Charge,
    /// When the call was made (wall clock, for the ledger's day).
    pub started_at: SystemTime,
    /// From the call to the end of the body (or the failure, or the drop).
    pub upstream_time: Duration,
    /// From the call to the response head, when one came.
    pub first_byte: Option<Duration>,
}

impl CostRecord {
    /// The amount billed ([`Charge::billed`]).
    pub fn billed(&self) -> Option<Usd> {
        self.cost.billed()
    }
}
