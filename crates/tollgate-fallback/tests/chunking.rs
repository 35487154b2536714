//! Whatever the chunking of the upstream streams and wherever they break,
//! the client gets whole JSON events and, when a continuation takes over,
//! exactly the text the upstreams wrote, once.

mod support;

use bytes::Bytes;
use proptest::prelude::*;
use tollgate_core::{ErrorClass, Failure, TimeoutKind};
use tollgate_fallback::{FallbackConfig, FallbackLayer};
use tower::{Layer, ServiceExt};

use support::*;

/// How the first stream breaks after its content.
#[derive(Debug, Clone, Copy)]
enum BreakKind {
    Reset,
    Stall,
    EndEarly,
    HalfEvent,
    ErrorEvent,
    Malformed,
}

fn break_parts(kind: BreakKind) -> (String, Option<Part>) {
    match kind {
        BreakKind::Reset => (String::new(), Some(cut())),
        BreakKind::Stall => (
            String::new(),
            Some(Part::Error(Failure::timeout(TimeoutKind::StreamIdle))),
        ),
        BreakKind::EndEarly => (String::new(), None),
        BreakKind::HalfEvent => ("data: {\"id\":\"a1\",\"choi".to_owned(), None),
        BreakKind::ErrorEvent => (
            "data: {\"error\":{\"message\":\"Internal error\",\"code\":500}}\n\n".to_owned(),
            None,
        ),
        BreakKind::Malformed => ("data: {\"choices\":[{\"delta\":\n\n".to_owned(), None),
    }
}

/// `bytes` cut at the given fractions of its length.
fn chunked(bytes: &str, cuts: &[f64]) -> Vec<Part> {
    let bytes = Bytes::copy_from_slice(bytes.as_bytes());
    let mut at: Vec<usize> = cuts
        .iter()
        .map(|f| (f * bytes.len() as f64) as usize)
        .filter(|&i| i > 0 && i < bytes.len())
        .collect();
    at.sort_unstable();
    at.dedup();
    let mut parts = Vec::new();
    let mut start = 0;
    for end in at.into_iter().chain([bytes.len()]) {
        parts.push(Part::Data(bytes.slice(start..end)));
        start = end;
    }
    parts
}

fn token() -> impl Strategy<Value = String> {
    "[a-zA-Zé\"\\\\][a-zA-Z \"\\\\é\n]{0,6}[a-zA-Z.!]"
}

fn run(
    tokens: &[String],
    at: usize,
    kind: BreakKind,
    same_group_continues: bool,
    max_continuations: u32,
    cuts: [Vec<f64>; 2],
) -> (String, Vec<String>) {
    let (head, tail) = tokens.split_at(at);
    let mut first = role("a1", "m");
    for t in head {
        first += &text("a1", "m", t);
    }
    let (extra, error) = break_parts(kind);
    first += &extra;
    let mut first_parts = chunked(&first, &cuts[0]);
    first_parts.extend(error);

    let mut rest = role("c1", "m2");
    for t in tail {
        rest += &text("c1", "m2", t);
    }
    rest += &finish("c1", "m2");
    rest += DONE;
    let continuation = stream(chunked(&rest, &cuts[1]));
    let unavailable = Step::Fail(Failure::new(ErrorClass::UpstreamUnavailable, "down"));

    let upstream = if same_group_continues {
        Upstream::new().script("a", vec![stream(first_parts), continuation])
    } else {
        Upstream::new()
            .script("a", vec![stream(first_parts), unavailable])
            .script("b", vec![continuation])
    };
    let config = FallbackConfig::builder()
        .fallbacks("a", ["b"])
        .max_continuations(max_continuations)
        .build()
        .unwrap();
    let layer = FallbackLayer::new(config);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let out = runtime.block_on(async {
        let response = layer
            .layer(upstream.clone())
            .oneshot(request("a", true))
            .await
            .unwrap();
        read(response.into_body()).await
    });
    (out, upstream.groups())
}

fn kind() -> impl Strategy<Value = BreakKind> {
    prop_oneof![
        Just(BreakKind::Reset),
        Just(BreakKind::Stall),
        Just(BreakKind::EndEarly),
        Just(BreakKind::HalfEvent),
        Just(BreakKind::ErrorEvent),
        Just(BreakKind::Malformed),
    ]
}

fn cuts() -> impl Strategy<Value = [Vec<f64>; 2]> {
    let one = || proptest::collection::vec(0.0..1.0f64, 0..12);
    (one(), one()).prop_map(|(a, b)| [a, b])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn a_continued_stream_is_whole_json_with_every_word_once(
        tokens in proptest::collection::vec(token(), 2..10),
        at in 1usize..9,
        kind in kind(),
        same_group_continues in any::<bool>(),
        cuts in cuts(),
    ) {
        let at = at.min(tokens.len() - 1);
        let (out, groups) = run(&tokens, at, kind, same_group_continues, 2, cuts);
        let seen = parse(&out);
        prop_assert_eq!(&seen.text, &tokens.concat(), "{}", out);
        prop_assert_eq!(seen.dones, 1);
        prop_assert_eq!(seen.roles, 1);
        prop_assert!(seen.errors.is_empty());
        prop_assert_eq!(seen.after_end, 0);
        prop_assert!(seen.ids.iter().all(|id| id == "a1"));
        let expected: &[&str] = if same_group_continues { &["a", "a"] } else { &["a", "a", "b"] };
        prop_assert_eq!(groups, expected);
    }

    #[test]
    fn a_broken_stream_that_is_not_continued_ends_with_one_error_event(
        tokens in proptest::collection::vec(token(), 2..10),
        at in 1usize..9,
        kind in kind(),
        cuts in cuts(),
    ) {
        let at = at.min(tokens.len() - 1);
        let (out, groups) = run(&tokens, at, kind, true, 0, cuts);
        let seen = parse(&out);
        prop_assert_eq!(&seen.text, &tokens[..at].concat(), "{}", out);
        prop_assert_eq!(seen.dones, 0);
        prop_assert_eq!(seen.errors.len(), 1);
        prop_assert_eq!(&seen.errors[0]["code"], "stream_interrupted");
        prop_assert_eq!(seen.after_end, 0);
        prop_assert!(seen.finishes.is_empty());
        prop_assert_eq!(groups, ["a"]);
    }
}
