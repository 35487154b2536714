//! The layer over scripted services, with paused time: each transition,
//! how outcomes are read (errors, error statuses, streams), and what the
//! registry shows.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tokio::time::{Instant, advance};
use tollgate_breaker::{
    BreakerConfig, Breakers, CircuitBreaker, CircuitBreakerLayer, CircuitOpen, DeploymentKey,
    FixedKey, Reason, State, WholeService, key_fn,
};
use tollgate_core::extensions::Target;
use tollgate_core::{BoxError, ErrorClass, Failure, TimeoutKind, Valid};
use tower::{Layer, Service, ServiceExt, service_fn};

const KEY: &str = "gpt/0";

/// A response body of scripted frames, then an optional transport error.
struct Scripted(VecDeque<Result<Bytes, &'static str>>);

impl Body for Scripted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.get_mut().0.pop_front().map(|item| match item {
            Ok(data) => Ok(Frame::data(data)),
            Err(message) => Err(BoxError::from(message)),
        }))
    }
}

/// What the scripted upstream answers.
#[derive(Clone)]
enum Answer {
    Json(u16),
    RateLimited { retry_after: &'static str },
    ContextWindow,
    Sse(Vec<Result<&'static str, &'static str>>),
    Fail(Failure),
}

fn response(answer: Answer) -> Result<Response<Scripted>, BoxError> {
    let (status, content_type, body) = match answer {
        Answer::Json(status) => (status, "application/json", vec![Ok("{}")]),
        Answer::RateLimited { retry_after } => {
            let mut response = response(Answer::Json(429))?;
            response
                .headers_mut()
                .insert("retry-after", retry_after.parse().unwrap());
            return Ok(response);
        }
        Answer::ContextWindow => (
            400,
            "application/json",
            vec![Ok(
                r#"{"error":{"message":"too long","type":"invalid_request_error","code":"context_length_exceeded"}}"#,
            )],
        ),
        Answer::Sse(items) => (200, "text/event-stream", items),
        Answer::Fail(failure) => return Err(failure.into()),
    };
    let frames = body
        .into_iter()
        .map(|item| item.map(|s| Bytes::from_static(s.as_bytes())))
        .collect();
    Ok(Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Scripted(frames))
        .unwrap())
}

/// An upstream that answers from a queue (then with the default) and
/// counts the calls it sees.
#[derive(Clone)]
struct Upstream {
    answers: Arc<Mutex<VecDeque<Answer>>>,
    default: Arc<Mutex<Answer>>,
    calls: Arc<AtomicUsize>,
}

impl Upstream {
    fn new(default: Answer) -> Self {
        Upstream {
            answers: Arc::default(),
            default: Arc::new(Mutex::new(default)),
            calls: Arc::default(),
        }
    }

    fn push(&self, answer: Answer) {
        self.answers.lock().unwrap().push_back(answer);
    }

    fn set_default(&self, answer: Answer) {
        *self.default.lock().unwrap() = answer;
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn service(&self) -> Upstream {
        self.clone()
    }
}

impl Service<Request<String>> for Upstream {
    type Response = Response<Scripted>;
    type Error = BoxError;
    type Future = std::future::Ready<Result<Response<Scripted>, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: Request<String>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let answer = self
            .answers
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| self.default.lock().unwrap().clone());
        std::future::ready(response(answer))
    }
}

fn config() -> BreakerConfig {
    BreakerConfig::builder()
        .consecutive_failures(3)
        .min_calls(100)
        .cooldown(Duration::from_secs(1))
        .max_cooldown(Duration::from_secs(4))
        .jitter(0.0)
        .build()
        .unwrap()
        .into_inner()
}

fn valid(config: BreakerConfig) -> Valid<BreakerConfig> {
    Valid::new(config).expect("a valid config")
}

fn request() -> Request<String> {
    let mut request = Request::new(String::new());
    request.extensions_mut().insert(Target {
        model_group: Arc::from("gpt"),
        deployment_id: Arc::from(KEY),
        upstream_model: Arc::from("gpt-4o-mini"),
    });
    request
}

