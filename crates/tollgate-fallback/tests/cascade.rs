//! The cascade on complete (JSON) answers: which group comes next for each
//! kind of failure, and its limits. Scripted groups, paused tokio time.

mod support;

use std::time::Duration;

use http::StatusCode;
use tokio::time::Instant;
use tollgate_core::extensions::{AttemptedFallbacks, ModelGroup};
use tollgate_core::{ErrorClass, Failure, RequestBody, Scope, TimeoutKind};
use tollgate_fallback::{
    FallbackConfig, FallbackConfigBuilder, FallbackLayer, GaveUp, Health, StopReason,
};
use tower::{Layer, ServiceExt};

use support::*;

fn unavailable() -> Step {
    Step::Fail(
        Failure::new(
            ErrorClass::UpstreamUnavailable,
            "the upstream failed with status 503",
        )
        .with_upstream_status(StatusCode::SERVICE_UNAVAILABLE),
    )
}

fn layer(builder: FallbackConfigBuilder) -> FallbackLayer {
    FallbackLayer::new(builder.build().unwrap())
}

/// Sends a non-streaming request for `group` through `layer` over
/// `upstream`: the answering group, or the failure with the `GaveUp`.
async fn send<H: Health, C>(
    layer: &FallbackLayer<H, C>,
    upstream: &Upstream,
    request: http::Request<tollgate_core::RequestBody>,
) -> Result<(String, u32, String), (Failure, Option<(u32, StopReason)>)>
where
    C: tollgate_core::classify::ClassifyResponse,
{
    let service = layer.layer(upstream.clone());
    match service.oneshot(request).await {
        Ok(response) => {
            let group = response
                .extensions()
                .get::<ModelGroup>()
                .unwrap()
                .0
                .to_string();
            let AttemptedFallbacks(n) = *response.extensions().get().unwrap();
            assert_eq!(
                response.headers()["x-tollgate-attempted-fallbacks"],
                n.to_string().as_str()
            );
            let body = read(response.into_body()).await;
            Ok((group, n, body))
        }
        Err(error) => {
            let gave_up = error
                .downcast_ref::<GaveUp>()
                .map(|g| (g.fallbacks(), g.reason()));
            Err((Failure::from_error(&*error), gave_up))
        }
    }
}

#[tokio::test(start_paused = true)]
async fn generic_failures_walk_the_fallbacks_in_order() {
    let upstream = Upstream::new()
        .script("a", vec![unavailable()])
        .script(
            "b",
            vec![Step::Fail(Failure::timeout(TimeoutKind::FirstByte))],
        )
        .script("c", vec![json("model-c")]);
    let layer = layer(FallbackConfig::builder().fallbacks("a", ["b", "c"]));
    let (group, fallbacks, body) = send(&layer, &upstream, request("a", false)).await.unwrap();
    assert_eq!(group, "c");
    assert_eq!(fallbacks, 2);
    assert!(body.contains("hi from model-c"));
    assert_eq!(upstream.groups(), ["a", "b", "c"]);
    // Every attempt got the client's request, with its own group.
    let calls = upstream.calls();
    assert!(
        calls
            .iter()
            .all(|c| c.body == calls[0].body && c.chat_matches_body)
    );
}

#[tokio::test(start_paused = true)]
async fn the_clients_group_answering_reports_zero_fallbacks() {
    let upstream = Upstream::new().script("a", vec![json("model-a")]);
    let layer = layer(FallbackConfig::builder().fallbacks("a", ["b"]));
    let (group, fallbacks, _) = send(&layer, &upstream, request("a", false)).await.unwrap();
    assert_eq!((group.as_str(), fallbacks), ("a", 0));
    assert_eq!(upstream.groups(), ["a"]);
}

#[tokio::test(start_paused = true)]
async fn a_context_window_failure_uses_its_list_else_the_regular_one_else_goes_back() {
    let too_long = || {
        Step::Fail(Failure::new(
            ErrorClass::ContextWindowExceeded,
            "This model's maximum context length is 8192 tokens.",
        ))
    };
    let upstream = || {
        Upstream::new()
            .script("a", vec![too_long()])
            .script("long", vec![json("long")])
            .script("b", vec![json("b")])
    };

    // Its own list first.
    let up = upstream();
    let with_list = layer(
        FallbackConfig::builder()
            .fallbacks("a", ["b"])
            .context_window_fallbacks("a", ["long"]),
    );
    let (group, ..) = send(&with_list, &up, request("a", false)).await.unwrap();
    assert_eq!(group, "long");
    assert_eq!(up.groups(), ["a", "long"]);

    // Without one, the regular fallbacks (LiteLLM's rule).
    let up = upstream();
    let regular = layer(FallbackConfig::builder().fallbacks("a", ["b"]));
    let (group, ..) = send(&regular, &up, request("a", false)).await.unwrap();
    assert_eq!(group, "b");

    // Without any fallback, exactly one attempt and the 400 goes back.
    let up = upstream();
    let none = layer(FallbackConfig::builder());
    let (failure, gave_up) = send(&none, &up, request("a", false)).await.unwrap_err();
    assert_eq!(failure.class(), ErrorClass::ContextWindowExceeded);
    assert_eq!(failure.status(), StatusCode::BAD_REQUEST);
    assert!(failure.message().contains("8192 tokens"));
    assert_eq!(gave_up, Some((0, StopReason::Exhausted)));
    assert_eq!(up.groups(), ["a"]);
}

