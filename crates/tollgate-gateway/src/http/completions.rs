//! `POST /v1/completions` (and `/completions`): OpenAI's legacy text
//! completions, streamed or not, through the same stack as chat.
//!
//! The request is read as chat's is ([`ChatRequest::parse_as`] with
//! [`Operation::Completions`]: a `prompt` in place of `messages`) and goes
//! to `{api_base}/completions`. A stream asks the upstream for its usage
//! chunk as chat's does, ends with `[DONE]`, and, cut after its first text,
//! ends with an error event: the cascade cannot continue a legacy
//! completion from a prefill of messages, so it never passes a cut for an
//! answer. Cut before its first text, it goes to the next deployment or
//! fallback as a chat stream would.
//!
//! [`ChatRequest::parse_as`]: tollgate_core::ChatRequest::parse_as

use tollgate_core::Operation;

/// What the route asks of the stack ([`chat::handle`](super::chat::handle)
/// walks it, under the shutdown's grace period, as chat does).
pub(super) const OPERATION: Operation = Operation::Completions;
