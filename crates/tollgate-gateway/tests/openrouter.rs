//! OpenRouter deployments through the whole gateway: the normalizer on the
//! wire, against a testkit upstream replaying OpenRouter's own answers
//! (in memory, paused time).

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::{chat_body, sse_data, streamed_text};
use http_body_util::{BodyExt, Full};
use tollgate_gateway::upstream::UpstreamClient;
use tollgate_gateway::{Gateway, config};
use tollgate_testkit::{Reply, Upstream};

const KEY: &str = "sk-or-v1-test-key-0123456789";

fn fixture(name: &str) -> Bytes {
    let path = format!(
        "{}/../tollgate-openrouter/tests/fixtures/openrouter/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

/// Two free deployments of one group, so the pool rule has somewhere to go.
fn gateway_over(upstream: &Arc<Upstream>) -> Gateway {
    let yaml = "model_list:\n  - model_name: free\n    litellm_params:\n      model: openrouter/deepseek/deepseek-chat:free\n      api_base: http://openrouter.invalid/api/v1\n      api_key: os.environ/OPENROUTER_API_KEY\n    model_info:\n      id: or-deepseek\n  - model_name: free\n    litellm_params:\n      model: openrouter/z-ai/glm-4.5-air:free\n      api_base: http://openrouter.invalid/api/v1\n      api_key: os.environ/OPENROUTER_API_KEY\n    model_info:\n      id: or-glm\nrouter_settings:\n  num_retries: 2\n";
    let loaded = config::load_str(yaml, &|_| Some(KEY.to_owned())).unwrap();
    let upstream = Arc::clone(upstream);
    let client = UpstreamClient::in_memory(Gateway::client_config(&loaded.config), move |_| {
        Ok(upstream.connect_in_memory())
    });
    Gateway::with_client(&loaded.config, client).unwrap()
}

async fn chat(gateway: &Gateway, stream: bool) -> http::Response<Bytes> {
    let request = http::Request::post("/v1/chat/completions")
        .body(Full::new(Bytes::from(chat_body("free", stream))))
        .unwrap();
    let (parts, body) = gateway.handle(request).await.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    http::Response::from_parts(parts, body)
}

#[tokio::test(start_paused = true)]
async fn requests_go_to_openrouter_with_its_headers_and_the_bare_slug() {
    let upstream = Arc::new(Upstream::start().await);
    let gateway = gateway_over(&upstream);
    upstream.push(Reply::bytes(
        200,
        "application/json",
        fixture("success_nonstream.json"),
    ));
    let response = chat(&gateway, false).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert!(
        body.get("provider").is_none(),
        "OpenRouter's extra fields are gone"
    );

    let request = &upstream.requests()[0];
    assert_eq!(request.uri.path(), "/api/v1/chat/completions");
    assert_eq!(
        request.headers["authorization"],
        format!("Bearer {KEY}").as_str()
    );
    assert_eq!(request.headers["x-title"], "Tollgate");
    assert_eq!(request.json()["model"], "deepseek/deepseek-chat:free");
}

#[tokio::test(start_paused = true)]
async fn a_stream_split_anywhere_arrives_whole_and_openai_shaped() {
    let upstream = Arc::new(Upstream::start().await);
    let gateway = gateway_over(&upstream);
    let sse = fixture("stream_success.sse");
    let expected = streamed_text(&sse_data(&sse));
    assert!(!expected.is_empty());
    // A deterministic spread of cut points, 1-byte chunks included.
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for round in 0..24 {
        let mut reply = Reply::sse();
        let mut at = 0;
        while at < sse.len() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = if round == 0 {
                1
            } else {
                1 + (seed % 97) as usize
            };
            let end = (at + len).min(sse.len());
            reply = reply.raw(sse.slice(at..end));
            at = end;
        }
        upstream.push(reply);
        let response = chat(&gateway, true).await;
        assert_eq!(response.status(), 200);
        let body = response.body();
        assert_eq!(streamed_text(&sse_data(body)), expected, "round {round}");
        let events = sse_data(body);
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
        for data in &events[..events.len() - 1] {
            let chunk: serde_json::Value = serde_json::from_str(data).unwrap();
            assert!(chunk.get("provider").is_none(), "{data}");
            assert!(chunk.get("error").is_none(), "{data}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn an_error_inside_a_200_becomes_a_5xx_without_the_providers_words() {
    let upstream = Arc::new(Upstream::start().await);
    let gateway = gateway_over(&upstream);
    // The retries (2) meet the same answer every time.
    for _ in 0..3 {
        upstream.push(Reply::bytes(
            200,
            "application/json",
            fixture("error_in_200_top_level.json"),
        ));
    }
    let response = chat(&gateway, false).await;
    assert!(response.status().is_server_error(), "{}", response.status());
    let text = String::from_utf8_lossy(response.body()).into_owned();
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(body["error"]["code"].is_string(), "{text}");
    for secret in [
        "Provider returned error",
        "Chutes",
        "upstream connect error",
        "user_2tQm",
    ] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    assert_eq!(response.headers()["x-tollgate-attempted-retries"], "2");
}

#[tokio::test(start_paused = true)]
async fn an_error_before_any_content_is_a_proper_http_error() {
    let upstream = Arc::new(Upstream::start().await);
    let gateway = gateway_over(&upstream);
    upstream.push(Reply::sse().raw(fixture("stream_error_before_content.sse")));
    let response = chat(&gateway, true).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["content-type"], "application/json");
    // The free daily quota is not retried: the pool is empty until midnight.
    assert_eq!(upstream.requests().len(), 1);
}

/// A fixture answer with the status and headers of its `.headers` sidecar.
fn fixture_reply(name: &str) -> Reply {
    let sidecar = String::from_utf8(fixture(&format!("{name}.headers")).to_vec()).unwrap();
    let mut lines = sidecar.lines();
    let status: u16 = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap();
    let mut reply = Reply::bytes(status, "application/json", fixture(&format!("{name}.json")));
    for line in lines {
        if let Some((name, value)) = line.split_once(':')
            && !name.eq_ignore_ascii_case("content-type")
        {
            reply = reply.header(name.trim(), value.trim());
        }
    }
    reply
}

#[tokio::test(start_paused = true)]
async fn the_free_pool_daily_limit_is_not_tried_on_the_other_free_models() {
    let upstream = Arc::new(Upstream::start().await);
    let gateway = gateway_over(&upstream);
    upstream.push(fixture_reply("429_free_models_per_day"));
    let response = chat(&gateway, false).await;
    assert_eq!(response.status(), 429);
    // Every free model shares the account's daily pool: trying the other
    // deployment of the group would only spend a request.
    let requests = upstream.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].json()["model"], "deepseek/deepseek-chat:free");
}

#[tokio::test(start_paused = true)]
async fn one_models_capacity_limit_moves_on_to_the_other_model() {
    let upstream = Arc::new(Upstream::start().await);
    let gateway = gateway_over(&upstream);
    upstream.push(fixture_reply("429_model_shared_capacity"));
    upstream.push(Reply::bytes(
        200,
        "application/json",
        fixture("success_nonstream.json"),
    ));
    let response = chat(&gateway, false).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-tollgate-deployment"], "or-glm");
    let requests = upstream.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].json()["model"], "deepseek/deepseek-chat:free");
    assert_eq!(requests[1].json()["model"], "z-ai/glm-4.5-air:free");
}

