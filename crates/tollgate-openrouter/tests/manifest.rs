//! Every row of the OpenRouter fixtures' `manifest.json`, through the layer:
//! each failure classifies as the manifest says (class, subkind, scope,
//! retryable, fallback-eligible, retry-after), streaming and not, and each
//! normalized success parses with strict mirrors of async-openai's types.
//!
//! The normalized outputs are kept in `tests/normalized/` so that other
//! clients (the OpenAI Python SDK) can be run over them; run with
//! `TOLLGATE_BLESS=1` to rewrite them after an intended change.

mod common;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{
    Chunks, NOW_SECS, fixture, head_from_sidecar, layer, openai, ready, response, sse_data,
};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use proptest::prelude::*;
use serde::Deserialize;
use serde_json::Value;
use tollgate_core::classify::{ClassifyResponse, StreamEnd, Verdict, WatchBody};
use tollgate_core::{BoxError, Failure};
use tollgate_openrouter::{OpenRouterClassifier, ResponseBody, StreamFailure};
use tower::{Layer, ServiceExt, service_fn};

#[derive(Debug, Deserialize)]
struct Manifest {
    chat_completions: Vec<Row>,
    streams: Vec<Row>,
}

#[derive(Debug, Clone, Deserialize)]
struct Row {
    file: String,
    http_status: u16,
    content_type: String,
    headers_file: Option<String>,
    expect: Expect,
}

#[derive(Debug, Clone, Deserialize)]
struct Expect {
    outcome: String,
    class: Option<String>,
    subkind: Option<String>,
    scope: Option<String>,
    retryable_same_model: Option<bool>,
    fallback_eligible: Option<bool>,
    retry_after_s: Option<u64>,
    reset_at_ms: Option<u64>,
}

fn manifest() -> Manifest {
    serde_json::from_slice(&fixture("openrouter", "manifest.json")).unwrap()
}

fn head(row: &Row) -> (StatusCode, Vec<(HeaderName, HeaderValue)>) {
    let (status, mut headers) = match &row.headers_file {
        Some(file) => head_from_sidecar(std::str::from_utf8(&fixture("openrouter", file)).unwrap()),
        None => (StatusCode::from_u16(row.http_status).unwrap(), Vec::new()),
    };
    assert_eq!(status.as_u16(), row.http_status, "{}", row.file);
    if !headers.iter().any(|(name, _)| name == header::CONTENT_TYPE) {
        headers.push((
            header::CONTENT_TYPE,
            HeaderValue::from_str(&row.content_type).unwrap(),
        ));
    }
    (status, headers)
}

/// The raw upstream response of a row, its body cut as given.
fn upstream_response(row: &Row, body: Chunks) -> Response<Chunks> {
    let (status, headers) = head(row);
    response(status, &headers, body)
}

/// Serves a row through the layer, over a `service_fn` upstream.
fn serve(row: &Row, body: Chunks) -> Result<Response<ResponseBody<Chunks>>, BoxError> {
    let upstream_response = upstream_response(row, body);
    let upstream = service_fn(move |request: Request<()>| {
        assert_eq!(
            request.uri(),
            "https://openrouter.ai/api/v1/chat/completions"
        );
        let response = upstream_response.clone_for_test();
        async move { Ok::<_, Infallible>(response) }
    });
    ready(
        layer()
            .layer(upstream)
            .oneshot(Request::post("/chat/completions").body(()).unwrap()),
    )
}

trait CloneForTest {
    fn clone_for_test(&self) -> Self;
}

impl CloneForTest for Response<Chunks> {
    fn clone_for_test(&self) -> Self {
        let mut response = Response::new(self.body().clone());
        *response.status_mut() = self.status();
        *response.headers_mut() = self.headers().clone();
        response
    }
}

fn whole(row: &Row) -> Chunks {
    Chunks::new([fixture("openrouter", &row.file)])
}

fn body_bytes(response: Response<ResponseBody<Chunks>>) -> Bytes {
    ready(response.into_body().collect()).unwrap().to_bytes()
}

/// Asserts a failure against its manifest row.
fn assert_row(failure: &Failure, row: &Row) {
    let expect = &row.expect;
    let file = &row.file;
    assert_eq!(expect.outcome, "error", "{file}");
    assert_eq!(
        Some(failure.class().as_str()),
        expect.class.as_deref(),
        "{file}: class"
    );
    if let Some(subkind) = &expect.subkind {
        assert_eq!(failure.subkind(), Some(subkind.as_str()), "{file}: subkind");
    }
    assert_eq!(
        failure.scope().map(|s| s.as_str()),
        expect.scope.as_deref(),
        "{file}: scope"
    );
    assert_eq!(
        Some(failure.is_retryable()),
        expect.retryable_same_model,
        "{file}: retryable"
    );
    assert_eq!(
        Some(failure.is_fallback_eligible()),
        expect.fallback_eligible,
        "{file}: fallback"
    );
    // `Retry-After` wins; else the wait until the reset; else no hint.
    let wait = expect.retry_after_s.map(Duration::from_secs).or_else(|| {
        expect
            .reset_at_ms
            .map(|ms| Duration::from_millis(ms - NOW_SECS * 1000))
    });
    assert_eq!(failure.retry_after(), wait, "{file}: retry_after");
}

