//! The retry layer against scripted upstreams, on paused tokio time: every
//! wait below is measured on the paused clock, so it is exact and instant.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tollgate_core::extensions::{Attempt, AttemptedRetries, Deadline};
use tollgate_core::{BoxError, ErrorClass, Failure, TimeoutKind};
use tollgate_retry::{
    Backoff, GaveUp, NoJitter, RandomJitter, RetryConfig, RetryConfigBuilder, RetryLayer,
    StopReason,
};
use tower::{Layer, Service, ServiceExt, service_fn};

/// What the scripted upstream does on one call.
#[derive(Clone)]
enum Step {
    /// Answers with this status, headers and body.
    Respond(u16, Vec<(&'static str, &'static str)>, &'static str),
    /// Fails with this error.
    Fail(Failure),
}

fn status(code: u16) -> Step {
    Step::Respond(code, vec![], "{}")
}

/// A request the upstream saw, and when.
struct Seen {
    at: Instant,
    request: Request<Bytes>,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// An upstream that plays `script` in order, repeating its last step.
fn scripted(
    script: Vec<Step>,
) -> (
    impl Service<
        Request<Bytes>,
        Response = Response<Bytes>,
        Error = Failure,
        Future = impl Send + 'static,
    > + Clone
    + Send
    + 'static,
    Log,
) {
    let log: Log = Arc::default();
    let service = service_fn({
        let log = log.clone();
        move |request: Request<Bytes>| {
            let mut log = log.lock().unwrap();
            let step = script
                .get(log.len())
                .or(script.last())
                .cloned()
                .expect("a script");
            log.push(Seen {
                at: Instant::now(),
                request,
            });
            let outcome = match step {
                Step::Respond(code, headers, body) => {
                    let mut response = Response::new(Bytes::from_static(body.as_bytes()));
                    *response.status_mut() = StatusCode::from_u16(code).unwrap();
                    for (name, value) in headers {
                        response.headers_mut().insert(name, value.parse().unwrap());
                    }
                    Ok(response)
                }
                Step::Fail(failure) => Err(failure),
            };
            std::future::ready(outcome)
        }
    });
    (service, log)
}

fn calls(log: &Log) -> usize {
    log.lock().unwrap().len()
}

/// The gaps between consecutive calls.
fn gaps(log: &Log) -> Vec<Duration> {
    let log = log.lock().unwrap();
    log.windows(2).map(|w| w[1].at - w[0].at).collect()
}

/// A config with a budget that never runs out, so that only the rule under
/// test decides.
fn config() -> RetryConfigBuilder {
    RetryConfig::builder().budget_min_per_sec(1_000_000)
}

fn layer(
    config: RetryConfigBuilder,
) -> RetryLayer<tollgate_core::classify::OpenAiClassifier, NoJitter> {
    RetryLayer::new(config.build().unwrap()).with_jitter(NoJitter)
}

fn request() -> Request<Bytes> {
    Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Bytes::from_static(br#"{"model":"m","messages":[]}"#))
        .unwrap()
}

fn unavailable() -> Failure {
    Failure::new(ErrorClass::UpstreamUnavailable, "down")
}

fn gave_up(error: &BoxError) -> &GaveUp {
    error
        .downcast_ref::<GaveUp>()
        .unwrap_or_else(|| panic!("not a GaveUp: {error}"))
}

#[tokio::test(start_paused = true)]
async fn every_backoff_stays_within_its_bounds_across_a_real_sequence() {
    let (base, cap, min) = (
        Duration::from_millis(100),
        Duration::from_secs(1),
        Duration::from_millis(30),
    );
    let schedule = Backoff::new(base, 2.0, cap, min);
    let settings = || {
        config()
            .num_retries(8)
            .base_backoff(base)
            .max_backoff(cap)
            .min_backoff(min)
    };

    // Random draws: each wait lies in [min, ceiling]. The timer wakes on
    // whole milliseconds, so a wait may end up to 1 ms after its draw,
    // never before.
    for seed in 0..20 {
        let (upstream, log) = scripted(vec![Step::Fail(unavailable())]);
        let service = layer(settings())
            .with_jitter(RandomJitter::with_seed(seed))
            .layer(upstream);
        let error = service.oneshot(request()).await.unwrap_err();
        assert_eq!(gave_up(&error).retries(), 8);
        let gaps = gaps(&log);
        assert_eq!(gaps.len(), 8);
        for (retry, gap) in gaps.into_iter().enumerate() {
            let ceiling = schedule.ceiling(retry as u32);
            assert!(gap >= min, "retry {retry}: {gap:?} < {min:?}");
            assert!(
                gap <= ceiling + Duration::from_millis(1),
                "retry {retry}: {gap:?} > {ceiling:?}"
            );
        }
    }

    // No jitter: exactly the ceilings, 100 ms doubling up to the cap.
    let (upstream, log) = scripted(vec![Step::Fail(unavailable())]);
    let service = layer(settings()).layer(upstream);
    service.oneshot(request()).await.unwrap_err();
    let expected: Vec<Duration> = [100, 200, 400, 800, 1_000, 1_000, 1_000, 1_000]
        .into_iter()
        .map(Duration::from_millis)
        .collect();
    assert_eq!(gaps(&log), expected);

    // A draw of 0 waits the minimum.
    let (upstream, log) = scripted(vec![Step::Fail(unavailable())]);
    let service = layer(settings()).with_jitter(|| 0.0).layer(upstream);
    service.oneshot(request()).await.unwrap_err();
    assert!(gaps(&log).iter().all(|gap| *gap == min), "{:?}", gaps(&log));
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_of_2s_delays_the_next_attempt_by_at_least_2s() {
    let short_backoff = || {
        config()
            .base_backoff(Duration::from_millis(10))
            .max_backoff(Duration::from_millis(100))
    };
    let cases = [
        // An error response, as a raw HTTP client returns it.
        (
            Step::Respond(429, vec![("retry-after", "2")], "{}"),
            Duration::from_secs(2),
        ),
        // OpenAI's header, in milliseconds.
        (
            Step::Respond(429, vec![("retry-after-ms", "2500")], "{}"),
            Duration::from_millis(2_500),
        ),
        // An error the stack below classified already.
        (
            Step::Fail(
                Failure::new(ErrorClass::RateLimited, "slow down")
                    .with_retry_after(Duration::from_secs(2)),
            ),
            Duration::from_secs(2),
        ),
    ];
    for (first, asked) in cases {
        let (upstream, log) = scripted(vec![first, status(200)]);
        let response = layer(short_backoff())
            .layer(upstream)
            .oneshot(request())
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.extensions().get::<AttemptedRetries>(),
            Some(&AttemptedRetries(1))
        );
        let gaps = gaps(&log);
        assert_eq!(gaps.len(), 1);
        assert!(gaps[0] >= asked, "{:?} < {asked:?}", gaps[0]);
    }
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_past_the_deadline_ends_the_retries_at_once() {
    let with_deadline = || {
        let mut request = request();
        request
            .extensions_mut()
            .insert(Deadline::after(Duration::from_secs(3)));
        request
    };

    // An error response: handed up as it is, without waiting.
    let (upstream, log) = scripted(vec![
        Step::Respond(429, vec![("retry-after", "5")], r#"{"error":{}}"#),
        status(200),
    ]);
    let started = Instant::now();
    let response = layer(config())
        .layer(upstream)
        .oneshot(with_deadline())
        .await
        .unwrap();
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(calls(&log), 1);
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "5");
    assert_eq!(response.into_body(), r#"{"error":{}}"#);

    // An error: a GaveUp whose source is the rate limit.
    let limited =
        Failure::new(ErrorClass::RateLimited, "slow down").with_retry_after(Duration::from_secs(5));
    let (upstream, log) = scripted(vec![Step::Fail(limited.clone()), status(200)]);
    let started = Instant::now();
    let error = layer(config())
        .layer(upstream)
        .oneshot(with_deadline())
        .await
        .unwrap_err();
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(calls(&log), 1);
    assert_eq!(gave_up(&error).reason(), StopReason::Deadline);
    assert_eq!(gave_up(&error).retries(), 0);
    assert_eq!(Failure::from_error(&*error), limited);

    // The backoff alone past the deadline: the same.
    let (upstream, log) = scripted(vec![Step::Fail(unavailable()), status(200)]);
    let error = layer(
        config()
            .base_backoff(Duration::from_secs(4))
            .max_backoff(Duration::from_secs(4)),
    )
    .layer(upstream)
    .oneshot(with_deadline())
    .await
    .unwrap_err();
    assert_eq!(gave_up(&error).reason(), StopReason::Deadline);
    assert_eq!(calls(&log), 1);

    // With time for it, the same request is retried.
    let (upstream, log) = scripted(vec![Step::Fail(limited), status(200)]);
    let mut request = request();
    request
        .extensions_mut()
        .insert(Deadline::after(Duration::from_secs(6)));
    let response = layer(config())
        .layer(upstream)
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(calls(&log), 2);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_beyond_the_cap_is_not_waited_for() {
    // An HTTP date far in the future: honoured as a wait, and too long.
    let (upstream, log) = scripted(vec![
        Step::Respond(
            503,
            vec![("retry-after", "Fri, 01 Jan 2100 00:00:00 GMT")],
            "{}",
        ),
        status(200),
    ]);
    let started = Instant::now();
    let response = layer(config())
        .layer(upstream)
        .oneshot(request())
        .await
        .unwrap();
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(response.status(), 503);
    assert_eq!(calls(&log), 1);

    let (upstream, log) = scripted(vec![Step::Fail(
        unavailable().with_retry_after(Duration::from_secs(61)),
    )]);
    let error = layer(config())
        .layer(upstream)
        .oneshot(request())
        .await
        .unwrap_err();
    assert_eq!(
        gave_up(&error).reason(),
        StopReason::RetryAfterTooLong(Duration::from_secs(61))
    );
    assert_eq!(calls(&log), 1);
}

#[tokio::test(start_paused = true)]
async fn requests_at_fault_are_attempted_exactly_once() {
    let classes = [
        ErrorClass::BadRequest,
        ErrorClass::Auth,
        ErrorClass::ContentPolicy,
        ErrorClass::ContextWindowExceeded,
    ];
    for class in classes {
        let (upstream, log) = scripted(vec![Step::Fail(Failure::new(class, "no")), status(200)]);
        let error = layer(config())
            .layer(upstream)
            .oneshot(request())
            .await
            .unwrap_err();
        assert_eq!(calls(&log), 1, "{class}");
        assert_eq!(gave_up(&error).reason(), StopReason::NotRetryable);
        assert_eq!(gave_up(&error).retries(), 0);
        assert_eq!(Failure::from_error(&*error).class(), class);
    }

    let responses = [
        Step::Respond(400, vec![], r#"{"error":{"code":"invalid_request"}}"#),
        Step::Respond(401, vec![], r#"{"error":{"code":"invalid_api_key"}}"#),
        Step::Respond(
            400,
            vec![],
            r#"{"error":{"code":"content_policy_violation"}}"#,
        ),
        Step::Respond(
            400,
            vec![],
            r#"{"error":{"code":"context_length_exceeded"}}"#,
        ),
    ];
    for step in responses {
        let Step::Respond(code, _, body) = step.clone() else {
            unreachable!()
        };
        let (upstream, log) = scripted(vec![step, status(200)]);
        let response = layer(config())
            .layer(upstream)
            .oneshot(request())
            .await
            .unwrap();
        assert_eq!(calls(&log), 1, "{body}");
        assert_eq!(response.status(), code);
        assert_eq!(response.headers()["x-tollgate-attempted-retries"], "0");
        assert_eq!(response.into_body(), body);
    }
}

#[tokio::test(start_paused = true)]
async fn the_budget_bounds_upstream_attempts_under_an_outage() {
    const REQUESTS: usize = 100;
    const RATIO: f64 = 0.2;
    const MIN_PER_SEC: u32 = 1;
    const TTL: Duration = Duration::from_secs(10);
    let reserve = f64::from(MIN_PER_SEC) * TTL.as_secs_f64();

    let (upstream, log) = scripted(vec![Step::Fail(unavailable())]);
    let config = RetryConfig::builder()
        .num_retries(3)
        .base_backoff(Duration::from_millis(10))
        .max_backoff(Duration::from_millis(50))
        .budget_ratio(RATIO)
        .budget_min_per_sec(MIN_PER_SEC)
        .budget_ttl(TTL)
        .build()
        .unwrap();
    let service = RetryLayer::new(config).layer(upstream);

    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..REQUESTS {
        tasks.spawn(service.clone().oneshot(request()));
    }
    let mut stopped_by_budget = 0;
    while let Some(outcome) = tasks.join_next().await {
        let error = outcome.unwrap().unwrap_err();
        if gave_up(&error).reason() == StopReason::BudgetExhausted {
            stopped_by_budget += 1;
        }
    }
    // The bound holds within one window of the budget.
    assert!(started.elapsed() < TTL);

    let attempts = calls(&log) as f64;
    let bound = REQUESTS as f64 * (1.0 + RATIO) + reserve;
    assert!(attempts <= bound, "{attempts} attempts > {bound}");
    // Without the budget there would be 4 attempts per request; with it the
    // retries it allows are all made.
    assert!(attempts > REQUESTS as f64 + reserve, "{attempts}");
    assert!(stopped_by_budget > REQUESTS / 2, "{stopped_by_budget}");
}

#[tokio::test(start_paused = true)]
async fn a_success_after_failures_is_returned_with_the_retries_made() {
    let (upstream, log) = scripted(vec![
        status(503),
        Step::Fail(Failure::timeout(TimeoutKind::FirstByte)),
        Step::Respond(200, vec![], r#"{"id":"ok"}"#),
    ]);
    let response = layer(config())
        .layer(upstream)
        .oneshot(request())
        .await
        .unwrap();
    assert_eq!(calls(&log), 3);
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.extensions().get::<AttemptedRetries>(),
        Some(&AttemptedRetries(2))
    );
    assert_eq!(response.headers()["x-tollgate-attempted-retries"], "2");
    assert_eq!(response.into_body(), r#"{"id":"ok"}"#);
}

#[tokio::test(start_paused = true)]
async fn when_retries_run_out_the_last_outcome_goes_up() {
    let (upstream, log) = scripted(vec![
        Step::Respond(503, vec![("x-attempt", "0")], "{}"),
        Step::Respond(503, vec![("x-attempt", "1")], "{}"),
        Step::Respond(503, vec![("x-attempt", "2")], "{}"),
        status(200),
    ]);
    let response = layer(config().num_retries(2))
        .layer(upstream)
        .oneshot(request())
        .await
        .unwrap();
    assert_eq!(calls(&log), 3);
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["x-attempt"], "2");
    assert_eq!(response.headers()["x-tollgate-attempted-retries"], "2");

    let (upstream, log) = scripted(vec![
        Step::Fail(unavailable()),
        Step::Fail(Failure::timeout(TimeoutKind::Connect)),
        status(200),
    ]);
    let error = layer(config().num_retries(1))
        .layer(upstream)
        .oneshot(request())
        .await
        .unwrap_err();
    assert_eq!(calls(&log), 2);
    assert_eq!(gave_up(&error).reason(), StopReason::MaxRetries);
    assert_eq!(gave_up(&error).retries(), 1);
    assert_eq!(Failure::from_error(&*error).class(), ErrorClass::Timeout);
    assert_eq!(
        error.to_string(),
        "gave up after 1 retries: the retry limit is reached"
    );
}

#[tokio::test(start_paused = true)]
async fn streams_and_successes_are_never_retried() {
    // A stream is handed up at its head: even one whose body will turn out
    // to be cut is never retried, its bytes may already reach the client.
    let (upstream, log) = scripted(vec![
        Step::Respond(
            200,
            vec![("content-type", "text/event-stream")],
            "data: {\"choices\":[]}\n\n",
        ),
        status(200),
    ]);
    let response = layer(config())
        .layer(upstream)
        .oneshot(request())
        .await
        .unwrap();
    assert_eq!(calls(&log), 1);
    assert_eq!(response.headers()["x-tollgate-attempted-retries"], "0");
    assert_eq!(response.into_body(), "data: {\"choices\":[]}\n\n");

    let (upstream, log) = scripted(vec![status(200), status(503)]);
    let response = layer(config())
        .layer(upstream)
        .oneshot(request())
        .await
        .unwrap();
    assert_eq!(calls(&log), 1);
    assert_eq!(
        response.extensions().get::<AttemptedRetries>(),
        Some(&AttemptedRetries(0))
    );
}

#[tokio::test(start_paused = true)]
async fn every_attempt_sends_the_same_request() {
    #[derive(Clone, Debug, PartialEq)]
    struct Tag(&'static str);

    let (upstream, log) = scripted(vec![status(503), status(502), status(200)]);
    let mut original = request();
    original.extensions_mut().insert(Tag("kept"));
    original.extensions_mut().insert(Attempt(4));
    let response = layer(config())
        .layer(upstream)
        .oneshot(original)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let log = log.lock().unwrap();
    assert_eq!(log.len(), 3);
    let expected = request();
    for (i, seen) in log.iter().enumerate() {
        let request = &seen.request;
        assert_eq!(request.method(), expected.method());
        assert_eq!(request.uri(), expected.uri());
        assert_eq!(request.headers(), expected.headers());
        assert_eq!(request.body(), expected.body());
        assert_eq!(request.extensions().get(), Some(&Tag("kept")));
        // Retries count on from the request's own attempt number.
        assert_eq!(request.extensions().get(), Some(&Attempt(4 + i as u32)));
    }
}

#[tokio::test(start_paused = true)]
async fn the_policy_retries_what_it_names() {
    let run = |config: RetryConfigBuilder, failure: Failure| async move {
        let (upstream, log) = scripted(vec![Step::Fail(failure)]);
        let _ = layer(config).layer(upstream).oneshot(request()).await;
        calls(&log)
    };
    let bad = || Failure::new(ErrorClass::BadRequest, "x");
    let limited = || Failure::new(ErrorClass::RateLimited, "x");
    // LiteLLM's BadRequestErrorRetries: 2 — asked for, so done.
    assert_eq!(
        run(config().retries_for(ErrorClass::BadRequest, 2), bad()).await,
        3
    );
    assert_eq!(
        run(config().retries_for(ErrorClass::RateLimited, 0), limited()).await,
        1
    );
    assert_eq!(
        run(config().retries_for(ErrorClass::RateLimited, 5), limited()).await,
        6
    );
    // An upstream's "do not retry" wins.
    assert_eq!(run(config(), limited().with_retryable(false)).await, 1);
    // num_retries 0 turns retries off.
    assert_eq!(run(config().num_retries(0), limited()).await, 1);
}

#[tokio::test(start_paused = true)]
async fn the_services_of_one_layer_share_its_budget() {
    // A budget of one retry.
    let config = RetryConfig::builder()
        .budget_ratio(0.0)
        .budget_min_per_sec(1)
        .budget_ttl(Duration::from_secs(1))
        .build()
        .unwrap();
    let layer = RetryLayer::new(config).with_jitter(NoJitter);
    let (first, first_log) = scripted(vec![Step::Fail(unavailable())]);
    let (second, second_log) = scripted(vec![Step::Fail(unavailable())]);
    let first = layer.layer(first);
    let second = layer.layer(second);
    assert!(Arc::ptr_eq(first.budget(), layer.budget()));
    assert!(Arc::ptr_eq(second.budget(), layer.budget()));

    let error = first.oneshot(request()).await.unwrap_err();
    assert_eq!(gave_up(&error).reason(), StopReason::BudgetExhausted);
    assert_eq!(calls(&first_log), 2);
    let error = second.oneshot(request()).await.unwrap_err();
    assert_eq!(gave_up(&error).reason(), StopReason::BudgetExhausted);
    assert_eq!(calls(&second_log), 1);
}

#[tokio::test(start_paused = true)]
async fn a_retry_waits_for_the_service_to_be_ready() {
    let (mock, mut handle) = tower_test::mock::pair::<Request<Bytes>, Response<Bytes>>();
    let mut service = layer(config().base_backoff(Duration::from_millis(100))).layer(mock);

    handle.allow(1);
    service.ready().await.unwrap();
    let call = tokio::spawn(service.call(request()));
    let (_, reply) = handle.next_request().await.unwrap();
    reply.send_response(Response::builder().status(503).body(Bytes::new()).unwrap());

    // Long after the backoff, the retry still waits for readiness (the mock
    // panics on a call it did not allow).
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(handle.poll_request().is_pending());
    assert!(!call.is_finished());

    handle.allow(1);
    let (request, reply) = handle.next_request().await.unwrap();
    assert_eq!(request.extensions().get(), Some(&Attempt(1)));
    reply.send_response(Response::new(Bytes::from_static(b"{}")));
    let response = call.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-tollgate-attempted-retries"], "1");
}

#[tokio::test(start_paused = true)]
async fn a_service_that_fails_while_getting_ready_ends_the_retries() {
    let (mock, mut handle) = tower_test::mock::pair::<Request<Bytes>, Response<Bytes>>();
    let mut service = layer(config()).layer(mock);

    handle.allow(1);
    service.ready().await.unwrap();
    let call = tokio::spawn(service.call(request()));
    let (_, reply) = handle.next_request().await.unwrap();
    reply.send_error(unavailable());
    handle.send_error("closed");

    let error = call.await.unwrap().unwrap_err();
    assert_eq!(gave_up(&error).reason(), StopReason::ServiceFailed);
    assert_eq!(gave_up(&error).retries(), 1);
    assert_eq!(
        std::error::Error::source(gave_up(&error)).map(ToString::to_string),
        Some("closed".to_owned())
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_the_response_future_stops_the_retries() {
    let (upstream, log) = scripted(vec![Step::Fail(unavailable())]);
    let service = layer(config()).layer(upstream);
    let call = tokio::spawn(service.oneshot(request()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    call.abort();
    let _ = call.await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(calls(&log), 1);
}
