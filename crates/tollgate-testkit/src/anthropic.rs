//! Anthropic Messages bodies and event streams for scripting replies.
//!
//! Shapes from Anthropic's API reference: "Messages" for the answer
//! (<https://docs.anthropic.com/en/api/messages>), "Streaming Messages" for
//! the events (<https://docs.anthropic.com/en/docs/build-with-claude/streaming>)
//! and "Errors" for error bodies (<https://docs.anthropic.com/en/api/errors>).
//! Every body uses the fixed [`ID`] and [`MODEL`] and the token counts
//! below, so tests can compare whole documents.
//!
//! ```
//! use tollgate_testkit::{Reply, anthropic};
//!
//! // A streamed answer, as Anthropic sends it: named events.
//! let reply = Reply::sse().raw(anthropic::text_stream(&["Hel", "lo"]));
//! // A 529 as Anthropic sends it when overloaded.
//! let overloaded = Reply::json(529, anthropic::error_body("overloaded_error", "Overloaded"));
//! # let _ = (reply, overloaded);
//! ```

use serde_json::{Value, json};

/// The `id` of every message built here.
pub const ID: &str = "msg_013Zva2CMHLNnXjNJJKqJ2EF";

/// The `model` of every message built here.
pub const MODEL: &str = "claude-sonnet-4-5-20250929";

/// The uncached input tokens every message reports.
pub const INPUT_TOKENS: u64 = 25;

/// The output tokens every message reports.
pub const OUTPUT_TOKENS: u64 = 15;

/// The input tokens written to the prompt cache.
pub const CACHE_CREATION_TOKENS: u64 = 1000;

/// The input tokens read from the prompt cache.
pub const CACHE_READ_TOKENS: u64 = 2000;

/// The `usage` of every message built here.
pub fn usage() -> Value {
    json!({
        "input_tokens": INPUT_TOKENS,
        "cache_creation_input_tokens": CACHE_CREATION_TOKENS,
        "cache_read_input_tokens": CACHE_READ_TOKENS,
        "output_tokens": OUTPUT_TOKENS,
    })
}

/// A complete message answering `text`, `stop_reason: "end_turn"`.
pub fn message(text: &str) -> Value {
    json!({
        "id": ID,
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": usage(),
    })
}

/// A complete message that calls tool `name` with `input`, after a line of
/// text: `stop_reason: "tool_use"`.
pub fn tool_use_message(id: &str, name: &str, input: Value) -> Value {
    json!({
        "id": ID,
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": id, "name": name, "input": input},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": null,
        "usage": usage(),
    })
}

/// An error body: `{"type":"error","error":{"type","message"}}`.
pub fn error_body(kind: &str, message: &str) -> Value {
    json!({
        "type": "error",
        "error": {"type": kind, "message": message},
        "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy",
    })
}

/// One named event, as Anthropic writes them: `event: <name>` then the
/// `data:` line.
pub fn event(name: &str, data: &Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// The events that open a message: `message_start` (with the input usage)
/// and a `ping`.
pub fn start() -> String {
    let mut usage = usage();
    usage["output_tokens"] = json!(1);
    let message = json!({
        "id": ID, "type": "message", "role": "assistant", "model": MODEL,
        "content": [], "stop_reason": null, "stop_sequence": null, "usage": usage,
    });
    event(
        "message_start",
        &json!({"type": "message_start", "message": message}),
    ) + &event("ping", &json!({"type": "ping"}))
}

/// A text block at `index` made of `parts`.
pub fn text_block(index: u32, parts: &[&str]) -> String {
    let mut out = event(
        "content_block_start",
        &json!({"type": "content_block_start", "index": index,
                "content_block": {"type": "text", "text": ""}}),
    );
    for part in parts {
        out += &event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index,
                    "delta": {"type": "text_delta", "text": part}}),
        );
    }
    out + &event(
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": index}),
    )
}

/// A `tool_use` block at `index` whose input JSON arrives in `parts`
/// (`input_json_delta` events).
pub fn tool_use_block(index: u32, id: &str, name: &str, parts: &[&str]) -> String {
    let mut out = event(
        "content_block_start",
        &json!({"type": "content_block_start", "index": index,
                "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}),
    );
    for part in parts {
        out += &event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": part}}),
        );
    }
    out + &event(
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": index}),
    )
}

/// The events that close a message: `message_delta` with `stop_reason` and
/// the cumulative usage, then `message_stop`.
pub fn stop(stop_reason: &str) -> String {
    event(
        "message_delta",
        &json!({"type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": null},
                "usage": {"output_tokens": OUTPUT_TOKENS}}),
    ) + &event("message_stop", &json!({"type": "message_stop"}))
}

/// A whole streamed text answer: start, one text block of `parts`, stop.
pub fn text_stream(parts: &[&str]) -> String {
    start() + &text_block(0, parts) + &stop("end_turn")
}

/// An `error` event, as sent mid-stream.
pub fn error_event(kind: &str, message: &str) -> String {
    event(
        "error",
        &json!({"type": "error", "error": {"type": kind, "message": message}}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_has_every_event_in_order() {
        let stream = text_stream(&["Hel", "lo"]);
        let names: Vec<&str> = stream
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect();
        assert_eq!(
            names,
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(message("hi")["content"][0]["text"], "hi");
        assert_eq!(
            error_body("rate_limit_error", "x")["error"]["type"],
            "rate_limit_error"
        );
    }
}
