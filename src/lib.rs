//! Tower middleware for LLM gateways.
//!
//! `tollgate` is the umbrella crate of the Tollgate workspace: it re-exports
//! the layer crates behind features, so an application depends on one crate
//! and switches on what it uses. Each layer is also published on its own.
//!
//! | module | crate | what it is |
//! |---|---|---|
//! | [`core`] | `tollgate-core` | error classes, the failure classifier, the SSE codec, the request body |
//!
//! Retry, circuit breaker, fallback, cost accounting, the OpenRouter
//! normalizer and rate limits join this table, each behind a feature of its
//! name, as they land.
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
