//! Run with: cargo run -p tonic-breaker-example
//!
//! A circuit breaker on a tonic client channel. It starts a gRPC health
//! server on 127.0.0.1:0, calls it through the breaker, stops the server so
//! that calls fail, and shows the breaker opening and then rejecting calls at
//! once, without touching the network. Then it exits.
//!
//! gRPC reports failures as HTTP 200 with a `grpc-status`, so the breaker gets
//! a small gRPC classifier (the classifier is pluggable; the default one reads
//! OpenAI-style HTTP errors). It reads `grpc-status` from the response
//! headers, where a "trailers-only" error response puts it, and counts
//! every transport error (refused, reset) as `upstream_unavailable`. A
//! `grpc-status` sent in the trailers after a message is not read here:
//! `ClassifyEos` sees a stream's events and its end, not its trailers.

use std::time::Duration;

use tokio::time::Instant;
use tollgate_breaker::{BreakerConfig, Breakers, CircuitBreakerLayer, CircuitOpen};
use tonic::transport::Channel;
use tonic_breaker_example::{GrpcClassifier, HealthServer};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tower::Layer;

#[tokio::main]
async fn main() -> Result<(), tonic_breaker_example::BoxError> {
    // A gRPC health server on a free port.
    let server = HealthServer::start()?;
    let addr = server.addr;
    println!("health server on {addr}");

    // The client channel, behind one breaker for the whole server.
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let config = BreakerConfig::builder()
        .consecutive_failures(3)
        .cooldown(Duration::from_secs(30))
        .build()?;
    // The default key: one breaker for the whole channel.
    let layer = CircuitBreakerLayer::new(config).classifier(GrpcClassifier);
    let breakers = layer.breakers();
    let mut client = HealthClient::new(layer.layer(channel));

    println!("-- server up");
    for service in ["", "no.such.Service"] {
        check(&mut client, service).await;
    }
    // NOT_FOUND is about the request, not the server: it did not count.
    print_state(&breakers);

    println!("-- server stopped");
    server.stop().await?;
    for _ in 0..4 {
        check(&mut client, "").await;
    }
    print_state(&breakers);
    Ok(())
}

async fn check<T>(client: &mut HealthClient<T>, service: &str)
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let started = Instant::now();
    let request = HealthCheckRequest {
        service: service.to_owned(),
    };
    let answer = match client.check(request).await {
        Ok(response) => format!("status {:?}", response.into_inner().status()),
        Err(status) => {
            let rejected = std::error::Error::source(&status)
                .and_then(|source| source.downcast_ref::<CircuitOpen>());
            match rejected {
                Some(open) => format!("rejected by the breaker: {open}"),
                None => format!("failed: {:?} {}", status.code(), status.message()),
            }
        }
    };
    println!(
        "  check({service:?}) in {:.1?}: {answer}",
        started.elapsed()
    );
}

fn print_state(breakers: &Breakers) {
    for s in breakers.snapshots() {
        println!(
            "  breaker {}: {} (window: {} calls, {} failures; {} failures in a row)",
            s.key, s.state, s.window_calls, s.window_failures, s.consecutive_failures
        );
    }
}
