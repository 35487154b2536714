//! Streams through the cascade: the commit at the first content, failover
//! before it, continuation after it, and what the client sees when nothing
//! can continue. Scripted groups, paused tokio time.

mod support;

use std::time::Duration;

use tollgate_core::extensions::AttemptedFallbacks;
use tollgate_core::{ErrorClass, Failure, Redactor, TimeoutKind};
use tollgate_fallback::{FallbackConfig, FallbackConfigBuilder, FallbackLayer};
use tower::{Layer, ServiceExt};

use support::*;

fn layer(builder: FallbackConfigBuilder) -> FallbackLayer {
    FallbackLayer::new(builder.build().unwrap())
}

/// Streams a request for `group`: the bytes the client gets, the fallbacks
/// reported, and the failure the body says it ended with.
async fn stream_through(
    layer: &FallbackLayer,
    upstream: &Upstream,
    group: &str,
) -> (String, u32, Option<Failure>) {
    let response = layer
        .layer(upstream.clone())
        .oneshot(request(group, true))
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let AttemptedFallbacks(fallbacks) = *response.extensions().get().unwrap();
    let mut body = response.into_body();
    let mut out = Vec::new();
    while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
        out.extend_from_slice(&frame.unwrap().into_data().unwrap());
    }
    (
        String::from_utf8(out).unwrap(),
        fallbacks,
        body.failure().cloned(),
    )
}

#[tokio::test(start_paused = true)]
async fn a_failure_before_the_first_content_fails_over_without_the_client_seeing_it() {
    let good = answer("b1", "model-b", &["Hello", "!"]);
    let error_event = "data: {\"error\":{\"message\":\"overloaded\",\"code\":503}}\n\n";
    let primaries = [
        // Reset after the role chunk.
        stream(vec![data(role("a1", "model-a")), cut()]),
        // An error event after a keep-alive.
        stream(vec![data(": PROCESSING\n\n"), data(error_event)]),
        // Ends before any content.
        stream(vec![data(role("a1", "model-a"))]),
        // A stall, as the stack below reports it.
        stream(vec![
            data(role("a1", "model-a")),
            Part::Error(Failure::timeout(TimeoutKind::FirstByte)),
        ]),
        // An error status.
        error_response(429, "rate_limit_exceeded", "slow down"),
    ];
    for primary in primaries {
        let upstream = Upstream::new()
            .script("a", vec![primary.clone()])
            .script("b", vec![stream(vec![data(good.clone())])]);
        let layer = layer(FallbackConfig::builder().fallbacks("a", ["b"]));
        let (out, fallbacks, failure) = stream_through(&layer, &upstream, "a").await;
        assert_eq!(out, good, "{primary:?}");
        assert_eq!(fallbacks, 1);
        assert_eq!(failure, None);
        assert_eq!(upstream.groups(), ["a", "b"]);
    }
}

#[tokio::test(start_paused = true)]
async fn a_stream_is_passed_on_byte_for_byte_held_back_events_first() {
    let whole = format!(
        ": keep-alive\n\n{}{}{}",
        role("a1", "model-a"),
        text("a1", "model-a", "Hi"),
        finish("a1", "model-a")
    ) + DONE;
    // Chunked badly on purpose: mid-event, mid-line ending.
    let (one, rest) = whole.split_at(20);
    let (two, three) = rest.split_at(rest.len() - 3);
    let upstream =
        Upstream::new().script("a", vec![stream(vec![data(one), data(two), data(three)])]);
    let (out, fallbacks, failure) =
        stream_through(&layer(FallbackConfig::builder()), &upstream, "a").await;
    assert_eq!(out, whole);
    assert_eq!((fallbacks, failure), (0, None));
}

