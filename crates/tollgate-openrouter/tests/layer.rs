//! The layer's contract with the services around it, beyond the fixtures:
//! readiness, the request side, inner errors, bounds, and how streams end.

mod common;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{Chunks, layer, ready, response};
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::BodyExt;
use tollgate_core::classify::{ClassifyResponse, StreamEnd, Verdict, WatchBody};
use tollgate_core::sse::{EventReader, SharedEvents};
use tollgate_core::{BoxError, ErrorClass, Failure, Redactor, TimeoutKind};
use tollgate_openrouter::{
    OpenRouterClassifier, OpenRouterConfig, OpenRouterLayer, ResponseBody, StreamFailure,
    UpstreamError,
};
use tower::{Layer, ServiceExt, service_fn};
use tower_test::mock;

const SSE: (header::HeaderName, HeaderValue) = (
    header::CONTENT_TYPE,
    HeaderValue::from_static("text/event-stream"),
);
const JSON: (header::HeaderName, HeaderValue) = (
    header::CONTENT_TYPE,
    HeaderValue::from_static("application/json"),
);

const CHUNK: &[u8] = b"data: {\"id\":\"gen-1\",\"provider\":\"P\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":null}]}\n\n";

/// Serves one scripted response through the layer.
fn serve_with(
    layer: OpenRouterLayer,
    response: Response<Chunks>,
) -> Result<Response<ResponseBody<Chunks>>, BoxError> {
    let response = Mutex::new(Some(response));
    let upstream = service_fn(move |_: Request<()>| {
        let response = response.lock().unwrap().take().unwrap();
        async move { Ok::<_, Infallible>(response) }
    });
    ready(
        layer
            .layer(upstream)
            .oneshot(Request::post("/chat/completions").body(()).unwrap()),
    )
}

fn serve(response: Response<Chunks>) -> Result<Response<ResponseBody<Chunks>>, BoxError> {
    serve_with(layer(), response)
}

fn stream(chunks: Chunks) -> Response<Chunks> {
    response(StatusCode::OK, &[SSE], chunks)
}

fn chunks(parts: &[&'static [u8]]) -> Chunks {
    Chunks::new(parts.iter().map(|p| Bytes::from_static(p)))
}

fn failure(result: Result<Response<ResponseBody<Chunks>>, BoxError>) -> Failure {
    Failure::from_error(&*result.expect_err("a failure"))
}

/// How a response ends, watched with the classifier as layers above do.
fn watch(response: Response<ResponseBody<Chunks>>) -> (Vec<Result<Bytes, String>>, StreamEnd) {
    let Verdict::Watch(eos) = OpenRouterClassifier::new().classify_response(&response) else {
        panic!("a stream is watched");
    };
    let ends = Arc::new(Mutex::new(None));
    let sink = ends.clone();
    let mut body = Box::pin(WatchBody::stream(response.into_body(), eos, move |end| {
        *sink.lock().unwrap() = Some(end);
    }));
    let mut frames = Vec::new();
    while let Some(frame) = ready(std::future::poll_fn(|cx| body.as_mut().poll_frame(cx))) {
        frames.push(
            frame
                .map(|f| f.into_data().unwrap())
                .map_err(|e| e.to_string()),
        );
    }
    let end = ends.lock().unwrap().take().expect("settled");
    (frames, end)
}

#[tokio::test]
async fn readiness_is_the_inner_services_and_requests_are_prepared() {
    let layer = OpenRouterLayer::new(
        OpenRouterConfig::new()
            .api_base("http://127.0.0.1:9/api/v1")
            .api_key("sk-or-v1-secret")
            .http_referer("https://gateway.example")
            .x_title("Gateway")
            .build()
            .unwrap(),
    );
    let (mut service, mut handle) =
        mock::spawn_layer::<Request<&'static str>, Response<Chunks>, _>(layer);

    handle.allow(0);
    assert!(service.poll_ready().is_pending());
    handle.allow(1);
    assert!(matches!(
        service.poll_ready(),
        std::task::Poll::Ready(Ok(()))
    ));

    let request = Request::post("/chat/completions?x=1")
        .body("{\"model\":\"deepseek/deepseek-chat:free\"}")
        .unwrap();
    let future = service.call(request);
    let (request, send) = handle.next_request().await.unwrap();
    assert_eq!(
        request.uri(),
        "http://127.0.0.1:9/api/v1/chat/completions?x=1"
    );
    let auth = &request.headers()[header::AUTHORIZATION];
    assert_eq!(auth, "Bearer sk-or-v1-secret");
    assert!(auth.is_sensitive());
    assert_eq!(request.headers()["http-referer"], "https://gateway.example");
    assert_eq!(request.headers()["x-title"], "Gateway");
    // The body is the caller's, untouched.
    assert_eq!(
        *request.body(),
        "{\"model\":\"deepseek/deepseek-chat:free\"}"
    );

    send.send_response(response(
        StatusCode::OK,
        &[JSON],
        chunks(&[b"{\"id\":\"x\",\"provider\":\"P\",\"choices\":[]}"]),
    ));
    let response = future.await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "{\"id\":\"x\",\"choices\":[]}");
}

