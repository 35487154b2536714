//! The Vertex AI layers against the testkit's Vertex fake: the service
//! account's token (one for many requests, refreshed before expiry, under
//! paused time), its refusals, and both model families.

#![cfg(feature = "vertex")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{call, chat_request, chunks, client, text_of};
use http::Request;
use serde_json::{Value, json};
use tollgate_core::{BoxError, ErrorClass, Failure, RequestBody};
use tollgate_providers::ProviderConfig;
use tollgate_providers::vertex::{Vertex, VertexLayer};
use tollgate_testkit::vertex::{self as fake, model_path};
use tollgate_testkit::{Reply, anthropic};
use tower::{Layer, service_fn};

const CLAUDE: &str = "claude-3-5-sonnet@20240620";

fn layer(fake: &fake::Vertex) -> VertexLayer {
    Vertex::layer(
        &ProviderConfig::new()
            .api_base(fake.url())
            .vertex_location("us-east5")
            .vertex_credentials(fake.service_account_json()),
    )
    .unwrap()
}

fn ask(model: &str, stream: bool) -> Value {
    let mut body = json!({
        "model": model,
        "messages": [{"role": "user", "content": "Say hello"}],
    });
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

/// The fake reached over in-memory connections, so time can be paused.
fn in_memory(
    fake: &Arc<fake::Vertex>,
) -> impl tower::Service<
    Request<RequestBody>,
    Response = http::Response<hyper::body::Incoming>,
    Error = BoxError,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    let fake = fake.clone();
    service_fn(move |request: Request<RequestBody>| {
        let fake = fake.clone();
        async move { fake.send_in_memory(request).await }
    })
}

