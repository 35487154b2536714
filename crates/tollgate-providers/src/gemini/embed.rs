//! Gemini's embeddings: `embedContent` and `batchEmbedContents`.
//!
//! From Google AI for Developers' "Embeddings" API reference
//! (<https://ai.google.dev/api/embeddings>): `POST
//! models/{model}:embedContent` takes `{"content": {"parts": [{"text"}]},
//! "taskType", "outputDimensionality"}` and answers `{"embedding":
//! {"values": […]}}`; `:batchEmbedContents` takes `{"requests": [ … each
//! with its "model": "models/{model}" … ]}` (at most 100) and answers
//! `{"embeddings": [{"values": […]}, …]}` in the same order. Either answer
//! may carry `usageMetadata.promptTokenCount`; when it does not (the
//! text models), the count is estimated (see [`estimate_tokens`]).

use std::ops::Range;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderValue};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use tollgate_core::Failure;

use super::Gemini;
use crate::embeddings::{Embed, EmbedCall, Embedded, EmbeddingRequest, arrays, batches, copy_head};
use crate::endpoint::model_uri;
use crate::failures::malformed_response;

/// The most requests one `batchEmbedContents` call takes.
pub(crate) const MAX_BATCH: usize = 100;

#[derive(Deserialize)]
struct Values {
    values: Box<RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    #[serde(default)]
    embedding: Option<Values>,
    #[serde(default)]
    embeddings: Option<Vec<Values>>,
    #[serde(default)]
    usage_metadata: Option<UsageMetadata>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    #[serde(default)]
    prompt_token_count: Option<u64>,
}

/// The tokens of `texts` when Gemini does not count them: a token per 4
/// characters of each text, rounded up — Google's own rule of thumb for
/// Gemini models ("a token is about 4 characters"). LiteLLM counts them
/// with OpenAI's tokenizer instead (see DECISIONS).
pub(crate) fn estimate_tokens(texts: &[String]) -> u64 {
    texts
        .iter()
        .map(|text| (text.chars().count() as u64).div_ceil(4))
        .sum()
}

/// An `EmbedContentRequest`'s fields beside its content: `dimensions` as
/// `outputDimensionality`, LiteLLM's `task_type` as `taskType`, `title`.
fn parameters(request: &EmbeddingRequest) -> Map<String, Value> {
    let mut fields = Map::new();
    if let Some(dimensions) = request.dimensions() {
        fields.insert("outputDimensionality".into(), dimensions.into());
    }
    if let Some(task) = request.param("task_type") {
        fields.insert("taskType".into(), task.clone());
    }
    if let Some(title) = request.param("title") {
        fields.insert("title".into(), title.clone());
    }
    fields
}

fn content(text: &str) -> Value {
    json!({ "parts": [{ "text": text }] })
}

impl Gemini {
    /// `head` pointed at `model`'s `method` (`:embedContent`…) under this
    /// protocol's models URL, with its headers, asking for JSON.
    pub(crate) fn embed_head(
        &self,
        head: &Parts,
        model: &str,
        method: &str,
    ) -> Result<Parts, Failure> {
        let mut head = copy_head(head);
        let uri = model_uri(&self.models, model, method)?;
        self.headers.apply(&mut head, uri);
        head.headers.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        Ok(head)
    }
}

impl Embed for Gemini {
    fn read_embeddings(&self, body: &[u8]) -> Result<EmbeddingRequest, Failure> {
        EmbeddingRequest::read(body, "gemini/", "Gemini")
    }

    fn embed_calls(
        &self,
        head: &Parts,
        request: &EmbeddingRequest,
        _created: u64,
    ) -> Result<Vec<EmbedCall>, Failure> {
        let model = request.model();
        let inputs = request.inputs();
        if let [text] = inputs {
            let mut body = parameters(request);
            body.insert("content".into(), content(text));
            return Ok(vec![EmbedCall {
                head: self.embed_head(head, model, ":embedContent")?,
                body: Bytes::from(Value::Object(body).to_string()),
                inputs: 0..1,
            }]);
        }
        let name = format!("models/{model}");
        batches(inputs.len(), MAX_BATCH)
            .map(|range| {
                let requests: Vec<Value> = inputs[range.clone()]
                    .iter()
                    .map(|text| {
                        let mut one = parameters(request);
                        one.insert("model".into(), name.clone().into());
                        one.insert("content".into(), content(text));
                        Value::Object(one)
                    })
                    .collect();
                Ok(EmbedCall {
                    head: self.embed_head(head, model, ":batchEmbedContents")?,
                    body: Bytes::from(json!({ "requests": requests }).to_string()),
                    inputs: range,
                })
            })
            .collect()
    }

    fn embedded(
        &self,
        request: &EmbeddingRequest,
        inputs: Range<usize>,
        _headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Embedded, Failure> {
        let answer: Answer = serde_json::from_slice(body).map_err(|_| malformed_response())?;
        let vectors = match (answer.embedding, answer.embeddings) {
            (Some(one), None) => vec![one.values],
            (None, Some(many)) => many.into_iter().map(|v| v.values).collect(),
            _ => return Err(malformed_response()),
        };
        let reported = answer.usage_metadata.and_then(|u| u.prompt_token_count);
        Ok(Embedded {
            vectors: arrays(vectors).ok_or_else(malformed_response)?,
            prompt_tokens: reported.unwrap_or_else(|| estimate_tokens(&request.inputs()[inputs])),
            estimated: reported.is_none(),
        })
    }
}
