//! Google Gemini API bodies and event streams for scripting replies, and
//! [`check_request`], which refuses what the real API refuses.
//!
//! Shapes from Google AI for Developers' "Gemini API reference":
//! "Generating content" for the request and the `GenerateContentResponse`
//! (<https://ai.google.dev/api/generate-content>), `Content`/`Part`
//! (<https://ai.google.dev/api/caching#Content>), `streamGenerateContent`
//! with `alt=sse` for the stream (each event a whole response, events
//! separated by `\r\n\r\n`, no end event), "API keys" for the
//! `x-goog-api-key` header (<https://ai.google.dev/gemini-api/docs/api-key>)
//! and "Troubleshooting" for the error codes and bodies
//! (<https://ai.google.dev/gemini-api/docs/troubleshooting#error-codes>).
//! Every body uses the fixed [`RESPONSE_ID`] and [`MODEL_VERSION`] and the
//! token counts below, so tests can compare whole documents.
//!
//! ```
//! use tollgate_testkit::{Reply, gemini};
//!
//! // A streamed answer, as Gemini sends it with `alt=sse`.
//! let reply = Reply::sse().raw(gemini::text_stream(&["Hel", "lo"]));
//! // A 429 as Gemini sends it when a quota is spent.
//! let limited = Reply::json(429, gemini::rate_limit_error());
//! # let _ = (reply, limited);
//! ```

use serde_json::{Value, json};

use crate::RecordedRequest;

/// The `responseId` of every answer built here.
pub const RESPONSE_ID: &str = "mZ0zaYKpO7-vz7IP0tXl6AQ";

/// The `modelVersion` of every answer built here.
pub const MODEL_VERSION: &str = "gemini-2.5-flash";

/// The prompt tokens every answer reports, cached ones included.
pub const PROMPT_TOKENS: u64 = 1200;

/// The prompt tokens read from the context cache.
pub const CACHED_TOKENS: u64 = 1000;

/// The answer's tokens.
pub const CANDIDATES_TOKENS: u64 = 15;

/// The tokens the model spent thinking.
pub const THOUGHTS_TOKENS: u64 = 40;

/// `totalTokenCount`: prompt, answer and thoughts.
pub const TOTAL_TOKENS: u64 = PROMPT_TOKENS + CANDIDATES_TOKENS + THOUGHTS_TOKENS;

/// An `embedContent` answer ("Embeddings",
/// <https://ai.google.dev/api/embeddings>): `{"embedding": {"values"}}`,
/// no token count.
pub fn embedding(values: &[f64]) -> Value {
    json!({"embedding": {"values": values}})
}

/// A `batchEmbedContents` answer: an embedding for each request, in order.
pub fn batch_embeddings(vectors: &[&[f64]]) -> Value {
    let embeddings: Vec<Value> = vectors.iter().map(|v| json!({"values": v})).collect();
    json!({"embeddings": embeddings})
}

/// The `usageMetadata` of every answer built here.
pub fn usage() -> Value {
    json!({
        "promptTokenCount": PROMPT_TOKENS,
        "cachedContentTokenCount": CACHED_TOKENS,
        "candidatesTokenCount": CANDIDATES_TOKENS,
        "thoughtsTokenCount": THOUGHTS_TOKENS,
        "totalTokenCount": TOTAL_TOKENS,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": PROMPT_TOKENS}],
    })
}

/// A response of one candidate made of `parts`, with `finish_reason`.
pub fn response_of(parts: Value, finish_reason: &str) -> Value {
    json!({
        "candidates": [{
            "content": {"parts": parts, "role": "model"},
            "finishReason": finish_reason,
            "index": 0,
        }],
        "usageMetadata": usage(),
        "modelVersion": MODEL_VERSION,
        "responseId": RESPONSE_ID,
    })
}

/// A complete answer saying `text`, `finishReason: "STOP"`.
pub fn response(text: &str) -> Value {
    response_of(json!([{ "text": text }]), "STOP")
}