/// The first deployment's shape: free models in a cascade (each its own
/// group, one account), then a paid model of the same account.
fn cascade_over(upstream: &Arc<Upstream>) -> Gateway {
    let group = |name: &str, slug: &str| {
        format!(
            "  - model_name: {name}\n    litellm_params:\n      model: openrouter/{slug}\n      api_base: http://openrouter.invalid/api/v1\n      api_key: os.environ/OPENROUTER_API_KEY\n"
        )
    };
    let yaml = format!(
        "model_list:\n{}{}{}router_settings:\n  num_retries: 0\n  fallbacks:\n    - deepseek: [\"glm\", \"paid\"]\n",
        group("deepseek", "deepseek/deepseek-chat:free"),
        group("glm", "z-ai/glm-4.5-air:free"),
        group("paid", "z-ai/glm-4.5-air"),
    );
    let loaded = config::load_str(&yaml, &|_| Some(KEY.to_owned())).unwrap();
    let upstream = Arc::clone(upstream);
    let client = UpstreamClient::in_memory(Gateway::client_config(&loaded.config), move |_| {
        Ok(upstream.connect_in_memory())
    });
    Gateway::with_client(&loaded.config, client).unwrap()
}

async fn ask(gateway: &Gateway, model: &str) -> http::Response<Bytes> {
    let request = http::Request::post("/v1/chat/completions")
        .body(Full::new(Bytes::from(chat_body(model, false))))
        .unwrap();
    let (parts, body) = gateway.handle(request).await.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    http::Response::from_parts(parts, body)
}

fn models_asked(upstream: &Upstream) -> Vec<String> {
    upstream
        .requests()
        .iter()
        .map(|r| r.json()["model"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn an_error_inside_a_200_falls_over_to_the_next_model() {
    let upstream = Arc::new(Upstream::start().await);
    let gateway = cascade_over(&upstream);
    upstream.push(Reply::bytes(
        200,
        "application/json",
        fixture("error_in_200_top_level.json"),
    ));
    upstream.push(Reply::bytes(
        200,
        "application/json",
        fixture("success_nonstream.json"),
    ));
    let response = ask(&gateway, "deepseek").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-tollgate-model-group"], "glm");
    assert_eq!(response.headers()["x-tollgate-attempted-fallbacks"], "1");
    assert!(!String::from_utf8_lossy(response.body()).contains("Chutes"));
    assert_eq!(
        models_asked(&upstream),
        ["deepseek/deepseek-chat:free", "z-ai/glm-4.5-air:free"]
    );
}

#[tokio::test(start_paused = true)]
async fn the_free_pool_daily_limit_skips_every_free_model_of_the_cascade() {
    let upstream = Arc::new(Upstream::start().await);
    let gateway = cascade_over(&upstream);
    upstream.push(fixture_reply("429_free_models_per_day"));
    upstream.push(Reply::bytes(
        200,
        "application/json",
        fixture("success_nonstream.json"),
    ));
    let response = ask(&gateway, "deepseek").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-tollgate-model-group"], "paid");
    // The other free model shares the exhausted pool: never asked.
    assert_eq!(
        models_asked(&upstream),
        ["deepseek/deepseek-chat:free", "z-ai/glm-4.5-air"]
    );
}

#[tokio::test(start_paused = true)]
async fn one_models_capacity_limit_falls_over_to_the_next_free_model() {
    let upstream = Arc::new(Upstream::start().await);
    let gateway = cascade_over(&upstream);
    upstream.push(fixture_reply("429_model_shared_capacity"));
    upstream.push(Reply::bytes(
        200,
        "application/json",
        fixture("success_nonstream.json"),
    ));
    let response = ask(&gateway, "deepseek").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-tollgate-model-group"], "glm");
    assert_eq!(
        models_asked(&upstream),
        ["deepseek/deepseek-chat:free", "z-ai/glm-4.5-air:free"]
    );
}