#[tokio::test(start_paused = true)]
async fn a_cut_after_content_is_continued_on_the_same_group_then_on_a_fallback() {
    let upstream = Upstream::new()
        .script(
            "a",
            vec![
                stream(vec![
                    data(role("a1", "model-a") + &text("a1", "model-a", "Hello")),
                    data(text("a1", "model-a", ", wor")),
                    cut(),
                ]),
                // The continuation on the same group breaks too, after more.
                stream(vec![
                    data(role("a2", "model-a")),
                    data(text("a2", "model-a", "ld! How")),
                    cut(),
                ]),
            ],
        )
        .script(
            "b",
            vec![stream(vec![data(answer(
                "b1",
                "model-b",
                &[" are", " you?"],
            ))])],
        );
    let layer = layer(FallbackConfig::builder().fallbacks("a", ["b"]));
    let (out, fallbacks, failure) = stream_through(&layer, &upstream, "a").await;
    let seen = parse(&out);
    assert_eq!(seen.text, "Hello, world! How are you?");
    assert_eq!(seen.roles, 1, "{out}");
    assert_eq!(seen.dones, 1);
    assert_eq!(seen.after_end, 0);
    assert_eq!(seen.finishes, ["stop"]);
    assert!(seen.errors.is_empty());
    assert!(seen.ids.iter().all(|id| id == "a1"), "{:?}", seen.ids);
    // Each chunk names the model that wrote it.
    assert_eq!(seen.models.last().map(String::as_str), Some("model-b"));
    assert_eq!((fallbacks, failure), (0, None));

    let calls = upstream.calls();
    let asked: Vec<(&str, Option<&str>)> = calls
        .iter()
        .map(|c| (c.group.as_str(), c.prefill.as_deref()))
        .collect();
    assert_eq!(
        asked,
        [
            ("a", None),
            ("a", Some("Hello, wor")),
            ("b", Some("Hello, world! How")),
        ]
    );
    assert!(calls.iter().all(|c| c.chat_matches_body));
}

#[tokio::test(start_paused = true)]
async fn when_nothing_can_continue_the_stream_ends_with_an_error_naming_the_cut() {
    let prefill_rejected = Failure::new(
        ErrorClass::BadRequest,
        "This model does not support assistant message prefill.",
    );
    let upstream = Upstream::new()
        .script(
            "a",
            vec![
                stream(vec![data(role("a1", "m") + &text("a1", "m", "Hel")), cut()]),
                stream(vec![data(role("a2", "m") + &text("a2", "m", "lo")), cut()]),
            ],
        )
        .script("b", vec![Step::Fail(prefill_rejected)]);
    let layer = layer(FallbackConfig::builder().fallbacks("a", ["b"]));
    let (out, _, failure) = stream_through(&layer, &upstream, "a").await;
    let seen = parse(&out);
    assert_eq!(seen.text, "Hello");
    assert_eq!(seen.dones, 0, "never a clean end: {out}");
    assert!(seen.finishes.is_empty());
    assert_eq!(seen.errors.len(), 1);
    assert_eq!(seen.after_end, 0);
    let error = &seen.errors[0];
    assert_eq!(error["code"], "stream_interrupted");
    assert_eq!(error["type"], "upstream_error");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("upstream_unavailable"), "{message}");
    assert!(!message.contains("prefill"), "{message}");
    let failure = failure.unwrap();
    assert_eq!(failure.class(), ErrorClass::StreamInterrupted);
    assert_eq!(failure.subkind(), Some("upstream_unavailable"));
    assert_eq!(upstream.groups(), ["a", "a", "b"]);
}

#[tokio::test(start_paused = true)]
async fn the_error_event_is_redacted_with_the_requests_redactor() {
    // A cause whose text names a secret the classifier could not know, and
    // a key it did not catch.
    let secret = "correcthorsebattery";
    let cause = Failure::new(
        ErrorClass::StreamInterrupted,
        format!("cut by {secret} (key=sk-proj-AbC123dEf456GhI789)"),
    );
    let script = || {
        Upstream::new().script(
            "a",
            vec![stream(vec![
                data(role("a1", "m") + &text("a1", "m", "Hel")),
                Part::Error(cause.clone()),
            ])],
        )
    };
    let layer = layer(FallbackConfig::builder().max_continuations(0));
    let mut request = request("a", true);
    request
        .extensions_mut()
        .insert(Redactor::new([secret].into_iter().collect()));
    let response = layer.layer(script()).oneshot(request).await.unwrap();
    let mut body = response.into_body();
    let mut out = Vec::new();
    while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
        out.extend_from_slice(&frame.unwrap().into_data().unwrap());
    }
    let out = String::from_utf8(out).unwrap();
    let seen = parse(&out);
    assert_eq!(seen.text, "Hel");
    assert_eq!(seen.errors.len(), 1, "{out}");
    assert_eq!(
        seen.errors[0]["message"],
        "cut by [redacted] (key=[redacted])"
    );
    assert_eq!(
        body.failure().unwrap().message(),
        "cut by [redacted] (key=[redacted])"
    );
    // Without one, the event is the cause's own (already client-safe, as
    // classifiers make it).
    let (out, ..) = stream_through(&layer, &script(), "a").await;
    assert!(out.contains(secret), "{out}");
}

