//! The breaker on a tonic channel, against a gRPC health server on
//! loopback: calls pass while the server is up; once it is gone, failures
//! open the breaker (its default key: one for the whole channel) and the
//! next call is rejected without touching the network.

use std::time::Duration;

use tollgate_breaker::{BreakerConfig, CircuitBreakerLayer, CircuitOpen, State, WholeService};
use tonic::transport::Channel;
use tonic_breaker_example::{GrpcClassifier, HealthServer};
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tower::Layer;

/// A guard against a hang, never a wait.
const GUARD: Duration = Duration::from_secs(20);

#[tokio::test]
async fn failures_open_the_channels_breaker_and_it_then_rejects_at_once() {
    let server = HealthServer::start().unwrap();
    let addr = server.addr;
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let config = BreakerConfig::builder()
        .consecutive_failures(2)
        .cooldown(Duration::from_secs(60))
        .build()
        .unwrap();
    let layer = CircuitBreakerLayer::new(config).classifier(GrpcClassifier);
    let breakers = layer.breakers();
    let mut client = HealthClient::new(layer.layer(channel));
    let check = || HealthCheckRequest {
        service: String::new(),
    };

    let answer = tokio::time::timeout(GUARD, client.check(check()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer.into_inner().status(), ServingStatus::Serving.into());
    // NOT_FOUND is about the request, not the server: it does not count.
    let unknown = tokio::time::timeout(
        GUARD,
        client.check(HealthCheckRequest {
            service: "no.such.Service".into(),
        }),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    assert_eq!(
        breakers.snapshot(WholeService::KEY).unwrap().state,
        State::Closed
    );

    server.stop().await.unwrap();
    for _ in 0..2 {
        let failed = tokio::time::timeout(GUARD, client.check(check()))
            .await
            .unwrap()
            .unwrap_err();
        let rejected =
            std::error::Error::source(&failed).is_some_and(|source| source.is::<CircuitOpen>());
        assert!(!rejected, "the calls that open it reach the network");
    }
    assert_eq!(
        breakers.snapshot(WholeService::KEY).unwrap().state,
        State::Open
    );

    let status = tokio::time::timeout(GUARD, client.check(check()))
        .await
        .unwrap()
        .unwrap_err();
    let open = std::error::Error::source(&status)
        .and_then(|source| source.downcast_ref::<CircuitOpen>())
        .unwrap_or_else(|| panic!("rejected by the breaker: {status:?}"));
    assert_eq!(open.key(), WholeService::KEY);
}
