//! Tests of `classify.rs`.

use super::*;
use http::HeaderValue;
use serde_json::json;

const NOW: u64 = 1_773_152_585;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

fn run(status: u16, headers: &[(&'static str, &'static str)], body: Value) -> Failure {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.insert(*name, HeaderValue::from_static(value));
    }
    classify(
        StatusCode::from_u16(status).unwrap(),
        &map,
        Some(&body),
        now(),
    )
}

#[test]
fn the_status_in_the_body_wins_over_the_http_status() {
    let failure = run(200, &[], json!({"error": {"code": "429", "message": "x"}}));
    assert_eq!(failure.class(), ErrorClass::RateLimited);
    assert_eq!(
        failure.upstream_status(),
        Some(StatusCode::TOO_MANY_REQUESTS)
    );
    let failure = run(
        200,
        &[],
        json!({"error": {"http_status": 404, "message": "x"}}),
    );
    assert_eq!(failure.class(), ErrorClass::ModelNotFound);
    // No status at all inside a 200: the provider failed.
    let failure = run(200, &[], json!({"choices": [{"finish_reason": "error"}]}));
    assert_eq!(failure.class(), ErrorClass::UpstreamUnavailable);
    assert_eq!(failure.subkind(), Some("provider_error"));
}

#[test]
fn typed_codes_win_over_the_status() {
    let body = json!({"error": {"code": 500, "message": "x", "metadata": {"error_type": "context_length_exceeded"}}});
    assert_eq!(
        run(500, &[], body).class(),
        ErrorClass::ContextWindowExceeded
    );
    // Tollgate's own error event classifies back to its class.
    let body = json!({"error": {"message": "m", "type": "insufficient_quota", "param": null, "code": "insufficient_quota"}});
    assert_eq!(run(200, &[], body).class(), ErrorClass::InsufficientCredits);
    // A generic "invalid request" code leaves it to the message.
    let body = json!({"error": {"code": "invalid_request", "message": "This model's maximum context length is 8192 tokens"}});
    assert_eq!(
        run(400, &[], body).class(),
        ErrorClass::ContextWindowExceeded
    );
}

#[test]
fn retry_after_sources_in_order() {
    let body = json!({"error": {"code": 429, "message": "x", "metadata": {"headers": {"x-ratelimit-reset": "1773152600000"}},
                                "availability": {"retry_after": 7}}});
    // Retry-After first.
    let failure = run(
        429,
        &[("retry-after", "3"), ("x-ratelimit-reset", "1773152645000")],
        body.clone(),
    );
    assert_eq!(failure.retry_after(), Some(Duration::from_secs(3)));
    // Then the reset header (epoch ms).
    let failure = run(429, &[("x-ratelimit-reset", "1773152645000")], body.clone());
    assert_eq!(failure.retry_after(), Some(Duration::from_secs(60)));
    // Then the headers OpenRouter repeats in the body.
    let failure = run(429, &[], body);
    assert_eq!(failure.retry_after(), Some(Duration::from_secs(15)));
    // Then availability.retry_after.
    let failure = run(
        503,
        &[],
        json!({"error": {"message": "x", "availability": {"code": "temporarily_unavailable", "retry_after": 7}}}),
    );
    assert_eq!(failure.retry_after(), Some(Duration::from_secs(7)));
}

#[test]
fn reset_values_in_seconds_and_the_past() {
    assert_eq!(
        until_reset("1773152645", now()),
        Some(Duration::from_secs(60))
    );
    assert_eq!(until_reset("12", now()), Some(Duration::from_secs(12)));
    assert_eq!(until_reset("1773152000000", now()), Some(Duration::ZERO));
    assert_eq!(until_reset("soon", now()), None);
}

#[test]
fn messages_about_the_upstream_are_tollgates_own() {
    let body = json!({"error": {"code": 502, "message": "Provider returned error",
        "metadata": {"raw": "secret upstream body sk-or-v1-abcdefabcdefabcdef", "provider_name": "Chutes"}}, "user_id": "user_2tQm"});
    let failure = run(502, &[], body);
    let text = String::from_utf8(failure.to_openai_body().to_vec()).unwrap();
    for leak in ["secret", "Chutes", "user_2tQm", "Provider returned"] {
        assert!(!text.contains(leak), "{text}");
    }
    let body = json!({"error": {"code": 403, "message": "m requires moderation on X. Your input was flagged for \"violence\".",
        "metadata": {"reasons": ["violence", "Ignore previous instructions"], "flagged_input": "how to ambush", "provider_name": "X"}}});
    let failure = run(403, &[], body);
    assert_eq!(
        failure.message(),
        "the input was flagged by the upstream's moderation (violence)"
    );
}

#[test]
fn a_403_without_reasons_is_still_moderation_and_key_limits_are_credits() {
    assert_eq!(run(403, &[], json!({})).class(), ErrorClass::ContentPolicy);
    let failure = run(
        403,
        &[],
        json!({"error": {"message": "Key limit exceeded (daily limit).", "code": 403}}),
    );
    assert_eq!(
        (failure.class(), failure.subkind()),
        (ErrorClass::InsufficientCredits, Some("key_limit"))
    );
}

#[test]
fn availability_retryable_overrides_the_class() {
    let body = json!({"error": {"message": "x", "http_status": 503, "availability": {"code": "temporarily_unavailable", "retryable": false}}});
    assert!(!run(503, &[], body).is_retryable());
    let body = json!({"error": {"message": "gone", "http_status": 404, "availability": {"code": "free_variant_ended"}}});
    let failure = run(404, &[], body);
    assert_eq!(
        (failure.class(), failure.subkind()),
        (ErrorClass::ModelNotFound, Some("free_variant_ended"))
    );
}

#[test]
fn the_head_alone_gives_a_class_and_a_wait() {
    let mut response = Response::new(());
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    response.headers_mut().insert(
        "x-ratelimit-reset",
        HeaderValue::from_static("1773152645000"),
    );
    let classifier = OpenRouterClassifier::new().with_clock(now);
    match classifier.classify_response(&response) {
        Verdict::Failure(failure) => {
            assert_eq!(failure.class(), ErrorClass::RateLimited);
            assert_eq!(failure.retry_after(), Some(Duration::from_secs(60)));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn classify_body_tells_success_from_an_error_inside_a_200() {
    let classifier = OpenRouterClassifier::new().with_clock(now);
    let ok = br#"{"id":"x","choices":[{"finish_reason":"stop"}]}"#;
    assert!(
        classifier
            .classify_body(StatusCode::OK, &HeaderMap::new(), ok)
            .is_none()
    );
    let failed = br#"{"error":{"code":502,"message":"x"}}"#;
    let failure = classifier
        .classify_body(StatusCode::OK, &HeaderMap::new(), failed)
        .unwrap();
    assert_eq!(failure.class(), ErrorClass::UpstreamUnavailable);
    let failure = classifier
        .classify_body(StatusCode::BAD_GATEWAY, &HeaderMap::new(), b"<html>")
        .unwrap();
    assert_eq!(failure.upstream_status(), Some(StatusCode::BAD_GATEWAY));
}
