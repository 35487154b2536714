//! The default OpenAI classifier over OpenAI's own response samples.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use tollgate_core::classify::{ClassifyEos, ClassifyResponse, OpenAiClassifier, Verdict};
use tollgate_core::sse::{Frame, SseParser};
use tollgate_core::{ErrorClass, Scope, TimeoutKind};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/openai/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A `.headers` sidecar: a status line, then `Name: value` lines.
fn headers_fixture(name: &str) -> (StatusCode, HeaderMap) {
    let text = String::from_utf8(fixture(name)).unwrap();
    let mut lines = text.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let mut headers = HeaderMap::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let (name, value) = line.split_once(':').unwrap();
        headers.append(
            HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
            HeaderValue::from_str(value.trim()).unwrap(),
        );
    }
    (StatusCode::from_u16(status).unwrap(), headers)
}

fn classify(status: u16, headers: &HeaderMap, body: &[u8]) -> tollgate_core::Failure {
    OpenAiClassifier::new().classify_error_body(
        StatusCode::from_u16(status).unwrap(),
        headers,
        body,
    )
}

#[test]
fn rate_limit_with_retry_after_ms() {
    let (status, headers) = headers_fixture("429_rate_limit.headers");
    let failure = classify(status.as_u16(), &headers, &fixture("429_rate_limit.json"));
    assert_eq!(failure.class(), ErrorClass::RateLimited);
    assert_eq!(failure.retry_after(), Some(Duration::from_millis(120)));
    assert_eq!(failure.scope(), Some(Scope::Model));
    assert!(failure.is_retryable());
    assert_eq!(failure.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[test]
fn insufficient_quota_is_credits_not_a_rate_limit() {
    let failure = classify(
        429,
        &HeaderMap::new(),
        &fixture("429_insufficient_quota.json"),
    );
    assert_eq!(failure.class(), ErrorClass::InsufficientCredits);
    assert!(!failure.is_retryable());
    assert!(!failure.message().contains("platform.openai.com"));
}

#[test]
fn context_length_keeps_the_upstream_message_and_param() {
    let failure = classify(
        400,
        &HeaderMap::new(),
        &fixture("400_context_length_exceeded.json"),
    );
    assert_eq!(failure.class(), ErrorClass::ContextWindowExceeded);
    assert!(
        failure
            .message()
            .starts_with("This model's maximum context length is 128000")
    );
    let body: serde_json::Value = serde_json::from_slice(&failure.to_openai_body()).unwrap();
    assert_eq!(body["error"]["param"], "messages");
    assert_eq!(body["error"]["code"], "context_length_exceeded");
    assert!(failure.is_fallback_eligible());
    assert!(!failure.counts_against_breaker());
}

#[test]
fn statuses_map_to_classes() {
    let cases = [
        (400, ErrorClass::BadRequest),
        (401, ErrorClass::Auth),
        (402, ErrorClass::InsufficientCredits),
        (403, ErrorClass::Auth),
        (404, ErrorClass::ModelNotFound),
        (408, ErrorClass::Timeout),
        (413, ErrorClass::BadRequest),
        (422, ErrorClass::BadRequest),
        (429, ErrorClass::RateLimited),
        (500, ErrorClass::UpstreamUnavailable),
        (502, ErrorClass::UpstreamUnavailable),
        (503, ErrorClass::UpstreamUnavailable),
        (504, ErrorClass::Timeout),
        (524, ErrorClass::Timeout),
        (529, ErrorClass::UpstreamUnavailable),
    ];
    for (status, class) in cases {
        for body in [&b""[..], b"not json", br#"{"error":"a plain string"}"#] {
            let failure = classify(status, &HeaderMap::new(), body);
            assert_eq!(failure.class(), class, "{status} {body:?}");
            assert_eq!(failure.upstream_status(), StatusCode::from_u16(status).ok());
        }
    }
}

#[test]
fn content_policy_by_code_and_upstream_auth_is_the_gateways_problem() {
    let body = br#"{"error":{"message":"Your request was rejected as a result of our safety system.","type":"invalid_request_error","code":"content_policy_violation"}}"#;
    let failure = classify(400, &HeaderMap::new(), body);
    assert_eq!(failure.class(), ErrorClass::ContentPolicy);
    assert!(!failure.is_fallback_eligible());

    let body = br#"{"error":{"message":"Incorrect API key provided: sk-abc...xyz","type":"invalid_request_error","code":"invalid_api_key"}}"#;
    let failure = classify(401, &HeaderMap::new(), body);
    assert_eq!(failure.class(), ErrorClass::Auth);
    assert_eq!(failure.status(), StatusCode::BAD_GATEWAY);
    assert!(!failure.message().contains("sk-abc"));
}

#[test]
fn retry_after_is_read_on_any_class() {
    let mut headers = HeaderMap::new();
    headers.insert("retry-after", HeaderValue::from_static("30"));
    let failure = classify(503, &headers, b"");
    assert_eq!(failure.class(), ErrorClass::UpstreamUnavailable);
    assert_eq!(failure.retry_after(), Some(Duration::from_secs(30)));
}

#[test]
fn verdict_at_the_head() {
    let classifier = OpenAiClassifier::new();
    let json = Response::builder()
        .header("content-type", "application/json")
        .body(())
        .unwrap();
    assert!(matches!(
        classifier.classify_response(&json),
        Verdict::Success
    ));
    let sse = Response::builder()
        .header("content-type", "text/event-stream; charset=utf-8")
        .body(())
        .unwrap();
    assert!(matches!(
        classifier.classify_response(&sse),
        Verdict::Watch(_)
    ));
    let error = Response::builder().status(503).body(()).unwrap();
    match classifier.classify_response(&error) {
        Verdict::Failure(failure) => assert_eq!(failure.class(), ErrorClass::UpstreamUnavailable),
        other => panic!("{other:?}"),
    }
}

fn events(bytes: &[u8]) -> Vec<tollgate_core::sse::Event> {
    let mut parser = SseParser::new();
    parser.push(Bytes::copy_from_slice(bytes));
    let mut out = Vec::new();
    while let Ok(Some(frame)) = parser.next_frame() {
        if let Frame::Event(event) = frame {
            out.push(event);
        }
    }
    out
}

fn watch() -> tollgate_core::classify::OpenAiEos {
    let sse = Response::builder()
        .header("content-type", "text/event-stream")
        .body(())
        .unwrap();
    match OpenAiClassifier::new().classify_response(&sse) {
        Verdict::Watch(eos) => eos,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_complete_stream_is_a_success() {
    let mut eos = watch();
    for event in events(&fixture("stream_include_usage.sse")) {
        assert!(eos.classify_event(&event).is_none());
    }
    assert!(eos.classify_eos().is_ok());
}

#[test]
fn a_stream_without_done_was_cut() {
    let stream = fixture("stream_include_usage.sse");
    let text = String::from_utf8(stream).unwrap();
    let cut = text.replace("data: [DONE]\n\n", "");
    let mut eos = watch();
    for event in events(cut.as_bytes()) {
        assert!(eos.classify_event(&event).is_none());
    }
    let failure = eos.classify_eos().unwrap_err();
    assert_eq!(failure.class(), ErrorClass::UpstreamUnavailable);
}

#[test]
fn an_error_event_is_a_failure_with_its_class() {
    let mut eos = watch();
    let cases: [(&[u8], ErrorClass); 3] = [
        (
            br#"data: {"error":{"message":"The server had an error","type":"server_error"}}"#,
            ErrorClass::UpstreamUnavailable,
        ),
        (
            br#"data: {"error":{"message":"Rate limit exceeded: free-models-per-min.","code":429}}"#,
            ErrorClass::RateLimited,
        ),
        (
            br#"data: {"error":{"message":"This model's maximum context length is 8192 tokens","code":"context_length_exceeded"}}"#,
            ErrorClass::ContextWindowExceeded,
        ),
    ];
    for (data, class) in cases {
        let mut bytes = data.to_vec();
        bytes.extend_from_slice(b"\n\n");
        let event = &events(&bytes)[0];
        assert_eq!(eos.classify_event(event).map(|f| f.class()), Some(class));
    }
    // Content that merely mentions errors is not one.
    let content = br#"data: {"choices":[{"delta":{"content":"the \"error\" was mine"}}]}

"#;
    assert!(eos.classify_event(&events(content)[0]).is_none());
    let finish = br#"data: {"choices":[{"delta":{},"finish_reason":"stop"}],"error":null}

"#;
    assert!(eos.classify_event(&events(finish)[0]).is_none());
}

#[test]
fn timeouts_say_which_deadline() {
    let failure = tollgate_core::Failure::timeout(TimeoutKind::StreamIdle);
    assert_eq!(failure.class(), ErrorClass::Timeout);
    assert_eq!(failure.timeout_kind(), Some(TimeoutKind::StreamIdle));
    assert_eq!(failure.status(), StatusCode::GATEWAY_TIMEOUT);
}

#[test]
fn an_interruption_reported_below_keeps_its_class_and_cause() {
    let mut eos = watch();
    let data = br#"data: {"error":{"message":"the upstream stream was cut (upstream_unavailable)","type":"upstream_error","param":null,"code":"stream_interrupted"}}

"#;
    let failure = eos.classify_event(&events(data)[0]).unwrap();
    assert_eq!(failure.class(), ErrorClass::StreamInterrupted);
    assert_eq!(
        failure.message(),
        "the upstream stream was cut (upstream_unavailable)"
    );
}
