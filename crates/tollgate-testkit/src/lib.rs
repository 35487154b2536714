//! A scripted fake upstream for Tollgate's tests and benchmarks.
//!
//! [`Upstream`] is a real HTTP server on `127.0.0.1:0` that plays an
//! OpenAI-compatible provider. A test scripts what each request gets, in order, with
//! [`Reply`]: a JSON body, an SSE stream built event by event, or a failure (a reset
//! before any response, a stream cut mid-body, a stream that stalls forever). Streams
//! can wait on a [`Gate`] the test opens, to order events across the wire without
//! sleeping. Every request is recorded ([`RecordedRequest`]) before it is answered,
//! and [`openai`] builds the bodies a provider would send ([`responses`] those of OpenAI's
//! Responses API; [`anthropic`], [`azure`],
//! [`gemini`] and [`bedrock`] those of native providers; [`bedrock::upstream`] also
//! checks signatures). [`vertex`] is a fake Vertex AI with its own token endpoint in
//! front of an upstream.
//!
//! Time inside replies ([`Reply::delay`], [`Reply::delay_headers`]) is tokio time.
//! Real sockets and paused time mix poorly, so socket tests run on real time and wait
//! for events ([`Upstream::wait_for_requests`], gates), never for timers.
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use hyper_util::{client::legacy::Client, rt::TokioExecutor};
//! use tollgate_testkit::{Reply, Upstream, openai};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let upstream = Upstream::start().await;
//! upstream.push(Reply::json(429, openai::error_body("slow down", "requests", None)));
//! upstream.push(
//!     Reply::sse()
//!         .data_each(openai::chunks(&["Hel", "lo"]))
//!         .data(openai::usage_chunk(5, 2))
//!         .done(),
//! );
//!
//! // The code under test would be pointed at `upstream.url()`.
//! let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
//! let uri: http::Uri = format!("{}/v1/chat/completions", upstream.url()).parse().unwrap();
//! let first = client.get(uri.clone()).await.unwrap();
//! assert_eq!(first.status(), 429);
//! let second = client.get(uri).await.unwrap();
//! let body = second.into_body().collect().await.unwrap().to_bytes();
//! assert!(body.ends_with(b"data: [DONE]\n\n"));
//!
//! let requests = upstream.wait_for_requests(2).await;
//! assert_eq!(requests[1].uri.path(), "/v1/chat/completions");
//! # }
//! ```
//!
//! # When not to use it
//!
//! To test one layer, a `tower-test` mock with paused time is faster and fully
//! deterministic; use the upstream for end-to-end tests through real connections, and
//! as the fixed-reply backend of load benchmarks.

pub mod anthropic;
pub mod azure;
pub mod bedrock;
mod body;
mod gate;
pub mod gemini;
mod io;
pub mod openai;
mod record;
mod redis;
mod reply;
pub mod responses;
mod upstream;
pub mod vertex;

pub use gate::Gate;
pub use record::RecordedRequest;
pub use redis::RedisServer;
pub use reply::Reply;
pub use upstream::Upstream;
