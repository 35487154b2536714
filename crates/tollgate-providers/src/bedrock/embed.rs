//! Bedrock's embeddings: InvokeModel on Amazon Titan text and Cohere embed
//! models.
//!
//! From the Amazon Bedrock User Guide's model parameters: "Amazon Titan
//! Embeddings Text"
//! (<https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-titan-embed-text.html>)
//! — `{"inputText", "dimensions", "normalize"}` (`dimensions` and
//! `normalize` on v2 only) answered by `{"embedding": […],
//! "inputTextTokenCount"}`, one text a call — and "Cohere Embed"
//! (<https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-embed.html>)
//! — `{"texts", "input_type", "truncate"}`, at most 96 texts, answered by
//! `{"embeddings": [[…], …]}`, its token count in the
//! `X-Amzn-Bedrock-Input-Token-Count` header (the API Reference's
//! InvokeModel response). Requests go to `POST /model/{modelId}/invoke`,
//! signed as Converse's are.

use std::ops::Range;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderValue};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use tollgate_core::Failure;

use super::{Bedrock, encode_model_id};
use crate::embeddings::{Embed, EmbedCall, Embedded, EmbeddingRequest, arrays, batches, copy_head};
use crate::failures::{bad_request, malformed_response};

/// The most texts one Cohere embed call takes.
pub(crate) const MAX_COHERE_TEXTS: usize = 96;

/// The header InvokeModel counts the input tokens in.
pub const INPUT_TOKEN_COUNT_HEADER: &str = "x-amzn-bedrock-input-token-count";

/// The embedding models served, by their id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    /// `amazon.titan-embed-text-v1`, `amazon.titan-embed-g1-text-02`.
    TitanV1,
    /// `amazon.titan-embed-text-v2:0`.
    TitanV2,
    /// `cohere.embed-english-v3`, `cohere.embed-multilingual-v3`.
    Cohere,
}

impl Family {
    fn of(model: &str) -> Result<Family, Failure> {
        if model.contains("amazon.titan-embed-text-v2") {
            Ok(Family::TitanV2)
        } else if model.contains("amazon.titan-embed-text-v1")
            || model.contains("amazon.titan-embed-g1-text")
        {
            Ok(Family::TitanV1)
        } else if model.contains("cohere.embed-") {
            Ok(Family::Cohere)
        } else {
            Err(bad_request(
                "Bedrock embeddings are served for Amazon Titan text \
                 (`amazon.titan-embed-text-…`) and Cohere (`cohere.embed-…`) models",
                Some("model"),
            ))
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TitanAnswer {
    embedding: Box<RawValue>,
    #[serde(default)]
    input_text_token_count: Option<u64>,
}

#[derive(Deserialize)]
struct CohereAnswer {
    embeddings: Box<RawValue>,
}

/// A Titan call's body.
fn titan_body(family: Family, text: &str, request: &EmbeddingRequest) -> Result<Value, Failure> {
    let mut body = Map::new();
    body.insert("inputText".into(), text.into());
    let v2_only = |param: &'static str| {
        bad_request(
            format!("`{param}` is taken by amazon.titan-embed-text-v2 only"),
            Some(param),
        )
    };
    if let Some(dimensions) = request.dimensions() {
        if family != Family::TitanV2 {
            return Err(v2_only("dimensions"));
        }
        body.insert("dimensions".into(), dimensions.into());
    }
    if let Some(normalize) = request.param("normalize") {
        if family != Family::TitanV2 {
            return Err(v2_only("normalize"));
        }
        body.insert("normalize".into(), normalize.clone());
    }
    Ok(Value::Object(body))
}

/// A Cohere call's body: `input_type` as the client gave it, else
/// `search_document` (LiteLLM's default: what a RAG pipeline embeds).
fn cohere_body(texts: &[String], request: &EmbeddingRequest) -> Result<Value, Failure> {
    if request.dimensions().is_some() {
        return Err(bad_request(
            "Cohere embed v3 models answer vectors of a fixed size: `dimensions` is not taken",
            Some("dimensions"),
        ));
    }
    let input_type = request
        .param("input_type")
        .cloned()
        .unwrap_or_else(|| "search_document".into());
    let mut body = json!({ "texts": texts, "input_type": input_type });
    if let Some(truncate) = request.param("truncate") {
        body["truncate"] = truncate.clone();
    }
    Ok(body)
}

impl Bedrock {
    /// `head` pointed at `model`'s InvokeModel, with `body` signed at
    /// `created`.
    fn invoke_head(
        &self,
        head: &Parts,
        model: &str,
        body: &[u8],
        created: u64,
    ) -> Result<Parts, Failure> {
        let mut head = copy_head(head);
        let tail = format!("/model/{}/invoke", encode_model_id(model));
        let uri = self
            .base
            .join(&tail)
            .ok_or_else(|| bad_request("the model id cannot be sent", Some("model")))?;
        self.headers.apply(&mut head, uri);
        head.headers.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        // Signed last: the signature covers the URL, content type and body
        // as they leave.
        self.signer.sign(&mut head, body, created);
        Ok(head)
    }
}

impl Embed for Bedrock {
    fn read_embeddings(&self, body: &[u8]) -> Result<EmbeddingRequest, Failure> {
        EmbeddingRequest::read(body, "bedrock/", "Bedrock")
    }

    fn embed_calls(
        &self,
        head: &Parts,
        request: &EmbeddingRequest,
        created: u64,
    ) -> Result<Vec<EmbedCall>, Failure> {
        let model = request.model();
        let family = Family::of(model)?;
        let inputs = request.inputs();
        let batch = match family {
            Family::Cohere => MAX_COHERE_TEXTS,
            Family::TitanV1 | Family::TitanV2 => 1,
        };
        batches(inputs.len(), batch)
            .map(|range| {
                let body = match family {
                    Family::Cohere => cohere_body(&inputs[range.clone()], request)?,
                    _ => titan_body(family, &inputs[range.start], request)?,
                };
                let body = Bytes::from(body.to_string());
                Ok(EmbedCall {
                    head: self.invoke_head(head, model, &body, created)?,
                    body,
                    inputs: range,
                })
            })
            .collect()
    }

    fn embedded(
        &self,
        request: &EmbeddingRequest,
        _inputs: Range<usize>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Embedded, Failure> {
        let header_count = || {
            headers
                .get(INPUT_TOKEN_COUNT_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        match Family::of(request.model())? {
            Family::Cohere => {
                let answer: CohereAnswer =
                    serde_json::from_slice(body).map_err(|_| malformed_response())?;
                let vectors: Vec<Box<RawValue>> = serde_json::from_str(answer.embeddings.get())
                    .map_err(|_| malformed_response())?;
                Ok(Embedded {
                    estimated: false,
                    vectors: arrays(vectors).ok_or_else(malformed_response)?,
                    prompt_tokens: header_count().unwrap_or(0),
                })
            }
            Family::TitanV1 | Family::TitanV2 => {
                let answer: TitanAnswer =
                    serde_json::from_slice(body).map_err(|_| malformed_response())?;
                Ok(Embedded {
                    estimated: false,
                    vectors: arrays(vec![answer.embedding]).ok_or_else(malformed_response)?,
                    prompt_tokens: answer
                        .input_text_token_count
                        .or_else(header_count)
                        .unwrap_or(0),
                })
            }
        }
    }
}