#[tokio::test(start_paused = true)]
async fn groups_that_take_no_prefill_are_skipped() {
    let upstream = Upstream::new()
        .script(
            "a",
            vec![stream(vec![
                data(role("a1", "m") + &text("a1", "m", "Hel")),
                Part::Error(Failure::timeout(TimeoutKind::StreamIdle)),
            ])],
        )
        .script(
            "openai",
            vec![stream(vec![data(answer("o", "gpt", &["lo"]))])],
        )
        .script(
            "claude",
            vec![stream(vec![data(answer("c", "claude", &["lo"]))])],
        );
    let config = FallbackConfig::builder()
        .fallbacks("a", ["openai", "claude"])
        .supports_assistant_prefill("a", false)
        .supports_assistant_prefill("openai", false);
    let (out, ..) = stream_through(&layer(config), &upstream, "a").await;
    let seen = parse(&out);
    assert_eq!(seen.text, "Hello");
    assert_eq!(seen.dones, 1);
    assert_eq!(upstream.groups(), ["a", "claude"]);
}

#[tokio::test(start_paused = true)]
async fn a_stall_mid_answer_is_continued_and_named_when_it_cannot_be() {
    let stalled = || {
        stream(vec![
            data(role("a1", "m") + &text("a1", "m", "Once upon")),
            Part::Wait(Duration::from_secs(30)),
            Part::Error(Failure::timeout(TimeoutKind::StreamIdle)),
        ])
    };
    let upstream = Upstream::new().script(
        "a",
        vec![
            stalled(),
            stream(vec![data(answer("a2", "m", &[" a time"]))]),
        ],
    );
    let (out, ..) = stream_through(&layer(FallbackConfig::builder()), &upstream, "a").await;
    let seen = parse(&out);
    assert_eq!(seen.text, "Once upon a time");
    assert_eq!(seen.dones, 1);
    assert!(seen.errors.is_empty());

    // Continuation off: the stall ends the stream with an error event.
    let upstream = Upstream::new().script("a", vec![stalled()]);
    let config = FallbackConfig::builder().max_continuations(0);
    let (out, _, failure) = stream_through(&layer(config), &upstream, "a").await;
    let seen = parse(&out);
    assert_eq!(seen.text, "Once upon");
    assert_eq!(seen.dones, 0);
    let message = seen.errors[0]["message"].as_str().unwrap();
    assert!(message.contains("timeout"), "{message}");
    assert_eq!(failure.unwrap().subkind(), Some("timeout"));
    assert_eq!(upstream.groups(), ["a"]);
}

#[tokio::test(start_paused = true)]
async fn an_end_after_the_finish_without_done_is_completed() {
    let upstream_stream = role("a1", "m") + &text("a1", "m", "Hi") + &finish("a1", "m");
    let upstream = Upstream::new().script("a", vec![stream(vec![data(upstream_stream.clone())])]);
    let (out, _, failure) = stream_through(&layer(FallbackConfig::builder()), &upstream, "a").await;
    assert_eq!(out, upstream_stream + DONE);
    assert_eq!(failure, None);
    assert_eq!(upstream.groups(), ["a"]);

    // A reset after the finish: the answer is whole all the same.
    let upstream_stream = role("a1", "m") + &text("a1", "m", "Hi") + &finish("a1", "m");
    let upstream = Upstream::new().script(
        "a",
        vec![stream(vec![data(upstream_stream.clone()), cut()])],
    );
    let (out, ..) = stream_through(&layer(FallbackConfig::builder()), &upstream, "a").await;
    assert_eq!(out, upstream_stream + DONE);
    assert_eq!(upstream.groups(), ["a"]);
}

