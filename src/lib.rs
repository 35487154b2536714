//! Tower middleware for LLM gateways.
//!
//! `tollgate` is the umbrella crate of the Tollgate workspace: it re-exports
//! the layer crates behind features, so an application depends on one crate
//! and switches on what it uses. Each layer is also published on its own.
//!
//! | module | crate | what it is |
//! |---|---|---|
//! | [`core`] | `tollgate-core` | error classes, the failure classifier, the SSE codec, the request body |
//! | `retry` | `tollgate-retry` | retries with backoff, `Retry-After` and a retry budget (feature `retry`) |
//! | `breaker` | `tollgate-breaker` | one circuit breaker per deployment (feature `breaker`) |
//! | `fallback` | `tollgate-fallback` | the cascade over model groups, streams committed at first content and continued after a break (feature `fallback`) |
//! | `balance` | `tollgate-balance` | load balancing across a model group's deployments: LiteLLM's routing strategies, `order`, `weight`, `rpm`/`tpm` (feature `balance`) |
//! | `openrouter` | `tollgate-openrouter` | OpenRouter's API normalised to OpenAI's shape and Tollgate's error classes (feature `openrouter`) |
//! | `providers` | `tollgate-providers` | native provider APIs (Anthropic Messages, Azure OpenAI) translated to and from OpenAI's (feature `providers`) |
//! | `cost` | `tollgate-cost` | usage and exact cost of every call, from bodies and streams (feature `cost`) |
//! | `limits` | `tollgate-limits` | per-key rpm, tpm, parallel requests and budgets, in memory or on Redis (feature `limits`) |
//! | `inbound` | `tollgate-inbound` | Anthropic's Messages API and OpenAI's Responses API served by a chat-completions stack (feature `inbound`) |
//!
//! # Example
//!
//! ```
//! use tollgate::core::{ChatRequest, ErrorClass};
//!
//! let request = ChatRequest::parse(
//!     r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#.into(),
//! )
//! .unwrap();
//! assert_eq!(request.model(), "gpt-4o-mini");
//!
//! let missing = ChatRequest::parse(r#"{"messages":[]}"#.into()).unwrap_err();
//! assert_eq!(missing.class(), ErrorClass::BadRequest);
//! ```

#[doc(inline)]
pub use tollgate_core as core;

#[cfg(feature = "balance")]
#[doc(inline)]
pub use tollgate_balance as balance;
#[cfg(feature = "breaker")]
#[doc(inline)]
pub use tollgate_breaker as breaker;
#[cfg(feature = "cost")]
#[doc(inline)]
pub use tollgate_cost as cost;
#[cfg(feature = "fallback")]
#[doc(inline)]
pub use tollgate_fallback as fallback;
#[cfg(feature = "inbound")]
#[doc(inline)]
pub use tollgate_inbound as inbound;
#[cfg(feature = "limits")]
#[doc(inline)]
pub use tollgate_limits as limits;
#[cfg(feature = "openrouter")]
#[doc(inline)]
pub use tollgate_openrouter as openrouter;
#[cfg(feature = "providers")]
#[doc(inline)]
pub use tollgate_providers as providers;
#[cfg(feature = "retry")]
#[doc(inline)]
pub use tollgate_retry as retry;
