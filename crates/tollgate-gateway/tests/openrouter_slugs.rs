//! OpenRouter slugs that do not exist are found by listing OpenRouter's
//! models with the configured key — here a scripted upstream on loopback
//! standing in for OpenRouter (`api_base` pointed at it).

use std::process::Command;

use serde_json::json;
use tollgate_gateway::config;
use tollgate_gateway::upstream::{ClientConfig, UpstreamClient};
use tollgate_testkit::{Reply, Upstream};

fn config_text(url: &str) -> String {
    format!(
        "model_list:
  - model_name: known
    litellm_params:
      model: openrouter/deepseek/deepseek-chat:free
      api_base: {url}/api/v1
  - model_name: nitro
    litellm_params:
      model: openrouter/deepseek/deepseek-chat:nitro
      api_base: {url}/api/v1
  - model_name: typo
    litellm_params:
      model: openrouter/deepseek/deepseek-chatt:free
      api_base: {url}/api/v1
"
    )
}

fn model_list() -> Reply {
    Reply::json(
        200,
        json!({"data": [
            {"id": "deepseek/deepseek-chat", "name": "DeepSeek V3"},
            {"id": "deepseek/deepseek-chat:free", "name": "DeepSeek V3 (free)"},
        ]}),
    )
}

#[tokio::test]
async fn unknown_slugs_are_found_with_one_list_request_carrying_the_key() {
    let upstream = Upstream::start().await;
    upstream.set_default(model_list());
    let text = config_text(&upstream.url());
    let loaded = config::load_str(&text, &|var| {
        (var == "OPENROUTER_API_KEY").then(|| "sk-or-v1-slug-check".to_owned())
    })
    .unwrap();
    let client = UpstreamClient::new(ClientConfig::default());
    let unknown = tollgate_gateway::openrouter_models::unknown_slugs(&loaded.config, &client)
        .await
        .unwrap();
    assert_eq!(
        unknown,
        [(
            "typo/0".to_owned(),
            "deepseek/deepseek-chatt:free".to_owned()
        )]
    );
    let requests = upstream.requests();
    assert_eq!(requests.len(), 1, "one list for one base and key");
    assert_eq!(requests[0].method, "GET");
    assert_eq!(requests[0].uri.path(), "/api/v1/models");
    assert_eq!(
        requests[0].headers["authorization"],
        "Bearer sk-or-v1-slug-check"
    );
}

// Multi-threaded: the scripted upstream answers while this thread waits
// for the binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_online_warns_and_strict_fails() {
    let upstream = Upstream::start().await;
    upstream.set_default(model_list());
    let dir = std::env::temp_dir().join(format!("tollgate-slugs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("slugs.yaml");
    std::fs::write(&path, config_text(&upstream.url())).unwrap();
    let run = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .arg("check-config")
            .arg(&path)
            .args(["--host", "127.0.0.1"])
            .args(args)
            .env_clear()
            .env("OPENROUTER_API_KEY", "sk-or-v1-slug-check")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        (output.status.success(), text)
    };
    let (ok, text) = run(&["--online"]);
    assert!(ok, "{text}");
    assert!(
        text.contains(
            "typo/0: OpenRouter does not list the model \"deepseek/deepseek-chatt:free\""
        ),
        "{text}"
    );
    assert!(!text.contains("known/0: OpenRouter"), "{text}");
    assert!(!text.contains("sk-or-v1-slug-check"), "{text}");
    let (ok, text) = run(&["--online", "--strict"]);
    assert!(!ok, "{text}");
    // Offline, the same file is clean.
    let (ok, text) = run(&["--strict"]);
    assert!(ok, "{text}");
}

mod common;

#[tokio::test]
async fn health_providers_marks_the_unknown_slug() {
    let upstream = Upstream::start().await;
    upstream.set_default(model_list());
    let text = config_text(&upstream.url());
    let env = [("OPENROUTER_API_KEY", "sk-or-v1-slug-check")];
    let gateway = common::TestGateway::start(&text, &env).await;
    let loaded = config::load_str(&text, &|_| Some(env[0].1.to_owned())).unwrap();
    gateway.gateway.watch_openrouter_models(&loaded.config);
    upstream.wait_for_requests(1).await;
    let client = common::client();
    // The list has been asked for; its answer lands within a few turns of
    // the runtime (bounded: no clock involved).
    let mut marked = Vec::new();
    for _ in 0..200 {
        let health = common::call(&client, "GET", &gateway.url("/health/providers"), "", &[]).await;
        marked = health.json()["providers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["upstream_model_unknown"] == json!(true))
            .map(|p| p["deployment"].as_str().unwrap().to_owned())
            .collect();
        if !marked.is_empty() {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(marked, ["typo/0"]);
    gateway.shutdown().await;
}