fn bearer(request: &tollgate_testkit::RecordedRequest) -> String {
    request.headers["authorization"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// Issue 14, acceptance 4: one token request for many completions, and a
/// new one before the token expires.
#[tokio::test(start_paused = true)]
async fn one_token_serves_many_completions_and_is_refreshed_before_it_expires() {
    let fake = Arc::new(fake::Vertex::start().await);
    fake.set_expires_in(3600);
    fake.upstream()
        .set_default(Reply::json(200, anthropic::message("Hi")));
    let service = layer(&fake).layer(in_memory(&fake));

    // Concurrent first requests share one token request (single flight).
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let service = service.clone();
        tasks.spawn(async move { call(service, chat_request(&ask(CLAUDE, false))).await });
    }
    while let Some(done) = tasks.join_next().await {
        let (head, _) = done.unwrap().unwrap();
        assert_eq!(head.status(), 200);
    }
    for _ in 0..12 {
        let (head, _) = call(service.clone(), chat_request(&ask(CLAUDE, false)))
            .await
            .unwrap();
        assert_eq!(head.status(), 200);
    }
    assert_eq!(fake.token_requests(), 1);
    let first = fake.upstream().requests();
    assert_eq!(first.len(), 20);
    assert!(first.iter().all(|r| bearer(r) == bearer(&first[0])));

    // Within five minutes of expiry: refreshed, though still valid.
    tokio::time::advance(Duration::from_secs(3_400)).await;
    for _ in 0..3 {
        call(service.clone(), chat_request(&ask(CLAUDE, false)))
            .await
            .unwrap();
    }
    assert_eq!(fake.token_requests(), 2);
    let after = fake.upstream().requests();
    assert_ne!(bearer(&after[20]), bearer(&first[0]));

    // Past the new token's expiry too: a third, and the answer still comes.
    tokio::time::advance(Duration::from_secs(7_200)).await;
    let (head, body) = call(service.clone(), chat_request(&ask(CLAUDE, false)))
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["choices"][0]["message"]["content"], "Hi");
    assert_eq!(fake.token_requests(), 3);
    assert_eq!(fake.issued_tokens().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_short_lived_token_is_refreshed_at_half_its_life() {
    let fake = Arc::new(fake::Vertex::start().await);
    fake.set_expires_in(120);
    fake.upstream()
        .set_default(Reply::json(200, anthropic::message("Hi")));
    let service = layer(&fake).layer(in_memory(&fake));
    call(service.clone(), chat_request(&ask(CLAUDE, false)))
        .await
        .unwrap();
    tokio::time::advance(Duration::from_secs(59)).await;
    call(service.clone(), chat_request(&ask(CLAUDE, false)))
        .await
        .unwrap();
    assert_eq!(fake.token_requests(), 1);
    tokio::time::advance(Duration::from_secs(2)).await;
    call(service.clone(), chat_request(&ask(CLAUDE, false)))
        .await
        .unwrap();
    assert_eq!(fake.token_requests(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_refused_token_fails_as_auth_and_is_asked_again_next_time() {
    let fake = Arc::new(fake::Vertex::start().await);
    fake.upstream()
        .set_default(Reply::json(200, anthropic::message("Hi")));
    let service = layer(&fake).layer(in_memory(&fake));

    fake.refuse_tokens(Some(Reply::json(
        400,
        json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
    )));
    let error = call(service.clone(), chat_request(&ask(CLAUDE, false)))
        .await
        .unwrap_err();
    let failure = Failure::from_error(&*error);
    assert_eq!(failure.class(), ErrorClass::Auth);
    assert!(failure.message().contains("invalid_grant"));
    // The assertion (a JWT, `eyJ…`) and the key never show.
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains("eyJ"));
    assert!(!shown.contains("PRIVATE KEY"));

    fake.refuse_tokens(Some(fake::google_error(503, "UNAVAILABLE", "try later")));
    let error = call(service.clone(), chat_request(&ask(CLAUDE, false)))
        .await
        .unwrap_err();
    let failure = Failure::from_error(&*error);
    assert_eq!(failure.class(), ErrorClass::UpstreamUnavailable);
    assert_eq!(failure.subkind(), Some("token_unavailable"));

    fake.refuse_tokens(Some(Reply::bytes(200, "application/json", "{not json")));
    let error = call(service.clone(), chat_request(&ask(CLAUDE, false)))
        .await
        .unwrap_err();
    assert_eq!(
        Failure::from_error(&*error).class(),
        ErrorClass::UpstreamUnavailable
    );

    // Failures are not kept: the next request asks again, and succeeds.
    fake.refuse_tokens(None);
    let (head, _) = call(service, chat_request(&ask(CLAUDE, false)))
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(fake.token_requests(), 4);
}

#[tokio::test]
async fn an_unreachable_token_endpoint_is_unavailable() {
    let fake = fake::Vertex::start().await;
    let key_file = fake.service_account_json().replace(
        &fake.token_uri(),
        &format!("{}/token", tollgate_testkit::Upstream::refused_url()),
    );
    let service = Vertex::layer(
        &ProviderConfig::new()
            .api_base(fake.url())
            .vertex_credentials(key_file),
    )
    .unwrap()
    .layer(client());
    let error = call(service, chat_request(&ask(CLAUDE, false)))
        .await
        .unwrap_err();
    let failure = Failure::from_error(&*error);
    assert_eq!(failure.class(), ErrorClass::UpstreamUnavailable);
    assert!(fake.upstream().requests().is_empty());
}

#[tokio::test]
async fn a_claude_stream_goes_through_stream_raw_predict() {
    let fake = fake::Vertex::start().await;
    fake.upstream()
        .push(Reply::sse().raw(anthropic::text_stream(&["Hel", "lo"])));
    let service = layer(&fake).layer(client());
    let (head, body) = call(service, chat_request(&ask(CLAUDE, true)))
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    let (chunks, done) = chunks(&body);
    assert!(done);
    assert_eq!(text_of(&chunks), "Hello");
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["completion_tokens"], anthropic::OUTPUT_TOKENS);

    let sent = &fake.upstream().requests()[0];
    assert_eq!(
        sent.uri.path(),
        model_path("us-east5", "anthropic", CLAUDE, "streamRawPredict")
    );
    assert!(bearer(sent).starts_with("Bearer ya29."));
    assert_eq!(sent.json()["anthropic_version"], fake::ANTHROPIC_VERSION);
    assert_eq!(fake.token_requests(), 1);
}

#[tokio::test]
async fn a_gemini_completion_goes_through_generate_content() {
    let fake = fake::Vertex::start().await;
    fake.upstream().push(Reply::json(
        200,
        json!({
            "candidates": [{"content": {"role": "model", "parts": [{"text": "Hello!"}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 6, "candidatesTokenCount": 2, "totalTokenCount": 8},
            "modelVersion": "gemini-2.0-flash",
        }),
    ));
    let service = layer(&fake).layer(client());
    let (head, body) = call(service, chat_request(&ask("gemini-2.0-flash", false)))
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["choices"][0]["message"]["content"], "Hello!");
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    assert_eq!(answer["usage"]["prompt_tokens"], 6);
    let sent = &fake.upstream().requests()[0];
    assert_eq!(
        sent.uri.path(),
        model_path("us-east5", "google", "gemini-2.0-flash", "generateContent")
    );
    assert!(sent.headers.get("x-goog-api-key").is_none());
}

#[tokio::test]
async fn vertex_quota_errors_are_rate_limits() {
    let fake = fake::Vertex::start().await;
    fake.upstream().push(fake::google_error(
        429,
        "RESOURCE_EXHAUSTED",
        "Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model",
    ));
    let service = layer(&fake).layer(client());
    let error = call(service, chat_request(&ask(CLAUDE, false)))
        .await
        .unwrap_err();
    assert_eq!(
        Failure::from_error(&*error).class(),
        ErrorClass::RateLimited
    );
}

#[tokio::test(start_paused = true)]
async fn deployments_of_one_service_account_share_its_token() {
    let fake = Arc::new(fake::Vertex::start().await);
    fake.upstream()
        .set_default(Reply::json(200, anthropic::message("Hi")));
    let claude = layer(&fake).layer(in_memory(&fake));
    let gemini = layer(&fake).layer(in_memory(&fake));
    fake.upstream().push(Reply::json(
        200,
        tollgate_testkit::gemini::response("Hello"),
    ));
    call(gemini, chat_request(&ask("gemini-2.0-flash", false)))
        .await
        .unwrap();
    call(claude, chat_request(&ask(CLAUDE, false)))
        .await
        .unwrap();
    assert_eq!(fake.token_requests(), 1);

    // A layer of its own asks for its own token.
    let account =
        tollgate_providers::vertex::ServiceAccount::from_json(&fake.service_account_json())
            .unwrap();
    let own = tollgate_providers::vertex::GoogleAuthLayer::new(account);
    let vertex = Vertex::new(
        &ProviderConfig::new()
            .api_base(fake.url())
            .vertex_location("us-east5"),
        fake::PROJECT,
    )
    .unwrap();
    let service = VertexLayer::new(tollgate_providers::ProviderLayer::new(vertex), own)
        .layer(in_memory(&fake));
    call(service, chat_request(&ask(CLAUDE, false)))
        .await
        .unwrap();
    assert_eq!(fake.token_requests(), 2);
}

/// A request waiting for another's token request is not stranded when that
/// request is dropped (its client went away): it asks again itself.
#[tokio::test(start_paused = true)]
async fn a_dropped_token_request_leaves_no_request_waiting_forever() {
    let fake = Arc::new(fake::Vertex::start().await);
    fake.upstream()
        .set_default(Reply::json(200, anthropic::message("Hi")));
    fake.set_token_delay(Duration::from_secs(5));
    let service = layer(&fake).layer(in_memory(&fake));

    let asking = tokio::spawn(call(service.clone(), chat_request(&ask(CLAUDE, false))));
    for _ in 0..10_000 {
        if fake.token_requests() == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(fake.token_requests(), 1);
    let waiting = tokio::spawn(call(service.clone(), chat_request(&ask(CLAUDE, false))));
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    asking.abort();
    let (head, _) = waiting.await.unwrap().unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(fake.token_requests(), 2);
    assert!(asking.await.unwrap_err().is_cancelled());
}
