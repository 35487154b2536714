//! Run with: cargo run --example breaker_axum
//!
//! An axum app whose handler calls a flaky upstream through a circuit
//! breaker, and turns the breaker's rejection into an OpenAI-shaped 503 with
//! `Retry-After`. It serves on 127.0.0.1:0, sends itself a few requests, prints
//! what it saw and the breaker's states, and exits.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tollgate_breaker::{BreakerConfig, Breakers, CircuitBreaker, CircuitBreakerLayer, CircuitOpen};
use tollgate_core::Failure;
use tollgate_core::extensions::Target;
use tower::{Layer, Service, ServiceExt};

/// An in-process upstream that is down for its first two calls.
#[derive(Clone, Default)]
struct Flaky {
    calls: Arc<AtomicUsize>,
}

impl Service<Request<Body>> for Flaky {
    type Response = http::Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: Request<Body>) -> Self::Future {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        println!("  upstream: call #{call}");
        let (status, body) = if call <= 2 {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"error":{"message":"overloaded","type":"server_error","code":null}}"#,
            )
        } else {
            (
                StatusCode::OK,
                r#"{"choices":[{"message":{"content":"hi"}}]}"#,
            )
        };
        let mut response = http::Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *response.status_mut() = status;
        ready(Ok(response))
    }
}

#[derive(Clone)]
struct App {
    upstream: CircuitBreaker<Flaky>,
}

async fn chat(State(app): State<App>) -> Response {
    let mut request = Request::new(Body::empty());
    // The default key: the deployment that serves this request.
    request.extensions_mut().insert(Target {
        model_group: Arc::from("demo"),
        deployment_id: Arc::from("flaky-1"),
        upstream_model: Arc::from("demo-model"),
    });
    match app.upstream.oneshot(request).await {
        // The upstream's answer, failures included, goes back as it came.
        Ok(response) => response.map(Body::new),
        Err(error) => {
            if let Some(open) = error.downcast_ref::<CircuitOpen>() {
                // 503, `Retry-After`, and an OpenAI error body.
                return open.failure().to_response();
            }
            Failure::from_error(&*error).to_response()
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = BreakerConfig::builder()
        .consecutive_failures(2)
        .cooldown(Duration::from_millis(500))
        .jitter(0.0)
        .build()?;
    let layer = CircuitBreakerLayer::new(config);
    let breakers = layer.breakers();
    // Known deployments show in snapshots before their first call.
    breakers.register("flaky-1");
    let mut changes = breakers.subscribe();
    tokio::spawn(async move {
        while let Ok(change) = changes.recv().await {
            println!(
                "  breaker {}: {} -> {} ({})",
                change.key, change.from, change.to, change.reason
            );
        }
    });

    let app = Router::new().route("/chat", get(chat)).with_state(App {
        upstream: layer.layer(Flaky::default()),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    println!("serving on http://{addr}");

    for step in 1..=4 {
        if step == 4 {
            println!("-- waiting out the cooldown");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        println!("-- request {step}");
        let answer = http_get(addr, "/chat").await?;
        println!("{answer}");
        tokio::task::yield_now().await;
        print_states(&breakers);
    }
    Ok(())
}

fn print_states(breakers: &Breakers) {
    for snapshot in breakers.snapshots() {
        println!(
            "  state of {}: {} ({})",
            snapshot.key,
            snapshot.state,
            serde_json::to_string(&snapshot).unwrap_or_default()
        );
    }
}

/// A bare HTTP/1.1 GET; returns the status line, the `retry-after` header
/// when there is one, and the body.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let mut answer = format!("  {}", lines.next().unwrap_or_default());
    for line in lines {
        if line.to_ascii_lowercase().starts_with("retry-after") {
            answer.push_str(&format!("\n  {line}"));
        }
    }
    answer.push_str(&format!("\n  {body}"));
    Ok(answer)
}