#[tokio::test]
async fn inner_errors_keep_their_classification_or_gain_one() {
    let refused = service_fn(|_: Request<()>| async {
        Err::<Response<Chunks>, _>(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
    });
    let error = layer()
        .layer(refused)
        .oneshot(Request::new(()))
        .await
        .unwrap_err();
    let wrapped = error
        .downcast_ref::<UpstreamError>()
        .expect("an UpstreamError");
    assert_eq!(wrapped.failure().class(), ErrorClass::UpstreamUnavailable);
    assert!(wrapped.cause().is::<std::io::Error>());
    assert_eq!(
        Failure::from_error(&*error).class(),
        ErrorClass::UpstreamUnavailable
    );

    let timed_out = service_fn(|_: Request<()>| async {
        Err::<Response<Chunks>, _>(Failure::timeout(TimeoutKind::FirstByte))
    });
    let error = layer()
        .layer(timed_out)
        .oneshot(Request::new(()))
        .await
        .unwrap_err();
    // Passed on untouched.
    assert_eq!(
        error.downcast_ref::<Failure>(),
        Some(&Failure::timeout(TimeoutKind::FirstByte))
    );
}

#[test]
fn complete_bodies_are_bounded() {
    let layer = OpenRouterLayer::new(OpenRouterConfig::new().max_body_bytes(16).build().unwrap());
    let body = chunks(&[b"{\"id\":\"0123456789\",", b"\"choices\":[]}"]);
    let failure = failure(serve_with(layer, response(StatusCode::OK, &[JSON], body)));
    assert_eq!(failure.class(), ErrorClass::UpstreamUnavailable);
    assert_eq!(failure.subkind(), Some("response_too_large"));
    assert!(OpenRouterConfig::new().max_body_bytes(0).build().is_err());
}

#[test]
fn reshaped_bodies_carry_their_new_length_and_others_pass_untouched() {
    let json: &[u8] = b"{\"id\":\"x\",\"provider\":\"P\"}";
    let mut upstream = response(StatusCode::OK, &[JSON], chunks(&[&json[..10], &json[10..]]));
    upstream
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(json.len()));
    let response = serve(upstream).unwrap();
    assert_eq!(response.headers()[header::CONTENT_LENGTH], "10");
    assert_eq!(response.body().size_hint().exact(), Some(10));
    assert_eq!(
        ready(response.into_body().collect()).unwrap().to_bytes(),
        "{\"id\":\"x\"}"
    );

    let text = Bytes::from_static(b"not json");
    let response = serve(response_of(text.clone())).unwrap();
    let body = ready(response.into_body().collect()).unwrap().to_bytes();
    assert_eq!(body.as_ptr(), text.as_ptr(), "one frame, not copied");
}

fn response_of(bytes: Bytes) -> Response<Chunks> {
    response(StatusCode::OK, &[], Chunks::new([bytes]))
}

#[test]
fn an_error_status_whose_body_breaks_is_classified_from_its_head() {
    let mut body = chunks(&[b"{\"error\":"]);
    body.0.push_back(Err("connection reset"));
    let upstream = response(
        StatusCode::SERVICE_UNAVAILABLE,
        &[JSON, (header::RETRY_AFTER, HeaderValue::from_static("12"))],
        body,
    );
    let failure = failure(serve(upstream));
    assert_eq!(failure.class(), ErrorClass::UpstreamUnavailable);
    assert_eq!(failure.subkind(), Some("no_provider"));
    assert_eq!(failure.retry_after(), Some(Duration::from_secs(12)));
}

#[test]
fn a_stream_that_ends_or_breaks_before_its_first_data_event_fails() {
    let failure = failure(serve(stream(chunks(&[
        b": OPENROUTER PROCESSING\n\n",
        b"data: {\"id\"",
    ]))));
    assert_eq!(failure.class(), ErrorClass::UpstreamUnavailable);
    assert_eq!(failure.subkind(), Some("stream_cut"));

    let mut body = chunks(&[b": OPENROUTER PROCESSING\n\n"]);
    body.0.push_back(Err("connection reset"));
    let error = serve(stream(body)).unwrap_err();
    assert!(error.downcast_ref::<UpstreamError>().is_some(), "{error}");
}

