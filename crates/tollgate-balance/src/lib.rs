//! Load balancing inside a model group, as a tower layer: which deployment
//! serves each attempt.
//!
//! [`BalanceLayer`] wraps a service that calls one deployment — the one the
//! request's [`Target`](tollgate_core::extensions::Target) extension names —
//! and, for each request, picks that deployment among those of the
//! request's model group (its [`ModelGroup`](tollgate_core::extensions::ModelGroup)
//! extension). Put it below a retry layer, so a retry can land on another
//! deployment, and above the circuit breakers it reads through
//! [`Availability`] (as `tollgate-fallback` reads groups through its
//! `Health`). Limits on a deployment's requests and tokens a minute are
//! counted through core's [`DeploymentLimits`], which `tollgate-limits`'
//! `DeploymentRateLimits` implements over its shared store.
//!
//! A model group (one `model_name`) may have several deployments. For each
//! attempt — the retry layer above asks again for every retry — the group's
//! [`Balancer`] chooses one, from its [`Strategy`] (LiteLLM's `router_settings.routing_strategy`)
//! and each deployment's `weight`, `rpm`, `tpm` and `order`:
//!
//! 1. **Open breakers and deployments at their limits are left out** while
//!    any deployment is neither. Only the deployment about to be chosen is
//!    looked up, so a healthy group costs one breaker lookup per pick. When
//!    every one is out, one is chosen anyway: an open breaker rejects at
//!    once and [`Balance`] answers 503
//!    with `Retry-After`, a deployment at its limit answers 429 with
//!    `Retry-After` (or a fallback cascade above moves on). A half-open
//!    breaker counts as available: its probes are how it closes again.
//!    A deployment's `rpm` and `tpm` are limits the replicas share (see
//!    [`DeploymentLimits`] and [`admit`](Balancer::admit)): an attempt is admitted by
//!    the limits' store before it is sent, and a deployment it refuses is
//!    left out until the store said it would have room again.
//! 2. **A retry prefers a deployment this request has not tried**, as
//!    LiteLLM's retries skip the deployments that failed: a retry layer
//!    above puts core's
//!    [`TriedDeployments`](tollgate_core::extensions::TriedDeployments) on
//!    the request, which its attempts share and each pick is marked in.
//! 3. **`order` first**: only the candidates with the lowest `order` stay;
//!    deployments without one are candidates only when no candidate has one
//!    (LiteLLM's `_get_order_filtered_deployments`).
//! 4. **The strategy** keeps the best-ranked candidates:
//!    - `simple-shuffle` (the default): all of them;
//!    - `least-busy`: those with the fewest requests in flight, counted from
//!      the call until its response future completes (the response head),
//!      errors and cancellations included. A streamed body is no longer
//!      counted once its head has come: counting to its end needs the
//!      stack's response body to carry the [`InFlight`] guard;
//!    - `latency-based-routing`: those with the lowest latency estimate, the
//!      ones never measured first. The estimate is a peak-sensitive moving
//!      average of the time to the response head (for a stream, its first
//!      byte; for a complete answer, the whole answer) that fades while
//!      nothing refreshes it . A failure that counts against
//!      the breaker counts as [`FAILURE_PENALTY`],
//!      or the time it took if longer; other failures count for nothing;
//!    - `usage-based-routing` (and `-v2`): those with the most headroom
//!      under their `rpm` and `tpm`, as the smaller fraction of either limit
//!      left after this request, read from the limits' shared counters as
//!      the last admission saw them ; a deployment without
//!      limits has unlimited headroom. Tokens are estimated at a quarter of
//!      the request body's bytes; the real ones are counted when the answer
//!      ends;
//!    - `cost-based-routing`: the lowest price per prompt plus completion
//!      token ([`MemberConfig::cost`]; unknown prices last), so the cheapest
//!      healthy deployment serves and a dearer one only when it is out.
//! 5. **The shuffle**: one of those, in proportion to its weight: `weight`,
//!    else `rpm`, else `tpm`, else equal .
//!
//! The shuffle draws from a golden-ratio (Weyl) sequence, one step per
//! pick, rather than from a random generator: over any run of picks each
//! deployment's share is within a pick or two of its weight (random draws
//! wander by the square root of the count), and the sequence is the same on
//! every run, so tests through the whole gateway are deterministic with no
//! seed to inject. It starts at the first deployment of the file; replicas
//! of the gateway start in step, which only matters for their first few
//! requests.
//!
//! [`DeploymentLimits`]: tollgate_core::DeploymentLimits
//! [`Availability`]: tollgate_core::Availability
//!
//! Costs on the request path: no lock is held across an `.await`; counters
//! are atomics; the latency estimate and a limited deployment's counters are
//! read under a short `Mutex` (one per deployment, only under
//! `latency-based-routing` or with limits); a pick allocates nothing for
//! groups of up to [`INLINE`] deployments; a group of one deployment skips
//! all of it, breaker lookups included. A deployment without `rpm` or `tpm`
//! never waits for the limits' store.
//!
//! # When not to use a group
//!
//! The deployments of a group must be interchangeable: the same model
//! behind different keys, regions or providers. Different models belong in
//! different groups joined by fallbacks, whose rules know that a
//! context-window or content-policy error is not fixed by a retry.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//!
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use tollgate_balance::{
//!     BalanceLayer, Group, GroupMember, Groups, MemberConfig, Strategy,
//! };
//! use tollgate_core::{AlwaysAvailable, Unlimited};
//! use tollgate_core::BoxError;
//! use tollgate_core::extensions::{ModelGroup, Target};
//! use tower::{Layer, Service, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // Two deployments of the group "gpt", the second weighing three times
//! // the first; each carries its base URL to the service below.
//! let member = |id: &str, weight: f64, url: &'static str| GroupMember {
//!     target: Target {
//!         model_group: Arc::from("gpt"),
//!         deployment_id: Arc::from(id),
//!         upstream_model: Arc::from("gpt-4o"),
//!     },
//!     config: MemberConfig { weight: Some(weight), ..MemberConfig::new(id) },
//!     extension: url,
//! };
//! let group = Group::new(
//!     Arc::from("gpt"),
//!     Strategy::SimpleShuffle,
//!     vec![member("east", 1.0, "https://east.example"), member("west", 3.0, "https://west.example")],
//!     Arc::new(Unlimited),
//! );
//! let groups: Groups<&'static str> = Arc::new([(Arc::from("gpt"), Arc::new(group))].into_iter().collect());
//!
//! // The service below sees the chosen deployment in the request.
//! let upstream = service_fn(|request: Request<Full<Bytes>>| async move {
//!     let url = *request.extensions().get::<&'static str>().unwrap();
//!     Ok::<_, BoxError>(Response::new(url))
//! });
//! let mut balanced = BalanceLayer::new(AlwaysAvailable, groups).layer(upstream);
//!
//! let mut west = 0;
//! for _ in 0..400 {
//!     let mut request = Request::new(Full::new(Bytes::new()));
//!     request.extensions_mut().insert(ModelGroup(Arc::from("gpt")));
//!     let response = balanced.ready().await.unwrap().call(request).await.unwrap();
//!     west += usize::from(*response.body() == "https://west.example");
//! }
//! assert_eq!(west, 300, "three quarters, within a pick");
//! # }
//! ```

mod balancer;
mod config;
mod group;
mod layer;
mod service;
mod stats;
mod strategy;
mod tried;
mod usage;

pub use balancer::{Balancer, INLINE, InFlight, Outcome, Pick, estimate_tokens};
pub use config::{MemberConfig, Strategy};
pub use group::{Group, GroupMember, Groups, ResolvedGroup};
pub use layer::BalanceLayer;
pub use service::{Balance, ResponseFuture};
pub use stats::FAILURE_PENALTY;
pub use tried::Tried;
pub use usage::TokenCounter;
