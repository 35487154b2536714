//! OpenAI's embeddings (`/embeddings`) through a provider's own embeddings
//! API: [`Embed`], what a provider supplies, and [`Embeddings`], the
//! service that drives it.
//!
//! An embeddings request is not a chat request, and its answer is never a
//! stream, so it does not go through [`Protocol`]'s translation: the
//! client's OpenAI request (`input` a string or a list of strings,
//! `dimensions`, `encoding_format`) is read into an [`EmbeddingRequest`],
//! which the provider turns into one or more upstream calls
//! ([`EmbedCall`]s: Titan on Bedrock and `gemini-embedding-001` on Vertex
//! take one text a call, the others a bounded batch). [`Embeddings`] makes
//! them one after the other through the inner HTTP client, reads each
//! answer's vectors and token count ([`Embedded`]), and answers in OpenAI's
//! shape:
//!
//! ```json
//! {"object": "list", "model": "…",
//!  "data": [{"object": "embedding", "index": 0, "embedding": [0.1, …]}],
//!  "usage": {"prompt_tokens": 8, "total_tokens": 8}}
//! ```
//!
//! with each vector as the provider wrote its numbers, or, for
//! `encoding_format: "base64"`, as OpenAI encodes it: the little-endian
//! bytes of its `f32`s, in standard base64. An error answer to any call is
//! classified by the provider's [`Protocol::classify`] (so a 429, a 5xx, a
//! refused key are what they are for retry, breaker and fallback), and the
//! calls after it are not made.
//!
//! [`Protocol`]: crate::Protocol
//! [`Protocol::classify`]: crate::Protocol::classify

mod answer;
mod request;
mod service;

#[cfg(test)]
mod tests;

use std::ops::Range;

use bytes::Bytes;
use http::HeaderMap;
use http::request::Parts;
use serde_json::value::RawValue;
use tollgate_core::Failure;

use crate::protocol::Protocol;

pub use request::EmbeddingRequest;
pub use service::{Embeddings, ResponseFuture};

/// One provider's embeddings API, as [`Embeddings`] drives it: plan the
/// upstream calls for a request, read one call's answer. Failures are
/// classified by the provider's [`Protocol::classify`].
pub trait Embed: Protocol {
    /// Reads the client's OpenAI embeddings request (see
    /// [`EmbeddingRequest::read`], with this provider's model prefix).
    ///
    /// # Errors
    ///
    /// As [`EmbeddingRequest::read`].
    fn read_embeddings(&self, body: &[u8]) -> Result<EmbeddingRequest, Failure>;

    /// The upstream calls that embed `request`'s inputs, in order: each
    /// with its head (`head`'s, pointed at the provider: URI, headers,
    /// credentials or signature at `created`, in Unix seconds), its body,
    /// and the inputs it embeds.
    ///
    /// # Errors
    ///
    /// A request this provider cannot serve (a model it has no embeddings
    /// for, a parameter it does not take), as a `bad_request`.
    fn embed_calls(
        &self,
        head: &Parts,
        request: &EmbeddingRequest,
        created: u64,
    ) -> Result<Vec<EmbedCall>, Failure>;

    /// Reads the 2xx answer (`headers`, `body`) to the call that embedded
    /// `request`'s inputs `inputs`: a vector for each, in order, and the
    /// tokens the call counted.
    ///
    /// # Errors
    ///
    /// An answer that cannot be read.
    fn embedded(
        &self,
        request: &EmbeddingRequest,
        inputs: Range<usize>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Embedded, Failure>;
}

/// One upstream call of an embeddings request.
#[derive(Debug)]
pub struct EmbedCall {
    /// Its head: method, URI and headers as they leave (the client's
    /// request extensions kept).
    pub head: Parts,
    /// Its body.
    pub body: Bytes,
    /// The request's inputs it embeds.
    pub inputs: Range<usize>,
}

/// What one call's answer holds.
#[derive(Debug, Default)]
pub struct Embedded {
    /// A vector for each input of the call, in order: a JSON array of
    /// numbers, as the provider wrote it.
    pub vectors: Vec<Box<RawValue>>,
    /// The input tokens the call counted.
    pub prompt_tokens: u64,
    /// Whether `prompt_tokens` is the translation's estimate (the provider
    /// reported none).
    pub estimated: bool,
}

/// A copy of `head` for one more call: method, URI, version, headers and
/// extensions (the deadlines and target the client below reads).
pub(crate) fn copy_head(head: &Parts) -> Parts {
    let mut request = http::Request::new(());
    *request.method_mut() = head.method.clone();
    *request.uri_mut() = head.uri.clone();
    *request.version_mut() = head.version;
    *request.headers_mut() = head.headers.clone();
    *request.extensions_mut() = head.extensions.clone();
    request.into_parts().0
}

/// Splits `0..len` into runs of at most `batch` (at least 1): the inputs
/// of each call of a provider that takes that many texts a call.
pub(crate) fn batches(len: usize, batch: usize) -> impl Iterator<Item = Range<usize>> {
    let batch = batch.max(1);
    (0..len)
        .step_by(batch)
        .map(move |start| start..(start + batch).min(len))
}

/// The vectors of an answer, each checked to be a JSON array; `None` when
/// one is not.
pub(crate) fn arrays(vectors: Vec<Box<RawValue>>) -> Option<Vec<Box<RawValue>>> {
    vectors
        .iter()
        .all(|v| v.get().starts_with('['))
        .then_some(vectors)
}