/// A complete answer that calls function `name` with `args` after a line
/// of text; the call carries a `thoughtSignature`, as thinking models send.
pub fn function_call_response(name: &str, args: Value) -> Value {
    response_of(
        json!([
            {"text": "Let me check."},
            {"functionCall": {"name": name, "args": args}, "thoughtSignature": "c2lnbmF0dXJl"},
        ]),
        "STOP",
    )
}

/// An answer to a prompt the safety filters blocked: no candidate,
/// `promptFeedback.blockReason`.
pub fn blocked_prompt(reason: &str) -> Value {
    json!({
        "promptFeedback": {
            "blockReason": reason,
            "safetyRatings": [
                {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": true},
                {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
            ],
        },
        "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8},
        "modelVersion": MODEL_VERSION,
        "responseId": RESPONSE_ID,
    })
}

/// An answer the safety filters stopped before anything was said:
/// `finishReason: "SAFETY"`, no content, the category marked blocked.
pub fn safety_stopped() -> Value {
    json!({
        "candidates": [{
            "finishReason": "SAFETY",
            "index": 0,
            "safetyRatings": [
                {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "HIGH", "blocked": true},
                {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE"},
            ],
        }],
        "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8},
        "modelVersion": MODEL_VERSION,
        "responseId": RESPONSE_ID,
    })
}

/// An error body: `{"error":{"code","message","status"}}`, with `details`.
pub fn error_body(code: u16, status: &str, message: &str, details: Value) -> Value {
    json!({"error": {"code": code, "message": message, "status": status, "details": details}})
}

/// The 429 of a spent quota, with the `RetryInfo` Gemini sends.
pub fn rate_limit_error() -> Value {
    error_body(
        429,
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota, please check your plan and billing details.",
        json!([
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
             "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                             "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}]},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"},
        ]),
    )
}

/// The 400 of a prompt longer than the model's context window.
pub fn context_window_error() -> Value {
    error_body(
        400,
        "INVALID_ARGUMENT",
        "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
        json!([]),
    )
}

/// The 503 of an overloaded model.
pub fn overloaded_error() -> Value {
    error_body(
        503,
        "UNAVAILABLE",
        "The model is overloaded. Please try again later.",
        json!([]),
    )
}

