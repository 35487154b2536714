//! Tollgate's layers inside an axum router: a handler forwards chat
//! requests through the stack (on a hyper client) to a testkit upstream,
//! and a client talks to the router over loopback. What the client gets
//! must show each layer acting — and a body the cost layer shortened must
//! arrive whole.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tollgate::core::extensions::ModelGroup;
use tollgate::core::{Failure, RequestBody};
use tollgate_testkit::Upstream;
use tower::ServiceExt;

use common::{Stack, overloaded, push_503_then_answer, push_stream_with_its_length, stack};

const GUARD: Duration = Duration::from_secs(20);

/// Forwards the body to model group `a` through the stack; an error
/// becomes an OpenAI-shaped answer.
async fn forward(State(stack): State<Stack>, body: Bytes) -> Response {
    let mut request = Request::post("http://unrouted.invalid/v1/chat/completions")
        .header(header::CONTENT_TYPE, "application/json")
        .body(RequestBody::new(body))
        .unwrap();
    request.extensions_mut().insert(ModelGroup(Arc::from("a")));
    match stack.oneshot(request).await {
        Ok(response) => response.map(Body::new),
        Err(error) => {
            let response: http::Response<Bytes> = Failure::from_error(&*error).to_response();
            response.map(Body::from)
        }
    }
}

/// Serves the router on loopback; returns its base URL.
async fn serve(stack: Stack) -> String {
    let router = Router::new()
        .route("/v1/chat/completions", post(forward))
        .with_state(stack);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

/// Posts `json` to the router; the status, headers and whole body.
async fn post_chat(base: &str, json: &'static str) -> (http::response::Parts, Bytes) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = Request::post(format!("{base}/v1/chat/completions"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from_static(json.as_bytes())))
        .unwrap();
    let response = tokio::time::timeout(GUARD, client.request(request))
        .await
        .unwrap()
        .unwrap();
    let (parts, body) = response.into_parts();
    let body = tokio::time::timeout(GUARD, body.collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    (parts, body)
}

const JSON: &str = r#"{"model":"m","messages":[{"role":"user","content":"Hi"}]}"#;
const STREAM: &str = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"Hi"}]}"#;

#[tokio::test]
async fn the_router_answers_through_the_retry_with_the_cost() {
    let upstream = Upstream::start().await;
    push_503_then_answer(&upstream, 1, 1);
    let (stack, _handles) = stack(&[("a", upstream.url())], &[], 5, Duration::from_secs(30));
    let base = serve(stack).await;

    let (parts, body) = post_chat(&base, JSON).await;
    assert_eq!(parts.status, 200);
    assert_eq!(parts.headers["x-tollgate-attempted-retries"], "1");
    assert_eq!(parts.headers["x-tollgate-response-cost"], "3");
    assert!(String::from_utf8_lossy(&body).contains("Hello!"));
}

#[tokio::test]
async fn a_stream_whose_usage_chunk_was_taken_out_arrives_whole() {
    let upstream = Upstream::start().await;
    push_stream_with_its_length(&upstream);
    let (stack, _handles) = stack(&[("a", upstream.url())], &[], 5, Duration::from_secs(30));
    let base = serve(stack).await;

    // With the upstream's length kept, the router would announce more bytes
    // than it sends, and the client would see a cut (or empty) reply.
    let (parts, body) = post_chat(&base, STREAM).await;
    assert_eq!(parts.status, 200);
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("Hel"), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert!(!text.contains("\"usage\""), "{text}");
}

#[tokio::test]
async fn an_open_breaker_is_a_503_with_retry_after() {
    let upstream = Upstream::start().await;
    upstream.set_default(overloaded());
    let (stack, handles) = stack(&[("a", upstream.url())], &[], 2, Duration::from_secs(60));
    let base = serve(stack).await;

    let (first, _) = post_chat(&base, JSON).await;
    assert_eq!(first.status, 503);
    let key = upstream.addr().to_string();
    assert!(handles.breakers.snapshot(&key).is_some());
    let (parts, body) = post_chat(&base, JSON).await;
    assert_eq!(parts.status, 503);
    assert!(parts.headers.contains_key(header::RETRY_AFTER));
    let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error["error"]["type"], "upstream_error");
    // Two attempts opened it; nothing reached the upstream after.
    assert_eq!(upstream.requests().len(), 2);
}
