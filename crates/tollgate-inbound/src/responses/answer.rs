//! A `chat.completion` as a Responses `response` object.
//!
//! Shape from OpenAI's API reference, "Responses" → "The response object"
//! (<https://platform.openai.com/docs/api-reference/responses/object>):
//! `output` items (`message` with `output_text` parts, `function_call`),
//! `status`, `incomplete_details`, `usage` with input and output tokens.

use bytes::Bytes;
use serde_json::{Value, json};
use tollgate_core::Failure;

use crate::chat::{ChatAnswer, ChatUsage};

/// The response answering the same as `chat`.
pub(crate) fn answer(chat: &[u8]) -> Result<Bytes, Failure> {
    let chat = ChatAnswer::parse(chat)?;
    let id = response_id(chat.id.as_deref());
    let mut output = Vec::new();
    let mut finish = None;
    if let Some((message, reason)) = chat.first() {
        finish = reason;
        let text = message.content.as_deref().or(message.refusal.as_deref());
        if let Some(text) = text.filter(|t| !t.is_empty()) {
            output.push(message_item(&id, text, "completed"));
        }
        for (i, call) in message.tool_calls.iter().enumerate() {
            let function = call.function.as_ref();
            output.push(function_call_item(
                &id,
                i,
                call.id.as_deref().unwrap_or(""),
                function.and_then(|f| f.name.as_deref()).unwrap_or(""),
                function.and_then(|f| f.arguments.as_deref()).unwrap_or(""),
                "completed",
            ));
        }
    }
    let response = Header {
        id: &id,
        created: chat.created.unwrap_or(0),
        model: chat.model.as_deref().unwrap_or(""),
    }
    .response(output, chat.usage, Some(finish));
    Ok(Bytes::from(
        serde_json::to_vec(&response).unwrap_or_default(),
    ))
}

/// A response id in OpenAI's form (`resp_...`), from the chat answer's.
pub(crate) fn response_id(chat_id: Option<&str>) -> String {
    match chat_id {
        Some(id) if !id.is_empty() => format!("resp_{id}"),
        _ => "resp_tollgate".to_owned(),
    }
}

/// The id of the answer's message item.
pub(crate) fn message_item_id(response_id: &str) -> String {
    format!("msg_{}", response_id.trim_start_matches("resp_"))
}

/// The id of the answer's `i`th function call item.
pub(crate) fn call_item_id(response_id: &str, i: usize) -> String {
    format!("fc_{}_{i}", response_id.trim_start_matches("resp_"))
}

/// An assistant message item holding `text`.
pub(crate) fn message_item(response_id: &str, text: &str, status: &str) -> Value {
    json!({
        "type": "message",
        "id": message_item_id(response_id),
        "status": status,
        "role": "assistant",
        "content": [output_text(text)],
    })
}

/// An `output_text` part.
pub(crate) fn output_text(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": []})
}

/// A function call item.
pub(crate) fn function_call_item(
    response_id: &str,
    i: usize,
    call_id: &str,
    name: &str,
    arguments: &str,
    status: &str,
) -> Value {
    json!({
        "type": "function_call",
        "id": call_item_id(response_id, i),
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    })
}

/// What every response object of one answer shares.
pub(crate) struct Header<'a> {
    pub(crate) id: &'a str,
    pub(crate) created: u64,
    pub(crate) model: &'a str,
}

impl Header<'_> {
    /// The response object; `finish` is `None` while in progress, else the
    /// chat finish reason (`length` makes it incomplete).
    pub(crate) fn response(
        &self,
        output: Vec<Value>,
        usage: Option<ChatUsage>,
        finish: Option<Option<&str>>,
    ) -> Value {
        let (status, incomplete) = match finish {
            None => ("in_progress", Value::Null),
            Some(Some("length")) => ("incomplete", json!({"reason": "max_output_tokens"})),
            Some(Some("content_filter")) => ("incomplete", json!({"reason": "content_filter"})),
            Some(_) => ("completed", Value::Null),
        };
        json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "error": null,
            "incomplete_details": incomplete,
            "model": self.model,
            "output": output,
            "parallel_tool_calls": true,
            "tool_choice": "auto",
            "tools": [],
            "usage": usage.map(usage_object),
        })
    }
}

/// Chat usage in the Responses shape.
pub(crate) fn usage_object(usage: ChatUsage) -> Value {
    json!({
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached()},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning()},
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    })
}
