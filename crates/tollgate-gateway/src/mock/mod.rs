//! The built-in `mock` provider: answers in-process like an OpenAI upstream.
//!
//! `model: mock/<name>` deployments need no network and no key. They answer
//! `chat.completion`s, legacy `text_completion`s (both streamed or not) and
//! embeddings with usage, honour LiteLLM's
//! `mock_response`, and take Tollgate-only settings (`tollgate.mock.<id>`) for
//! latency and injected faults — an error status, an error event in the
//! stream, a stall, a cut — so that the offline demo and the tests exercise
//! every failure path the real upstreams have.

mod body;
mod embeddings;
mod response;

pub use body::MockBody;
pub use response::MockDeployment;