/// The client's error body: OpenAI's shape with a string code, and none of
/// the provider's own text.
fn assert_client_safe(failure: &Failure, raw: &Value, file: &str) {
    let body = failure.to_openai_body();
    let parsed: openai::WrappedError = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{file}: {e}: {}", String::from_utf8_lossy(&body)));
    assert!(parsed.error.code.is_some(), "{file}");
    assert!(parsed.error.r#type.is_some(), "{file}");
    let text = String::from_utf8_lossy(&body);
    let error = raw
        .get("error")
        .filter(|e| !e.is_null())
        .or_else(|| raw["choices"][0].get("error"))
        .unwrap_or(&Value::Null);
    let mut leaks: Vec<&str> = Vec::new();
    leaks.extend(raw["user_id"].as_str());
    for key in ["raw", "provider_name", "flagged_input", "provider_code"] {
        leaks.extend(error["metadata"][key].as_str());
    }
    // The upstream's message itself, unless it is about the request.
    if !matches!(
        failure.class().as_str(),
        "context_window_exceeded" | "bad_request" | "model_not_found"
    ) {
        leaks.extend(error["message"].as_str().filter(|m| m.len() > 8));
    }
    for leak in leaks {
        assert!(
            !text.contains(leak),
            "{file}: {leak:?} reached the client: {text}"
        );
    }
}

/// Compares with (or, blessed, writes) the checked-in normalized output.
fn golden(file: &str, bytes: &[u8]) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/normalized")
        .join(file);
    if std::env::var_os("TOLLGATE_BLESS").is_some() || !path.exists() {
        std::fs::write(&path, bytes).unwrap();
        return;
    }
    let expected = std::fs::read(&path).unwrap();
    assert!(
        expected == bytes,
        "{file} differs from tests/normalized (TOLLGATE_BLESS=1 to update):\n{}",
        String::from_utf8_lossy(bytes)
    );
}

/// Keys no normalized object may carry.
fn assert_no_openrouter_fields(json: &Value, file: &str) {
    assert!(json.get("provider").is_none(), "{file}: {json}");
    for choice in json["choices"].as_array().into_iter().flatten() {
        assert!(
            choice.get("native_finish_reason").is_none(),
            "{file}: {choice}"
        );
        assert!(choice.get("error").is_none(), "{file}: {choice}");
        for message in [&choice["message"], &choice["delta"]] {
            for key in ["reasoning", "reasoning_details"] {
                assert!(message.get(key).is_none(), "{file}: {message}");
            }
        }
    }
}

#[test]
fn the_manifest_covers_every_fixture_it_names() {
    let manifest = manifest();
    assert!(manifest.chat_completions.len() >= 18);
    assert_eq!(manifest.streams.len(), 4);
    for row in manifest.chat_completions.iter().chain(&manifest.streams) {
        fixture("openrouter", &row.file);
        head(row);
    }
}

#[test]
fn every_non_streaming_row() {
    for row in manifest().chat_completions {
        let raw: Value = serde_json::from_slice(&fixture("openrouter", &row.file)).unwrap();
        match serve(&row, whole(&row)) {
            Err(error) => {
                let failure = Failure::from_error(&*error);
                assert_row(&failure, &row);
                assert_client_safe(&failure, &raw, &row.file);
                // The upstream's own status, read from the body when it has one.
                assert!(failure.upstream_status().is_some(), "{}", row.file);
            }
            Ok(response) => {
                assert_eq!(row.expect.outcome, "success", "{}", row.file);
                assert_eq!(response.status(), StatusCode::OK);
                let body = body_bytes(response);
                let parsed: openai::CreateChatCompletionResponse =
                    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{}: {e}", row.file));
                let json: Value = serde_json::from_slice(&body).unwrap();
                assert_no_openrouter_fields(&json, &row.file);
                // What the client and the cost layer need survives, exactly.
                assert_eq!(parsed.id, raw["id"].as_str().unwrap());
                assert_eq!(json["usage"], raw["usage"], "{}", row.file);
                // The cost keeps its exact decimal text (never an f64's).
                let raw_bytes = fixture("openrouter", &row.file);
                assert_eq!(cost_text(&body), cost_text(&raw_bytes), "{}", row.file);
                let message = &raw["choices"][0]["message"];
                assert_eq!(
                    parsed.choices[0].message.content.as_deref(),
                    message["content"].as_str()
                );
                assert_eq!(
                    json["choices"][0]["message"]["reasoning_content"].as_str(),
                    message["reasoning"].as_str(),
                    "{}",
                    row.file
                );
                golden(&row.file, &body);
            }
        }
    }
}

