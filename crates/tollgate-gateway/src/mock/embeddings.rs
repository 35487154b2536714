//! The mock's embeddings: deterministic vectors in OpenAI's shape.
//!
//! Shape from OpenAI's API reference ("Embeddings → Create embeddings" and
//! "The embedding object"): `{"object":"list","data":[{"object":"embedding",
//! "index":i,"embedding":[…floats] or "<base64 of little-endian float32s>"}],
//! "model":…,"usage":{"prompt_tokens":n,"total_tokens":n}}`.

use base64::Engine;
use bytes::Bytes;
use serde_json::{Value, json};

/// Dimensions of a vector when the request names none.
const DEFAULT_DIMENSIONS: usize = 8;

/// The most dimensions the mock writes (OpenAI's largest model has 3072).
const MAX_DIMENSIONS: usize = 4096;

/// The embeddings answer to `request` (its JSON bytes) as `model`, with
/// `prompt_tokens` as its usage: one vector per input item, `dimensions`
/// long, as floats or — for `encoding_format: "base64"` — as base64 of
/// little-endian `f32`s, as OpenAI sends them.
pub(super) fn answer(request: &[u8], model: &str, prompt_tokens: u64) -> Bytes {
    let body: Value = serde_json::from_slice(request).unwrap_or(Value::Null);
    let items = match &body["input"] {
        Value::Array(items) if items.iter().all(Value::is_u64) => 1,
        Value::Array(items) => items.len(),
        _ => 1,
    };
    let dimensions = body["dimensions"].as_u64().map_or(DEFAULT_DIMENSIONS, |d| {
        (d as usize).clamp(1, MAX_DIMENSIONS)
    });
    let base64 = body["encoding_format"] == "base64";
    let data: Vec<Value> = (0..items)
        .map(|index| {
            let vector = vector(index, dimensions);
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    Bytes::from(
        json!({
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
        })
        .to_string(),
    )
}

/// A vector that depends only on the item's index: values in (-1, 1) that
/// an `f32` holds exactly (multiples of 1/1024), so that the float and the
/// base64 answers decode to the same numbers.
fn vector(index: usize, dimensions: usize) -> Vec<f32> {
    (0..dimensions)
        .map(|d| {
            let step = ((index * 31 + d * 17) % 2047) as f32;
            (step - 1023.0) / 1024.0
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_vector_per_input_as_floats_or_base64() {
        let floats: Value = serde_json::from_slice(&answer(
            br#"{"model":"e","input":["a","b"],"dimensions":4}"#,
            "m",
            3,
        ))
        .unwrap();
        assert_eq!(floats["data"].as_array().unwrap().len(), 2);
        assert_eq!(floats["data"][1]["index"], 1);
        assert_eq!(floats["data"][0]["embedding"].as_array().unwrap().len(), 4);
        assert_eq!(floats["usage"]["prompt_tokens"], 3);

        let encoded: Value = serde_json::from_slice(&answer(
            br#"{"model":"e","input":["a","b"],"dimensions":4,"encoding_format":"base64"}"#,
            "m",
            3,
        ))
        .unwrap();
        let text = encoded["data"][1]["embedding"].as_str().unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap();
        let decoded: Vec<f64> = bytes
            .chunks(4)
            .map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap())))
            .collect();
        let listed: Vec<f64> = floats["data"][1]["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(decoded, listed);
        // Token ids are one input; a list of token lists one per list.
        let tokens: Value =
            serde_json::from_slice(&answer(br#"{"input":[1,2,3]}"#, "m", 1)).unwrap();
        assert_eq!(tokens["data"].as_array().unwrap().len(), 1);
        let lists: Value =
            serde_json::from_slice(&answer(br#"{"input":[[1],[2]]}"#, "m", 1)).unwrap();
        assert_eq!(lists["data"].as_array().unwrap().len(), 2);
        assert_eq!(
            lists["data"][0]["embedding"].as_array().unwrap().len(),
            DEFAULT_DIMENSIONS
        );
    }
}
