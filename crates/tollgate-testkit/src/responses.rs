//! OpenAI Responses API bodies for scripting replies: a `response` object and
//! the typed events of its stream.
//!
//! Shapes from OpenAI's API reference, "Responses" → "The response object"
//! (<https://platform.openai.com/docs/api-reference/responses/object>) and
//! "Streaming events"
//! (<https://platform.openai.com/docs/api-reference/responses-streaming>):
//! every event is a named SSE event (`event: <type>`) whose data repeats the
//! `type` and carries a `sequence_number`; a stream runs `response.created`,
//! `response.in_progress`, `response.output_item.added`,
//! `response.content_part.added`, `response.output_text.delta`…,
//! `response.output_text.done`, `response.content_part.done`,
//! `response.output_item.done` and ends with `response.completed` — no
//! `[DONE]`.

use serde_json::{Value, json};

use crate::Reply;

/// The response id the bodies carry.
pub const ID: &str = "resp_testkit";

/// The message item id the bodies carry.
pub const MESSAGE_ID: &str = "msg_testkit";

/// The model the bodies name.
pub const MODEL: &str = "gpt-4.1-2025-04-14";

/// `created_at` of the bodies.
pub const CREATED_AT: u64 = 1_741_476_542;

/// The usage of a response: `input_tokens` (of which `cached` read from the
/// cache), `output_tokens` (of which `reasoning` spent reasoning).
pub fn usage(input: u64, cached: u64, output: u64, reasoning: u64) -> Value {
    json!({
        "input_tokens": input,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": input + output,
    })
}

/// The assistant message item holding `text`.
pub fn message(text: &str) -> Value {
    json!({
        "type": "message",
        "id": MESSAGE_ID,
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    })
}

/// A response object: `status`, its `output` items and its `usage`
/// (`null` while in progress).
pub fn response(status: &str, output: Vec<Value>, usage: Value) -> Value {
    json!({
        "id": ID,
        "object": "response",
        "created_at": CREATED_AT,
        "status": status,
        "error": null,
        "incomplete_details": null,
        "instructions": null,
        "max_output_tokens": null,
        "model": MODEL,
        "output": output,
        "parallel_tool_calls": true,
        "previous_response_id": null,
        "reasoning": {"effort": null, "summary": null},
        "store": true,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "user": null,
        "metadata": {},
    })
}

/// A completed response answering `text`, with `usage`.
pub fn completed(text: &str, usage: Value) -> Value {
    response("completed", vec![message(text)], usage)
}

/// The events of a stream answering the text `parts`, in order, each as
/// (type, data), numbered from 0; the last is `response.completed` with
/// `usage`.
pub fn events(parts: &[&str], usage: Value) -> Vec<(String, Value)> {
    let text: String = parts.concat();
    let in_progress = response("in_progress", vec![], Value::Null);
    let mut events = vec![
        ("response.created", json!({"response": in_progress})),
        ("response.in_progress", json!({"response": in_progress})),
        (
            "response.output_item.added",
            json!({"output_index": 0, "item": {"type": "message", "id": MESSAGE_ID,
                "status": "in_progress", "role": "assistant", "content": []}}),
        ),
        (
            "response.content_part.added",
            json!({"item_id": MESSAGE_ID, "output_index": 0, "content_index": 0,
                "part": {"type": "output_text", "text": "", "annotations": []}}),
        ),
    ];
    for part in parts {
        events.push((
            "response.output_text.delta",
            json!({"item_id": MESSAGE_ID, "output_index": 0, "content_index": 0,
                "delta": part, "logprobs": []}),
        ));
    }
    events.extend([
        (
            "response.output_text.done",
            json!({"item_id": MESSAGE_ID, "output_index": 0, "content_index": 0,
                "text": text, "logprobs": []}),
        ),
        (
            "response.content_part.done",
            json!({"item_id": MESSAGE_ID, "output_index": 0, "content_index": 0,
                "part": {"type": "output_text", "text": text, "annotations": []}}),
        ),
        (
            "response.output_item.done",
            json!({"output_index": 0, "item": message(&text)}),
        ),
        (
            "response.completed",
            json!({"response": completed(&text, usage)}),
        ),
    ]);
    events
        .into_iter()
        .enumerate()
        .map(|(n, (name, mut data))| {
            data["type"] = json!(name);
            data["sequence_number"] = json!(n);
            (name.to_owned(), data)
        })
        .collect()
}

/// One named event as OpenAI writes it: `event: <type>`, then its data.
pub fn event(name: &str, data: &Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// A reply streaming `events` (from [`events`]), one body frame each.
pub fn stream(events: &[(String, Value)]) -> Reply {
    events.iter().fold(Reply::sse(), |reply, (name, data)| {
        reply.raw(event(name, data))
    })
}
