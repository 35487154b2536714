//! The gRPC classifier of the tonic example (`src/main.rs`), and what its
//! test (`tests/channel.rs`) shares with it.
//!
//! gRPC reports failures as HTTP 200 with a `grpc-status`, so a breaker on a
//! tonic channel needs a classifier that reads it: [`GrpcClassifier`].
//!
//! ```
//! use tollgate_breaker::CircuitBreakerLayer;
//! use tonic_breaker_example::GrpcClassifier;
//!
//! // One breaker for the whole channel (the layer's default key).
//! let layer = CircuitBreakerLayer::default().classifier(GrpcClassifier);
//! # let _ = layer;
//! ```

use std::net::SocketAddr;

use http::{HeaderMap, StatusCode};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tollgate_core::classify::{ClassifyEos, ClassifyResponse, Verdict};
use tollgate_core::sse::Event;
use tollgate_core::{ErrorClass, Failure};
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

/// The error of the example's setup.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A gRPC health server on a free loopback port, serving until stopped.
#[derive(Debug)]
pub struct HealthServer {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl HealthServer {
    /// Starts one on `127.0.0.1:0`.
    pub fn start() -> Result<HealthServer, BoxError> {
        let incoming = TcpIncoming::bind("127.0.0.1:0".parse()?)?;
        let addr = incoming.local_addr()?;
        let (_reporter, health) = tonic_health::server::health_reporter();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(
            Server::builder()
                .add_service(health)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                }),
        );
        Ok(HealthServer { addr, stop, task })
    }

    /// Stops it, and waits until it has: calls fail from then on.
    pub async fn stop(self) -> Result<(), BoxError> {
        let _ = self.stop.send(());
        self.task.await??;
        Ok(())
    }
}

/// Judges gRPC answers for the breaker.
#[derive(Debug, Clone, Copy)]
pub struct GrpcClassifier;

impl ClassifyResponse for GrpcClassifier {
    type Eos = NoEvents;

    fn classify_response<B>(&self, response: &http::Response<B>) -> Verdict<NoEvents> {
        let grpc_status = response
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i32>().ok());
        match grpc_status {
            None | Some(0) if response.status().is_success() => Verdict::Success,
            Some(code) => Verdict::Failure(grpc_failure(code)),
            None => Verdict::Failure(
                Failure::new(ErrorClass::UpstreamUnavailable, "the gRPC server failed")
                    .with_upstream_status(response.status()),
            ),
        }
    }

    fn classify_error_body(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        _body: &[u8],
    ) -> Failure {
        let code = headers
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(14);
        grpc_failure(code).with_upstream_status(status)
    }

    fn classify_error(&self, _error: &(dyn std::error::Error + 'static)) -> Failure {
        // The channel could not get an answer at all: the server is
        // unreachable, whatever the error's type.
        Failure::new(ErrorClass::UpstreamUnavailable, "the gRPC channel failed")
    }
}

/// The gRPC status codes, in the error classes the breaker counts by.
fn grpc_failure(code: i32) -> Failure {
    let class = match code {
        4 => ErrorClass::Timeout,                            // DEADLINE_EXCEEDED
        8 => ErrorClass::RateLimited,                        // RESOURCE_EXHAUSTED
        7 | 16 => ErrorClass::Auth,                          // PERMISSION_DENIED, UNAUTHENTICATED
        5 | 12 => ErrorClass::ModelNotFound,                 // NOT_FOUND, UNIMPLEMENTED
        2 | 13 | 14 | 15 => ErrorClass::UpstreamUnavailable, // UNKNOWN, INTERNAL, UNAVAILABLE, DATA_LOSS
        _ => ErrorClass::BadRequest,
    };
    Failure::new(class, format!("gRPC status {code}"))
}

/// Unary gRPC answers are not event streams: nothing to watch.
#[derive(Debug)]
pub struct NoEvents;

impl ClassifyEos for NoEvents {
    fn classify_event(&mut self, _event: &Event) -> Option<Failure> {
        None
    }

    fn classify_eos(self) -> Result<(), Failure> {
        Ok(())
    }
}
