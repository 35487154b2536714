//! Keys never reach a log line, an error body or a response header.

mod common;

use common::{Answer, Captured, TestGateway, call, chat_body, client, openai_config};
use tollgate_testkit::{Reply, Upstream, anthropic, openai};

const UPSTREAM_KEY: &str = "sk-upstream-SECRET-4f9a8b7c6d5e";
const MASTER_KEY: &str = "sk-master-SECRET-1a2b3c4d5e6f";

// One thread, so that every task of the gateway logs to this test's
// subscriber.
#[tokio::test(flavor = "current_thread")]
async fn keys_appear_in_no_log_body_or_header() {
    let logs = Captured::default();
    let _guard = tracing::subscriber::set_default(logs.subscriber());

    let upstream = Upstream::start().await;
    let env = [("UPSTREAM_KEY", UPSTREAM_KEY), ("MASTER_KEY", MASTER_KEY)];
    // One answer per request, so the script lines up with the requests.
    let extra = "general_settings:\n  master_key: os.environ/MASTER_KEY\nrouter_settings:\n  num_retries: 0\n  cooldown_time: 0\n";
    let gateway = TestGateway::start(&openai_config(&upstream.url(), extra), &env).await;
    let url = gateway.url("/v1/chat/completions");
    let auth = format!("Bearer {MASTER_KEY}");
    let auth = [("authorization", auth.as_str())];
    let leak = format!("Incorrect API key provided: {UPSTREAM_KEY}. Master: {MASTER_KEY}");

    upstream.push(Reply::json(200, openai::chat_completion("fine")).header("x-echo", UPSTREAM_KEY));
    upstream.push(Reply::json(
        401,
        openai::error_body(&leak, "invalid_request_error", Some("invalid_api_key")),
    ));
    upstream.push(Reply::json(
        500,
        openai::error_body(&leak, "server_error", None),
    ));
    upstream.push(Reply::json(
        400,
        openai::error_body(&leak, "invalid_request_error", None),
    ));
    upstream.push(
        Reply::sse()
            .data(&openai::chunks(&["a"])[0])
            .data(serde_json::json!({"error": {"message": leak, "code": 500}}))
            .done(),
    );
    let chunks = openai::chunks(&["ok"]);
    upstream.push(Reply::sse().data_each(chunks).done());

    let client = client();
    let mut answers: Vec<Answer> = Vec::new();
    for stream in [false, false, false, false, true, true] {
        answers.push(call(&client, "POST", &url, chat_body("gpt-test", stream), &auth).await);
    }
    // The client's own wrong keys, and no key.
    let wrong = format!("Bearer {MASTER_KEY}x");
    answers.push(
        call(
            &client,
            "POST",
            &url,
            chat_body("gpt-test", false),
            &[("authorization", &wrong)],
        )
        .await,
    );
    answers.push(call(&client, "POST", &url, chat_body("gpt-test", false), &[]).await);
    answers.push(call(&client, "GET", &gateway.url("/v1/models"), "", &auth).await);

    assert_eq!(
        answers
            .iter()
            .map(|a| a.status.as_u16())
            .collect::<Vec<_>>(),
        [200, 502, 502, 400, 502, 200, 401, 401, 200]
    );
    // The keys really were in play: the upstream got the upstream key.
    let requests = upstream.requests();
    assert_eq!(
        requests[0].headers["authorization"],
        format!("Bearer {UPSTREAM_KEY}").as_str()
    );
    // ...and never the client's master key.
    assert!(
        requests
            .iter()
            .all(|r| !format!("{:?}", r.headers).contains(MASTER_KEY))
    );

    gateway.shutdown().await;
    drop(_guard);

    for (i, answer) in answers.iter().enumerate() {
        for key in [UPSTREAM_KEY, MASTER_KEY] {
            assert!(
                !answer.text().contains(key),
                "answer {i} body leaks a key: {}",
                answer.text()
            );
            for (name, value) in &answer.headers {
                assert!(
                    !value.to_str().unwrap_or("").contains(key),
                    "answer {i} header {name} leaks a key"
                );
            }
        }
    }
    let logs = logs.text();
    assert!(
        logs.matches("chat_completions").count() >= 8,
        "the access log was captured: {logs}"
    );
    for key in [UPSTREAM_KEY, MASTER_KEY] {
        assert!(!logs.contains(key), "the logs leak a key");
        assert!(!logs.contains(&key[10..]), "the logs leak part of a key");
    }
}

/// A native provider's deployment, for the secrets test: one line of
/// [`NATIVE_PROVIDERS`] per provider.
struct NativeProvider {
    /// Its `litellm_params` (after `model_name: native`), its fake at `url`.
    params: fn(url: &str) -> String,
    /// The environment the config reads its secrets from.
    env: &'static [(&'static str, &'static str)],
    /// What must never leak.
    secrets: &'static [&'static str],
    /// Answers that echo every secret back — the fake upstream at its worst:
    /// JSON errors and a stream error — each the answer to one request, and
    /// whether that request streams.
    echoes: fn() -> Vec<(Reply, bool)>,
}