#[tokio::test(start_paused = true)]
async fn a_content_policy_refusal_goes_back_with_its_reason_unless_it_has_a_list() {
    let refusal = Failure::new(
        ErrorClass::ContentPolicy,
        "The response was filtered due to the prompt triggering content management policy.",
    );
    let upstream = || {
        Upstream::new()
            .script("a", vec![Step::Fail(refusal.clone())])
            .script("b", vec![json("b")])
            .script("lenient", vec![json("lenient")])
    };

    // The regular fallbacks do not hide a refusal.
    let up = upstream();
    let regular = layer(
        FallbackConfig::builder()
            .fallbacks("a", ["b"])
            .default_fallbacks(["b"]),
    );
    let (failure, gave_up) = send(&regular, &up, request("a", false)).await.unwrap_err();
    assert_eq!(failure, refusal);
    assert_eq!(gave_up, Some((0, StopReason::NotEligible)));
    assert_eq!(up.groups(), ["a"]);

    // Its own list does.
    let up = upstream();
    let listed = layer(
        FallbackConfig::builder()
            .fallbacks("a", ["b"])
            .content_policy_fallbacks("a", ["lenient"]),
    );
    let (group, ..) = send(&listed, &up, request("a", false)).await.unwrap();
    assert_eq!(group, "lenient");
}

#[tokio::test(start_paused = true)]
async fn a_bad_request_or_a_failure_that_says_so_goes_back_at_once() {
    for failure in [
        Failure::new(
            ErrorClass::BadRequest,
            "'messages' must contain at least one message",
        ),
        Failure::new(
            ErrorClass::Auth,
            "the upstream rejected the gateway's credentials",
        )
        .with_fallback_eligible(false),
    ] {
        let upstream = Upstream::new()
            .script("a", vec![Step::Fail(failure.clone())])
            .script("b", vec![json("b")]);
        let layer = layer(FallbackConfig::builder().fallbacks("a", ["b"]));
        let (got, gave_up) = send(&layer, &upstream, request("a", false))
            .await
            .unwrap_err();
        assert_eq!(got, failure);
        assert_eq!(gave_up, Some((0, StopReason::NotEligible)));
        assert_eq!(upstream.groups(), ["a"]);
    }
}

#[tokio::test(start_paused = true)]
async fn default_fallbacks_serve_groups_without_a_list() {
    let upstream = Upstream::new()
        .script("a", vec![unavailable()])
        .script("z", vec![json("z")]);
    let layer = layer(FallbackConfig::builder().default_fallbacks(["z"]));
    let (group, fallbacks, _) = send(&layer, &upstream, request("a", false)).await.unwrap();
    assert_eq!((group.as_str(), fallbacks), ("z", 1));
}

#[tokio::test(start_paused = true)]
async fn max_fallbacks_bounds_the_groups_tried() {
    let upstream = Upstream::new()
        .script("a", vec![unavailable()])
        .script("b", vec![unavailable()])
        .script("c", vec![unavailable()])
        .script("d", vec![json("d")]);
    let layer = layer(
        FallbackConfig::builder()
            .fallbacks("a", ["b", "c", "d"])
            .max_fallbacks(2),
    );
    let (failure, gave_up) = send(&layer, &upstream, request("a", false))
        .await
        .unwrap_err();
    assert_eq!(failure.class(), ErrorClass::UpstreamUnavailable);
    assert_eq!(gave_up, Some((2, StopReason::MaxFallbacks)));
    assert_eq!(upstream.groups(), ["a", "b", "c"]);
}

