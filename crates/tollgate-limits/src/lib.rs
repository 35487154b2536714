//! Per-key rate limits and spend budgets for LLM gateways, as a tower layer.
//!
//! [`RateLimitLayer`] wraps any `Service<http::Request<B>>` that answers
//! `http::Response`s. Each request says who it is for with an
//! `Arc<`[`KeyLimits`]`>` request extension (the gateway's auth inserts
//! it; a request without one passes unlimited), and the layer checks that
//! key's limits, in this order, each only if the key has it:
//!
//! 1. **rpm** — requests per minute, by GCRA ([`gcra`]): a key with rpm 60
//!    may send 60 at once, then one per second;
//! 2. **tpm** — tokens per minute, GCRA over tokens: the request reserves
//!    its estimate ([`estimate_tokens`]: from the parsed request a core
//!    `RequestBody` carries, `max_tokens`, else its length / 4) and the
//!    reservation is reconciled with the real usage when the
//!    response ends;
//! 3. **max_parallel** — requests in flight at once; the permit is held
//!    until the response body ends or is dropped, or the inner call fails;
//! 4. **max_budget** — spend per budget window (aligned to the Unix epoch)
//!    or in the key's lifetime, in exact picodollars.
//!
//! A request may also carry an `Arc<`[`SharedLimits`]`>`: limits it counts
//! against besides its key's (a team's, an end user's), each checked the
//! same way under its own name after the key's — the stricter wins, and
//! spend is charged to every budget.
//!
//! [`DeploymentRateLimits`] keeps per-deployment rpm and tpm (LiteLLM's
//! `litellm_params.rpm`/`tpm`) in the same store, for a balancer that
//! skips a deployment at its limit.
//!
//! A rejected request never reaches the inner service. The state lives in
//! a [`Store`]: [`MemoryStore`] in one process (sharded, bounded memory),
//! [`RedisStore`] shared by every replica (with the `redis` feature).
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use http::{Request, Response, StatusCode};
//! use tollgate_core::{ErrorClass, Failure};
//! use tollgate_limits::{KeyLimits, MemoryStore, RateLimitLayer, RateLimited};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let layer = RateLimitLayer::new(Arc::new(MemoryStore::new()));
//! let service = layer.layer(service_fn(|_req: Request<String>| async {
//!     Ok::<_, std::convert::Infallible>(Response::new(String::from("hi")))
//! }));
//!
//! // The auth step: this key may send 2 requests per minute.
//! let limits = Arc::new(KeyLimits::new("team-a").rpm(2));
//! let request = || {
//!     let mut request = Request::new(String::new());
//!     request.extensions_mut().insert(limits.clone());
//!     request
//! };
//!
//! let response = service.clone().oneshot(request()).await.unwrap();
//! assert_eq!(response.headers()["x-ratelimit-limit-requests"], "2");
//! assert_eq!(response.headers()["x-ratelimit-remaining-requests"], "1");
//! service.clone().oneshot(request()).await.unwrap();
//!
//! // The third is rejected, with a 429 ready to send.
//! let error = service.oneshot(request()).await.unwrap_err();
//! assert_eq!(Failure::from_error(&*error).class(), ErrorClass::RateLimited);
//! let response: Response<bytes::Bytes> = RateLimited::find(&*error).unwrap().to_response();
//! assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(response.headers()["retry-after"], "30");
//! assert_eq!(response.headers()["x-ratelimit-remaining-requests"], "0");
//! # }
//! ```
//!
//! # Errors and headers
//!
//! A rejection is an `Err(`[`RateLimited`]`)` (boxed), whose source is a
//! core [`Failure`](tollgate_core::Failure), so `Failure::from_error`
//! classifies it:
//!
//! | limit | class | status | `error.type` / `error.code` | `Retry-After` |
//! |---|---|---|---|---|
//! | rpm, tpm | `rate_limited` | 429 | `rate_limit_error` / `rate_limit_exceeded` | until the request would fit |
//! | max_parallel | `rate_limited` | 429 | `rate_limit_error` / `rate_limit_exceeded` | 1 s ([`PARALLEL_RETRY_AFTER`]) |
//! | budget | `budget_exceeded` | 429 | `budget_exceeded` / `budget_exceeded` | until the next window; none for a lifetime budget |
//!
//! The message names the key (its name, never the key) and the limit:
//! `Rate limit exceeded for key 'team-a': 60 requests per minute. Retry
//! after 1 s.` The budget answers 429 rather than LiteLLM's 400: the
//! client should stop and come back later, which is what clients do on a
//! 429. Every rejection is scoped to the key and not fallback-eligible.
//!
//! Successful responses carry OpenAI's headers — `x-ratelimit-limit-requests`,
//! `x-ratelimit-remaining-requests`, `x-ratelimit-reset-requests` and the
//! same three for `tokens` — for the limits the key has. A `Failure` cannot
//! carry headers, so a rejection carries them in
//! [`RateLimited::headers`]; [`RateLimited::to_response`] renders the error
//! with them.
//!
//! [`UsageReport`]: tollgate_core::extensions::UsageReport
//!
//! # Settling: the usage report
//!
//! The tpm reconciliation and the budget need what the request really
//! used, which only something inside knows (the cost layer, the upstream
//! client). The layer inserts an `Arc<`[`UsageReport`]`>` request extension
//! (core's; unless the caller did), which that something fills before the
//! response body ends — the cost layer does, for each upstream attempt; the layer's [`ResponseBody`] reads it at the end. A request
//! whose usage never arrives keeps its tpm reservation and adds no spend.
//! A budget is checked before the request (spent < max) and charged after
//! it, so requests in flight when it runs out may overshoot it.
//!
//! # Fail-open
//!
//! A store never fails a request. [`RedisStore`] answers from a local
//! [`MemoryStore`] when Redis is unreachable, errors, or is slower than its
//! operation timeout (50 ms by default), counts and reports each fallback,
//! and returns to Redis as soon as it answers again. During an outage each
//! replica enforces the limits on its own.
//!
//! # When not to use it
//!
//! - For protecting an upstream from overload: that is what a concurrency
//!   limit, a breaker and the upstream's own 429s are for. These limits are
//!   about fairness between keys, and spend.
//! - For billing: the budget is an enforcement counter (fail-open, may
//!   overshoot by the requests in flight), not a ledger.
//! - Where a limit must hold exactly across replicas even while Redis is
//!   down: this layer prefers answering to refusing.
//! - With [`RedisStore`] across regions: every limited request waits for a
//!   round trip per limit (up to four).

mod body;
mod check;
mod deployment;
mod error;
mod future;
pub mod gcra;
mod headers;
mod layer;
mod limits;
mod service;
mod store;

pub use body::ResponseBody;
pub use check::restore_spend;
pub use deployment::{DeploymentAdmission, DeploymentRateLimits, Headroom};
pub use error::{Limit, PARALLEL_RETRY_AFTER, RateLimited};
pub use future::ResponseFuture;
pub use headers::{
    LIMIT_REQUESTS, LIMIT_TOKENS, LimitState, REMAINING_REQUESTS, REMAINING_TOKENS, RESET_REQUESTS,
    RESET_TOKENS, RateLimitHeaders, format_reset,
};
pub use layer::RateLimitLayer;
pub use limits::{Budget, BudgetWindow, KeyLimits, SharedLimits, estimate_tokens};
pub use service::RateLimit;
pub use store::{BoxFuture, Claim, DEFAULT_CAPACITY, DEFAULT_LEASE_TTL, Lease, MemoryStore, Store};
#[cfg(feature = "redis")]
pub use store::{DEFAULT_OP_TIMEOUT, DEFAULT_PREFIX, RedisStore};
pub use tollgate_core::time::{Clock, ManualClock, SystemClock};
