//! [`EmbeddingRequest`]: an OpenAI embeddings request, read for a provider
//! that embeds text.

use serde::Deserialize;
use serde_json::{Map, Value};
use tollgate_core::Failure;

use crate::failures::bad_request;

/// An OpenAI embeddings request (`POST /embeddings`), read: the model, the
/// texts, `dimensions`, `encoding_format` and every other field (a
/// provider's own parameters, such as Cohere's `input_type`).
#[derive(Debug, Clone)]
pub struct EmbeddingRequest {
    model: String,
    inputs: Vec<String>,
    dimensions: Option<u64>,
    base64: bool,
    rest: Map<String, Value>,
}

/// The fields read; the rest is kept as it came.
#[derive(Deserialize)]
struct Wire {
    model: Option<Value>,
    input: Option<Value>,
    dimensions: Option<Value>,
    encoding_format: Option<Value>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

impl EmbeddingRequest {
    /// Reads `body`, the model without `prefix` (`"gemini/"`).
    ///
    /// # Errors
    ///
    /// A `bad_request` when the body is not a JSON object, the model is not
    /// a string, `input` is not a string or a non-empty list of strings
    /// (token ids are refused: `provider` takes text), `dimensions` is not
    /// a positive integer, or `encoding_format` is neither `float` nor
    /// `base64`.
    pub fn read(body: &[u8], prefix: &str, provider: &str) -> Result<Self, Failure> {
        let Ok(wire) = serde_json::from_slice::<Wire>(body) else {
            return Err(bad_request("the request body must be a JSON object", None));
        };
        let model = match wire.model {
            Some(Value::String(model)) => model,
            _ => return Err(bad_request("`model` must be a string", Some("model"))),
        };
        let model = model.strip_prefix(prefix).unwrap_or(&model).to_owned();
        let token_ids = || {
            bad_request(
                format!(
                    "{provider} embeds text: `input` must be a string or a list of strings, not token ids"
                ),
                Some("input"),
            )
        };
        let inputs = match wire.input {
            Some(Value::String(text)) => vec![text],
            Some(Value::Array(items)) if !items.is_empty() => items
                .into_iter()
                .map(|item| match item {
                    Value::String(text) => Ok(text),
                    Value::Number(_) | Value::Array(_) => Err(token_ids()),
                    _ => Err(bad_request(
                        "`input` must be a string or a list of strings",
                        Some("input"),
                    )),
                })
                .collect::<Result<_, _>>()?,
            Some(Value::Array(_)) => {
                return Err(bad_request("`input` must not be empty", Some("input")));
            }
            _ => {
                return Err(bad_request(
                    "`input` must be a string or a list of strings",
                    Some("input"),
                ));
            }
        };
        let dimensions = match wire.dimensions {
            None | Some(Value::Null) => None,
            Some(value) => Some(value.as_u64().filter(|d| *d > 0).ok_or_else(|| {
                bad_request(
                    "`dimensions` must be a positive integer",
                    Some("dimensions"),
                )
            })?),
        };
        let base64 = match wire.encoding_format.as_ref() {
            None | Some(Value::Null) => false,
            Some(Value::String(format)) if format == "float" => false,
            Some(Value::String(format)) if format == "base64" => true,
            Some(_) => {
                return Err(bad_request(
                    "`encoding_format` must be `float` or `base64`",
                    Some("encoding_format"),
                ));
            }
        };
        Ok(EmbeddingRequest {
            model,
            inputs,
            dimensions,
            base64,
            rest: wire.rest,
        })
    }

    /// The model, without the provider's prefix.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The texts to embed, in order (one for a string `input`).
    pub fn inputs(&self) -> &[String] {
        &self.inputs
    }

    /// `dimensions`: how many numbers each vector should have.
    pub fn dimensions(&self) -> Option<u64> {
        self.dimensions
    }

    /// Whether the client asked for `encoding_format: "base64"`.
    pub fn base64(&self) -> bool {
        self.base64
    }

    /// Another field of the request (`user`, a provider's own parameter),
    /// when present and not `null`.
    pub fn param(&self, name: &str) -> Option<&Value> {
        self.rest.get(name).filter(|v| !v.is_null())
    }
}