#[tokio::test(start_paused = true)]
async fn a_malformed_event_is_a_break_and_never_reaches_the_client() {
    let upstream = Upstream::new().script(
        "a",
        vec![
            stream(vec![
                data(role("a1", "m") + &text("a1", "m", "Hel")),
                data("data: {\"choices\":[{\"delta\":{\"content\":\"lo\n\n"),
                data(text("a1", "m", "never")),
            ]),
            stream(vec![data(answer("a2", "m", &["lo"]))]),
        ],
    );
    let (out, ..) = stream_through(&layer(FallbackConfig::builder()), &upstream, "a").await;
    let seen = parse(&out);
    assert_eq!(seen.text, "Hello");
    assert_eq!(seen.dones, 1);
    assert!(!out.contains("never"));
}

#[tokio::test(start_paused = true)]
async fn an_error_event_after_content_is_a_break() {
    let error_event =
        "data: {\"error\":{\"message\":\"Provider returned error\",\"code\":502}}\n\n";
    let upstream = Upstream::new().script(
        "a",
        vec![
            stream(vec![data(
                role("a1", "m") + &text("a1", "m", "Hel") + error_event + &text("a1", "m", "x"),
            )]),
            stream(vec![data(answer("a2", "m", &["lo"]))]),
        ],
    );
    let (out, ..) = stream_through(&layer(FallbackConfig::builder()), &upstream, "a").await;
    let seen = parse(&out);
    assert_eq!(seen.text, "Hello");
    assert!(seen.errors.is_empty());
    assert_eq!(upstream.calls()[1].prefill.as_deref(), Some("Hel"));
}

#[tokio::test(start_paused = true)]
async fn whitespace_that_ended_the_text_is_not_sent_twice() {
    let upstream = Upstream::new().script(
        "a",
        vec![
            stream(vec![
                data(role("a1", "m") + &text("a1", "m", "Hello, ")),
                cut(),
            ]),
            stream(vec![data(answer("a2", "m", &[" world", "."]))]),
        ],
    );
    let (out, ..) = stream_through(&layer(FallbackConfig::builder()), &upstream, "a").await;
    assert_eq!(parse(&out).text, "Hello, world.");
    // The prefill leaves it out: some providers reject a prefill that ends
    // in whitespace.
    assert_eq!(upstream.calls()[1].prefill.as_deref(), Some("Hello,"));
}

#[tokio::test(start_paused = true)]
async fn tool_calls_are_not_continued() {
    let tool = chunk(
        "a1",
        "m",
        r#"{"tool_calls":[{"index":0,"id":"t","type":"function","function":{"name":"f","arguments":"{\"a"}}]}"#,
        None,
    );
    let upstream = Upstream::new()
        .script(
            "a",
            vec![stream(vec![data(role("a1", "m") + &tool), cut()])],
        )
        .script("b", vec![stream(vec![data(answer("b1", "m", &["x"]))])]);
    let (out, _, failure) = stream_through(
        &layer(FallbackConfig::builder().fallbacks("a", ["b"])),
        &upstream,
        "a",
    )
    .await;
    let seen = parse(&out);
    assert_eq!(seen.errors.len(), 1);
    assert_eq!(seen.dones, 0);
    assert!(failure.is_some());
    assert_eq!(upstream.groups(), ["a"]);
}

