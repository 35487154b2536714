//! The Azure layer against the testkit upstream, over loopback.

#![cfg(feature = "azure")]

mod common;

use std::time::Duration;

use common::{call, chat_request, chunks, client, text_of};
use serde_json::{Value, json};
use tollgate_core::{ErrorClass, Failure};
use tollgate_providers::ProviderConfig;
use tollgate_providers::azure::{Azure, AzureLayer};
use tollgate_testkit::{Reply, Upstream, azure as fake, openai};
use tower::Layer;

const KEY: &str = "0123456789abcdef0123456789abcdef";

fn layer(upstream: &Upstream) -> AzureLayer {
    Azure::layer(
        &ProviderConfig::new()
            .api_base(upstream.url())
            .api_key(KEY)
            .api_version("2024-10-21"),
    )
    .unwrap()
}

fn ask(stream: bool) -> Value {
    json!({"model": "azure/gpt-4o-prod", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn completions_and_streams_reach_the_deployment() {
    let upstream = Upstream::start().await;
    upstream.push(Reply::json(200, openai::chat_completion("Hello")));
    let mut stream = Reply::sse().data(fake::prompt_filter_chunk());
    for chunk in openai::chunks(&["Hel", "lo"]) {
        stream = stream.data(chunk);
    }
    upstream.push(stream.done());
    let service = layer(&upstream).layer(client());

    let (_, body) = call(service.clone(), chat_request(&ask(false)))
        .await
        .unwrap();
    assert_eq!(body, openai::chat_completion("Hello").to_string());
    let (_, body) = call(service, chat_request(&ask(true))).await.unwrap();
    let (chunks, done) = chunks(&body);
    assert!(done);
    assert_eq!(text_of(&chunks), "Hello");
    assert!(
        chunks
            .iter()
            .all(|c| c.get("prompt_filter_results").is_none())
    );

    let sent = &upstream.requests()[0];
    assert_eq!(
        sent.uri,
        "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(sent.headers["api-key"], KEY);
    assert!(!sent.headers.contains_key("authorization"));
}

#[tokio::test]
async fn the_content_filter_and_rate_limits_are_classified() {
    let upstream = Upstream::start().await;
    upstream.push(Reply::json(400, fake::content_filter_error("violence")));
    upstream.push(Reply::json(200, fake::filtered_completion("hate")));
    upstream.push(
        Reply::json(
            429,
            openai::error_body(
                "Requests to the ChatCompletions_Create Operation have exceeded call rate limit",
                "requests",
                Some("429"),
            ),
        )
        .header("retry-after-ms", "1500"),
    );
    let service = layer(&upstream).layer(client());

    let error = call(service.clone(), chat_request(&ask(false)))
        .await
        .unwrap_err();
    let filtered = Failure::from_error(&*error);
    assert_eq!(filtered.class(), ErrorClass::ContentPolicy);
    assert!(filtered.message().contains("violence"));

    let error = call(service.clone(), chat_request(&ask(false)))
        .await
        .unwrap_err();
    let filtered = Failure::from_error(&*error);
    assert_eq!(filtered.class(), ErrorClass::ContentPolicy);
    assert!(filtered.message().contains("hate"));

    let error = call(service, chat_request(&ask(false))).await.unwrap_err();
    let limited = Failure::from_error(&*error);
    assert_eq!(limited.class(), ErrorClass::RateLimited);
    assert_eq!(limited.retry_after(), Some(Duration::from_millis(1500)));
    assert!(!format!("{limited:?} {error:?}").contains(KEY));
}
