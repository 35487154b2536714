//! A fake of AWS Bedrock's runtime: Converse bodies, ConverseStream's
//! binary event stream (with real CRCs), Bedrock's error replies, and a
//! SigV4 check that recomputes every request's signature.
//!
//! Shapes from the Amazon Bedrock API Reference: "Converse"
//! (<https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html>)
//! for the answer and the errors, "ConverseStream"
//! (<https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html>)
//! and `ConverseStreamOutput` for the events; the framing from AWS's
//! "Event stream encoding" (Amazon Transcribe developer guide,
//! <https://docs.aws.amazon.com/transcribe/latest/dg/streaming-setting-up.html>);
//! the signature from "Create a signed AWS API request"
//! (<https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html>),
//! whose failures AWS answers with a 403 `InvalidSignatureException` or
//! `UnrecognizedClientException` ("Common Errors").
//!
//! ```
//! use tollgate_testkit::bedrock;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // Refuses (403) any request not signed with the test credentials.
//! let upstream = bedrock::upstream().await;
//! upstream.push(bedrock::stream_reply(bedrock::text_stream(&["Hel", "lo"])));
//! upstream.push(bedrock::error(429, "ThrottlingException", "Too many requests"));
//! # }
//! ```

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Value, json};

use crate::{Reply, Upstream};

mod sigv4;

pub use sigv4::{Expected, Refusal, verify_sigv4};

/// The access key id requests must be signed with.
pub const ACCESS_KEY_ID: &str = "AKIATOLLGATETEST0042";

/// The secret requests must be signed with.
pub const SECRET_ACCESS_KEY: &str = "tollgate/Bedrock+Test/secret0123456789EXAMPLE";

/// The region requests must be signed for.
pub const REGION: &str = "us-east-1";

/// The input tokens (neither read from nor written to the cache) every
/// answer reports.
pub const INPUT_TOKENS: u64 = 30;

/// The output tokens every answer reports.
pub const OUTPUT_TOKENS: u64 = 12;

/// The input tokens read from the prompt cache.
pub const CACHE_READ_TOKENS: u64 = 400;

/// The input tokens written to the prompt cache.
pub const CACHE_WRITE_TOKENS: u64 = 100;

/// The content type of ConverseStream's answer.
pub const EVENT_STREAM: &str = "application/vnd.amazon.eventstream";

/// An upstream that checks every request's SigV4 signature against
/// [`ACCESS_KEY_ID`], [`SECRET_ACCESS_KEY`] and [`REGION`] (service
/// `bedrock`) and answers a mismatch with AWS's 403, before the script.
pub async fn upstream() -> Upstream {
    let upstream = Upstream::start().await;
    upstream.set_guard(|request| {
        let credentials = Expected {
            access_key_id: ACCESS_KEY_ID,
            secret_access_key: SECRET_ACCESS_KEY,
            region: REGION,
            service: "bedrock",
        };
        verify_sigv4(
            &request.method,
            &request.uri,
            &request.headers,
            &request.body,
            &credentials,
        )
        .err()
        .map(|refusal| refusal.reply())
    });
    upstream
}

/// An upstream that checks signatures as [`upstream`] does, then answers
/// each signed request by what it asks ([`scripted_reply`]) instead of a
/// script: for tests in other languages, which cannot push replies.
pub async fn scripted_upstream() -> Upstream {
    let upstream = upstream().await;
    upstream.set_guard(|request| {
        let expected = Expected {
            access_key_id: ACCESS_KEY_ID,
            secret_access_key: SECRET_ACCESS_KEY,
            region: REGION,
            service: "bedrock",
        };
        Some(
            match verify_sigv4(
                &request.method,
                &request.uri,
                &request.headers,
                &request.body,
                &expected,
            ) {
                Ok(()) => scripted_reply(request),
                Err(refusal) => refusal.reply(),
            },
        )
    });
    upstream
}

/// The reply to a Converse (or ConverseStream, by the path) request, by
/// its last message's text: `throttle` → a 429 `ThrottlingException`,
/// `too long` → a 400 "Input is too long" `ValidationException`; a request
/// offering tools → a call of the first tool with `{"city": "Paris"}`;
/// anything else → [`SCRIPTED_TEXT`]. An InvokeModel (embeddings) request
/// gets vectors of its texts' lengths: Titan's `[chars, 0.5]`, Cohere's
/// `[chars, 0.25]` each, a token a character.
pub fn scripted_reply(request: &crate::RecordedRequest) -> Reply {
    let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
    if request.uri.path().ends_with("/invoke") {
        return scripted_embedding(&body);
    }
    let stream = request.uri.path().ends_with("/converse-stream");
    let last = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .map(|m| m["content"].to_string())
        .unwrap_or_default();
    if last.contains("throttle") {
        return error(
            429,
            "ThrottlingException",
            "Too many requests, please wait before trying again.",
        );
    }
    if last.contains("too long") {
        return error(
            400,
            "ValidationException",
            "Input is too long for requested model.",
        );
    }
    let tool = body["toolConfig"]["tools"][0]["toolSpec"]["name"].as_str();
    match (tool, stream) {
        (Some(name), false) => Reply::json(
            200,
            tool_use_converse("tooluse_scripted", name, json!({"city": "Paris"})),
        ),
        (Some(name), true) => stream_reply(tool_stream(
            "tooluse_scripted",
            name,
            &["{\"city\":", " \"Paris\"}"],
        )),
        (None, false) => Reply::json(200, converse(SCRIPTED_TEXT)),
        (None, true) => stream_reply(text_stream(&["The capital ", "of France ", "is Paris."])),
    }
}

