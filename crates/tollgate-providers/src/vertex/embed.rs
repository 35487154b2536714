//! Vertex AI's text embeddings: `:predict` on Google's embedding models.
//!
//! From Google Cloud's "Text embeddings API" reference
//! (<https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/text-embeddings-api>):
//! `POST …/publishers/google/models/{model}:predict` takes `{"instances":
//! [{"content", "task_type", "title"}], "parameters":
//! {"outputDimensionality", "autoTruncate"}}` and answers `{"predictions":
//! [{"embeddings": {"values": […], "statistics": {"token_count",
//! "truncated"}}}]}`, a prediction an instance in order. The
//! `text-embedding-*` and `text-multilingual-embedding-*` models take up
//! to 250 instances a call; `gemini-embedding-*` models one.

use std::ops::Range;

use bytes::Bytes;
use http::HeaderMap;
use http::request::Parts;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use tollgate_core::Failure;

use super::Vertex;
use crate::embeddings::{Embed, EmbedCall, Embedded, EmbeddingRequest, arrays, batches};
use crate::failures::malformed_response;

/// The most instances a `text-embedding-*` model takes in one call.
pub(crate) const MAX_INSTANCES: usize = 250;

#[derive(Deserialize)]
struct Answer {
    predictions: Vec<Prediction>,
}

#[derive(Deserialize)]
struct Prediction {
    embeddings: Embeddings,
}

#[derive(Deserialize)]
struct Embeddings {
    values: Box<RawValue>,
    #[serde(default)]
    statistics: Option<Statistics>,
}

#[derive(Deserialize)]
struct Statistics {
    // A JSON number, written as an integer or as a float (`6.0`).
    #[serde(default)]
    token_count: Option<f64>,
}

/// How many texts `model` takes in one call.
fn batch_size(model: &str) -> usize {
    if model.starts_with("gemini-embedding") {
        1
    } else {
        MAX_INSTANCES
    }
}

impl Embed for Vertex {
    fn read_embeddings(&self, body: &[u8]) -> Result<EmbeddingRequest, Failure> {
        EmbeddingRequest::read(body, "vertex_ai/", "Vertex AI")
    }

    fn embed_calls(
        &self,
        head: &Parts,
        request: &EmbeddingRequest,
        _created: u64,
    ) -> Result<Vec<EmbedCall>, Failure> {
        let model = request.model();
        let mut parameters = Map::new();
        if let Some(dimensions) = request.dimensions() {
            parameters.insert("outputDimensionality".into(), dimensions.into());
        }
        if let Some(truncate) = request.param("auto_truncate") {
            parameters.insert("autoTruncate".into(), truncate.clone());
        }
        let instance = |text: &String| {
            let mut instance = Map::new();
            instance.insert("content".into(), text.clone().into());
            for name in ["task_type", "title"] {
                if let Some(value) = request.param(name) {
                    instance.insert(name.into(), value.clone());
                }
            }
            Value::Object(instance)
        };
        let inputs = request.inputs();
        batches(inputs.len(), batch_size(model))
            .map(|range| {
                let instances: Vec<Value> = inputs[range.clone()].iter().map(instance).collect();
                let mut body = json!({ "instances": instances });
                if !parameters.is_empty() {
                    body["parameters"] = Value::Object(parameters.clone());
                }
                Ok(EmbedCall {
                    head: self.gemini.embed_head(head, model, ":predict")?,
                    body: Bytes::from(body.to_string()),
                    inputs: range,
                })
            })
            .collect()
    }

    fn embedded(
        &self,
        _request: &EmbeddingRequest,
        _inputs: Range<usize>,
        _headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Embedded, Failure> {
        let answer: Answer = serde_json::from_slice(body).map_err(|_| malformed_response())?;
        let mut prompt_tokens = 0u64;
        let mut vectors = Vec::with_capacity(answer.predictions.len());
        for prediction in answer.predictions {
            let embeddings = prediction.embeddings;
            let count = embeddings.statistics.and_then(|s| s.token_count);
            prompt_tokens += count.filter(|c| *c >= 0.0).map_or(0, |c| c.round() as u64);
            vectors.push(embeddings.values);
        }
        Ok(Embedded {
            estimated: false,
            vectors: arrays(vectors).ok_or_else(malformed_response)?,
            prompt_tokens,
        })
    }
}
