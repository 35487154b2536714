//! A Converse answer as an OpenAI `chat.completion`.
//!
//! From the Amazon Bedrock API Reference, "Converse" — the response:
//! `output.message` (`role`, `content` blocks: `text`, `toolUse` with
//! `toolUseId`, `name`, `input`, `reasoningContent.reasoningText.text`),
//! `stopReason` (`end_turn`, `tool_use`, `max_tokens`, `stop_sequence`,
//! `guardrail_intervened`, `content_filtered`,
//! `model_context_window_exceeded`) and `usage` (`inputTokens`,
//! `outputTokens`, `totalTokens`, `cacheReadInputTokens`,
//! `cacheWriteInputTokens`). Converse answers carry no id: one is made.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use tollgate_core::Failure;

use super::classify::content_policy;
use crate::failures::malformed_response;
use crate::openai::{Choice, Function, TokenCounts, ToolCall, completion_body};
use crate::protocol::Exchange;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    #[serde(default)]
    output: Option<Output>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: ConverseUsage,
}

#[derive(Deserialize)]
struct Output {
    #[serde(default)]
    message: Option<OutputMessage>,
}

#[derive(Deserialize)]
struct OutputMessage {
    #[serde(default)]
    content: Vec<Block>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Block {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    tool_use: Option<ToolUse>,
    #[serde(default)]
    reasoning_content: Option<Reasoning>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolUse {
    #[serde(default)]
    tool_use_id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    input: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Reasoning {
    #[serde(default)]
    reasoning_text: Option<ReasoningText>,
}

#[derive(Deserialize)]
struct ReasoningText {
    #[serde(default)]
    text: String,
}

/// Converse's `usage` (also the stream's `metadata.usage`). Input tokens
/// exclude the ones read from or written to the cache.
#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConverseUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cache_read_input_tokens: u64,
    #[serde(default)]
    cache_write_input_tokens: u64,
}

impl From<ConverseUsage> for TokenCounts {
    fn from(usage: ConverseUsage) -> TokenCounts {
        TokenCounts {
            input: usage.input_tokens,
            output: usage.output_tokens,
            cache_read: usage.cache_read_input_tokens,
            cache_creation: usage.cache_write_input_tokens,
            // Converse reports no reasoning tokens apart.
            reasoning: 0,
        }
    }
}

/// OpenAI's `finish_reason` for Converse's `stopReason`.
pub(crate) fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "guardrail_intervened" | "content_filtered" => "content_filter",
        // `end_turn`, `stop_sequence`.
        _ => "stop",
    }
}

/// Whether the stop reason is a guardrail or filter refusing the answer.
pub(crate) fn is_refusal(stop_reason: &str) -> bool {
    matches!(stop_reason, "guardrail_intervened" | "content_filtered")
}

/// Translates a complete answer; a guardrail's or filter's refusal is a
/// `content_policy` failure with its reason, never a success.
pub(crate) fn translate(exchange: &Exchange, id: &str, body: &[u8]) -> Result<Bytes, Failure> {
    let answer: Answer = serde_json::from_slice(body).map_err(|_| malformed_response())?;
    let blocks = answer
        .output
        .and_then(|o| o.message)
        .map(|m| m.content)
        .ok_or_else(malformed_response)?;
    let stop_reason = answer.stop_reason.as_deref().unwrap_or("end_turn");
    let mut text: Option<String> = None;
    let mut reasoning: Option<String> = None;
    let mut tool_calls = Vec::new();
    for block in &blocks {
        if let Some(part) = &block.text {
            text.get_or_insert_with(String::new).push_str(part);
        }
        if let Some(part) = block
            .reasoning_content
            .as_ref()
            .and_then(|r| r.reasoning_text.as_ref())
        {
            reasoning
                .get_or_insert_with(String::new)
                .push_str(&part.text);
        }
        if let Some(call) = &block.tool_use {
            tool_calls.push(ToolCall {
                id: &call.tool_use_id,
                kind: "function",
                function: Function {
                    name: &call.name,
                    arguments: call
                        .input
                        .as_ref()
                        .map_or_else(|| "{}".to_owned(), Value::to_string),
                },
            });
        }
    }
    if is_refusal(stop_reason) {
        return Err(content_policy(stop_reason, text.as_deref()));
    }
    let choice = Choice::assistant(0, text, reasoning, tool_calls, finish_reason(stop_reason));
    completion_body(
        id,
        exchange.created,
        &exchange.model,
        vec![choice],
        answer.usage.into(),
    )
}