/// The answer of InvokeModel on an Amazon Titan text embeddings model
/// ("Amazon Titan Embeddings Text",
/// <https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-titan-embed-text.html>).
pub fn titan_embedding(values: &[f64], input_tokens: u64) -> Value {
    json!({"embedding": values, "inputTextTokenCount": input_tokens})
}

/// The answer of InvokeModel on a Cohere embed model ("Cohere Embed",
/// <https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-embed.html>):
/// the vectors in the body, the input tokens in InvokeModel's
/// `X-Amzn-Bedrock-Input-Token-Count` header.
pub fn cohere_embeddings(vectors: &[&[f64]], input_tokens: u64) -> Reply {
    let body = json!({
        "embeddings": vectors,
        "id": "a1b2c3d4-0000-4000-8000-embed0000001",
        "response_type": "embeddings_floats",
        "texts": [],
    });
    Reply::json(200, body).header("x-amzn-bedrock-input-token-count", input_tokens.to_string())
}

/// The reply to an InvokeModel embeddings request: Titan's `inputText`
/// → `[length, 0.5]` with a token a character; Cohere's `texts` → a
/// vector `[length, 0.25]` each, a token a character in all.
fn scripted_embedding(body: &Value) -> Reply {
    if let Some(text) = body["inputText"].as_str() {
        let length = text.chars().count();
        return Reply::json(200, titan_embedding(&[length as f64, 0.5], length as u64));
    }
    let texts: Vec<&str> = body["texts"]
        .as_array()
        .map(|texts| texts.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let vectors: Vec<Vec<f64>> = texts
        .iter()
        .map(|t| vec![t.chars().count() as f64, 0.25])
        .collect();
    let views: Vec<&[f64]> = vectors.iter().map(Vec::as_slice).collect();
    let tokens = texts.iter().map(|t| t.chars().count() as u64).sum();
    cohere_embeddings(&views, tokens)
}

/// The text [`scripted_reply`] answers.
pub const SCRIPTED_TEXT: &str = "The capital of France is Paris.";

/// The `usage` of every answer built here.
pub fn usage() -> Value {
    json!({
        "inputTokens": INPUT_TOKENS,
        "outputTokens": OUTPUT_TOKENS,
        "totalTokens": INPUT_TOKENS + OUTPUT_TOKENS + CACHE_READ_TOKENS + CACHE_WRITE_TOKENS,
        "cacheReadInputTokens": CACHE_READ_TOKENS,
        "cacheWriteInputTokens": CACHE_WRITE_TOKENS,
    })
}

fn answer(content: Value, stop_reason: &str) -> Value {
    json!({
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop_reason,
        "usage": usage(),
        "metrics": {"latencyMs": 412},
    })
}

/// A Converse answer of `text`, `stopReason: "end_turn"`.
pub fn converse(text: &str) -> Value {
    answer(json!([{ "text": text }]), "end_turn")
}

/// A Converse answer that calls tool `name` with `input` after a line of
/// text: `stopReason: "tool_use"`.
pub fn tool_use_converse(id: &str, name: &str, input: Value) -> Value {
    answer(
        json!([
            {"text": "Let me check."},
            {"toolUse": {"toolUseId": id, "name": name, "input": input}},
        ]),
        "tool_use",
    )
}

/// A Converse answer a guardrail blocked: its blocked-input message in
/// place of the model's, `stopReason: "guardrail_intervened"`.
pub fn guardrail_converse(message: &str) -> Value {
    answer(json!([{ "text": message }]), "guardrail_intervened")
}

/// An error reply as Bedrock sends one: `status`, the type in
/// `x-amzn-errortype`, `{"message"}` as the body.
pub fn error(status: u16, kind: &str, message: &str) -> Reply {
    Reply::json(status, json!({ "message": message })).header(
        "x-amzn-errortype",
        format!("{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"),
    )
}

/// A streamed reply of the event-stream `messages`, one chunk each.
pub fn stream_reply(messages: impl IntoIterator<Item = Bytes>) -> Reply {
    messages.into_iter().fold(
        Reply::sse().header("content-type", EVENT_STREAM),
        Reply::raw,
    )
}

/// One event-stream message with string `headers` and `payload`, its
/// prelude and message CRCs computed.
pub fn message(headers: &[(&str, &str)], payload: &[u8]) -> Bytes {
    let mut encoded = BytesMut::new();
    for (name, value) in headers {
        encoded.put_u8(u8::try_from(name.len()).expect("testkit: header name too long"));
        encoded.put_slice(name.as_bytes());
        // Value type 7: a string with a 2-byte length.
        encoded.put_u8(7);
        encoded.put_u16(u16::try_from(value.len()).expect("testkit: header value too long"));
        encoded.put_slice(value.as_bytes());
    }
    let total = 12 + encoded.len() + payload.len() + 4;
    let mut out = BytesMut::with_capacity(total);
    out.put_u32(u32::try_from(total).expect("testkit: message too long"));
    out.put_u32(u32::try_from(encoded.len()).expect("testkit: headers too long"));
    let prelude_crc = crc32(&out);
    out.put_u32(prelude_crc);
    out.put_slice(&encoded);
    out.put_slice(payload);
    let message_crc = crc32(&out);
    out.put_u32(message_crc);
    out.freeze()
}

/// An `event` message of type `event_type` with a JSON payload (and the
/// `p` padding field Bedrock adds to every event).
pub fn event(event_type: &str, payload: &Value) -> Bytes {
    let mut payload = payload.clone();
    payload["p"] = json!("abcdefghijklmnopqrstuvwxyzABCDEF");
    message(
        &[
            (":event-type", event_type),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload.to_string().as_bytes(),
    )
}

/// An `exception` message, as sent mid-stream (`throttlingException`,
/// `modelStreamErrorException`...).
pub fn exception(kind: &str, text: &str) -> Bytes {
    message(
        &[
            (":exception-type", kind),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        json!({ "message": text }).to_string().as_bytes(),
    )
}

/// `messageStart`.
pub fn start() -> Bytes {
    event("messageStart", &json!({"role": "assistant"}))
}

/// A text block at `index` made of `parts`: its deltas and its stop.
pub fn text_block(index: u32, parts: &[&str]) -> Vec<Bytes> {
    let mut out: Vec<Bytes> = parts
        .iter()
        .map(|part| {
            event(
                "contentBlockDelta",
                &json!({"contentBlockIndex": index, "delta": {"text": part}}),
            )
        })
        .collect();
    out.push(event(
        "contentBlockStop",
        &json!({ "contentBlockIndex": index }),
    ));
    out
}

/// A `toolUse` block at `index` whose input JSON arrives in `parts`.
pub fn tool_use_block(index: u32, id: &str, name: &str, parts: &[&str]) -> Vec<Bytes> {
    let mut out = vec![event(
        "contentBlockStart",
        &json!({"contentBlockIndex": index,
                "start": {"toolUse": {"toolUseId": id, "name": name}}}),
    )];
    out.extend(parts.iter().map(|part| {
        event(
            "contentBlockDelta",
            &json!({"contentBlockIndex": index, "delta": {"toolUse": {"input": part}}}),
        )
    }));
    out.push(event(
        "contentBlockStop",
        &json!({ "contentBlockIndex": index }),
    ));
    out
}

/// `messageStop` with `stop_reason`, then `metadata` with the usage.
pub fn stop(stop_reason: &str) -> Vec<Bytes> {
    vec![
        event("messageStop", &json!({ "stopReason": stop_reason })),
        event(
            "metadata",
            &json!({"usage": usage(), "metrics": {"latencyMs": 380}}),
        ),
    ]
}

/// A whole streamed text answer: start, one text block of `parts`, stop.
pub fn text_stream(parts: &[&str]) -> Vec<Bytes> {
    let mut out = vec![start()];
    out.extend(text_block(0, parts));
    out.extend(stop("end_turn"));
    out
}

/// A whole streamed tool call: start, a line of text, the tool block, stop
/// with `tool_use`.
pub fn tool_stream(id: &str, name: &str, parts: &[&str]) -> Vec<Bytes> {
    let mut out = vec![start()];
    out.extend(text_block(0, &["Let me check."]));
    out.extend(tool_use_block(1, id, name, parts));
    out.extend(stop("tool_use"));
    out
}

/// The messages concatenated: the bytes of a whole stream.
pub fn concat(messages: &[Bytes]) -> Bytes {
    messages.iter().flat_map(|m| m.iter().copied()).collect()
}

/// CRC-32 (IEEE), bit by bit: the fake's own, independent of the one
/// under test.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

#[cfg(test)]
mod tests;