#[tokio::test(start_paused = true)]
async fn a_pool_wide_rate_limit_skips_the_pool_and_tries_the_rest() {
    // OpenRouter's free-model pool, as its normalizer classifies it.
    let pool_limit = Failure::new(
        ErrorClass::RateLimited,
        "the upstream account's per-minute request limit for free models is exhausted",
    )
    .with_scope(Scope::AccountFreePool)
    .with_fallback_eligible(false);
    let upstream = Upstream::new()
        .script("deepseek-free", vec![Step::Fail(pool_limit.clone())])
        .script("glm-free", vec![json("glm")])
        .script("paid", vec![json("paid")]);
    let config = FallbackConfig::builder()
        .fallbacks("deepseek-free", ["glm-free", "paid"])
        .pool("deepseek-free", "openrouter-free")
        .pool("glm-free", "openrouter-free");
    let (group, fallbacks, _) = send(&layer(config), &upstream, request("deepseek-free", false))
        .await
        .unwrap();
    assert_eq!((group.as_str(), fallbacks), ("paid", 1));
    assert_eq!(upstream.groups(), ["deepseek-free", "paid"]);

    // When every fallback is in the pool, the pool's 429 goes back.
    let upstream = Upstream::new()
        .script("deepseek-free", vec![Step::Fail(pool_limit.clone())])
        .script("glm-free", vec![json("glm")]);
    let config = FallbackConfig::builder()
        .fallbacks("deepseek-free", ["glm-free"])
        .pool("deepseek-free", "openrouter-free")
        .pool("glm-free", "openrouter-free");
    let (failure, _) = send(&layer(config), &upstream, request("deepseek-free", false))
        .await
        .unwrap_err();
    assert_eq!(failure, pool_limit);
    assert_eq!(upstream.groups(), ["deepseek-free"]);
}

struct Breakers {
    open: Vec<&'static str>,
}

impl Health for Breakers {
    fn available(&self, group: &str) -> bool {
        !self.open.contains(&group)
    }

    fn retry_after(&self, _group: &str) -> Option<Duration> {
        Some(Duration::from_secs(7))
    }
}

#[tokio::test(start_paused = true)]
async fn unavailable_groups_are_skipped_without_a_call() {
    let upstream = Upstream::new()
        .script("a", vec![json("a")])
        .script("b", vec![json("b")])
        .script("c", vec![json("c")]);
    let config = FallbackConfig::builder().fallbacks("a", ["b", "c"]);
    let health = Breakers {
        open: vec!["a", "b"],
    };
    let layer = FallbackLayer::new(config.build().unwrap()).with_health(health);
    let (group, fallbacks, _) = send(&layer, &upstream, request("a", false)).await.unwrap();
    assert_eq!((group.as_str(), fallbacks), ("c", 1));
    assert_eq!(upstream.groups(), ["c"]);

    // Nothing available: a 503 at once, with the health source's wait.
    let layer = layer.with_health(Breakers {
        open: vec!["a", "b", "c"],
    });
    let (failure, gave_up) = send(&layer, &upstream, request("a", false))
        .await
        .unwrap_err();
    assert_eq!(failure.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(failure.retry_after(), Some(Duration::from_secs(7)));
    assert_eq!(gave_up, Some((0, StopReason::NoneAvailable)));
    assert_eq!(upstream.groups(), ["c"]);
}

#[tokio::test(start_paused = true)]
async fn one_deadline_bounds_the_whole_cascade() {
    let layer = layer(FallbackConfig::builder().fallbacks("a", ["b"]));

    // Past already: no group is called.
    let upstream = Upstream::new().script("a", vec![json("a")]);
    let mut late = request("a", false);
    late.extensions_mut()
        .insert(tollgate_core::extensions::Deadline(Instant::now()));
    let (failure, gave_up) = send(&layer, &upstream, late).await.unwrap_err();
    assert_eq!(failure.timeout_kind(), Some(TimeoutKind::Total));
    assert_eq!(gave_up, Some((0, StopReason::Deadline)));
    assert!(upstream.groups().is_empty());

    // A group that does not answer is given up at the deadline.
    let upstream = Upstream::new()
        .script("a", vec![Step::Hang])
        .script("b", vec![json("b")]);
    let start = Instant::now();
    let request_ = with_deadline(request("a", false), Duration::from_secs(10));
    let (failure, gave_up) = send(&layer, &upstream, request_).await.unwrap_err();
    assert_eq!(failure.class(), ErrorClass::Timeout);
    assert_eq!(gave_up, Some((0, StopReason::Deadline)));
    assert_eq!(start.elapsed(), Duration::from_secs(10));
    assert_eq!(upstream.groups(), ["a"]);

    // The fallback gets what is left of the same deadline, not a new one.
    let slow_failure = Step::Respond(503, "application/json", vec![]);
    let upstream = Upstream::new()
        .script("a", vec![slow_failure])
        .script("b", vec![Step::Hang]);
    let delayed = tower::service_fn({
        let upstream = upstream.clone();
        move |request| {
            let mut upstream = upstream.clone();
            async move {
                tokio::time::sleep(Duration::from_secs(4)).await;
                tower::Service::call(&mut upstream, request).await
            }
        }
    });
    let start = Instant::now();
    let error = layer
        .layer(delayed)
        .oneshot(with_deadline(request("a", false), Duration::from_secs(10)))
        .await
        .unwrap_err();
    let gave_up = error.downcast_ref::<GaveUp>().unwrap();
    assert_eq!(
        (gave_up.fallbacks(), gave_up.reason()),
        (1, StopReason::Deadline)
    );
    assert_eq!(start.elapsed(), Duration::from_secs(10));
    assert_eq!(upstream.groups(), ["a", "b"]);
    let calls = upstream.calls();
    assert_eq!(calls[1].at - calls[0].at, Duration::from_secs(4));
}

#[tokio::test(start_paused = true)]
async fn error_responses_are_classified_by_their_body_and_returned_whole() {
    // A service that answers errors as responses (a raw HTTP client): the
    // 400's body says context window, so the context-window list applies.
    let upstream = Upstream::new()
        .script(
            "a",
            vec![error_response(
                400,
                "context_length_exceeded",
                "This model's maximum context length is 8192 tokens.",
            )],
        )
        .script("long", vec![json("long")]);
    let layer_ = layer(
        FallbackConfig::builder()
            .fallbacks("a", ["b"])
            .context_window_fallbacks("a", ["long"]),
    );
    let (group, ..) = send(&layer_, &upstream, request("a", false)).await.unwrap();
    assert_eq!(group, "long");

    // A plain bad request goes back as it came, body and all.
    let bad = error_response(400, "invalid_value", "temperature must be at most 2");
    let Step::Respond(_, _, parts) = &bad else {
        unreachable!()
    };
    let Part::Data(expected) = &parts[0] else {
        unreachable!()
    };
    let expected = String::from_utf8(expected.to_vec()).unwrap();
    let upstream = Upstream::new()
        .script("a", vec![bad.clone()])
        .script("b", vec![json("b")]);
    let response = layer_
        .layer(upstream.clone())
        .oneshot(request("a", false))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.headers()["x-tollgate-attempted-fallbacks"], "0");
    assert_eq!(read(response.into_body()).await, expected);
    assert_eq!(upstream.groups(), ["a"]);
}

