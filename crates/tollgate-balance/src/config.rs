//! What a group's balancer is built from: its [`Strategy`] and a
//! [`MemberConfig`] per deployment.

use std::sync::Arc;

use tollgate_core::DeploymentQuota;

/// How a group's balancer ranks its deployments: LiteLLM's
/// `router_settings.routing_strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// `simple-shuffle`: a weighted pick, nothing else.
    #[default]
    SimpleShuffle,
    /// `least-busy`: fewest requests in flight.
    LeastBusy,
    /// `latency-based-routing`: lowest latency estimate, unmeasured first.
    LatencyBased,
    /// `usage-based-routing`: most rpm/tpm headroom in the current minute.
    UsageBased,
    /// `cost-based-routing`: the cheapest deployment by its price
    /// ([`MemberConfig::cost`]), among the healthy ones.
    CostBased,
}

/// One deployment of a group, as its balancer sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberConfig {
    /// The deployment's id: how its limits and statistics are keyed.
    pub id: Arc<str>,
    /// LiteLLM's `weight`: its share among equals.
    pub weight: Option<f64>,
    /// LiteLLM's `order`: the lowest present among the candidates is tried
    /// first.
    pub order: Option<u32>,
    /// Its `rpm` and `tpm`, counted in the group's
    /// [`DeploymentLimits`](tollgate_core::DeploymentLimits).
    pub quota: DeploymentQuota,
    /// Dollars per prompt plus completion token, which `cost-based-routing`
    /// ranks by; `None` (unknown) ranks last.
    pub cost: Option<f64>,
}

impl MemberConfig {
    /// A deployment `id` with no weight, order or limits.
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        MemberConfig {
            id: id.into(),
            weight: None,
            order: None,
            quota: DeploymentQuota::default(),
            cost: None,
        }
    }
}
