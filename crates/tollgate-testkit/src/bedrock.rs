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

use std::fmt::Write as _;

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, Method, Uri};
use ring::{digest, hmac};
use serde_json::{Value, json};

use crate::{Reply, Upstream};

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
/// anything else → [`SCRIPTED_TEXT`].
pub fn scripted_reply(request: &crate::RecordedRequest) -> Reply {
    let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
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

/// What a signature is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The access key id the `Credential` must name.
    pub access_key_id: &'a str,
    /// The secret the signature must be made with.
    pub secret_access_key: &'a str,
    /// The region the scope must name.
    pub region: &'a str,
    /// The service the scope must name (`bedrock`).
    pub service: &'a str,
}

/// Why a request's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// AWS's error type (`InvalidSignatureException`...).
    pub kind: &'static str,
    /// What was wrong.
    pub reason: String,
}

impl Refusal {
    fn new(kind: &'static str, reason: impl Into<String>) -> Self {
        Refusal {
            kind,
            reason: reason.into(),
        }
    }

    /// AWS's answer: a 403 with the type in `x-amzn-errortype`.
    pub fn reply(&self) -> Reply {
        error(403, self.kind, &self.reason)
    }
}

/// Recomputes the SigV4 signature of a request from what it carries and
/// the expected credentials, as AWS does: `Ok` when it matches.
///
/// # Errors
///
/// The refusal AWS would answer: no or a malformed `Authorization`, an
/// unknown key id, a scope for another region or service, an `x-amz-date`
/// that is missing or not the scope's day, a signed header missing, or a
/// signature that does not match.
pub fn verify_sigv4(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    expected: &Expected<'_>,
) -> Result<(), Refusal> {
    let missing = || {
        Refusal::new(
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        )
    };
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(missing)?;
    let fields = authorization
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or_else(|| {
            Refusal::new(
                "IncompleteSignatureException",
                "not an AWS4-HMAC-SHA256 authorization",
            )
        })?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for field in fields.split(',') {
        match field.trim().split_once('=') {
            Some(("Credential", value)) => credential = Some(value),
            Some(("SignedHeaders", value)) => signed_headers = Some(value),
            Some(("Signature", value)) => signature = Some(value),
            _ => {}
        }
    }
    let incomplete =
        |what: &str| Refusal::new("IncompleteSignatureException", format!("{what} is missing"));
    let credential = credential.ok_or_else(|| incomplete("Credential"))?;
    let signed_headers = signed_headers.ok_or_else(|| incomplete("SignedHeaders"))?;
    let signature = signature.ok_or_else(|| incomplete("Signature"))?;

    let parts: Vec<&str> = credential.split('/').collect();
    let [key_id, day, region, service, terminator] = parts[..] else {
        return Err(incomplete("a well-formed Credential"));
    };
    if key_id != expected.access_key_id {
        return Err(Refusal::new(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ));
    }
    if region != expected.region || service != expected.service || terminator != "aws4_request" {
        return Err(Refusal::new(
            "InvalidSignatureException",
            format!(
                "Credential should be scoped to a valid region and service, not '{region}/{service}'"
            ),
        ));
    }
    let amz_date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| incomplete("x-amz-date"))?;
    if !amz_date.starts_with(day) || amz_date.len() != 16 {
        return Err(Refusal::new(
            "InvalidSignatureException",
            "Date in Credential scope does not match x-amz-date",
        ));
    }
    let names: Vec<&str> = signed_headers.split(';').collect();
    if !names.contains(&"host") || !names.contains(&"x-amz-date") {
        return Err(Refusal::new(
            "InvalidSignatureException",
            "host and x-amz-date must be signed",
        ));
    }
    if headers.contains_key("x-amz-security-token") && !names.contains(&"x-amz-security-token") {
        return Err(Refusal::new(
            "InvalidSignatureException",
            "x-amz-security-token must be signed",
        ));
    }

    // The canonical request, as received.
    let mut canonical = format!("{method}\n");
    for byte in uri.path().bytes() {
        push_encoded(&mut canonical, byte, true);
    }
    canonical.push('\n');
    let mut query: Vec<(String, String)> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (encoded(k), encoded(v))
        })
        .collect();
    query.sort();
    let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    canonical.push_str(&query.join("&"));
    canonical.push('\n');
    for name in &names {
        let values: Vec<&str> = headers
            .get_all(*name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::trim)
            .collect();
        if values.is_empty() {
            return Err(Refusal::new(
                "InvalidSignatureException",
                format!("signed header {name} is missing"),
            ));
        }
        let _ = writeln!(canonical, "{name}:{}", values.join(","));
    }
    let _ = write!(
        canonical,
        "\n{signed_headers}\n{}",
        hex(digest::digest(&digest::SHA256, body).as_ref())
    );

    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{day}/{region}/{service}/aws4_request\n{}",
        hex(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
    );
    let mut key = format!("AWS4{}", expected.secret_access_key).into_bytes();
    for part in [day, region, service, "aws4_request"] {
        key = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &key), part.as_bytes())
            .as_ref()
            .to_vec();
    }
    let computed = hex(hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, &key),
        string_to_sign.as_bytes(),
    )
    .as_ref());
    if computed == signature {
        Ok(())
    } else {
        Err(Refusal::new(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method.",
        ))
    }
}

/// Percent-decodes then encodes a query part.
fn encoded(part: &str) -> String {
    let bytes = part.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let pair = bytes
            .get(at + 1..at + 3)
            .and_then(|p| std::str::from_utf8(p).ok())
            .and_then(|p| u8::from_str_radix(p, 16).ok());
        if let (b'%', Some(byte)) = (bytes[at], pair) {
            decoded.push(byte);
            at += 3;
        } else {
            decoded.push(bytes[at]);
            at += 1;
        }
    }
    let mut out = String::new();
    for byte in decoded {
        push_encoded(&mut out, byte, false);
    }
    out
}