#[tokio::test(start_paused = true)]
async fn a_fallbacks_own_list_comes_before_its_siblings() {
    let upstream = Upstream::new()
        .script("a", vec![unavailable()])
        .script("b", vec![unavailable()])
        .script("b2", vec![json("b2")])
        .script("c", vec![json("c")]);
    let layer = layer(
        FallbackConfig::builder()
            .fallbacks("a", ["b", "c"])
            .fallbacks("b", ["b2"]),
    );
    let (group, fallbacks, _) = send(&layer, &upstream, request("a", false)).await.unwrap();
    assert_eq!((group.as_str(), fallbacks), ("b2", 2));
    assert_eq!(upstream.groups(), ["a", "b", "b2"]);
}

#[tokio::test(start_paused = true)]
async fn a_request_without_a_group_passes_through() {
    let upstream = Upstream::new().script("", vec![unavailable()]);
    let mut request = request("a", false);
    request.extensions_mut().remove::<ModelGroup>();
    // A plain body: no parsed request names a model either.
    let bytes = request.body().bytes().cloned().unwrap_or_default();
    *request.body_mut() = RequestBody::new(bytes);
    let layer = layer(FallbackConfig::builder().default_fallbacks(["z"]));
    let error = layer
        .layer(upstream.clone())
        .oneshot(request)
        .await
        .unwrap_err();
    assert_eq!(
        error.downcast_ref::<GaveUp>().unwrap().reason(),
        StopReason::Exhausted
    );
    assert_eq!(upstream.groups(), [""]);
}

#[tokio::test(start_paused = true)]
async fn the_group_comes_from_the_chat_request_when_no_extension_names_it() {
    let upstream = Upstream::new()
        .script("a", vec![unavailable()])
        .script("b", vec![json("b")]);
    let mut request = request("a", false);
    request.extensions_mut().remove::<ModelGroup>();
    let layer = layer(FallbackConfig::builder().fallbacks("a", ["b"]));
    let (group, ..) = send(&layer, &upstream, request).await.unwrap();
    assert_eq!(group, "b");
    assert_eq!(upstream.groups(), ["a", "b"]);
}

#[test]
fn the_service_its_future_and_its_body_can_cross_threads() {
    fn send<T: Send + 'static>(_: &T) {}
    let service = FallbackLayer::default().layer(Upstream::new());
    send(&service);
    let future = service.clone().oneshot(request("a", true));
    send(&future);
    fn body_is_send<B: Send + 'static>() {}
    body_is_send::<tollgate_fallback::ResponseBody<Scripted, tollgate_core::classify::OpenAiEos>>();
}
