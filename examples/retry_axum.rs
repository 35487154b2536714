//! Run with: cargo run --example retry_axum
//!
//! The retry layer alone in an axum app: the handler calls a flaky upstream
//! (an in-process `service_fn`) through `RetryLayer`, and turns what the layer
//! hands back into an HTTP response — the upstream's answer, or an
//! OpenAI-shaped error with the retries made. The example starts the app on
//! 127.0.0.1:0, sends it one request per scenario, prints what happened and
//! exits.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tollgate_core::extensions::Attempt;
use tollgate_core::{BoxError, ErrorClass, Failure, RequestBody};
use tollgate_retry::{ATTEMPTED_RETRIES, GaveUp, RetryConfig, RetryLayer};
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt, service_fn};

/// The upstream behind the retry layer, as the handler sees it.
type Upstream = BoxCloneSyncService<Request<RequestBody>, http::Response<Bytes>, BoxError>;

/// A flaky provider. The scenario comes in a header; the retry layer tells
/// it which attempt each request is (the `Attempt` extension).
async fn flaky(request: Request<RequestBody>) -> Result<http::Response<Bytes>, Failure> {
    let attempt = request.extensions().get::<Attempt>().map_or(0, |a| a.0);
    let scenario = request
        .headers()
        .get("x-scenario")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let answer = |status: u16, retry_after_ms: Option<&'static str>| {
        let mut response = http::Response::new(Bytes::from_static(
            br#"{"choices":[{"message":{"role":"assistant","content":"Hello!"}}]}"#,
        ));
        *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
        if let Some(ms) = retry_after_ms {
            response
                .headers_mut()
                .insert("retry-after-ms", HeaderValue::from_static(ms));
        }
        response
    };
    match (scenario, attempt) {
        // A 503 answer, then a connection failure, then an answer.
        ("flaky", 0) => Ok(answer(503, None)),
        ("flaky", 1) => Err(Failure::new(
            ErrorClass::UpstreamUnavailable,
            "the connection to the upstream failed",
        )),
        // A rate limit that says when to come back.
        ("rate_limited", 0) => Ok(answer(429, Some("300"))),
        // The request itself is wrong: retrying cannot help.
        ("bad_request", _) => Err(Failure::new(
            ErrorClass::BadRequest,
            "`messages` must not be empty",
        )),
        // Down for good.
        ("down", _) => Err(Failure::timeout(tollgate_core::TimeoutKind::FirstByte)),
        _ => Ok(answer(200, None)),
    }
}

async fn chat(
    State(upstream): State<Upstream>,
    Path(scenario): Path<String>,
    body: Bytes,
) -> Response {
    let mut request = Request::new(RequestBody::new(body));
    if let Ok(value) = HeaderValue::from_str(&scenario) {
        request.headers_mut().insert("x-scenario", value);
    }
    match upstream.oneshot(request).await {
        // A success, or the last error response, with
        // `x-tollgate-attempted-retries` already set.
        Ok(response) => response.map(Body::from).into_response(),
        // An error: the class decides the status and the OpenAI-shaped body.
        Err(error) => {
            let failure = Failure::from_error(&*error);
            let retries = error.downcast_ref::<GaveUp>().map_or(0, GaveUp::retries);
            let mut response = failure.to_response::<Body>();
            response
                .headers_mut()
                .insert(ATTEMPTED_RETRIES, HeaderValue::from(retries));
            response
        }
    }
}

/// A minimal HTTP/1.1 client, so the example needs nothing beyond axum and
/// tokio: one request per connection.
async fn send(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let body = r#"{"model":"demo","messages":[{"role":"user","content":"Hi"}]}"#;
    let mut stream = TcpStream::connect(addr).await?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let config = RetryConfig::builder()
        .num_retries(2)
        .base_backoff(Duration::from_millis(50))
        .max_backoff(Duration::from_millis(400))
        .build()?;
    let upstream = Upstream::new(
        ServiceBuilder::new()
            .layer(RetryLayer::new(config))
            .service(service_fn(flaky)),
    );

    let app = Router::new()
        .route("/chat/{scenario}", post(chat))
        .with_state(upstream);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    for scenario in ["flaky", "rate_limited", "bad_request", "down"] {
        let started = tokio::time::Instant::now();
        let response = send(addr, &format!("/chat/{scenario}")).await?;
        let status = response.lines().next().unwrap_or_default();
        let retries = response
            .lines()
            .find_map(|line| line.strip_prefix("x-tollgate-attempted-retries: "))
            .unwrap_or("?");
        let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
        println!(
            "{scenario:>12}: {status}, {retries} retries, {:>4} ms\n{:>14}{body}",
            started.elapsed().as_millis(),
            ""
        );
    }

    server.abort();
    Ok(())
}