#[test]
fn a_transport_error_after_content_is_passed_on() {
    let mut body = chunks(&[CHUNK]);
    body.0.push_back(Err("connection reset"));
    let (frames, end) = watch(serve(stream(body)).unwrap());
    assert_eq!(frames.len(), 2);
    assert!(frames[0].is_ok());
    assert_eq!(frames[1], Err("connection reset".to_owned()));
    assert!(matches!(end, StreamEnd::Failed(_)));
}

#[test]
fn a_stream_cut_without_done_ends_cleanly_and_watchers_see_the_cut() {
    // The half event at the end is never forwarded.
    let response = serve(stream(chunks(&[CHUNK, b"data: {\"id\":\"gen-1\",\"cho"]))).unwrap();
    let slot = response
        .extensions()
        .get::<StreamFailure>()
        .cloned()
        .unwrap();
    let (frames, end) = watch(response);
    assert_eq!(frames.len(), 1);
    assert!(!frames[0].as_ref().unwrap().ends_with(b"cho"));
    match end {
        StreamEnd::Failed(failure) => assert_eq!(failure.subkind(), Some("stream_cut")),
        other => panic!("{other:?}"),
    }
    assert!(
        slot.get().is_none(),
        "not a failure the layer ended the stream with"
    );
}

#[test]
fn an_error_event_after_content_ends_the_stream_with_an_openai_error() {
    let error_event: &[u8] =
        b"data: {\"error\":{\"code\":502,\"message\":\"Provider disconnected\",\"metadata\":{\"raw\":\"x\"}}}\n\ndata: {\"ignored\":1}\n\n";
    let response = serve(stream(chunks(&[CHUNK, error_event]))).unwrap();
    let slot = response
        .extensions()
        .get::<StreamFailure>()
        .cloned()
        .unwrap();
    let (frames, end) = watch(response);
    let last = frames.last().unwrap().as_ref().unwrap();
    assert_eq!(
        last,
        &Bytes::from_static(b"data: {\"error\":{\"message\":\"the upstream provider failed\",\"type\":\"upstream_error\",\"param\":null,\"code\":\"upstream_unavailable\"}}\n\n")
    );
    let failure = slot.get().unwrap();
    assert_eq!(failure.class(), ErrorClass::UpstreamUnavailable);
    assert!(!failure.is_retryable() && !failure.is_fallback_eligible());
    assert_eq!(end, StreamEnd::Failed(failure.clone()));
}

#[test]
fn the_error_event_is_redacted_with_the_requests_redactor() {
    let error_event: &[u8] = b"data: {\"error\":{\"code\":400,\"message\":\"Invalid value correcthorsebattery for key=sk-or-v1-0123456789abcdef0123456789\"}}\n\n";
    let upstream = Mutex::new(Some(stream(chunks(&[CHUNK, error_event]))));
    let upstream = service_fn(move |_: Request<()>| {
        let response = upstream.lock().unwrap().take().unwrap();
        async move { Ok::<_, Infallible>(response) }
    });
    let mut request = Request::post("/chat/completions").body(()).unwrap();
    request
        .extensions_mut()
        .insert(Redactor::new(["correcthorsebattery"].into_iter().collect()));
    let response = ready(layer().layer(upstream).oneshot(request)).unwrap();
    let (frames, _) = watch(response);
    let last = frames.last().unwrap().as_ref().unwrap();
    let last = std::str::from_utf8(last).unwrap();
    assert!(
        last.contains(r#""message":"Invalid value [redacted] for key=[redacted]""#),
        "{last}"
    );
}

/// A data event, then one that grows past the splitter's limit.
fn oversized_after_content() -> Chunks {
    let huge = vec![b'x'; tollgate_core::sse::EventSplitter::DEFAULT_MAX_EVENT_LEN + 1];
    Chunks::new([
        Bytes::from_static(CHUNK),
        Bytes::from_static(b"data: "),
        Bytes::from(huge),
    ])
}

#[test]
fn an_oversized_event_after_content_ends_the_stream() {
    let response = serve(stream(oversized_after_content())).unwrap();
    let slot = response
        .extensions()
        .get::<StreamFailure>()
        .cloned()
        .unwrap();
    let (frames, end) = watch(response);
    assert_eq!(frames.len(), 2);
    assert_eq!(slot.get().unwrap().subkind(), Some("event_too_large"));
    assert!(matches!(end, StreamEnd::Failed(_)));
}

#[test]
fn streams_lose_their_content_length() {
    let mut upstream = stream(chunks(&[CHUNK, b"data: [DONE]\n\n"]));
    upstream
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(CHUNK.len() + 14));
    let response = serve(upstream).unwrap();
    assert!(!response.headers().contains_key(header::CONTENT_LENGTH));
    let (_, end) = watch(response);
    assert_eq!(end, StreamEnd::Complete);
}

