//! A `chat.completion` as an Anthropic message.
//!
//! Shape from Anthropic's API reference, "Messages"
//! (<https://docs.anthropic.com/en/api/messages>): `content` blocks (`text`,
//! `tool_use` with its `input` object), `stop_reason`, `usage`.

use bytes::Bytes;
use serde_json::{Value, json};
use tollgate_core::Failure;

use crate::chat::{ChatAnswer, ChatUsage};

/// The Anthropic message answering the same as `chat`.
pub(crate) fn answer(chat: &[u8]) -> Result<Bytes, Failure> {
    let chat = ChatAnswer::parse(chat)?;
    let mut content = Vec::new();
    let mut finish = None;
    if let Some((message, reason)) = chat.first() {
        finish = reason;
        let text = message.content.as_deref().or(message.refusal.as_deref());
        if let Some(text) = text.filter(|t| !t.is_empty()) {
            content.push(json!({"type": "text", "text": text}));
        }
        for call in &message.tool_calls {
            let function = call.function.as_ref();
            let arguments = function.and_then(|f| f.arguments.as_deref()).unwrap_or("");
            content.push(json!({
                "type": "tool_use",
                "id": tool_use_id(call.id.as_deref()),
                "name": function.and_then(|f| f.name.as_deref()).unwrap_or(""),
                "input": input_of(arguments),
            }));
        }
    }
    let message = json!({
        "id": message_id(chat.id.as_deref()),
        "type": "message",
        "role": "assistant",
        "model": chat.model.as_deref().unwrap_or(""),
        "content": content,
        "stop_reason": stop_reason(finish),
        "stop_sequence": null,
        "usage": usage(chat.usage.unwrap_or_default()),
    });
    Ok(Bytes::from(
        serde_json::to_vec(&message).unwrap_or_default(),
    ))
}

/// A message id in Anthropic's form (`msg_...`), from the chat answer's.
pub(crate) fn message_id(chat_id: Option<&str>) -> String {
    match chat_id {
        Some(id) if id.starts_with("msg_") => id.to_owned(),
        Some(id) if !id.is_empty() => format!("msg_{id}"),
        _ => "msg_tollgate".to_owned(),
    }
}

/// A tool call's id as the client must send it back in `tool_result`: the
/// upstream's own, so the next request maps back to it.
pub(crate) fn tool_use_id(id: Option<&str>) -> String {
    id.filter(|id| !id.is_empty())
        .map_or_else(|| "toolu_tollgate".to_owned(), str::to_owned)
}

/// A tool call's arguments as Anthropic's `input` object; arguments that
/// are not a JSON object (a model's malformed output) are kept as text
/// under `"arguments"` rather than lost.
pub(crate) fn input_of(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return json!({});
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(object @ Value::Object(_)) => object,
        _ => json!({"arguments": arguments}),
    }
}

/// Chat's `finish_reason` as Anthropic's `stop_reason`.
pub(crate) fn stop_reason(finish: Option<&str>) -> &'static str {
    match finish {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

/// Chat usage as Anthropic's: cached prompt tokens are reported apart
/// (`cache_read_input_tokens`), as Anthropic does.
pub(crate) fn usage(usage: ChatUsage) -> Value {
    let cached = usage.cached();
    json!({
        "input_tokens": usage.prompt_tokens.saturating_sub(cached),
        "output_tokens": usage.completion_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
    })
}