/// The text of `usage.cost`, as written.
fn cost_text(json: &[u8]) -> String {
    let text = std::str::from_utf8(json).unwrap();
    let at = text.find("\"cost\"").expect("a cost") + "\"cost\"".len();
    let value = text[at..]
        .trim_start()
        .strip_prefix(':')
        .unwrap()
        .trim_start();
    value[..value.find([',', '}']).unwrap()].trim().to_owned()
}

/// The text and reasoning a stream carries, from its chunk objects.
fn stream_text(chunks: &[Value], reasoning_key: &str) -> (String, String) {
    let mut content = String::new();
    let mut reasoning = String::new();
    for chunk in chunks {
        for choice in chunk["choices"].as_array().into_iter().flatten() {
            content.push_str(choice["delta"]["content"].as_str().unwrap_or(""));
            reasoning.push_str(choice["delta"][reasoning_key].as_str().unwrap_or(""));
        }
    }
    (content, reasoning)
}

fn raw_chunks(file: &str) -> Vec<Value> {
    sse_data(&fixture("openrouter", file))
        .iter()
        .filter(|d| d.as_ref() != b"[DONE]")
        .map(|d| serde_json::from_slice(d).unwrap())
        .collect()
}

/// Watches a response with the classifier's end-of-stream watcher, as the
/// layers above do, and returns how it ended.
fn watch<B>(response: Response<B>) -> StreamEnd
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let classifier = OpenRouterClassifier::new().with_clock(common::now);
    let Verdict::Watch(eos) = classifier.classify_response(&response) else {
        panic!("a 200 event stream is watched");
    };
    let ends = Arc::new(Mutex::new(Vec::new()));
    let sink = ends.clone();
    let body = WatchBody::stream(response.into_body(), eos, move |end| {
        sink.lock().unwrap().push(end)
    });
    let _ = ready(body.collect());
    let mut ends = ends.lock().unwrap();
    assert_eq!(ends.len(), 1, "settled exactly once");
    ends.pop().unwrap()
}

fn failed(end: StreamEnd) -> Failure {
    match end {
        StreamEnd::Failed(failure) => failure,
        other => panic!("expected a failure, got {other:?}"),
    }
}

/// Checks one streaming row served with `body`; returns the normalized bytes
/// of a response, or the failure.
fn check_stream(row: &Row, body: Chunks) -> Result<Bytes, Failure> {
    let response = match serve(row, body) {
        Err(error) => {
            let failure = Failure::from_error(&*error);
            assert_row(&failure, row);
            return Err(failure);
        }
        Ok(response) => response,
    };
    let file = &row.file;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    let slot = response
        .extensions()
        .get::<StreamFailure>()
        .cloned()
        .unwrap();
    let body = body_bytes(response);
    // Nothing before the first data event: OpenRouter's queueing comments
    // would reach the client at the same moment anyway.
    assert!(body.starts_with(b"data: {"), "{file}");
    let data = sse_data(&body);
    let last = data.last().unwrap();
    let chunks: Vec<Value> = data
        .iter()
        .filter(|d| d.as_ref() != b"[DONE]" && !d.starts_with(b"{\"error\""))
        .map(|d| {
            serde_json::from_slice::<openai::CreateChatCompletionStreamResponse>(d)
                .unwrap_or_else(|e| panic!("{file}: {e}: {}", String::from_utf8_lossy(d)));
            let json: Value = serde_json::from_slice(d).unwrap();
            assert_no_openrouter_fields(&json, file);
            json
        })
        .collect();
    // The same text as upstream, reasoning renamed.
    let raw = raw_chunks(file);
    assert_eq!(
        stream_text(&chunks, "content").0,
        stream_text(&raw, "content").0,
        "{file}"
    );
    assert_eq!(
        stream_text(&chunks, "reasoning_content").1,
        stream_text(&raw, "reasoning").1,
        "{file}"
    );
    if row.expect.outcome == "success" {
        assert_eq!(last.as_ref(), b"[DONE]", "{file}");
        assert!(slot.get().is_none());
        // The usage chunk is forwarded, cost and all.
        let usage = raw.iter().find(|c| !c["usage"].is_null()).unwrap();
        assert_eq!(chunks.last().unwrap()["usage"], usage["usage"], "{file}");
    } else {
        // One OpenAI-style error event, with a string code, ends the stream.
        let error: openai::WrappedError = serde_json::from_slice(last).unwrap();
        assert!(error.error.code.is_some());
        let failure = slot
            .get()
            .unwrap_or_else(|| panic!("{file}: no StreamFailure"));
        assert_row(failure, row);
        assert_eq!(error.error.message, failure.message());
        let raw_message = raw.last().unwrap()["error"]["message"].as_str().unwrap();
        assert!(
            !String::from_utf8_lossy(last).contains(raw_message),
            "{file}"
        );
    }
    Ok(body)
}