/// The frames of a stream served through the layer, each checked to be one
/// whole event published in the response's `SharedEvents`: a layer above
/// (cost, breaker, fallback) takes it as it is, without splitting the
/// stream again.
fn published_frames(upstream: Chunks) -> Vec<Bytes> {
    let response = serve(stream(upstream)).unwrap();
    let shared = response
        .extensions()
        .get::<SharedEvents>()
        .cloned()
        .expect("the layer shares its events");
    let mut above = EventReader::new(Some(shared));
    // A reader that trusts nothing and splits every frame: each must hold
    // exactly one event.
    let mut splitter = EventReader::new(None);
    let mut body = Box::pin(response.into_body());
    let mut frames = Vec::new();
    while let Some(frame) = ready(std::future::poll_fn(|cx| body.as_mut().poll_frame(cx))) {
        let frame = frame.unwrap().into_data().unwrap();
        let read = above.push(frame.clone());
        assert!(read.published(), "not the event published: {frame:?}");
        assert_eq!(read.collect::<Vec<_>>(), std::slice::from_ref(&frame));
        let split: Vec<Bytes> = splitter.push(frame.clone()).collect();
        assert_eq!(
            split,
            std::slice::from_ref(&frame),
            "one whole event a frame"
        );
        frames.push(frame);
    }
    assert_eq!(splitter.pending(), 0);
    frames
}

const COMMENT: &[u8] = b": OPENROUTER PROCESSING\n\n";
const CLEAN: &[u8] = b"data: {\"id\":\"gen-1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":null}]}\n\n";
const OPENAI: &[u8] = b"data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"},\"finish_reason\":null}]}\n\n";
const DONE: &[u8] = b"data: [DONE]\n\n";
const ERROR_EVENT: &[u8] =
    b"data: {\"error\":{\"code\":502,\"message\":\"Provider disconnected\"}}\n\n";
const OPENAI_ERROR: &[u8] = b"data: {\"error\":{\"message\":\"the upstream provider failed\",\"type\":\"upstream_error\",\"param\":null,\"code\":\"upstream_unavailable\"}}\n\n";

#[test]
fn a_chunk_of_several_events_goes_out_one_published_event_a_frame() {
    // Comments before the first data event are dropped; the reshaped event
    // in the middle is a copy, the others slices of the chunk.
    let chunk = [COMMENT, CHUNK, OPENAI, COMMENT, CHUNK, OPENAI, DONE].concat();
    let frames = published_frames(Chunks::new([Bytes::from(chunk)]));
    assert_eq!(frames, [CLEAN, OPENAI, COMMENT, CLEAN, OPENAI, DONE]);
}

#[test]
fn however_the_stream_is_cut_each_frame_is_one_published_event() {
    let whole = Bytes::from([COMMENT, OPENAI, CHUNK, COMMENT, CHUNK, DONE].concat());
    let expected = [OPENAI, CLEAN, COMMENT, CLEAN, DONE];
    for cut in 0..=whole.len() {
        let frames = published_frames(Chunks::split(&whole, &[cut]));
        assert_eq!(frames, expected, "cut at {cut}");
    }
    // A byte a chunk.
    let cuts: Vec<usize> = (1..whole.len()).collect();
    assert_eq!(published_frames(Chunks::split(&whole, &cuts)), expected);
}

#[test]
fn an_error_event_ends_the_stream_with_its_own_published_frame() {
    let whole = Bytes::from([CHUNK, OPENAI, ERROR_EVENT, CHUNK, DONE].concat());
    for cut in 0..=whole.len() {
        let frames = published_frames(Chunks::split(&whole, &[cut]));
        assert_eq!(frames, [CLEAN, OPENAI, OPENAI_ERROR], "cut at {cut}");
    }
    // An event over the limit ends it the same way.
    let frames = published_frames(oversized_after_content());
    assert_eq!(frames.len(), 2);
    assert!(frames[1].starts_with(b"data: {\"error\":"));
}

#[test]
fn a_crlf_cut_at_its_cr_is_one_published_event_a_frame() {
    // The CR ends an event at the end of a chunk; the LF after it starts
    // the next frame — unless the event was rewritten with its own `\n\n`,
    // when the LF is dropped.
    let reshaped: &[u8] = b"data: {\"id\":\"g\",\"provider\":\"P\"}\r\n\r";
    let unchanged: &[u8] = b"data: {\"id\":\"c\"}\r\n\r";
    let frames = published_frames(chunks(&[
        reshaped,
        b"\n",
        unchanged,
        b"\ndata: [DONE]\r\n\r\n",
    ]));
    assert_eq!(
        frames,
        [
            &b"data: {\"id\":\"g\"}\n\n"[..],
            unchanged,
            b"\ndata: [DONE]\r\n\r\n",
        ]
    );
}