const ANTHROPIC_KEY: &str = "sk-ant-api03-SECRET-native-7d6c5b4a3f2e1d0c";
const AZURE_KEY: &str = "azure-SECRET-native-key-0f1e2d3c4b5a6978";
const AZURE_TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.SECRET-entra-token.c2ln";

/// Every native provider, one line each.
const NATIVE_PROVIDERS: &[NativeProvider] = &[
    NativeProvider {
        params: |url| {
            format!(
                "model: anthropic/claude-sonnet-4-5-20250929\n      api_base: {url}\n      api_key: os.environ/ANTHROPIC_API_KEY\n"
            )
        },
        env: &[("ANTHROPIC_API_KEY", ANTHROPIC_KEY)],
        secrets: &[ANTHROPIC_KEY],
        echoes: || {
            let leak = format!("invalid x-api-key: {ANTHROPIC_KEY}");
            vec![
                (
                    Reply::json(401, anthropic::error_body("authentication_error", &leak)),
                    false,
                ),
                (
                    Reply::json(400, anthropic::error_body("invalid_request_error", &leak)),
                    false,
                ),
                (
                    Reply::json(529, anthropic::error_body("overloaded_error", &leak)),
                    false,
                ),
                (
                    Reply::sse().raw(
                        anthropic::start()
                            + &anthropic::text_block(0, &["a"])
                            + &anthropic::error_event("api_error", &leak),
                    ),
                    true,
                ),
                (
                    Reply::json(200, anthropic::message("fine")).header("x-echo", ANTHROPIC_KEY),
                    false,
                ),
            ]
        },
    },
    NativeProvider {
        params: |url| {
            format!(
                "model: azure/my-deployment\n      api_base: {url}\n      api_version: 2024-10-21\n      api_key: os.environ/AZURE_API_KEY\n"
            )
        },
        env: &[("AZURE_API_KEY", AZURE_KEY)],
        secrets: &[AZURE_KEY],
        echoes: || azure_echoes(AZURE_KEY),
    },
    NativeProvider {
        params: |url| {
            format!(
                "model: azure/my-deployment\n      api_base: {url}\n      api_version: 2024-10-21\n      azure_ad_token: os.environ/AZURE_AD_TOKEN\n"
            )
        },
        env: &[("AZURE_AD_TOKEN", AZURE_TOKEN)],
        secrets: &[AZURE_TOKEN],
        echoes: || azure_echoes(AZURE_TOKEN),
    },
];

fn azure_echoes(secret: &str) -> Vec<(Reply, bool)> {
    let leak = format!("Access denied due to invalid subscription key {secret}");
    vec![
        (
            Reply::json(
                401,
                openai::error_body(&leak, "invalid_request_error", Some("401")),
            ),
            false,
        ),
        (
            Reply::json(
                400,
                openai::error_body(&leak, "invalid_request_error", None),
            ),
            false,
        ),
        (
            Reply::json(500, openai::error_body(&leak, "server_error", None)),
            false,
        ),
        (
            Reply::sse()
                .data(&openai::chunks(&["a"])[0])
                .data(serde_json::json!({"error": {"message": leak, "code": 500}})),
            true,
        ),
        (
            Reply::json(200, openai::chat_completion("fine")).header("x-echo", secret),
            false,
        ),
    ]
}

