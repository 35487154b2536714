//! The OpenAI embeddings answer, from what the calls returned.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;
use tollgate_core::Failure;

use super::{Embedded, EmbeddingRequest};
use crate::failures::malformed_response;

#[derive(Serialize)]
struct Answer<'a> {
    object: &'static str,
    data: Vec<Item<'a>>,
    model: &'a str,
    usage: Usage,
}

#[derive(Serialize)]
struct Item<'a> {
    object: &'static str,
    index: usize,
    embedding: Vector<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Vector<'a> {
    Float(&'a RawValue),
    Base64(String),
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: u64,
    total_tokens: u64,
}

/// OpenAI's `{"object": "list", "data": […], "model", "usage"}` for
/// `request`, from its calls' answers in order.
///
/// # Errors
///
/// `malformed_response` when a vector is not an array of numbers (read
/// only for base64, which needs its numbers).
pub(crate) fn openai_answer(
    request: &EmbeddingRequest,
    embedded: &[Embedded],
) -> Result<Bytes, Failure> {
    let vectors = embedded.iter().flat_map(|e| &e.vectors);
    let data = vectors
        .enumerate()
        .map(|(index, vector)| {
            let embedding = if request.base64() {
                Vector::Base64(base64_of(vector)?)
            } else {
                Vector::Float(vector)
            };
            Ok(Item {
                object: "embedding",
                index,
                embedding,
            })
        })
        .collect::<Result<Vec<_>, Failure>>()?;
    let tokens = embedded.iter().map(|e| e.prompt_tokens).sum();
    let answer = Answer {
        object: "list",
        data,
        model: request.model(),
        usage: Usage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    };
    serde_json::to_vec(&answer)
        .map(Bytes::from)
        .map_err(|_| malformed_response())
}

/// OpenAI's base64 form of a vector: its numbers as `f32`, little-endian,
/// one after the other, in standard base64 (what the OpenAI SDKs decode
/// with `np.frombuffer(…, dtype="float32")`).
fn base64_of(vector: &RawValue) -> Result<String, Failure> {
    let numbers: Vec<f32> = serde_json::from_str(vector.get()).map_err(|_| malformed_response())?;
    let mut bytes = Vec::with_capacity(numbers.len() * 4);
    for number in numbers {
        bytes.extend_from_slice(&number.to_le_bytes());
    }
    Ok(STANDARD.encode(bytes))
}
