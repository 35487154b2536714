//! An Anthropic Messages answer as an OpenAI `chat.completion`.
//!
//! From Anthropic's API reference, "Messages" — the response: `id`,
//! `model`, `content` blocks (`text`, `tool_use` with `input`, `thinking`),
//! `stop_reason` (`end_turn`, `max_tokens`, `stop_sequence`, `tool_use`,
//! `pause_turn`, `refusal`) and `usage` (`input_tokens`, `output_tokens`,
//! `cache_creation_input_tokens`, `cache_read_input_tokens`).

use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use serde_json::Value;
use tollgate_core::Failure;

use crate::failures::malformed_response;
use crate::openai::{Choice, Function, TokenCounts, ToolCall, completion_body};
use crate::protocol::Exchange;

#[derive(Deserialize)]
struct Answer {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    content: Vec<Block>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: AnthropicUsage,
}

#[derive(Deserialize)]
struct Block {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    thinking: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    input: Option<Value>,
}

/// Anthropic's `usage`; in a stream, `message_delta` repeats it with
/// cumulative counts.
#[derive(Deserialize, Default, Clone, Copy)]
pub(crate) struct AnthropicUsage {
    #[serde(default)]
    pub(crate) input_tokens: Option<u64>,
    #[serde(default)]
    pub(crate) output_tokens: Option<u64>,
    #[serde(default)]
    pub(crate) cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    pub(crate) cache_read_input_tokens: Option<u64>,
}

impl AnthropicUsage {
    /// Updates `counts` with what this report has.
    pub(crate) fn apply(&self, counts: &mut TokenCounts) {
        let set = |field: &mut u64, value: Option<u64>| {
            if let Some(value) = value {
                *field = value;
            }
        };
        set(&mut counts.input, self.input_tokens);
        set(&mut counts.output, self.output_tokens);
        set(&mut counts.cache_creation, self.cache_creation_input_tokens);
        set(&mut counts.cache_read, self.cache_read_input_tokens);
    }
}

/// OpenAI's `finish_reason` for Anthropic's `stop_reason`.
pub(crate) fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        // `end_turn`, `stop_sequence`, `pause_turn`.
        _ => "stop",
    }
}

/// Translates a complete answer.
pub(crate) fn translate(exchange: &Exchange, body: &[u8]) -> Result<Bytes, Failure> {
    let answer: Answer = serde_json::from_slice(body).map_err(|_| malformed_response())?;
    if answer.kind == "error" {
        return Err(super::classify::classify(
            StatusCode::OK,
            &http::HeaderMap::new(),
            body,
        ));
    }
    let mut text: Option<String> = None;
    let mut reasoning: Option<String> = None;
    let mut tool_calls = Vec::new();
    for block in &answer.content {
        match block.kind.as_str() {
            "text" => text
                .get_or_insert_with(String::new)
                .push_str(block.text.as_deref().unwrap_or_default()),
            "thinking" => reasoning
                .get_or_insert_with(String::new)
                .push_str(block.thinking.as_deref().unwrap_or_default()),
            "tool_use" => tool_calls.push(ToolCall {
                id: block.id.as_deref().unwrap_or_default(),
                kind: "function",
                function: Function {
                    name: block.name.as_deref().unwrap_or_default(),
                    arguments: block
                        .input
                        .as_ref()
                        .map_or_else(|| "{}".to_owned(), Value::to_string),
                },
            }),
            _ => {}
        }
    }
    let stop_reason = answer.stop_reason.as_deref().unwrap_or("end_turn");
    if stop_reason == "refusal"
        && text.as_deref().is_none_or(str::is_empty)
        && tool_calls.is_empty()
    {
        return Err(super::classify::refusal());
    }
    let mut counts = TokenCounts::default();
    answer.usage.apply(&mut counts);
    let choice = Choice::assistant(0, text, reasoning, tool_calls, finish_reason(stop_reason));
    completion_body(
        &answer.id,
        exchange.created,
        answer.model.as_deref().unwrap_or(&exchange.model),
        vec![choice],
        counts,
    )
}
