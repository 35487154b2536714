//! OpenAI-shaped bodies for scripting replies.
//!
//! Every body uses the fixed [`ID`], [`MODEL`] and [`CREATED`], so tests can compare
//! whole documents.

use serde_json::{Value, json};

/// The `id` of every completion built here.
pub const ID: &str = "chatcmpl-testkit";

/// The `model` of every completion built here.
pub const MODEL: &str = "gpt-4o-mini";

/// The `created` timestamp of every completion built here.
pub const CREATED: u64 = 1_700_000_000;

/// The prompt tokens [`chat_completion`] reports.
pub const PROMPT_TOKENS: u64 = 10;

/// The completion tokens [`chat_completion`] reports.
pub const COMPLETION_TOKENS: u64 = 20;

/// A full `chat.completion` answering `content`, with
/// `usage(PROMPT_TOKENS, COMPLETION_TOKENS)`.
///
/// Overwrite fields to taste: `body["usage"] = openai::usage(3, 4)`.
pub fn chat_completion(content: &str) -> Value {
    json!({
        "id": ID,
        "object": "chat.completion",
        "created": CREATED,
        "model": MODEL,
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": content, "refusal": null },
            "logprobs": null,
            "finish_reason": "stop",
        }],
        "usage": usage(PROMPT_TOKENS, COMPLETION_TOKENS),
    })
}

/// The `chat.completion.chunk`s of a streamed answer: one with the assistant role, one
/// content delta per part, then one with `finish_reason: "stop"`.
///
/// Feed them to [`Reply::data_each`](crate::Reply::data_each); add a
/// [`usage_chunk`] and [`done`](crate::Reply::done) as the test needs.
pub fn chunks(parts: &[&str]) -> Vec<Value> {
    let role = chunk(json!({ "role": "assistant", "content": "" }), Value::Null);
    let deltas = parts
        .iter()
        .map(|part| chunk(json!({ "content": part }), Value::Null));
    let finish = chunk(json!({}), json!("stop"));
    std::iter::once(role)
        .chain(deltas)
        .chain(std::iter::once(finish))
        .collect()
}

/// The final chunk of a stream sent with `stream_options.include_usage`: no choices,
/// only `usage`.
pub fn usage_chunk(prompt_tokens: u64, completion_tokens: u64) -> Value {
    json!({
        "id": ID,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "choices": [],
        "usage": usage(prompt_tokens, completion_tokens),
    })
}

/// A `usage` object; `total_tokens` is the sum.
pub fn usage(prompt_tokens: u64, completion_tokens: u64) -> Value {
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    })
}

/// An OpenAI error body: `{"error": {"message", "type", "param": null, "code"}}`.
///
/// For example `error_body("Rate limit reached", "requests", Some("rate_limit_exceeded"))`
/// for a 429, or `error_body("The server had an error", "server_error", None)`.
pub fn error_body(message: &str, kind: &str, code: Option<&str>) -> Value {
    json!({
        "error": { "message": message, "type": kind, "param": null, "code": code },
    })
}

fn chunk(delta: Value, finish_reason: Value) -> Value {
    json!({
        "id": ID,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "choices": [{
            "index": 0,
            "delta": delta,
            "logprobs": null,
            "finish_reason": finish_reason,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_open_with_role_and_close_with_finish() {
        let chunks = chunks(&["Hel", "lo"]);
        assert_eq!(chunks.len(), 4);
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "Hel");
        assert_eq!(chunks[2]["choices"][0]["delta"]["content"], "lo");
        assert_eq!(chunks[3]["choices"][0]["finish_reason"], "stop");
        assert!(
            chunks[..3]
                .iter()
                .all(|c| c["choices"][0]["finish_reason"].is_null())
        );
    }

    #[test]
    fn usage_adds_up() {
        assert_eq!(usage_chunk(3, 4)["usage"]["total_tokens"], 7);
        assert_eq!(chat_completion("hi")["usage"]["total_tokens"], 30);
        assert_eq!(
            chat_completion("hi")["choices"][0]["message"]["content"],
            "hi"
        );
    }

    #[test]
    fn error_body_shape() {
        let body = error_body("slow down", "requests", Some("rate_limit_exceeded"));
        assert_eq!(body["error"]["message"], "slow down");
        assert_eq!(body["error"]["type"], "requests");
        assert_eq!(body["error"]["code"], "rate_limit_exceeded");
        assert!(error_body("x", "server_error", None)["error"]["code"].is_null());
    }
}
