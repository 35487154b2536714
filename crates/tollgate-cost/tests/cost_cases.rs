//! The cost layer's acceptance table: each row is one call through the
//! layer, with the exact cost it must record — computed by hand in its
//! comment — and what the client and the upstream must see. Every row runs
//! with the upstream's body in one chunk, in 1-byte chunks and in chunks of
//! odd sizes: chunking must not change anything.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use tollgate_core::extensions::{Attempt, EndUser, KeyName, ModelGroup, RequestId, Target};
use tollgate_core::{BoxError, ChatRequest, ErrorClass, RequestBody};
use tollgate_cost::{
    Charge, CostLayer, Outcome, PriceTable, RequestTally, TokenPrices, TokenUsage, Usd,
};
use tower::{Layer, ServiceExt, service_fn};

use support::*;

/// `{"model":"gpt-4o-mini","stream":true,"messages":[…]}`: 109 bytes, so
/// an estimate counts ⌈109 / 4⌉ = 28 prompt tokens.
const STREAM_REQUEST: &str = r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"What is the capital of France?"}]}"#;
const STREAM_REQUEST_ASKED: &str = r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"What is the capital of France?"}]}"#;

fn json_request(model: &str) -> String {
    format!(
        r#"{{"model":"{model}","messages":[{{"role":"user","content":"What is the capital of France?"}}]}}"#
    )
}

fn stream_request(model: &str) -> String {
    format!(
        r#"{{"model":"{model}","stream":true,"messages":[{{"role":"user","content":"What is the capital of France?"}}]}}"#
    )
}

/// gpt-4o-mini at $0.15 / $0.60 per million tokens (cache reads $0.075):
/// 150,000 and 600,000 pico-dollars a token. Set explicitly, over the
/// built-in list, so that a change of the built-in data does not move
/// these rows.
fn mini_prices() -> PriceTable {
    PriceTable::builtin().with_model(
        "gpt-4o-mini",
        TokenPrices::new(Usd::from_picos(150_000), Usd::from_picos(600_000))
            .with_cache_read(Usd::from_picos(75_000)),
    )
}

fn openrouter_prices() -> PriceTable {
    PriceTable::builtin()
        .with_openrouter_models(OPENROUTER_MODELS)
        .unwrap()
}

/// Claude Sonnet for the deployment `sonnet-eu`: $3 in, $15 out, $0.30
/// cache reads, $3.75 cache writes, and (unlike the built-in price)
/// reasoning at $10 per million tokens.
fn sonnet_deployment_prices() -> PriceTable {
    PriceTable::builtin().with_deployment(
        "sonnet-eu",
        TokenPrices::new(Usd::from_picos(3_000_000), Usd::from_picos(15_000_000))
            .with_cache_read(Usd::from_picos(300_000))
            .with_cache_write(Usd::from_picos(3_750_000))
            .with_reasoning(Usd::from_picos(10_000_000)),
    )
}

fn usage(prompt: u64, completion: u64) -> TokenUsage {
    TokenUsage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        ..TokenUsage::default()
    }
}

/// The first four events of the OpenAI stream: the role chunk and three
/// content chunks ("Paris", " is the capital", " of France.").
fn first_four_events() -> String {
    OPENAI_STREAM
        .split_inclusive("\n\n")
        .take(4)
        .collect::<String>()
}

const CACHED_REASONING_JSON: &str = r#"{"id":"gen-1","object":"chat.completion","model":"anthropic/claude-sonnet-4.5","choices":[{"index":0,"message":{"role":"assistant","content":"Done."},"finish_reason":"stop"}],"usage":{"prompt_tokens":2000,"completion_tokens":500,"total_tokens":2500,"prompt_tokens_details":{"cached_tokens":1500,"cache_write_tokens":200},"completion_tokens_details":{"reasoning_tokens":300}}}"#;