#[tokio::test(start_paused = true)]
async fn the_prefix_held_back_is_bounded() {
    let keep_alives = ": PROCESSING\n\n".repeat(10);
    let upstream = Upstream::new()
        .script(
            "a",
            vec![
                stream(vec![data(keep_alives.clone()), Part::Hang]),
                stream(vec![data(answer("a2", "m", &["Hi"]))]),
            ],
        )
        .script("b", vec![stream(vec![data(answer("b1", "m", &["Hi"]))])]);
    let config = FallbackConfig::builder()
        .fallbacks("a", ["b"])
        .max_commit_bytes(100);
    let response = layer(config)
        .layer(upstream.clone())
        .oneshot(request("a", true))
        .await
        .unwrap();
    // Committed past the bound, before any content: the keep-alives are the
    // first thing out, one event per frame.
    let mut body = response.into_body();
    let mut first = Vec::new();
    for _ in 0..10 {
        let frame = http_body_util::BodyExt::frame(&mut body)
            .await
            .unwrap()
            .unwrap();
        first.extend_from_slice(&frame.into_data().unwrap());
    }
    assert_eq!(first, keep_alives.as_bytes());
    assert_eq!(upstream.groups(), ["a"]);
}

#[tokio::test(start_paused = true)]
async fn the_continuation_waits_no_longer_than_the_deadline() {
    let upstream = Upstream::new().script(
        "a",
        vec![
            stream(vec![data(role("a1", "m") + &text("a1", "m", "Hel")), cut()]),
            Step::Hang,
        ],
    );
    let response = layer(FallbackConfig::builder())
        .layer(upstream.clone())
        .oneshot(with_deadline(request("a", true), Duration::from_secs(10)))
        .await
        .unwrap();
    let start = tokio::time::Instant::now();
    let out = read(response.into_body()).await;
    assert_eq!(start.elapsed(), Duration::from_secs(10));
    let seen = parse(&out);
    assert_eq!(seen.text, "Hel");
    assert_eq!(seen.errors.len(), 1);
    assert_eq!(upstream.groups(), ["a", "a"]);
}

#[tokio::test(start_paused = true)]
async fn the_continuations_usage_is_the_one_reported() {
    let usage = "data: {\"id\":\"a2\",\"object\":\"chat.completion.chunk\",\"created\":2,\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":2,\"total_tokens\":14}}\n\n";
    let continuation = role("a2", "m") + &text("a2", "m", "lo") + &finish("a2", "m") + usage + DONE;
    let upstream = Upstream::new().script(
        "a",
        vec![
            stream(vec![data(role("a1", "m") + &text("a1", "m", "Hel")), cut()]),
            stream(vec![data(continuation)]),
        ],
    );
    let (out, ..) = stream_through(&layer(FallbackConfig::builder()), &upstream, "a").await;
    let usages: Vec<serde_json::Value> = out
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|v| v.get("usage").cloned())
        .collect();
    assert_eq!(usages.len(), 1);
    assert_eq!(usages[0]["completion_tokens"], 2);
    assert_eq!(parse(&out).text, "Hello");
}

#[tokio::test(start_paused = true)]
async fn a_group_that_rejects_the_prefill_is_not_asked_again_and_the_next_one_continues() {
    let unavailable = Failure::new(ErrorClass::UpstreamUnavailable, "down");
    let rejected = error_response(400, "invalid_request", "prefill is not supported");
    let upstream = Upstream::new()
        .script(
            "a",
            vec![
                stream(vec![data(role("a1", "m") + &text("a1", "m", "Hel")), cut()]),
                Step::Fail(unavailable),
            ],
        )
        .script("b", vec![rejected])
        .script("c", vec![stream(vec![data(answer("c1", "m", &["lo"]))])]);
    let config = FallbackConfig::builder()
        .fallbacks("a", ["b", "c"])
        .max_continuations(3);
    let (out, fallbacks, failure) = stream_through(&layer(config), &upstream, "a").await;
    let seen = parse(&out);
    assert_eq!(seen.text, "Hello");
    assert_eq!((seen.dones, seen.roles), (1, 1));
    assert_eq!((fallbacks, failure), (0, None));
    let asked: Vec<(String, Option<String>)> = upstream
        .calls()
        .into_iter()
        .map(|c| (c.group, c.prefill))
        .collect();
    let hel = Some("Hel".to_owned());
    assert_eq!(
        asked,
        [
            ("a".to_owned(), None),
            ("a".to_owned(), hel.clone()),
            ("b".to_owned(), hel.clone()),
            ("c".to_owned(), hel),
        ]
    );
}