fn push_encoded(out: &mut String, byte: u8, slash: bool) {
    match byte {
        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
            out.push(char::from(byte));
        }
        b'/' if slash => out.push('/'),
        _ => {
            let _ = write!(out, "%{byte:02X}");
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_is_the_ieee_one() {
        // The standard check value of CRC-32/ISO-HDLC.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn a_message_frames_its_lengths_and_crcs() {
        let bytes = message(&[(":event-type", "x")], b"{}");
        let total = u32::from_be_bytes(bytes[0..4].try_into().unwrap()) as usize;
        assert_eq!(total, bytes.len());
        assert_eq!(
            u32::from_be_bytes(bytes[8..12].try_into().unwrap()),
            crc32(&bytes[0..8])
        );
        assert_eq!(
            u32::from_be_bytes(bytes[total - 4..].try_into().unwrap()),
            crc32(&bytes[..total - 4])
        );
    }

    #[test]
    fn aws_get_vanilla_vector_verifies_and_a_change_does_not() {
        // AWS's SigV4 test suite, "get-vanilla".
        let mut headers = HeaderMap::new();
        headers.insert("host", "example.amazonaws.com".parse().unwrap());
        headers.insert("x-amz-date", "20150830T123600Z".parse().unwrap());
        headers.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
                .parse()
                .unwrap(),
        );
        let expected = Expected {
            access_key_id: "AKIDEXAMPLE",
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            region: "us-east-1",
            service: "service",
        };
        let uri: Uri = "/".parse().unwrap();
        assert_eq!(
            verify_sigv4(&Method::GET, &uri, &headers, b"", &expected),
            Ok(())
        );
        // A body the signature did not cover.
        let refusal = verify_sigv4(&Method::GET, &uri, &headers, b"x", &expected).unwrap_err();
        assert_eq!(refusal.kind, "InvalidSignatureException");
        // Another service's scope.
        let bedrock = Expected {
            service: "bedrock",
            ..expected
        };
        assert!(verify_sigv4(&Method::GET, &uri, &headers, b"", &bedrock).is_err());
        // Another key id.
        let other = Expected {
            access_key_id: "AKIDOTHER",
            ..expected
        };
        let refusal = verify_sigv4(&Method::GET, &uri, &headers, b"", &other).unwrap_err();
        assert_eq!(refusal.kind, "UnrecognizedClientException");
        // No signature at all.
        let refusal =
            verify_sigv4(&Method::GET, &uri, &HeaderMap::new(), b"", &expected).unwrap_err();
        assert_eq!(refusal.kind, "MissingAuthenticationTokenException");
        assert_eq!(refusal.reply().to_response().status(), 403);
    }

    #[tokio::test]
    async fn the_upstream_refuses_unsigned_requests_before_the_script() {
        use http_body_util::{BodyExt, Full};
        use hyper_util::{client::legacy::Client, rt::TokioExecutor};

        let upstream = upstream().await;
        upstream.push(Reply::json(200, converse("scripted")));
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let uri: Uri = format!("{}/model/m/converse", upstream.url())
            .parse()
            .unwrap();
        let request = http::Request::post(uri)
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap();
        let response = client.request(request).await.unwrap();
        assert_eq!(response.status(), 403);
        assert_eq!(
            response.headers()["x-amzn-errortype"]
                .to_str()
                .unwrap()
                .split(':')
                .next(),
            Some("MissingAuthenticationTokenException")
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&body).contains("Missing Authentication Token"));
        // Recorded, and the scripted reply still waits for a signed request.
        assert_eq!(upstream.requests().len(), 1);
        upstream.set_recording(false);
        let request = http::Request::post(format!("{}/x", upstream.url()))
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(client.request(request).await.unwrap().status(), 403);
        assert_eq!(upstream.wait_for_requests(2).await.len(), 1);
    }

    #[test]
    fn scripted_replies_follow_what_is_asked() {
        let request = |path: &str, body: Value| crate::RecordedRequest {
            method: Method::POST,
            uri: path.parse().unwrap(),
            version: http::Version::HTTP_11,
            headers: HeaderMap::new(),
            body: Bytes::from(body.to_string()),
            received_at: tokio::time::Instant::now(),
        };
        let ask = |text: &str| json!({"messages": [{"role": "user", "content": [{"text": text}]}]});
        let status = |reply: Reply| reply.to_response().status();
        let converse_path = "/model/m/converse";
        assert_eq!(
            status(scripted_reply(&request(
                converse_path,
                ask("please throttle")
            ))),
            429
        );
        assert_eq!(
            status(scripted_reply(&request(
                converse_path,
                ask("this is too long")
            ))),
            400
        );
        let text = scripted_reply(&request(converse_path, ask("hi"))).to_response();
        assert_eq!(text.headers()["content-type"], "application/json");
        let stream = scripted_reply(&request("/model/m/converse-stream", ask("hi"))).to_response();
        assert_eq!(stream.headers()["content-type"], EVENT_STREAM);
        let mut tools = ask("weather?");
        tools["toolConfig"] = json!({"tools": [{"toolSpec": {"name": "weather"}}]});
        assert_eq!(
            status(scripted_reply(&request(converse_path, tools.clone()))),
            200
        );
        let tool_stream = scripted_reply(&request("/model/m/converse-stream", tools)).to_response();
        assert_eq!(tool_stream.headers()["content-type"], EVENT_STREAM);
    }
}
