//! The upstream client's deadlines, against a real loopback upstream.
//!
//! Paused tokio time drives the deadlines; while the runtime waits on the
//! socket, time auto-advances to the next timer, so each test ends on the
//! deadline it is about, whatever the socket does first.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use tollgate_core::{ErrorClass, Failure, RequestBody, TimeoutKind};
use tollgate_gateway::deadlines::Timeouts;
use tollgate_gateway::upstream::{ClientConfig, Endpoint, UpstreamClient};
use tollgate_testkit::{Reply, Upstream, openai};
use tower::ServiceExt;

fn request(upstream: &Upstream, timeouts: Timeouts) -> Request<RequestBody> {
    let endpoint = Endpoint::new(&format!("{}/v1", upstream.url()))
        .unwrap()
        .with_bearer("sk-test")
        .unwrap()
        .with_header(
            http::HeaderName::from_static("x-extra"),
            http::HeaderValue::from_static("yes"),
        );
    let mut request = Request::post("/chat/completions")
        .body(RequestBody::new(Bytes::from_static(b"{}")))
        .unwrap();
    request.extensions_mut().insert(Arc::new(endpoint));
    request.extensions_mut().insert(timeouts);
    request
}

fn failure_of(error: &tollgate_core::BoxError) -> Failure {
    error
        .downcast_ref::<Failure>()
        .unwrap_or_else(|| panic!("not a Failure: {error}"))
        .clone()
}

#[tokio::test]
async fn sends_to_the_joined_path_with_credentials_and_extra_headers() {
    let upstream = Upstream::start().await;
    upstream.push(Reply::json(200, openai::chat_completion("hi")));
    let response = UpstreamClient::default()
        .oneshot(request(&upstream, Timeouts::default()))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(!body.is_empty());
    let seen = &upstream.requests()[0];
    assert_eq!(seen.uri.path(), "/v1/chat/completions");
    assert_eq!(seen.headers["authorization"], "Bearer sk-test");
    assert_eq!(seen.headers["x-extra"], "yes");
    assert_eq!(&seen.body[..], b"{}");
}

#[tokio::test(start_paused = true)]
async fn headers_that_never_come_time_out_at_the_first_byte() {
    let upstream = Upstream::start().await;
    upstream.push(
        Reply::json(200, openai::chat_completion("late")).delay_headers(Duration::from_secs(3600)),
    );
    let timeouts = Timeouts {
        first_byte: Some(Duration::from_secs(2)),
        stream_idle: None,
        first_token: None,
        total: Some(Duration::from_secs(60)),
    };
    let error = UpstreamClient::default()
        .oneshot(request(&upstream, timeouts))
        .await
        .unwrap_err();
    let failure = failure_of(&error);
    assert_eq!(failure.class(), ErrorClass::Timeout);
    assert_eq!(failure.timeout_kind(), Some(TimeoutKind::FirstByte));
}

#[tokio::test(start_paused = true)]
async fn a_stream_past_its_total_deadline_fails_with_total() {
    let upstream = Upstream::start().await;
    let chunks = openai::chunks(&["a"]);
    upstream.push(
        Reply::sse()
            .data(&chunks[0])
            .delay(Duration::from_secs(3600))
            .data(&chunks[1])
            .done(),
    );
    let timeouts = Timeouts {
        first_byte: Some(Duration::from_secs(5)),
        stream_idle: Some(Duration::from_secs(30)),
        first_token: None,
        total: Some(Duration::from_secs(10)),
    };
    let response = UpstreamClient::default()
        .oneshot(request(&upstream, timeouts))
        .await
        .unwrap();
    let mut body = std::pin::pin!(response.into_body());
    let error = loop {
        match body.as_mut().frame().await {
            Some(Ok(_)) => continue,
            Some(Err(error)) => break error,
            None => panic!("the stream ended instead of timing out"),
        }
    };
    assert_eq!(failure_of(&error).timeout_kind(), Some(TimeoutKind::Total));
}

#[tokio::test]
async fn a_request_without_an_endpoint_is_an_internal_error() {
    let request = Request::post("/chat/completions")
        .body(RequestBody::default())
        .unwrap();
    let Err(error) = UpstreamClient::default().oneshot(request).await else {
        panic!("a request without an endpoint was sent");
    };
    assert_eq!(failure_of(&error).class(), ErrorClass::Internal);
}

#[tokio::test(start_paused = true)]
async fn a_stream_of_keep_alives_times_out_at_its_first_token() {
    // In memory: with no socket on the way, paused time is exact.
    let upstream = Arc::new(Upstream::start().await);
    upstream.push(
        Reply::sse()
            .raw(": OPENROUTER PROCESSING\n\n")
            .delay(Duration::from_secs(4))
            .raw(": OPENROUTER PROCESSING\n\n")
            .delay(Duration::from_secs(3600))
            .done(),
    );
    let timeouts = Timeouts {
        first_byte: Some(Duration::from_secs(15)),
        stream_idle: Some(Duration::from_secs(30)),
        first_token: Some(Duration::from_secs(15)),
        total: Some(Duration::from_secs(600)),
    };
    let dial = Arc::clone(&upstream);
    let client = UpstreamClient::in_memory(ClientConfig::default(), move |_| {
        Ok(dial.connect_in_memory())
    });
    let start = tokio::time::Instant::now();
    let response = client.oneshot(request(&upstream, timeouts)).await.unwrap();
    let mut body = std::pin::pin!(response.into_body());
    let error = loop {
        match body.as_mut().frame().await {
            Some(Ok(_)) => continue,
            Some(Err(error)) => break error,
            None => panic!("the stream ended instead of timing out"),
        }
    };
    assert_eq!(
        failure_of(&error).timeout_kind(),
        Some(TimeoutKind::FirstByte)
    );
    assert_eq!(start.elapsed(), Duration::from_secs(15));
}
