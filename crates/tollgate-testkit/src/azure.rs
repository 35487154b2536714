//! Azure OpenAI bodies for scripting replies: OpenAI's shapes ([`openai`])
//! plus Azure's content-filter annotations and errors.
//!
//! Shapes from Microsoft's "Content filtering" page for Azure OpenAI
//! (<https://learn.microsoft.com/azure/ai-foundry/openai/concepts/content-filter>):
//! the 400 a filtered prompt gets, the `finish_reason: "content_filter"` a
//! filtered completion gets, and the `prompt_filter_results` chunk that opens
//! a stream.

use serde_json::{Value, json};

use crate::openai;

/// The per-category filter results, with `category` filtered (severity
/// `high`) and the others safe.
pub fn filter_results(category: &str) -> Value {
    let mut results = json!({
        "hate": {"filtered": false, "severity": "safe"},
        "self_harm": {"filtered": false, "severity": "safe"},
        "sexual": {"filtered": false, "severity": "safe"},
        "violence": {"filtered": false, "severity": "safe"},
    });
    results[category] = json!({"filtered": true, "severity": "high"});
    results
}

/// The 400 body of a prompt the filter blocked in `category`.
pub fn content_filter_error(category: &str) -> Value {
    json!({"error": {
        "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry.",
        "type": null,
        "param": "prompt",
        "code": "content_filter",
        "status": 400,
        "innererror": {
            "code": "ResponsibleAIPolicyViolation",
            "content_filter_result": filter_results(category),
        },
    }})
}

/// A `chat.completion` whose answer the filter removed in `category`.
pub fn filtered_completion(category: &str) -> Value {
    let mut body = openai::chat_completion("");
    body["choices"][0]["message"]["content"] = Value::Null;
    body["choices"][0]["finish_reason"] = json!("content_filter");
    body["choices"][0]["content_filter_results"] = filter_results(category);
    body
}

/// The chunk an Azure stream opens with: no choices, the prompt's filter
/// results.
pub fn prompt_filter_chunk() -> Value {
    json!({
        "id": "",
        "object": "",
        "created": 0,
        "model": "",
        "choices": [],
        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": filter_results("hate")["sexual"].clone()}],
    })
}

/// A stream chunk that ends the answer with `finish_reason:
/// "content_filter"` in `category`.
pub fn filtered_chunk(category: &str) -> Value {
    json!({
        "id": openai::ID,
        "object": "chat.completion.chunk",
        "created": openai::CREATED,
        "model": openai::MODEL,
        "choices": [{"index": 0, "delta": {}, "finish_reason": "content_filter",
                     "content_filter_results": filter_results(category)}],
    })
}