/// Sends one request and reads the whole body; `Err` is the service error.
async fn call<S, B>(service: &mut S) -> Result<(StatusCode, Result<Bytes, BoxError>), BoxError>
where
    S: Service<Request<String>, Response = Response<B>, Error = BoxError>,
    B: Body<Data = Bytes, Error = BoxError>,
{
    send(service, request()).await
}

/// [`call`] with a request that carries no extension at all.
async fn call_plain<S, B>(
    service: &mut S,
) -> Result<(StatusCode, Result<Bytes, BoxError>), BoxError>
where
    S: Service<Request<String>, Response = Response<B>, Error = BoxError>,
    B: Body<Data = Bytes, Error = BoxError>,
{
    send(service, Request::new(String::new())).await
}

async fn send<S, B>(
    service: &mut S,
    request: Request<String>,
) -> Result<(StatusCode, Result<Bytes, BoxError>), BoxError>
where
    S: Service<Request<String>, Response = Response<B>, Error = BoxError>,
    B: Body<Data = Bytes, Error = BoxError>,
{
    let response = service.ready().await?.call(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await.map(|b| b.to_bytes());
    Ok((status, body))
}

fn state(breakers: &Breakers) -> State {
    breakers.snapshot(KEY).unwrap().state
}

fn open_error(result: Result<(StatusCode, Result<Bytes, BoxError>), BoxError>) -> CircuitOpen {
    match result {
        Err(error) => error
            .downcast_ref::<CircuitOpen>()
            .cloned()
            .unwrap_or_else(|| panic!("not CircuitOpen: {error}")),
        Ok((status, _)) => panic!("expected a rejection, got {status}"),
    }
}

#[tokio::test(start_paused = true)]
async fn error_statuses_open_it_and_then_nothing_reaches_the_upstream() {
    let upstream = Upstream::new(Answer::Json(503));
    let layer = CircuitBreakerLayer::new(valid(config())).key(DeploymentKey);
    let breakers = layer.breakers();
    let mut service = layer.layer(upstream.service());

    for _ in 0..3 {
        // The caller still gets each upstream answer.
        let (status, _) = call(&mut service).await.unwrap();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(state(&breakers), State::Open);
    assert_eq!(
        breakers.snapshot(KEY).unwrap().reason,
        Some(Reason::ConsecutiveFailures)
    );

    for _ in 0..10 {
        let open = open_error(call(&mut service).await);
        assert_eq!(open.key(), KEY);
        assert_eq!(open.retry_after(), Some(Duration::from_secs(1)));
    }
    assert_eq!(upstream.calls(), 3, "the upstream saw nothing while open");
}

#[tokio::test(start_paused = true)]
async fn by_default_one_breaker_guards_the_whole_service() {
    // Around a plain service, with no `Target` extension on its requests:
    // the default key must still guard it (it once guarded nothing).
    let upstream = Upstream::new(Answer::Json(503));
    let layer = CircuitBreakerLayer::new(valid(config()));
    let breakers = layer.breakers();
    let mut service = layer.layer(upstream.service());
    for _ in 0..3 {
        let (status, _) = call_plain(&mut service).await.unwrap();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(
        breakers.snapshot(WholeService::KEY).unwrap().state,
        State::Open
    );
    let open = open_error(call_plain(&mut service).await);
    assert_eq!(open.key(), WholeService::KEY);
    assert_eq!(upstream.calls(), 3, "the open breaker kept the call away");
}

#[tokio::test(start_paused = true)]
async fn the_rejection_is_a_503_upstream_unavailable_failure() {
    let upstream = Upstream::new(Answer::Json(500));
    let mut service = CircuitBreakerLayer::new(valid(config()))
        .key(DeploymentKey)
        .layer(upstream.service());
    for _ in 0..3 {
        let _ = call(&mut service).await.unwrap();
    }
    advance(Duration::from_millis(250)).await;
    let error = call(&mut service).await.unwrap_err();
    let failure = Failure::from_error(&*error);
    assert_eq!(failure.class(), ErrorClass::UpstreamUnavailable);
    assert_eq!(failure.subkind(), Some("circuit_open"));
    assert_eq!(failure.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(failure.retry_after(), Some(Duration::from_millis(750)));
    let response: Response<Bytes> = failure.to_response();
    assert_eq!(response.headers()["retry-after"], "1");
    let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(body["error"]["type"], "upstream_error");
}

#[tokio::test(start_paused = true)]
async fn errors_count_through_their_failure() {
    let upstream = Upstream::new(Answer::Fail(Failure::timeout(TimeoutKind::FirstByte)));
    let layer = CircuitBreakerLayer::new(valid(config())).key(DeploymentKey);
    let breakers = layer.breakers();
    let mut service = layer.layer(upstream.service());
    for _ in 0..3 {
        let error = call(&mut service).await.unwrap_err();
        // The inner error goes through untouched.
        assert_eq!(Failure::from_error(&*error).class(), ErrorClass::Timeout);
    }
    assert_eq!(state(&breakers), State::Open);
}

#[tokio::test(start_paused = true)]
async fn request_faults_never_count() {
    let upstream = Upstream::new(Answer::Json(400));
    let layer = CircuitBreakerLayer::new(valid(config())).key(DeploymentKey);
    let breakers = layer.breakers();
    let mut service = layer.layer(upstream.service());
    for i in 0..20 {
        if i % 2 == 0 {
            upstream.push(Answer::ContextWindow);
        }
        let (status, _) = call(&mut service).await.unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
    let snapshot = breakers.snapshot(KEY).unwrap();
    assert_eq!(snapshot.state, State::Closed);
    assert_eq!(snapshot.consecutive_failures, 0);
    assert_eq!(upstream.calls(), 20);
}

#[tokio::test(start_paused = true)]
async fn counted_classes_are_configurable() {
    let upstream = Upstream::new(Answer::Json(400));
    let mut config = config();
    config.counted_classes = Some(vec![ErrorClass::BadRequest]);
    let layer = CircuitBreakerLayer::new(valid(config)).key(DeploymentKey);
    let breakers = layer.breakers();
    let mut service = layer.layer(upstream.service());
    for _ in 0..3 {
        let _ = call(&mut service).await.unwrap();
    }
    assert_eq!(state(&breakers), State::Open);
}

#[tokio::test(start_paused = true)]
async fn a_probe_after_the_cooldown_closes_it_and_every_change_is_published() {
    let upstream = Upstream::new(Answer::Json(502));
    let layer = CircuitBreakerLayer::new(valid(config())).key(DeploymentKey);
    let breakers = layer.breakers();
    let mut events = breakers.subscribe();
    let mut service = layer.layer(upstream.service());
    for _ in 0..3 {
        let _ = call(&mut service).await.unwrap();
    }
    let opened_at = Instant::now();

    advance(Duration::from_millis(999)).await;
    open_error(call(&mut service).await);
    advance(Duration::from_millis(1)).await;
    upstream.set_default(Answer::Json(200));
    let (status, body) = call(&mut service).await.unwrap();
    assert_eq!((status, body.unwrap()), (StatusCode::OK, Bytes::from("{}")));
    assert_eq!(state(&breakers), State::Closed);
    assert_eq!(upstream.calls(), 4);

    let mut changes = Vec::new();
    while let Ok(change) = events.try_recv() {
        changes.push((change.from, change.to, change.reason));
    }
    assert_eq!(
        changes,
        [
            (State::Closed, State::Open, Reason::ConsecutiveFailures),
            (State::Open, State::HalfOpen, Reason::CooldownElapsed),
            (State::HalfOpen, State::Closed, Reason::ProbeSucceeded),
        ]
    );
    let snapshot = breakers.snapshot(KEY).unwrap();
    assert_eq!(snapshot.since, opened_at + Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_reopens_for_twice_as_long_up_to_the_cap() {
    let upstream = Upstream::new(Answer::Json(503));
    let layer = CircuitBreakerLayer::new(valid(config())).key(DeploymentKey);
    let breakers = layer.breakers();
    let mut service = layer.layer(upstream.service());
    for _ in 0..3 {
        let _ = call(&mut service).await.unwrap();
    }
    let mut waits = Vec::new();
    for _ in 0..4 {
        let open = open_error(call(&mut service).await);
        let wait = open.retry_after().unwrap();
        waits.push(wait.as_secs());
        advance(wait).await;
        // The probe goes through, and fails.
        let (status, _) = call(&mut service).await.unwrap();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(state(&breakers), State::Open);
    }
    assert_eq!(waits, [1, 2, 4, 4]);
    assert_eq!(breakers.snapshot(KEY).unwrap().reopenings, 4);
}

#[tokio::test(start_paused = true)]
async fn a_rate_limit_with_retry_after_opens_for_that_long() {
    let upstream = Upstream::new(Answer::Json(200));
    let layer = CircuitBreakerLayer::new(valid(config())).key(DeploymentKey);
    let breakers = layer.breakers();
    let mut service = layer.layer(upstream.service());
    let _ = call(&mut service).await.unwrap();
    upstream.push(Answer::RateLimited { retry_after: "7" });
    let (status, _) = call(&mut service).await.unwrap();
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        breakers.snapshot(KEY).unwrap().reason,
        Some(Reason::RateLimited)
    );
    assert_eq!(
        open_error(call(&mut service).await).retry_after(),
        Some(Duration::from_secs(7))
    );
    advance(Duration::from_secs(6)).await;
    assert_eq!(
        open_error(call(&mut service).await).retry_after(),
        Some(Duration::from_secs(1))
    );
    advance(Duration::from_secs(1)).await;
    let _ = call(&mut service).await.unwrap();
    assert_eq!(state(&breakers), State::Closed);
    assert_eq!(upstream.calls(), 3);
}

const CHUNK: &str = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n";
const DONE: &str = "data: [DONE]\n\n";

/// A layer opened by three failures, whose cooldown is over: the next call
/// is a probe.
async fn half_open(upstream: &Upstream) -> (Breakers, CircuitBreaker<Upstream, DeploymentKey>) {
    let layer = CircuitBreakerLayer::new(valid(config())).key(DeploymentKey);
    let breakers = layer.breakers();
    let mut service = layer.layer(upstream.service());
    for _ in 0..3 {
        upstream.push(Answer::Json(503));
        let _ = call(&mut service).await.unwrap();
    }
    advance(Duration::from_secs(1)).await;
    (breakers, service)
}

#[tokio::test(start_paused = true)]
async fn a_stream_is_a_success_only_once_it_completes() {
    let upstream = Upstream::new(Answer::Sse(vec![Ok(CHUNK), Ok(DONE)]));
    let (breakers, mut service) = half_open(&upstream).await;
    let response = service
        .ready()
        .await
        .unwrap()
        .call(request())
        .await
        .unwrap();
    assert_eq!(state(&breakers), State::HalfOpen, "not settled at the head");
    let mut body = response.into_body();
    body.frame().await.unwrap().unwrap();
    assert_eq!(state(&breakers), State::HalfOpen);
    body.frame().await.unwrap().unwrap();
    assert_eq!(
        state(&breakers),
        State::HalfOpen,
        "[DONE] seen, end not yet"
    );
    assert!(body.frame().await.is_none());
    assert_eq!(state(&breakers), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_breaks_is_a_failure() {
    for broken in [
        // Cut by the transport.
        vec![Ok(CHUNK), Err("connection reset")],
        // An error event inside a 200 stream.
        vec![
            Ok(CHUNK),
            Ok("data: {\"error\":{\"message\":\"overloaded\",\"code\":502}}\n\n"),
            Ok(DONE),
        ],
        // Ended without `[DONE]`.
        vec![Ok(CHUNK)],
    ] {
        let upstream = Upstream::new(Answer::Sse(broken));
        let (breakers, mut service) = half_open(&upstream).await;
        let (status, _) = call(&mut service).await.unwrap();
        assert_eq!(status, StatusCode::OK);
        let snapshot = breakers.snapshot(KEY).unwrap();
        assert_eq!(snapshot.state, State::Open);
        assert_eq!(snapshot.reason, Some(Reason::ProbeFailed));
    }
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_probe_is_neither_and_frees_its_slot() {
    let upstream = Upstream::new(Answer::Sse(vec![Ok(CHUNK), Ok(DONE)]));
    let (breakers, mut service) = half_open(&upstream).await;

    // The client goes away mid-stream.
    let response = service
        .ready()
        .await
        .unwrap()
        .call(request())
        .await
        .unwrap();
    let mut body = response.into_body();
    body.frame().await.unwrap().unwrap();
    assert_eq!(breakers.snapshot(KEY).unwrap().probes_in_flight, 1);
    open_error(call(&mut service).await);
    drop(body);
    let snapshot = breakers.snapshot(KEY).unwrap();
    assert_eq!(
        (snapshot.state, snapshot.probes_in_flight),
        (State::HalfOpen, 0)
    );

    // The client goes away before the headers.
    let future = service.ready().await.unwrap().call(request());
    drop(future);
    assert_eq!(breakers.snapshot(KEY).unwrap().probes_in_flight, 0);

    // The next call probes, and closes it.
    let _ = call(&mut service).await.unwrap();
    assert_eq!(state(&breakers), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_body_that_says_it_ended_is_settled_without_a_last_poll() {
    // Servers stop polling a body once `is_end_stream` is true; the success
    // must not be lost as a cancellation.
    let probe = |body: &'static str| {
        let layer = CircuitBreakerLayer::new(valid(config())).key(FixedKey::new(KEY));
        let breakers = layer.breakers();
        breakers.force_open(KEY, Duration::ZERO);
        let service = layer.layer(service_fn(move |_: Request<()>| async move {
            Ok::<_, Infallible>(Response::new(http_body_util::Full::new(Bytes::from(body))))
        }));
        (breakers, service)
    };

    let (breakers, service) = probe("");
    let response = service.oneshot(Request::new(())).await.unwrap();
    assert_eq!(
        state(&breakers),
        State::Closed,
        "empty: settled at the head"
    );
    drop(response);

    let (breakers, service) = probe("{}");
    let mut body = service.oneshot(Request::new(())).await.unwrap().into_body();
    body.frame().await.unwrap().unwrap();
    assert!(body.is_end_stream());
    drop(body);
    assert_eq!(state(&breakers), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn requests_without_a_key_pass_unguarded() {
    let upstream = Upstream::new(Answer::Json(503));
    let layer = CircuitBreakerLayer::new(valid(config())).key(DeploymentKey);
    let breakers = layer.breakers();
    let service = layer.layer(upstream.service());
    for _ in 0..10 {
        let response = service
            .clone()
            .oneshot(Request::new(String::new()))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    assert!(breakers.snapshots().is_empty());
    assert_eq!(upstream.calls(), 10);
}

#[tokio::test(start_paused = true)]
async fn keys_beyond_the_limit_pass_unguarded() {
    let upstream = Upstream::new(Answer::Json(503));
    let mut config = config();
    config.max_keys = 1;
    config.consecutive_failures = 1;
    let layer = CircuitBreakerLayer::new(valid(config))
        .key(key_fn(|req: &Request<String>| Some(req.body().clone())));
    let breakers = layer.breakers();
    let service = layer.layer(upstream.service());
    for key in ["a", "b", "b", "a"] {
        let _ = service.clone().oneshot(Request::new(key.into())).await;
    }
    let keys: Vec<_> = breakers.snapshots().into_iter().map(|s| s.key).collect();
    assert_eq!(keys, [Arc::from("a")]);
    assert_eq!(upstream.calls(), 3, "b is unguarded; a was rejected");
}

#[tokio::test(start_paused = true)]
async fn poll_ready_is_the_inner_services() {
    let layer = CircuitBreakerLayer::new(valid(config())).key(DeploymentKey);
    let (mut service, mut handle) =
        tower_test::mock::spawn_layer::<Request<String>, Response<String>, _>(layer.clone());
    handle.allow(0);
    assert!(service.poll_ready().is_pending());
    handle.allow(1);
    assert!(matches!(service.poll_ready(), Poll::Ready(Ok(()))));

    // An open breaker still reports ready, and rejects in `call`.
    layer.breakers().force_open(KEY, Duration::from_secs(5));
    let error = service.call(request()).await.unwrap_err();
    assert!(error.is::<CircuitOpen>());
    assert!(handle.poll_request().is_pending(), "nothing was sent");
}

#[tokio::test(start_paused = true)]
async fn registered_keys_show_before_their_first_call() {
    let layer = CircuitBreakerLayer::new(valid(config())).key(DeploymentKey);
    let breakers = layer.breakers();
    breakers.register("b/0");
    breakers.register("a/0");
    let mut strict = config();
    strict.consecutive_failures = 1;
    breakers.register_with(KEY, valid(strict));
    let mut invalid = config();
    invalid.jitter = 2.0;
    assert!(Valid::new(invalid).is_err(), "never registered");

    let snapshots = breakers.snapshots();
    let keys: Vec<&str> = snapshots.iter().map(|s| &*s.key).collect();
    assert_eq!(keys, ["a/0", "b/0", KEY]);
    assert!(snapshots.iter().all(|s| s.state == State::Closed));

    // The per-key settings apply: one failure opens `KEY`.
    let upstream = Upstream::new(Answer::Json(503));
    let mut service = layer.layer(upstream.service());
    let _ = call(&mut service).await.unwrap();
    advance(Duration::from_millis(400)).await;
    let json = serde_json::to_value(breakers.snapshot(KEY).unwrap()).unwrap();
    assert_eq!(json["key"], KEY);
    assert_eq!(json["state"], "open");
    assert_eq!(json["reason"], "consecutive_failures");
    assert_eq!(json["window_failures"], 1);
    assert_eq!(json["next_probe_in_secs"], 0.6);
    assert_eq!(json["since_secs"], 0.4);

    // A breaker whose cooldown is over shows as HALF_OPEN without a call.
    advance(Duration::from_millis(600)).await;
    assert_eq!(state(&breakers), State::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn force_open_and_reset_act_at_once() {
    let upstream = Upstream::new(Answer::Json(200));
    let layer = CircuitBreakerLayer::new(valid(config())).key(DeploymentKey);
    let breakers = layer.breakers();
    let mut service = layer.layer(upstream.service());
    assert!(breakers.force_open(KEY, Duration::from_secs(60)));
    assert_eq!(
        open_error(call(&mut service).await).retry_after(),
        Some(Duration::from_secs(60))
    );
    assert!(breakers.reset(KEY));
    assert!(!breakers.reset("unknown"));
    let _ = call(&mut service).await.unwrap();
    assert_eq!(upstream.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn remove_forgets_a_breaker_and_a_later_call_starts_fresh() {
    let upstream = Upstream::new(Answer::Json(200));
    let layer = CircuitBreakerLayer::new(valid(config())).key(DeploymentKey);
    let breakers = layer.breakers();
    let mut service = layer.layer(upstream.service());
    assert!(breakers.force_open(KEY, Duration::from_secs(60)));
    assert!(breakers.remove(KEY));
    assert!(breakers.snapshot(KEY).is_none());
    assert!(!breakers.remove(KEY));
    let _ = call(&mut service).await.unwrap();
    assert_eq!(upstream.calls(), 1);
    assert_eq!(state(&breakers), State::Closed);
}