/// The 400 of a key that is not valid.
pub fn invalid_key_error() -> Value {
    error_body(
        400,
        "INVALID_ARGUMENT",
        "API key not valid. Please pass a valid API key.",
        json!([{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"}}]),
    )
}

/// One stream event, as Gemini writes them with `alt=sse`.
pub fn event(data: &Value) -> String {
    format!("data: {data}\r\n\r\n")
}

/// One stream event carrying `parts` of the candidate, without usage.
fn parts_event(parts: Value) -> String {
    event(&json!({
        "candidates": [{"content": {"parts": parts, "role": "model"}, "index": 0}],
        "usageMetadata": {"promptTokenCount": PROMPT_TOKENS, "totalTokenCount": PROMPT_TOKENS},
        "modelVersion": MODEL_VERSION,
        "responseId": RESPONSE_ID,
    }))
}

/// A whole streamed text answer: one event per part, the last with
/// `finishReason: "STOP"` and the final usage.
pub fn text_stream(parts: &[&str]) -> String {
    let (last, rest) = parts.split_last().unwrap_or((&"", &[]));
    let mut out: String = rest
        .iter()
        .map(|part| parts_event(json!([{ "text": part }])))
        .collect();
    out += &event(&response_of(json!([{ "text": last }]), "STOP"));
    out
}

/// A streamed answer that says `text`, then calls function `name` with
/// `args` (Gemini streams a call whole, in one part).
pub fn function_call_stream(text: &str, name: &str, args: Value) -> String {
    parts_event(json!([{ "text": text }]))
        + &event(&response_of(
            json!([{"functionCall": {"name": name, "args": args}}]),
            "STOP",
        ))
}

/// The start of a streamed answer, `parts` of text without an end: what a
/// stream cut short, or followed by an error event, has sent.
pub fn partial_stream(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|part| parts_event(json!([{ "text": part }])))
        .collect()
}

/// An error event, as sent mid-stream.
pub fn error_event(code: u16, status: &str, message: &str) -> String {
    event(&error_body(code, status, message, json!([])))
}

/// The top-level fields of a `GenerateContentRequest`, in the REST
/// reference's camelCase.
const REQUEST_FIELDS: &[&str] = &[
    "contents",
    "tools",
    "toolConfig",
    "safetySettings",
    "systemInstruction",
    "generationConfig",
    "cachedContent",
];

/// The fields of `generationConfig` the reference lists.
const GENERATION_FIELDS: &[&str] = &[
    "stopSequences",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "responseModalities",
    "candidateCount",
    "maxOutputTokens",
    "temperature",
    "topP",
    "topK",
    "seed",
    "presencePenalty",
    "frequencyPenalty",
    "responseLogprobs",
    "logprobs",
    "thinkingConfig",
];

/// Checks a request as Gemini would before answering it: the method's
/// path (`/v1beta/models/{model}:generateContent`, or
/// `:streamGenerateContent` with `alt=sse`), the `x-goog-api-key` (equal
/// to `key`), and a body with only the fields the reference names, at
/// least one content, roles `user`/`model` and parts of a known kind.
/// Returns what Gemini's 400 would say.
///
/// # Errors
///
/// The first thing the real API would refuse.
pub fn check_request(request: &RecordedRequest, key: &str) -> Result<(), String> {
    let path = request.uri.path();
    let method = path
        .strip_prefix("/v1beta/models/")
        .and_then(|rest| rest.split_once(':'));
    match method {
        Some((model, "generateContent")) if !model.is_empty() => {}
        Some((model, "streamGenerateContent"))
            if !model.is_empty() && request.uri.query() == Some("alt=sse") => {}
        _ => return Err(format!("not a Gemini method: {path}")),
    }
    match request.headers.get("x-goog-api-key") {
        Some(sent) if sent == key => {}
        Some(_) => return Err("API key not valid. Please pass a valid API key.".into()),
        None => return Err("Method doesn't allow unregistered callers".into()),
    }
    let body: Value =
        serde_json::from_slice(&request.body).map_err(|_| "Invalid JSON payload".to_owned())?;
    let object = body.as_object().ok_or("the payload must be an object")?;
    if let Some(unknown) = object
        .keys()
        .find(|k| !REQUEST_FIELDS.contains(&k.as_str()))
    {
        return Err(format!(
            "Invalid JSON payload received. Unknown name \"{unknown}\""
        ));
    }
    if let Some(config) = object.get("generationConfig").and_then(Value::as_object)
        && let Some(unknown) = config
            .keys()
            .find(|k| !GENERATION_FIELDS.contains(&k.as_str()))
    {
        return Err(format!(
            "Invalid JSON payload received. Unknown name \"{unknown}\" at 'generation_config'"
        ));
    }
    let contents = object
        .get("contents")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
        .ok_or("* GenerateContentRequest.contents: contents is not specified")?;
    for content in contents {
        let role = content["role"].as_str().unwrap_or("user");
        if role != "user" && role != "model" {
            return Err(format!(
                "Please use a valid role: user, model (not {role})."
            ));
        }
        let parts = content["parts"]
            .as_array()
            .filter(|p| !p.is_empty())
            .ok_or("* GenerateContentRequest.contents.parts: contents.parts must not be empty.")?;
        for part in parts {
            let known = [
                "text",
                "inlineData",
                "fileData",
                "functionCall",
                "functionResponse",
            ]
            .iter()
            .any(|kind| part.get(*kind).is_some());
            if !known {
                return Err(format!("a part of an unknown kind: {part}"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_is_events_of_whole_responses_ending_with_a_finish() {
        let stream = text_stream(&["Hel", "lo"]);
        let events: Vec<Value> = stream
            .split("\r\n\r\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .map(|e| serde_json::from_str(e).unwrap())
            .collect();
        assert_eq!(events.len(), 2);
        assert_eq!(
            events[0]["candidates"][0]["content"]["parts"][0]["text"],
            "Hel"
        );
        assert!(events[0]["candidates"][0].get("finishReason").is_none());
        assert_eq!(events[1]["candidates"][0]["finishReason"], "STOP");
        assert_eq!(events[1]["usageMetadata"]["totalTokenCount"], TOTAL_TOKENS);
        assert_eq!(rate_limit_error()["error"]["status"], "RESOURCE_EXHAUSTED");
        assert!(function_call_stream("a", "f", json!({})).contains("functionCall"));
        assert_eq!(partial_stream(&["a", "b"]).matches("data: ").count(), 2);
        assert!(error_event(503, "UNAVAILABLE", "x").contains("UNAVAILABLE"));
    }

    fn request(uri: &str, key: Option<&str>, body: Value) -> RecordedRequest {
        let mut headers = http::HeaderMap::new();
        if let Some(key) = key {
            headers.insert("x-goog-api-key", key.parse().unwrap());
        }
        RecordedRequest {
            method: http::Method::POST,
            uri: uri.parse().unwrap(),
            version: http::Version::HTTP_11,
            headers,
            body: body.to_string().into(),
            received_at: tokio::time::Instant::now(),
        }
    }

    #[test]
    fn check_request_refuses_what_gemini_refuses() {
        let generate = "/v1beta/models/gemini-2.5-flash:generateContent";
        let hello = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
                           "generationConfig": {"maxOutputTokens": 5}});
        let check = |uri: &str, key: Option<&str>, body: Value| {
            check_request(&request(uri, key, body), "k")
        };
        assert_eq!(check(generate, Some("k"), hello.clone()), Ok(()));
        let stream = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse";
        assert_eq!(check(stream, Some("k"), hello.clone()), Ok(()));
        let refusals = [
            (
                "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
                Some("k"),
                hello.clone(),
            ),
            ("/v1/chat/completions", Some("k"), hello.clone()),
            (generate, None, hello.clone()),
            (generate, Some("other"), hello.clone()),
            (generate, Some("k"), json!([])),
            (generate, Some("k"), json!({"contents": [], "model": "x"})),
            (generate, Some("k"), json!({"contents": []})),
            (
                generate,
                Some("k"),
                json!({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}),
            ),
            (
                generate,
                Some("k"),
                json!({"contents": [{"role": "user", "parts": []}]}),
            ),
            (
                generate,
                Some("k"),
                json!({"contents": [{"role": "user", "parts": [{"image": "x"}]}]}),
            ),
            (
                generate,
                Some("k"),
                json!({"contents": hello["contents"], "generationConfig": {"max_tokens": 1}}),
            ),
        ];
        for (uri, key, body) in refusals {
            assert!(
                check(uri, key, body.clone()).is_err(),
                "{uri} {key:?} {body}"
            );
        }
        assert!(
            check(generate, Some("k"), json!({"contents": [], "model": "x"}))
                .unwrap_err()
                .contains("Unknown name \"model\"")
        );
        assert!(check(generate, Some("k"), json!("not json")).is_err());
        let not_json = RecordedRequest {
            body: "{".into(),
            ..request(generate, Some("k"), json!({}))
        };
        assert!(check_request(&not_json, "k").is_err());
        let overloaded = overloaded_error();
        assert_eq!(overloaded["error"]["code"], 503);
        assert_eq!(
            context_window_error()["error"]["status"],
            "INVALID_ARGUMENT"
        );
        assert_eq!(
            invalid_key_error()["error"]["details"][0]["reason"],
            "API_KEY_INVALID"
        );
        assert_eq!(
            blocked_prompt("SAFETY")["promptFeedback"]["blockReason"],
            "SAFETY"
        );
        assert_eq!(safety_stopped()["candidates"][0]["finishReason"], "SAFETY");
        assert!(
            function_call_response("f", json!({}))["candidates"][0]["content"]["parts"][1]
                .get("thoughtSignature")
                .is_some()
        );
    }
}