#[test]
fn every_streaming_row() {
    for row in manifest().streams {
        match check_stream(&row, whole(&row)) {
            Ok(body) => {
                golden(&row.file, &body);
                // Layers above, watching with the same classifier, see the
                // outcome the manifest gives.
                let response = serve(&row, whole(&row)).unwrap();
                let end = watch(response);
                if row.expect.outcome == "success" {
                    assert_eq!(end, StreamEnd::Complete, "{}", row.file);
                } else {
                    assert_row(&failed(end), &row);
                }
            }
            Err(failure) => {
                let raw: Value = serde_json::from_slice(&raw_chunk_with_error(&row.file)).unwrap();
                assert_client_safe(&failure, &raw, &row.file);
                // Nothing was sent: the client gets a proper HTTP error.
                let response: Response<Bytes> = failure.to_response();
                assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
                assert!(response.headers().contains_key(header::RETRY_AFTER));
            }
        }
    }
}

fn raw_chunk_with_error(file: &str) -> Bytes {
    sse_data(&fixture("openrouter", file))
        .into_iter()
        .find(|d| d.starts_with(b"{\"error\"") || d.windows(8).any(|w| w == b"\"error\":"))
        .unwrap()
}

/// The classifier on its own, over the raw OpenRouter streams (a breaker or
/// a retry over a plain OpenRouter client): the same rows.
#[test]
fn every_raw_stream_classifies_without_the_layer() {
    for row in manifest().streams {
        let end = watch(upstream_response(&row, whole(&row)));
        if row.expect.outcome == "success" {
            assert_eq!(end, StreamEnd::Complete, "{}", row.file);
        } else {
            assert_row(&failed(end), &row);
        }
    }
}

/// Every non-streaming error row, classified from the raw response by the
/// classifier on its own.
#[test]
fn every_raw_body_classifies_without_the_layer() {
    let classifier = OpenRouterClassifier::new().with_clock(common::now);
    for row in manifest().chat_completions {
        let (status, headers) = head(&row);
        let mut map = http::HeaderMap::new();
        for (name, value) in headers {
            map.append(name, value);
        }
        let body = fixture("openrouter", &row.file);
        match classifier.classify_body(status, &map, &body) {
            Some(failure) => assert_row(&failure, &row),
            None => assert_eq!(row.expect.outcome, "success", "{}", row.file),
        }
    }
}

/// The mirrors are as strict as intended: OpenAI's own bodies pass, and the
/// raw OpenRouter quirks they exist to catch do not.
#[test]
fn the_strict_mirrors_accept_openai_and_reject_the_quirks() {
    let body = fixture("openai", "success_nonstream.json");
    serde_json::from_slice::<openai::CreateChatCompletionResponse>(&body).unwrap();
    for data in sse_data(&fixture("openai", "stream_include_usage.sse")) {
        if data.as_ref() != b"[DONE]" {
            serde_json::from_slice::<openai::CreateChatCompletionStreamResponse>(&data).unwrap();
        }
    }
    let error = fixture("openai", "429_rate_limit.json");
    serde_json::from_slice::<openai::WrappedError>(&error).unwrap();
    // A numeric code, and `finish_reason: "error"`.
    let raw = fixture("openrouter", "429_free_models_per_day.json");
    assert!(serde_json::from_slice::<openai::WrappedError>(&raw).is_err());
    let raw = raw_chunk_with_error("stream_midstream_error.sse");
    assert!(serde_json::from_slice::<openai::CreateChatCompletionStreamResponse>(&raw).is_err());
}

fn stream_rows() -> Vec<Row> {
    manifest().streams
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// However the network cuts a stream, the client gets the same bytes and
    /// the layers above the same outcome.
    #[test]
    fn streams_cut_anywhere_normalize_the_same(
        which in 0usize..4,
        cuts in proptest::collection::vec(any::<usize>(), 0..24),
    ) {
        let row = &stream_rows()[which];
        let whole_result = check_stream(row, whole(row));
        let cut = Chunks::split(&fixture("openrouter", &row.file), &cuts);
        let cut_result = check_stream(row, cut.clone());
        prop_assert_eq!(whole_result, cut_result);
        if row.expect.outcome == "success" || row.file.contains("midstream") {
            let end = watch(serve(row, cut).unwrap());
            if row.expect.outcome == "success" {
                prop_assert_eq!(end, StreamEnd::Complete);
            } else {
                assert_row(&failed(end), row);
            }
        }
    }
}
