//! Cost accounting for OpenAI-compatible services, as a tower layer.
//!
//! [`CostLayer`] wraps any `Service<http::Request<RequestBody>>` that
//! answers `/v1/chat/completions` the OpenAI way — a hyper client, an axum
//! router, the gateway's upstream stack — and makes **one [`CostRecord`]
//! per call of the inner service**, handed to a [`CostSink`]: who asked
//! (request id, key), where it went (model group, deployment, upstream
//! model, attempt), how it ended ([`Outcome`]), the tokens it used
//! ([`TokenUsage`]: prompt, cached, cache-write, completion, reasoning) and
//! what it cost ([`Charge`], exact [`Usd`]).
//!
//! - **Complete answers** (2xx JSON): the layer reads the body (up to
//!   [`CostLayer::body_limit`], 16 MiB by default), takes `usage` from it,
//!   and sets the [`RESPONSE_COST_HEADER`] (`x-tollgate-response-cost`,
//!   exact decimal dollars) and [`Charge`], [`TokenUsage`] and core's
//!   [`Usage`](tollgate_core::extensions::Usage) extensions on the response
//!   it returns.
//! - **Streams**: when the client did not ask for
//!   `stream_options.include_usage`, the layer asks the upstream for it
//!   (the request body and its parsed view are replaced together) and
//!   removes the extra usage chunk from the stream the client gets, which
//!   is then exactly what it asked for. Events are forwarded as they come;
//!   only events that carry a non-null `usage` are parsed.
//! - **Provider cost first**: a `usage.cost` (OpenRouter) is read from its
//!   JSON text, exactly, and preferred to any price. Otherwise tokens are
//!   priced with the [`PriceTable`]: the deployment's prices, else the
//!   upstream model's, else the requested model's; `:free` models cost
//!   nothing; a model without a price has an **unknown** cost (a warning is
//!   logged once per model), never a silent $0.
//! - **Failed attempts are not billed**: an `Err` from the inner service,
//!   an error status, or an error inside a 200 JSON body is
//!   [`Charge::NotBilled`] with its [`ErrorClass`](tollgate_core::ErrorClass).
//!   An answer that started (2xx) and then failed, broke or was abandoned
//!   *is* billed — the provider generated those tokens — on the usage it
//!   reported, or else on an **estimate** (`estimated: true`): a prompt
//!   token per 4 bytes of the request body, a completion token per
//!   content-bearing data event of a stream ([`TokenUsage::estimate`]). A
//!   complete answer without a usage report, or too large to read, has an
//!   unknown usage instead.
//! - **Exactly once**: the record is made when the body ends, breaks, or is
//!   dropped (the client went away), or when the response future is
//!   dropped before the answer. A [`RequestTally`] in the request's
//!   extensions sums a request's attempts for its access-log line; core's
//!   [`UsageReport`](tollgate_core::extensions::UsageReport), when the
//!   request carries one (the rate-limit layer puts it there), gets each
//!   attempt's tokens and cost for the limits to settle on.
//!
//! Outcomes are judged by a [classifier](tollgate_core::classify)
//! (`OpenAiClassifier` by default, [`CostLayer::classifier`] to change it),
//! the same one retry, breaker and fallback use.
//!
//! # Example
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use tollgate_core::RequestBody;
//! use tollgate_cost::{Charge, CostLayer, CostRecord, Outcome, PriceTable, TokenPrices, Usd};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tollgate_core::BoxError> {
//! // Stands in for an OpenAI-compatible upstream.
//! let upstream = service_fn(|_request: Request<RequestBody>| async {
//!     let body = r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"Hi!"},
//!                    "finish_reason":"stop"}],"usage":{"prompt_tokens":1000,"completion_tokens":200}}"#;
//!     let mut response = Response::new(Full::new(Bytes::from(body)));
//!     response.headers_mut().insert("content-type", "application/json".parse().unwrap());
//!     Ok::<_, std::convert::Infallible>(response)
//! });
//!
//! // $2.50 in, $10 out per million tokens; records go to a vector.
//! let prices = PriceTable::builtin()
//!     .with_model("gpt-4o", TokenPrices::new(Usd::parse("2.5e-6")?, Usd::parse("10e-6")?));
//! let records = Arc::new(Mutex::new(Vec::<CostRecord>::new()));
//! let sink = {
//!     let records = records.clone();
//!     move |record| records.lock().unwrap().push(record)
//! };
//! let service = CostLayer::new(Arc::new(prices), sink).layer(upstream);
//!
//! let request = Request::new(RequestBody::new(Bytes::from_static(
//!     br#"{"model":"gpt-4o","messages":[{"role":"user","content":"Hello"}]}"#,
//! )));
//! let response = service.oneshot(request).await?;
//!
//! // 1000 × $0.0000025 + 200 × $0.00001 = $0.0045, exactly.
//! assert_eq!(response.headers()["x-tollgate-response-cost"], "0.0045");
//! let body = response.into_body().collect().await?.to_bytes();
//! assert!(body.starts_with(b"{\"choices\""));
//!
//! let record = records.lock().unwrap().pop().unwrap();
//! assert_eq!(record.outcome, Outcome::Success);
//! assert_eq!(record.cost, Charge::Priced(Usd::from_picos(4_500_000_000)));
//! assert_eq!(record.usage.unwrap().prompt_tokens, 1000);
//! # Ok(())
//! # }
//! ```
//!
//! # Where it goes in a stack
//!
//! One record per call of the *inner* service: to record every upstream
//! attempt (failed ones included, with zero billed), put the layer **below**
//! retry and fallback — between the balancer (which sets the `Target`
//! extension it prices by) and the breaker. Above them it would record one
//! call per client request, priced by the client's model, and hide which
//! deployment answered. A [`RequestTally`] inserted above retry sums the
//! attempts for the request.
//!
//! # When not to use it
//!
//! - For endpoints other than chat completions: a request that does not
//!   parse as one passes through untouched and is recorded with an unknown
//!   usage.
//! - When a non-streaming answer must reach the client before it is
//!   complete: the layer holds it until it has read it (that is how the
//!   cost gets into the response head). Streams are never held.
//! - When an abandoned stream must be billed exactly: the layer estimates;
//!   OpenRouter's `/api/v1/generation?id=` gives the exact cost after the
//!   fact, which a ledger can reconcile with the record later.
//!
//! # Price data
//!
//! [`PriceTable::builtin`] carries per-token prices of common models
//! (`src/price/builtin.json`), taken from the providers' public pricing
//! pages and LiteLLM's `model_prices_and_context_window.json`, as of
//! 2026-11. Prices change: check them against those sources before relying
//! on them, and override what you use with [`PriceTable::with_model`], a
//! deployment's `model_info` ([`PriceTable::with_deployment`]) or
//! OpenRouter's live list ([`PriceTable::with_openrouter_models`]). Tiered
//! prices (long prompts, batch, priority) are not modelled.
//!
//! # Cost on the hot path
//!
//! A stream event costs a scan of its bytes (for the event boundary, a
//! content key and a `usage` key — past the start it shares with the last
//! event, which the layer keeps one copy of per stream) and no allocation
//! after the stream's first events: events the layer
//! forwards untouched are the frames as they came, and when it must drop
//! the usage chunk it forwards runs of whole events sliced from those
//! frames. No lock is taken, except once per unpriced model to warn.

mod body;
mod future;
mod layer;
mod meter;
mod price;
mod record;
mod scan;
mod service;
mod sink;
mod tally;
mod top_level;
mod usage;

pub use body::ResponseBody;
pub use future::ResponseFuture;
pub use layer::CostLayer;
pub use price::{PriceListError, PriceMatch, PriceTable, TokenPrices};
pub use record::{Charge, CostRecord, Outcome};
pub use service::Cost;
pub use sink::CostSink;
pub use tally::{RequestTally, TallySnapshot};
pub use tollgate_core::{ParseUsdError, Usd};
pub use usage::TokenUsage;

/// The response header with the cost of a complete answer, in exact
/// decimal dollars (`0.00029666`). Not set when the cost is unknown, nor on
/// streams (their head goes out before the usage arrives).
pub const RESPONSE_COST_HEADER: http::HeaderName =
    http::HeaderName::from_static("x-tollgate-response-cost");