/// What the client must read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    /// Exactly what the upstream sent.
    AsSent,
    /// What the upstream sent, without the usage chunk.
    WithoutUsageChunk,
    /// Nothing: the call failed.
    Nothing,
}

struct Case {
    name: &'static str,
    request: String,
    target: Option<Target>,
    prices: fn() -> PriceTable,
    answer: Answer,
    read: Read,
    body_limit: Option<usize>,
    // What must happen.
    outcome: Outcome,
    usage: Option<TokenUsage>,
    cost: Charge,
    header: Option<&'static str>,
    client: Client,
    upstream_include_usage: bool,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "OpenAI, not streaming",
            request: json_request("gpt-4o-mini"),
            target: None,
            prices: mini_prices,
            answer: Answer::Json(200, OPENAI_JSON.into()),
            read: Read::All,
            body_limit: None,
            outcome: Outcome::Success,
            usage: Some(usage(14, 8)),
            // 14 × 150,000 + 8 × 600,000 = 2,100,000 + 4,800,000
            cost: Charge::Priced(Usd::from_picos(6_900_000)),
            header: Some("0.0000069"),
            client: Client::AsSent,
            upstream_include_usage: false,
        },
        Case {
            name: "OpenAI stream, the client asked for usage",
            request: STREAM_REQUEST_ASKED.into(),
            target: None,
            prices: mini_prices,
            answer: Answer::Sse(OPENAI_STREAM.into(), Then::End),
            read: Read::All,
            body_limit: None,
            outcome: Outcome::Success,
            usage: Some(usage(14, 8)),
            // 14 × 150,000 + 8 × 600,000
            cost: Charge::Priced(Usd::from_picos(6_900_000)),
            header: None,
            client: Client::AsSent,
            upstream_include_usage: true,
        },
        Case {
            name: "OpenAI stream, the layer asked for usage",
            request: STREAM_REQUEST.into(),
            target: None,
            prices: mini_prices,
            answer: Answer::Sse(OPENAI_STREAM.into(), Then::End),
            read: Read::All,
            body_limit: None,
            outcome: Outcome::Success,
            usage: Some(usage(14, 8)),
            // 14 × 150,000 + 8 × 600,000
            cost: Charge::Priced(Usd::from_picos(6_900_000)),
            header: None,
            client: Client::WithoutUsageChunk,
            upstream_include_usage: true,
        },
        Case {
            name: "OpenRouter free model, provider cost 0",
            request: json_request("deepseek/deepseek-chat:free"),
            target: None,
            prices: openrouter_prices,
            answer: Answer::Json(200, OPENROUTER_JSON.into()),
            read: Read::All,
            body_limit: None,
            outcome: Outcome::Success,
            usage: Some(usage(14, 8)),
            // "cost": 0
            cost: Charge::Provider(Usd::ZERO),
            header: Some("0"),
            client: Client::AsSent,
            upstream_include_usage: false,
        },
        Case {
            name: "OpenRouter reasoning, provider cost",
            request: json_request("z-ai/glm-4.5-air"),
            target: None,
            prices: openrouter_prices,
            answer: Answer::Json(200, OPENROUTER_REASONING.into()),
            read: Read::All,
            body_limit: None,
            outcome: Outcome::Success,
            usage: Some(TokenUsage {
                reasoning_tokens: 198,
                ..usage(412, 286)
            }),
            // "cost": 0.00029666, exactly: 296,660,000 picos.
            cost: Charge::Provider(Usd::from_picos(296_660_000)),
            header: Some("0.00029666"),
            client: Client::AsSent,
            upstream_include_usage: false,
        },
        Case {
            name: "OpenRouter reasoning without usage.cost, priced from its models list",
            request: json_request("z-ai/glm-4.5-air"),
            target: None,
            prices: openrouter_prices,
            answer: Answer::Json(
                200,
                OPENROUTER_REASONING.replace(r#""cost": 0.00029666,"#, ""),
            ),
            read: Read::All,
            body_limit: None,
            outcome: Outcome::Success,
            usage: Some(TokenUsage {
                reasoning_tokens: 198,
                ..usage(412, 286)
            }),
            // 412 × 130,000 + 286 × 850,000 (reasoning at the completion
            // price: "internal_reasoning": "0") = 53,560,000 + 243,100,000
            // = 296,660,000: the provider's own figure.
            cost: Charge::Priced(Usd::from_picos(296_660_000)),
            header: Some("0.00029666"),
            client: Client::AsSent,
            upstream_include_usage: false,
        },
        Case {
            name: "OpenRouter stream, the layer asked for usage",
            request: stream_request("deepseek/deepseek-chat:free"),
            target: None,
            prices: openrouter_prices,
            answer: Answer::Sse(OPENROUTER_STREAM.into(), Then::End),
            read: Read::All,
            body_limit: None,
            outcome: Outcome::Success,
            usage: Some(usage(14, 8)),
            // "cost":0 in the usage chunk.
            cost: Charge::Provider(Usd::ZERO),
            header: None,
            client: Client::WithoutUsageChunk,
            upstream_include_usage: true,
        },
        Case {
            name: "cached, cache-write and reasoning tokens priced apart, by deployment",
            request: json_request("sonnet"),
            target: Some(Target {
                model_group: "sonnet".into(),
                deployment_id: "sonnet-eu".into(),
                upstream_model: "anthropic/claude-sonnet-4.5".into(),
            }),
            prices: sonnet_deployment_prices,
            answer: Answer::Json(200, CACHED_REASONING_JSON.into()),
            read: Read::All,
            body_limit: None,
            outcome: Outcome::Success,
            usage: Some(TokenUsage {
                prompt_tokens: 2_000,
                cached_prompt_tokens: 1_500,
                cache_write_tokens: 200,
                completion_tokens: 500,
                reasoning_tokens: 300,
                estimated: false,
            }),
            // uncached 300 × 3,000,000 = 900,000,000
            // cached 1,500 × 300,000 = 450,000,000
            // written 200 × 3,750,000 = 750,000,000
            // visible 200 × 15,000,000 = 3,000,000,000
            // reasoning 300 × 10,000,000 = 3,000,000,000
            // = 8,100,000,000 (the built-in Sonnet price, reasoning at
            // $15, would give 9,600,000,000: the deployment's won).
            cost: Charge::Priced(Usd::from_picos(8_100_000_000)),
            header: Some("0.0081"),
            client: Client::AsSent,
            upstream_include_usage: false,
        },
        Case {
            name: "a :free model without a provider cost",
            request: json_request("meta-llama/llama-3.2-3b-instruct:free"),
            target: None,
            prices: mini_prices,
            answer: Answer::Json(200, OPENAI_JSON.into()),
            read: Read::All,
            body_limit: None,
            outcome: Outcome::Success,
            usage: Some(usage(14, 8)),
            cost: Charge::Free,
            header: Some("0"),
            client: Client::AsSent,
            upstream_include_usage: false,
        },
        Case {
            name: "a model without a price",
            request: json_request("acme/mystery-1"),
            target: None,
            prices: mini_prices,
            answer: Answer::Json(200, OPENAI_JSON.into()),
            read: Read::All,
            body_limit: None,
            outcome: Outcome::Success,
            usage: Some(usage(14, 8)),
            cost: Charge::Unknown,
            header: None,
            client: Client::AsSent,
            upstream_include_usage: false,
        },
        Case {
            name: "a 503: a failed attempt, not billed",
            request: json_request("gpt-4o-mini"),
            target: None,
            prices: mini_prices,
            answer: Answer::Json(
                503,
                r#"{"error":{"message":"overloaded","type":"server_error","code":null}}"#.into(),
            ),
            read: Read::All,
            body_limit: None,
            outcome: Outcome::Failed(ErrorClass::UpstreamUnavailable),
            usage: None,
            cost: Charge::NotBilled,
            header: None,
            client: Client::AsSent,
            upstream_include_usage: false,
        },
        Case {
            name: "a 429 insufficient_quota: classified from its body",
            request: json_request("gpt-4o-mini"),
            target: None,
            prices: mini_prices,
            answer: Answer::Json(429, OPENAI_QUOTA.into()),
            read: Read::All,
            body_limit: None,
            outcome: Outcome::Failed(ErrorClass::InsufficientCredits),
            usage: None,
            cost: Charge::NotBilled,
            header: None,
            client: Client::AsSent,
            upstream_include_usage: false,
        },
        Case {
            name: "an error inside a 200",
            request: json_request("gpt-4o-mini"),
            target: None,
            prices: mini_prices,
            answer: Answer::Json(
                200,
                r#"{"error":{"message":"Provider returned error","code":502}}"#.into(),
            ),
            read: Read::All,
            body_limit: None,
            outcome: Outcome::Failed(ErrorClass::UpstreamUnavailable),
            usage: None,
            cost: Charge::NotBilled,
            header: Some("0"),
            client: Client::AsSent,
            upstream_include_usage: false,
        },
        Case {
            name: "a refused connection: Err, not billed",
            request: stream_request("gpt-4o-mini"),
            target: None,
            prices: mini_prices,
            answer: Answer::Refused,
            read: Read::All,
            body_limit: None,
            outcome: Outcome::Failed(ErrorClass::UpstreamUnavailable),
            usage: None,
            cost: Charge::NotBilled,
            header: None,
            client: Client::Nothing,
            upstream_include_usage: true,
        },
        Case {
            name: "a stream the client dropped midway: estimated",
            request: STREAM_REQUEST.into(),
            target: None,
            prices: mini_prices,
            answer: Answer::Sse(first_four_events(), Then::Stall),
            read: Read::UntilStalled,
            body_limit: None,
            outcome: Outcome::Cancelled,
            // ⌈109 / 4⌉ = 28 prompt tokens; 3 content events.
            usage: Some(TokenUsage {
                estimated: true,
                ..usage(28, 3)
            }),
            // 28 × 150,000 + 3 × 600,000 = 4,200,000 + 1,800,000
            cost: Charge::Priced(Usd::from_picos(6_000_000)),
            header: None,
            client: Client::AsSent,
            upstream_include_usage: true,
        },
        Case {
            name: "a stream broken before its usage: estimated",
            request: STREAM_REQUEST.into(),
            target: None,
            prices: mini_prices,
            answer: Answer::Sse(first_four_events(), Then::Reset),
            read: Read::All,
            body_limit: None,
            outcome: Outcome::Failed(ErrorClass::UpstreamUnavailable),
            usage: Some(TokenUsage {
                estimated: true,
                ..usage(28, 3)
            }),
            // 28 × 150,000 + 3 × 600,000
            cost: Charge::Priced(Usd::from_picos(6_000_000)),
            header: None,
            client: Client::AsSent,
            upstream_include_usage: true,
        },
        Case {
            name: "a stream cut cleanly before [DONE]: estimated",
            request: STREAM_REQUEST.into(),
            target: None,
            prices: mini_prices,
            answer: Answer::Sse(first_four_events(), Then::End),
            read: Read::All,
            body_limit: None,
            outcome: Outcome::Failed(ErrorClass::UpstreamUnavailable),
            usage: Some(TokenUsage {
                estimated: true,
                ..usage(28, 3)
            }),
            // 28 × 150,000 + 3 × 600,000
            cost: Charge::Priced(Usd::from_picos(6_000_000)),
            header: None,
            client: Client::AsSent,
            upstream_include_usage: true,
        },
        Case {
            name: "a stream broken after its usage: the usage it saw",
            request: STREAM_REQUEST_ASKED.into(),
            target: None,
            prices: mini_prices,
            answer: Answer::Sse(OPENAI_STREAM.replace("data: [DONE]\n\n", ""), Then::Reset),
            read: Read::All,
            body_limit: None,
            outcome: Outcome::Failed(ErrorClass::UpstreamUnavailable),
            usage: Some(usage(14, 8)),
            // 14 × 150,000 + 8 × 600,000
            cost: Charge::Priced(Usd::from_picos(6_900_000)),
            header: None,
            client: Client::AsSent,
            upstream_include_usage: true,
        },
        Case {
            name: "a body over the limit passes through with an unknown usage",
            request: json_request("gpt-4o-mini"),
            target: None,
            prices: mini_prices,
            answer: Answer::Json(200, OPENAI_JSON.into()),
            read: Read::All,
            body_limit: Some(100),
            outcome: Outcome::Success,
            usage: None,
            cost: Charge::Unknown,
            header: None,
            client: Client::AsSent,
            upstream_include_usage: false,
        },
    ]
}