// One thread, so that every task of the gateway logs to this test's
// subscriber.
#[tokio::test(flavor = "current_thread")]
async fn native_provider_secrets_appear_nowhere() {
    for (at, provider) in NATIVE_PROVIDERS.iter().enumerate() {
        let logs = Captured::default();
        let _guard = tracing::subscriber::set_default(logs.subscriber());
        let upstream = Upstream::start().await;
        let dir =
            std::env::temp_dir().join(format!("tollgate-secrets-{}-{at}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ledger = dir.join("ledger.sqlite3");
        let yaml = format!(
            "model_list:\n  - model_name: native\n    litellm_params:\n      {}general_settings:\n  master_key: {MASTER_KEY}\nrouter_settings:\n  num_retries: 0\n  cooldown_time: 0\ntollgate:\n  ledger_path: {}\n",
            (provider.params)(&upstream.url()),
            ledger.display()
        );
        let gateway = TestGateway::start(&yaml, provider.env).await;
        let client = client();
        let auth = format!("Bearer {MASTER_KEY}");
        let auth = [("authorization", auth.as_str())];
        let mut seen = common::leaks::Exposure::default();
        let echoes = (provider.echoes)();
        let url = gateway.url("/v1/chat/completions");
        for (i, (reply, stream)) in echoes.into_iter().enumerate() {
            upstream.push(reply);
            let answer = call(&client, "POST", &url, chat_body("native", stream), &auth).await;
            seen.answer(&format!("provider {at}, answer {i}"), &answer);
        }
        // The secret really was in play: the upstream got it.
        let sent = format!("{:?}", upstream.requests()[0].headers);
        assert!(
            provider.secrets.iter().all(|s| sent.contains(s)),
            "provider {at}"
        );
        for path in [
            "/health",
            "/health/readiness",
            "/health/providers",
            "/health/circuit-breakers",
            "/metrics",
        ] {
            let answer = call(&client, "GET", &gateway.url(path), "", &auth).await;
            seen.answer(path, &answer);
        }
        gateway.shutdown().await;
        drop(_guard);
        seen.file("the ledger", &ledger);
        seen.saw("the logs", logs.text());
        assert!(
            logs.text().contains("chat_completions"),
            "the access log was captured"
        );
        seen.assert_free_of(provider.secrets);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Issue 20's acceptance 3: a virtual key — generated, used, regenerated,
/// used again — is in no listing, info, metric, spend log, ledger file or
/// log line: only the two answers that hand it out show it.
#[tokio::test(flavor = "current_thread")]
async fn virtual_keys_appear_in_no_listing_metric_ledger_or_log() {
    let logs = Captured::default();
    let _guard = tracing::subscriber::set_default(logs.subscriber());
    let upstream = Upstream::start().await;
    upstream.set_default(Reply::json(200, openai::chat_completion("fine")));
    let dir = std::env::temp_dir().join(format!("tollgate-secrets-vk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ledger = dir.join("ledger.sqlite3");
    let env = [("UPSTREAM_KEY", UPSTREAM_KEY), ("MASTER_KEY", MASTER_KEY)];
    let extra = format!(
        "general_settings:\n  master_key: os.environ/MASTER_KEY\ntollgate:\n  ledger_path: {}\n",
        ledger.display()
    );
    let gateway = TestGateway::start(&openai_config(&upstream.url(), &extra), &env).await;
    let client = client();
    let master = format!("Bearer {MASTER_KEY}");
    let as_master = [
        ("authorization", master.as_str()),
        ("content-type", "application/json"),
    ];
    let post = |path: &str, body: serde_json::Value| {
        let url = gateway.url(path);
        let client = client.clone();
        let headers = as_master;
        async move { call(&client, "POST", &url, body.to_string(), &headers).await }
    };

    let generated = post(
        "/key/generate",
        serde_json::json!({"key_alias": "app", "team_id": "t"}),
    )
    .await;
    let old = generated.json()["key"].as_str().unwrap().to_owned();
    let chat = |key: String| {
        let url = gateway.url("/v1/chat/completions");
        let client = client.clone();
        async move {
            let auth = format!("Bearer {key}");
            call(
                &client,
                "POST",
                &url,
                chat_body("gpt-test", false),
                &[("authorization", &auth)],
            )
            .await
        }
    };
    assert_eq!(chat(old.clone()).await.status, 200);
    let regenerated = post("/key/regenerate", serde_json::json!({"key": old})).await;
    let new = regenerated.json()["key"].as_str().unwrap().to_owned();
    assert_eq!(chat(new.clone()).await.status, 200);
    assert_eq!(chat(old.clone()).await.status, 401);

    let mut answers = vec![
        post(
            "/key/update",
            serde_json::json!({"key": new, "metadata": {"k": 1}}),
        )
        .await,
        post("/key/block", serde_json::json!({"key": new})).await,
        post("/key/unblock", serde_json::json!({"key": new})).await,
    ];
    for path in [
        "/key/list",
        "/key/list?return_full_object=true",
        "/key/list?team_id=t&return_full_object=true",
        "/metrics",
        "/spend/logs",
        "/spend/summary",
    ] {
        answers.push(call(&client, "GET", &gateway.url(path), "", &as_master[..1]).await);
    }
    let info = format!(
        "/key/info?key={}",
        regenerated.json()["token"].as_str().unwrap()
    );
    answers.push(call(&client, "GET", &gateway.url(&info), "", &as_master[..1]).await);
    gateway.shutdown().await;
    drop(_guard);

    let mut ledger_bytes = std::fs::read(&ledger).unwrap();
    ledger_bytes.extend(std::fs::read(dir.join("ledger.sqlite3-wal")).unwrap_or_default());
    let ledger_bytes = String::from_utf8_lossy(&ledger_bytes).into_owned();
    let logs = logs.text();
    for key in [&old, &new] {
        let body = &key[3..];
        for (i, answer) in answers.iter().enumerate() {
            assert_eq!(answer.status, 200, "answer {i}: {}", answer.text());
            assert!(
                !answer.text().contains(body),
                "answer {i} leaks a key: {}",
                answer.text()
            );
        }
        assert!(!ledger_bytes.contains(body), "the ledger file holds a key");
        assert!(!logs.contains(body), "the logs leak a key");
    }
    assert!(
        logs.contains("key.regenerate"),
        "the audit log was captured"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
