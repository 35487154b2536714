//! Splitting an upstream's body anywhere changes neither the record nor
//! the bytes the client gets.

mod support;

use proptest::prelude::*;
use tollgate_cost::{Charge, Outcome, PriceTable, TokenPrices, TokenUsage, Usd};

use support::*;

const STREAM_REQUEST: &str =
    r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Hi"}]}"#;
const STREAM_REQUEST_ASKED: &str = r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Hi"}]}"#;
const JSON_REQUEST: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hi"}]}"#;

fn prices() -> PriceTable {
    PriceTable::empty().with_model(
        "gpt-4o-mini",
        TokenPrices::new(Usd::from_picos(150_000), Usd::from_picos(600_000)),
    )
}

/// What must not depend on chunking.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    outcome: Outcome,
    usage: Option<TokenUsage>,
    cost: Charge,
    client: bytes::Bytes,
    client_error: bool,
}

fn through_the_layer(request: &str, answer: &Answer, sizes: Vec<usize>) -> Seen {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let run = runtime.block_on(run(
        prices(),
        |layer| layer,
        support::request(request),
        answer.clone(),
        sizes,
        Read::All,
    ));
    let record = run.record();
    Seen {
        outcome: record.outcome,
        usage: record.usage,
        cost: record.cost,
        client: run.client.clone(),
        client_error: run.client_error,
    }
}

/// Cut offsets as chunk sizes, the last chunk covering the rest.
fn sizes(len: usize, mut cuts: Vec<usize>) -> Vec<usize> {
    cuts.retain(|&c| c > 0 && c < len);
    cuts.sort_unstable();
    cuts.dedup();
    let mut sizes = Vec::new();
    let mut at = 0;
    for cut in cuts {
        sizes.push(cut - at);
        at = cut;
    }
    sizes.push(len - at + 1);
    sizes
}

fn scenarios() -> Vec<(&'static str, Answer)> {
    let crlf = OPENAI_STREAM.replace('\n', "\r\n");
    let cut = OPENAI_STREAM.replace(
        "data: [DONE]\n\n",
        "data: {\"choices\":[{\"delta\":{\"content\":\"x",
    );
    vec![
        (STREAM_REQUEST, Answer::Sse(OPENAI_STREAM.into(), Then::End)),
        (
            STREAM_REQUEST_ASKED,
            Answer::Sse(OPENAI_STREAM.into(), Then::End),
        ),
        (STREAM_REQUEST, Answer::Sse(crlf, Then::End)),
        (
            STREAM_REQUEST,
            Answer::Sse(OPENROUTER_STREAM.into(), Then::End),
        ),
        (STREAM_REQUEST, Answer::Sse(cut.clone(), Then::End)),
        (STREAM_REQUEST, Answer::Sse(cut, Then::Reset)),
        (JSON_REQUEST, Answer::Json(200, OPENAI_JSON.into())),
        (JSON_REQUEST, Answer::Json(200, OPENROUTER_REASONING.into())),
    ]
}

#[test]
fn the_unsplit_runs_are_what_they_should_be() {
    let seen = |i: usize| {
        let (request, answer) = &scenarios()[i];
        through_the_layer(request, answer, vec![])
    };
    // Stripped when the layer asked, untouched when the client did.
    assert_eq!(seen(0).client, without_usage_chunk(OPENAI_STREAM));
    assert_eq!(seen(1).client, OPENAI_STREAM);
    assert_eq!(seen(0).usage, seen(1).usage);
    assert_eq!(
        seen(2).client,
        without_usage_chunk(OPENAI_STREAM).replace('\n', "\r\n")
    );
    assert_eq!(seen(3).client, without_usage_chunk(OPENROUTER_STREAM));
    // A stream cut inside an event: the client still gets the piece.
    assert!(seen(4).client.ends_with(b"\"content\":\"x"));
    assert_eq!(
        seen(4).outcome,
        Outcome::Failed(tollgate_core::ErrorClass::UpstreamUnavailable)
    );
    assert!(seen(5).client_error);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn splitting_a_body_anywhere_changes_nothing(
        scenario in 0usize..8,
        cuts in proptest::collection::vec(0usize..3_000, 0..40),
    ) {
        let (request, answer) = &scenarios()[scenario];
        let len = match answer {
            Answer::Json(_, body) | Answer::Sse(body, _) => body.len(),
            Answer::Refused => 0,
        };
        let whole = through_the_layer(request, answer, vec![]);
        let split = through_the_layer(request, answer, sizes(len, cuts));
        prop_assert_eq!(split, whole);
    }
}

/// Every single cut of every stream, exhaustively: the cases the proptest
/// can miss. (It once missed a cut between the CR and the LF that end the
/// usage chunk of a CR LF stream: the LF then started the next event and
/// reached the client without the chunk it belonged to.)
#[test]
fn one_cut_anywhere_in_a_stream_changes_nothing() {
    for (scenario, (request, answer)) in scenarios().iter().enumerate() {
        let Answer::Sse(body, _) = answer else {
            continue;
        };
        let whole = through_the_layer(request, answer, vec![]);
        for cut in 1..body.len() {
            let split = through_the_layer(request, answer, sizes(body.len(), vec![cut]));
            assert_eq!(split, whole, "scenario {scenario}, cut at {cut}");
        }
    }
}
