//! End to end: the breaker alone on a hyper client, against a scripted
//! upstream on loopback. Real sockets, so real time: nothing here waits for
//! a timer.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tollgate_breaker::{BreakerConfig, CircuitBreakerLayer, CircuitOpen, HostKey, Reason, State};
use tollgate_core::{BoxError, Valid};
use tollgate_testkit::{Reply, Upstream, openai};
use tower::{Layer, Service, ServiceExt};

fn config(consecutive_failures: u32) -> Valid<BreakerConfig> {
    BreakerConfig::builder()
        .consecutive_failures(consecutive_failures)
        .cooldown(Duration::from_secs(60))
        .max_cooldown(Duration::from_secs(60))
        .build()
        .unwrap()
}

fn request(upstream: &Upstream) -> Request<Full<Bytes>> {
    Request::post(format!("{}/v1/chat/completions", upstream.url()))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap()
}

async fn send<S, B>(service: &mut S, upstream: &Upstream) -> Result<(StatusCode, Bytes), BoxError>
where
    S: Service<Request<Full<Bytes>>, Response = http::Response<B>, Error = BoxError>,
    B: http_body::Body<Data = Bytes, Error = BoxError>,
{
    let response = service.ready().await?.call(request(upstream)).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

#[tokio::test]
async fn failures_open_it_and_the_upstream_sees_nothing_more() {
    let upstream = Upstream::start().await;
    upstream.set_default(Reply::json(
        503,
        openai::error_body("overloaded", "server_error", None),
    ));
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let layer = CircuitBreakerLayer::new(config(3)).key(HostKey);
    let breakers = layer.breakers();
    let mut service = layer.layer(client);

    for _ in 0..3 {
        let (status, _) = send(&mut service, &upstream).await.unwrap();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }
    for _ in 0..5 {
        let error = send(&mut service, &upstream).await.unwrap_err();
        let open = error.downcast_ref::<CircuitOpen>().expect("CircuitOpen");
        assert_eq!(open.key(), upstream.addr().to_string());
        assert!(open.retry_after().unwrap() <= Duration::from_secs(60));
    }
    assert_eq!(upstream.requests().len(), 3);
    let snapshot = breakers.snapshot(&upstream.addr().to_string()).unwrap();
    assert_eq!(snapshot.state, State::Open);
    assert_eq!(snapshot.window_failures, 3);
}

#[tokio::test]
async fn complete_answers_count_as_successes() {
    let upstream = Upstream::start().await;
    upstream.set_default(Reply::json(200, openai::chat_completion("hi")));
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let layer = CircuitBreakerLayer::new(config(1)).key(HostKey);
    let breakers = layer.breakers();
    let mut service = layer.layer(client);
    for _ in 0..4 {
        let (status, body) = send(&mut service, &upstream).await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert!(!body.is_empty());
    }
    let snapshot = breakers.snapshot(&upstream.addr().to_string()).unwrap();
    assert_eq!(
        (
            snapshot.state,
            snapshot.window_calls,
            snapshot.window_failures
        ),
        (State::Closed, 4, 0)
    );
}

#[tokio::test]
async fn a_stream_the_upstream_cuts_is_a_failure() {
    let upstream = Upstream::start().await;
    upstream.push(Reply::sse().data_each(openai::chunks(&["Hel", "lo"])).cut());
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let layer = CircuitBreakerLayer::new(config(1)).key(HostKey);
    let breakers = layer.breakers();
    let service = layer.layer(client);

    let response = service.oneshot(request(&upstream)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // hyper reports the cut as an error of its own, with no I/O error
    // inside: the breaker still counts it.
    assert!(response.into_body().collect().await.is_err());
    let snapshot = breakers.snapshot(&upstream.addr().to_string()).unwrap();
    assert_eq!(snapshot.state, State::Open);
    assert_eq!(snapshot.reason, Some(Reason::ConsecutiveFailures));
}

#[tokio::test]
async fn a_refused_connection_is_a_failure() {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let layer = CircuitBreakerLayer::new(config(1)).key(HostKey);
    let breakers = layer.breakers();
    let service = layer.layer(client);
    let url = format!("{}/v1/chat/completions", Upstream::refused_url());
    let request = Request::post(&url).body(Full::new(Bytes::new())).unwrap();
    let key = request.uri().authority().unwrap().to_string();
    assert!(service.clone().oneshot(request).await.is_err());
    assert_eq!(breakers.snapshot(&key).unwrap().state, State::Open);
    let request = Request::post(&url).body(Full::new(Bytes::new())).unwrap();
    let error = service.oneshot(request).await.unwrap_err();
    assert!(error.is::<CircuitOpen>());
}