#[tokio::test(start_paused = true)]
async fn the_cost_table() {
    for case in cases() {
        for sizes in [vec![], vec![1], vec![7, 13, 3, 29]] {
            let name = format!("{} (chunks {sizes:?})", case.name);
            let mut request = request(&case.request);
            if let Some(target) = &case.target {
                request.extensions_mut().insert(target.clone());
            }
            let body_limit = case.body_limit;
            let run = run(
                (case.prices)(),
                |layer| match body_limit {
                    Some(limit) => layer.body_limit(limit),
                    None => layer,
                },
                request,
                case.answer.clone(),
                sizes,
                case.read,
            )
            .await;
            let record = run.record();
            assert_eq!(record.outcome, case.outcome, "{name}");
            assert_eq!(record.usage, case.usage, "{name}");
            assert_eq!(record.cost, case.cost, "{name}");
            assert_eq!(
                record.billed(),
                case.cost.billed(),
                "{name}: billed {:?}",
                record.billed().map(Usd::picos)
            );

            // The head: the exact cost of a complete answer.
            let header = run
                .headers
                .get("x-tollgate-response-cost")
                .map(|v| v.to_str().unwrap());
            assert_eq!(header, case.header, "{name}");
            if case.header.is_some() {
                assert_eq!(run.extensions.get::<Charge>(), Some(&case.cost), "{name}");
                assert_eq!(
                    run.extensions.get::<TokenUsage>(),
                    case.usage.as_ref(),
                    "{name}"
                );
            }

            // The client: what it asked for, as the upstream sent it.
            let sent = match &case.answer {
                Answer::Json(_, body) | Answer::Sse(body, _) => body.as_str(),
                Answer::Refused => "",
            };
            let expected = match case.client {
                Client::AsSent => sent.to_owned(),
                Client::WithoutUsageChunk => {
                    let stripped = without_usage_chunk(sent);
                    assert!(stripped.len() < sent.len(), "{name}: nothing to strip");
                    stripped
                }
                Client::Nothing => {
                    assert!(!run.responded, "{name}");
                    String::new()
                }
            };
            assert_eq!(
                std::str::from_utf8(&run.client).unwrap(),
                expected,
                "{name}"
            );
            let broke = matches!(case.answer, Answer::Sse(_, Then::Reset));
            if run.responded {
                assert_eq!(run.client_error, broke, "{name}");
            }

            // The upstream: include_usage in the body and in its view.
            let seen = ChatRequest::parse(run.seen.body.clone()).unwrap();
            assert_eq!(seen.include_usage(), case.upstream_include_usage, "{name}");
            let chat = run.seen.chat.as_ref().expect("the parsed view");
            assert_eq!(chat.bytes(), &run.seen.body, "{name}");
            assert_eq!(chat.include_usage(), case.upstream_include_usage, "{name}");
            if !case.upstream_include_usage || case.request.contains("include_usage") {
                assert_eq!(run.seen.body, case.request.as_bytes(), "{name}");
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_record_carries_the_request_context_and_times() {
    let (records, sink) = recording_sink();
    let upstream = service_fn(|_request: Request<RequestBody>| async {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let mut response = Response::new(Scripted::new(OPENAI_JSON.as_bytes(), &[], Then::End));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        Ok::<_, BoxError>(response)
    });
    let service = CostLayer::new(Arc::new(mini_prices()), sink).layer(upstream);
    let mut request = request(&json_request("mini"));
    let extensions = request.extensions_mut();
    extensions.insert(RequestId("req-1".into()));
    extensions.insert(KeyName("team-a".into()));
    extensions.insert(EndUser("alice".into()));
    extensions.insert(Attempt(2));
    extensions.insert(ModelGroup("ignored-when-a-target-says".into()));
    extensions.insert(Target {
        model_group: "mini".into(),
        deployment_id: "mini-1".into(),
        upstream_model: "openai/gpt-4o-mini".into(),
    });
    let before = std::time::SystemTime::now();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.headers()["x-tollgate-response-cost"], "0.0000069");
    let records = records.lock().unwrap();
    let record = &records[0];
    assert_eq!(record.request_id.as_deref(), Some("req-1"));
    assert_eq!(record.key.as_deref(), Some("team-a"));
    assert_eq!(record.end_user.as_deref(), Some("alice"));
    assert_eq!(record.model_group.as_deref(), Some("mini"));
    assert_eq!(record.deployment.as_deref(), Some("mini-1"));
    assert_eq!(record.upstream_model.as_deref(), Some("openai/gpt-4o-mini"));
    assert_eq!(record.attempt, 2);
    assert!(!record.stream);
    assert!(record.started_at >= before - Duration::from_secs(1));
    assert_eq!(record.first_byte, Some(Duration::from_millis(1_500)));
    assert_eq!(record.upstream_time, Duration::from_millis(1_500));
    // Priced by the upstream model's name (the request's "mini" is unknown).
    assert_eq!(record.cost, Charge::Priced(Usd::from_picos(6_900_000)));
}

#[tokio::test(start_paused = true)]
async fn without_a_target_the_record_names_the_requests_model_and_group() {
    let mut request = request(&json_request("gpt-4o-mini"));
    request.extensions_mut().insert(ModelGroup("cheap".into()));
    let run = run(
        mini_prices(),
        |layer| layer,
        request,
        Answer::Json(200, OPENAI_JSON.into()),
        vec![],
        Read::All,
    )
    .await;
    let record = run.record();
    assert_eq!(record.model_group.as_deref(), Some("cheap"));
    assert_eq!(record.upstream_model.as_deref(), Some("gpt-4o-mini"));
    assert_eq!(record.deployment, None);
    assert_eq!(record.attempt, 0);
}

#[tokio::test(start_paused = true)]
async fn a_tally_sums_the_attempts_of_a_request() {
    let tally = Arc::new(RequestTally::new());
    for answer in [
        Answer::Json(503, r#"{"error":{"message":"down"}}"#.into()),
        Answer::Json(200, OPENAI_JSON.into()),
        Answer::Json(200, OPENAI_JSON.into()),
    ] {
        let mut request = request(&json_request("gpt-4o-mini"));
        request.extensions_mut().insert(tally.clone());
        run(mini_prices(), |l| l, request, answer, vec![5], Read::All).await;
    }
    let sum = tally.snapshot();
    assert_eq!(sum.attempts, 3);
    // 0 + 6,900,000 + 6,900,000
    assert_eq!(sum.billed, Usd::from_picos(13_800_000));
    assert_eq!(
        (sum.usage.prompt_tokens, sum.usage.completion_tokens),
        (28, 16)
    );
    assert!(!sum.cost_unknown);
    assert!(!sum.usage.estimated);

    let mut request = request(&json_request("acme/mystery-1"));
    request.extensions_mut().insert(tally.clone());
    run(
        mini_prices(),
        |l| l,
        request,
        Answer::Json(200, OPENAI_JSON.into()),
        vec![],
        Read::All,
    )
    .await;
    let sum = tally.snapshot();
    assert_eq!(sum.attempts, 4);
    assert!(sum.cost_unknown);
    assert_eq!(sum.billed, Usd::from_picos(13_800_000));
}

#[tokio::test(start_paused = true)]
async fn a_request_that_is_not_a_chat_completion_passes_through() {
    let run = run(
        mini_prices(),
        |l| l,
        request("not json at all"),
        Answer::Json(200, OPENAI_JSON.into()),
        vec![],
        Read::All,
    )
    .await;
    assert_eq!(run.seen.body, "not json at all");
    assert!(run.seen.chat.is_none());
    assert_eq!(std::str::from_utf8(&run.client).unwrap(), OPENAI_JSON);
    let record = run.record();
    assert_eq!(record.outcome, Outcome::Success);
    // Its usage is read, but no model names a price.
    assert_eq!(record.usage, Some(usage(14, 8)));
    assert_eq!(record.cost, Charge::Unknown);
    assert_eq!(record.upstream_model, None);
}

#[tokio::test(start_paused = true)]
async fn the_parsed_view_is_used_and_replaced() {
    // The body's view is what the layer reads: not parsed again.
    let chat = Arc::new(ChatRequest::parse(Bytes::from(stream_request("gpt-4o-mini"))).unwrap());
    let request = Request::new(RequestBody::from_chat(chat.clone()));
    let run = run(
        mini_prices(),
        |l| l,
        request,
        Answer::Sse(OPENAI_STREAM.into(), Then::End),
        vec![],
        Read::All,
    )
    .await;
    let seen = run.seen.chat.as_ref().unwrap();
    // Replaced, bytes and view together.
    assert!(!Arc::ptr_eq(seen, &chat));
    let chat = seen;
    assert!(chat.include_usage());
    assert!(chat.stream());
    assert_eq!(chat.bytes(), &run.seen.body);
    assert_eq!(run.record().usage, Some(usage(14, 8)));
}

#[tokio::test(start_paused = true)]
async fn asking_for_usage_can_be_turned_off() {
    let run = run(
        mini_prices(),
        |layer| layer.include_usage(false),
        request(STREAM_REQUEST),
        Answer::Sse(first_four_events() + "data: [DONE]\n\n", Then::End),
        vec![11],
        Read::All,
    )
    .await;
    assert_eq!(run.seen.body, STREAM_REQUEST);
    let record = run.record();
    assert_eq!(record.outcome, Outcome::Success);
    // No usage came: the estimate, 28 × 150,000 + 3 × 600,000.
    assert_eq!(
        record.usage,
        Some(TokenUsage {
            estimated: true,
            ..usage(28, 3)
        })
    );
    assert_eq!(record.cost, Charge::Priced(Usd::from_picos(6_000_000)));
}

#[tokio::test(start_paused = true)]
async fn a_call_dropped_before_its_answer_is_cancelled_and_estimated() {
    let (records, sink) = recording_sink();
    let upstream = service_fn(|_request: Request<RequestBody>| async {
        std::future::pending::<()>().await;
        Ok::<Response<Scripted>, BoxError>(Response::new(Scripted::new(b"", &[], Then::End)))
    });
    let service = CostLayer::new(Arc::new(mini_prices()), sink).layer(upstream);
    let call = service.oneshot(request(STREAM_REQUEST));
    assert!(
        tokio::time::timeout(Duration::from_secs(5), call)
            .await
            .is_err()
    );
    let records = records.lock().unwrap();
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record.outcome, Outcome::Cancelled);
    assert_eq!(record.first_byte, None);
    assert_eq!(record.upstream_time, Duration::from_secs(5));
    // The prompt only: ⌈109 / 4⌉ = 28 tokens × 150,000.
    assert_eq!(
        record.usage,
        Some(TokenUsage {
            estimated: true,
            ..usage(28, 0)
        })
    );
    assert_eq!(record.cost, Charge::Priced(Usd::from_picos(4_200_000)));
}

#[tokio::test(start_paused = true)]
async fn prices_can_be_replaced_while_serving() {
    let (records, sink) = recording_sink();
    let upstream = service_fn(|_request: Request<RequestBody>| async {
        let mut response = Response::new(Scripted::new(OPENAI_JSON.as_bytes(), &[], Then::End));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        Ok::<_, BoxError>(response)
    });
    let layer = CostLayer::new(Arc::new(PriceTable::empty()), sink);
    let service = layer.layer(upstream);
    service
        .clone()
        .oneshot(request(&json_request("gpt-4o-mini")))
        .await
        .unwrap();
    layer.replace_prices(Arc::new(mini_prices()));
    service
        .oneshot(request(&json_request("gpt-4o-mini")))
        .await
        .unwrap();
    let records = records.lock().unwrap();
    assert_eq!(records[0].cost, Charge::Unknown);
    assert_eq!(records[1].cost, Charge::Priced(Usd::from_picos(6_900_000)));
}

/// A classifier that never watches streams: the layer still streams them.
#[derive(Debug, Clone, Copy)]
struct NoWatch;

impl tollgate_core::classify::ClassifyResponse for NoWatch {
    type Eos = tollgate_core::classify::OpenAiEos;

    fn classify_response<B>(
        &self,
        response: &Response<B>,
    ) -> tollgate_core::classify::Verdict<Self::Eos> {
        match tollgate_core::classify::OpenAiClassifier::new().classify_response(response) {
            tollgate_core::classify::Verdict::Watch(_) => tollgate_core::classify::Verdict::Success,
            verdict => verdict,
        }
    }

    fn classify_error_body(
        &self,
        status: http::StatusCode,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> tollgate_core::Failure {
        tollgate_core::classify::OpenAiClassifier::new().classify_error_body(status, headers, body)
    }
}

#[tokio::test(start_paused = true)]
async fn a_stream_is_never_read_whole_whatever_the_classifier_says() {
    let (records, sink) = recording_sink();
    // A stream that stalls after its content: reading it whole would hang.
    let upstream = service_fn(|_request: Request<RequestBody>| async {
        let mut response =
            Response::new(Scripted::new(OPENAI_STREAM.as_bytes(), &[100], Then::Stall));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/event-stream"),
        );
        Ok::<_, BoxError>(response)
    });
    let service = CostLayer::new(Arc::new(mini_prices()), sink)
        .classifier(NoWatch)
        .layer(upstream);
    let response = tokio::time::timeout(
        Duration::from_secs(1),
        service.oneshot(request(STREAM_REQUEST)),
    )
    .await
    .expect("the head comes at once")
    .unwrap();
    assert!(response.headers().get("x-tollgate-response-cost").is_none());
    let mut body = response.into_body();
    let mut client = Vec::new();
    while let Ok(Some(Ok(frame))) = tokio::time::timeout(
        Duration::from_secs(1),
        http_body_util::BodyExt::frame(&mut body),
    )
    .await
    {
        client.extend_from_slice(&frame.into_data().unwrap());
    }
    assert_eq!(client, without_usage_chunk(OPENAI_STREAM).as_bytes());
    drop(body);
    let records = records.lock().unwrap();
    // The usage came before the client left.
    assert_eq!(records[0].outcome, Outcome::Cancelled);
    assert_eq!(records[0].usage, Some(usage(14, 8)));
    assert_eq!(records[0].cost, Charge::Priced(Usd::from_picos(6_900_000)));
}
