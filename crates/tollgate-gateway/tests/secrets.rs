//! Keys never reach a log line, an error body or a response header.

mod common;

use common::{Answer, Captured, TestGateway, call, chat_body, client, openai_config};
use tollgate_testkit::vertex::{self, Vertex};
use tollgate_testkit::{Reply, Upstream, anthropic, bedrock, gemini, openai};

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
    /// The fake it talks to.
    fake: FakeKind,
    /// Its `litellm_params` (after `model_name: native`), its fake at `url`.
    params: fn(url: &str) -> String,
    /// The environment the config reads its secrets from.
    env: fn(&Fake) -> Vec<(&'static str, String)>,
    /// What must never leak, asked once the first request was answered
    /// (signatures, assertions and tokens exist only then) and again at the
    /// end (every request's signature).
    secrets: fn(&Fake) -> Vec<String>,
    /// Of those, what the first request to the fake carries in its headers:
    /// the secrets really were in play.
    sent: fn(&Fake) -> Vec<String>,
    /// A plain success: the answer to the first request.
    fine: fn() -> Reply,
    /// Answers that echo every one of `secrets` back — the fake upstream at
    /// its worst: JSON errors, a stream error, a header — each the answer
    /// to one request, and whether that request streams.
    echoes: fn(secrets: &str) -> Vec<(Reply, bool)>,
}

/// Which fake a [`NativeProvider`] talks to.
#[derive(Clone, Copy)]
enum FakeKind {
    /// A scripted upstream that checks nothing on its own.
    Plain,
    /// Bedrock's: it refuses a request whose SigV4 signature is wrong.
    Bedrock,
    /// Vertex AI's: a token endpoint, and model routes that refuse a token
    /// it did not issue.
    Vertex,
}

/// A started fake.
enum Fake {
    Upstream(Upstream),
    Vertex(Vertex),
}

impl FakeKind {
    async fn start(self) -> Fake {
        match self {
            FakeKind::Plain => Fake::Upstream(Upstream::start().await),
            FakeKind::Bedrock => Fake::Upstream(bedrock::upstream().await),
            FakeKind::Vertex => Fake::Vertex(Vertex::start().await),
        }
    }
}

impl Fake {
    fn upstream(&self) -> &Upstream {
        match self {
            Fake::Upstream(upstream) => upstream,
            Fake::Vertex(vertex) => vertex.upstream(),
        }
    }

    fn vertex(&self) -> &Vertex {
        match self {
            Fake::Vertex(vertex) => vertex,
            Fake::Upstream(_) => panic!("not a Vertex fake"),
        }
    }
}

const ANTHROPIC_KEY: &str = "sk-ant-api03-SECRET-native-7d6c5b4a3f2e1d0c";
const AZURE_KEY: &str = "azure-SECRET-native-key-0f1e2d3c4b5a6978";
const AZURE_TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.SECRET-entra-token.c2ln";
const GEMINI_KEY: &str = "AIzaSyD-SECRET-native-gemini-9a8b7c6d5e4f";
const BEDROCK_SESSION_TOKEN: &str =
    "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJGMEQCIB-SECRET-session-token";

/// Secrets known before the gateway starts.
fn fixed(secrets: &[&str]) -> Vec<String> {
    secrets.iter().map(|s| (*s).to_owned()).collect()
}

/// Every native provider, one line each.
const NATIVE_PROVIDERS: &[NativeProvider] = &[
    NativeProvider {
        fake: FakeKind::Plain,
        params: |url| {
            format!(
                "model: anthropic/claude-sonnet-4-5-20250929\n      api_base: {url}\n      api_key: os.environ/ANTHROPIC_API_KEY\n"
            )
        },
        env: |_| vec![("ANTHROPIC_API_KEY", ANTHROPIC_KEY.to_owned())],
        secrets: |_| fixed(&[ANTHROPIC_KEY]),
        sent: |_| fixed(&[ANTHROPIC_KEY]),
        fine: || Reply::json(200, anthropic::message("fine")),
        echoes: |secrets| {
            let leak = format!("invalid x-api-key: {secrets}");
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
                    Reply::json(200, anthropic::message("fine")).header("x-echo", secrets),
                    false,
                ),
            ]
        },
    },
    NativeProvider {
        fake: FakeKind::Plain,
        params: |url| {
            format!(
                "model: azure/my-deployment\n      api_base: {url}\n      api_version: 2024-10-21\n      api_key: os.environ/AZURE_API_KEY\n"
            )
        },
        env: |_| vec![("AZURE_API_KEY", AZURE_KEY.to_owned())],
        secrets: |_| fixed(&[AZURE_KEY]),
        sent: |_| fixed(&[AZURE_KEY]),
        fine: || Reply::json(200, openai::chat_completion("fine")),
        echoes: azure_echoes,
    },
    NativeProvider {
        fake: FakeKind::Plain,
        params: |url| {
            format!(
                "model: azure/my-deployment\n      api_base: {url}\n      api_version: 2024-10-21\n      azure_ad_token: os.environ/AZURE_AD_TOKEN\n"
            )
        },
        env: |_| vec![("AZURE_AD_TOKEN", AZURE_TOKEN.to_owned())],
        secrets: |_| fixed(&[AZURE_TOKEN]),
        sent: |_| fixed(&[AZURE_TOKEN]),
        fine: || Reply::json(200, openai::chat_completion("fine")),
        echoes: azure_echoes,
    },
    NativeProvider {
        fake: FakeKind::Plain,
        params: |url| {
            format!(
                "model: gemini/gemini-2.5-flash\n      api_base: {url}\n      api_key: os.environ/GEMINI_API_KEY\n"
            )
        },
        env: |_| vec![("GEMINI_API_KEY", GEMINI_KEY.to_owned())],
        secrets: |_| fixed(&[GEMINI_KEY]),
        sent: |_| fixed(&[GEMINI_KEY]),
        fine: || Reply::json(200, gemini::response("fine")),
        echoes: google_echoes,
    },
    NativeProvider {
        fake: FakeKind::Bedrock,
        params: |url| {
            format!(
                "model: bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0\n      aws_access_key_id: os.environ/AWS_ACCESS_KEY_ID\n      aws_secret_access_key: os.environ/AWS_SECRET_ACCESS_KEY\n      aws_session_token: os.environ/AWS_SESSION_TOKEN\n      aws_region_name: {}\n      aws_bedrock_runtime_endpoint: {url}\n",
                bedrock::REGION
            )
        },
        env: |_| {
            vec![
                ("AWS_ACCESS_KEY_ID", bedrock::ACCESS_KEY_ID.to_owned()),
                (
                    "AWS_SECRET_ACCESS_KEY",
                    bedrock::SECRET_ACCESS_KEY.to_owned(),
                ),
                ("AWS_SESSION_TOKEN", BEDROCK_SESSION_TOKEN.to_owned()),
            ]
        },
        // The secret key itself is never sent: the fake's accepting the
        // first request's signature (the 200 asked for below) shows it was
        // used.
        secrets: |fake| {
            let mut secrets = fixed(&[
                bedrock::ACCESS_KEY_ID,
                bedrock::SECRET_ACCESS_KEY,
                BEDROCK_SESSION_TOKEN,
            ]);
            secrets.extend(fake.upstream().requests().iter().map(|request| {
                let authorization = request.headers["authorization"].to_str().unwrap();
                let (_, signature) = authorization.split_once("Signature=").unwrap();
                signature.to_owned()
            }));
            secrets
        },
        sent: |_| fixed(&[bedrock::ACCESS_KEY_ID, BEDROCK_SESSION_TOKEN]),
        fine: || Reply::json(200, bedrock::converse("fine")),
        echoes: |secrets| {
            let leak = format!("The security token included in the request is invalid: {secrets}");
            vec![
                (
                    bedrock::error(403, "UnrecognizedClientException", &leak),
                    false,
                ),
                (bedrock::error(400, "ValidationException", &leak), false),
                (
                    bedrock::error(503, "ServiceUnavailableException", &leak),
                    false,
                ),
                (
                    bedrock::stream_reply(
                        [bedrock::start()]
                            .into_iter()
                            .chain(bedrock::text_block(0, &["a"]))
                            .chain([bedrock::exception("internalServerException", &leak)]),
                    ),
                    true,
                ),
                (
                    Reply::json(200, bedrock::converse("fine")).header("x-echo", secrets),
                    false,
                ),
            ]
        },
    },
    VERTEX,
];

/// Vertex AI with every secret echoed, its access tokens too: a Gemini
/// model on the fake, its service account's key file from the environment.
const VERTEX: NativeProvider = NativeProvider {
    fake: FakeKind::Vertex,
    params: |url| {
        format!(
            "model: vertex_ai/gemini-2.0-flash\n      api_base: {url}\n      vertex_project: {}\n      vertex_location: us-central1\n      vertex_credentials: os.environ/VERTEX_KEY_JSON\n",
            vertex::PROJECT
        )
    },
    env: |fake| vec![("VERTEX_KEY_JSON", fake.vertex().service_account_json())],
    secrets: |fake| {
        let mut secrets = vertex_secrets(fake);
        secrets.extend(fake.vertex().issued_tokens());
        secrets
    },
    sent: |fake| fake.vertex().issued_tokens(),
    fine: || Reply::json(200, gemini::response("fine")),
    echoes: google_echoes,
};

/// Vertex AI's secrets but its access tokens: the private key's lines (a
/// leak need not keep its line breaks) and every assertion signed with it,
/// whole and its signature alone.
fn vertex_secrets(fake: &Fake) -> Vec<String> {
    let mut secrets: Vec<String> = vertex::TEST_PRIVATE_KEY
        .lines()
        .filter(|line| !line.starts_with("-----") && line.len() >= 32)
        .map(str::to_owned)
        .collect();
    for assertion in fake.vertex().assertions() {
        let (_, signature) = assertion.rsplit_once('.').unwrap();
        secrets.push(signature.to_owned());
        secrets.push(assertion);
    }
    secrets
}

fn azure_echoes(secrets: &str) -> Vec<(Reply, bool)> {
    let leak = format!("Access denied due to invalid subscription key {secrets}");
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
            Reply::json(200, openai::chat_completion("fine")).header("x-echo", secrets),
            false,
        ),
    ]
}

/// Gemini's and Vertex AI's echoes: Google's error shape.
fn google_echoes(secrets: &str) -> Vec<(Reply, bool)> {
    let leak = format!("Invalid JSON payload received: {secrets}");
    let error = |code, status| {
        Reply::json(
            code,
            gemini::error_body(code, status, &leak, serde_json::json!([])),
        )
    };
    vec![
        (error(401, "UNAUTHENTICATED"), false),
        (error(400, "INVALID_ARGUMENT"), false),
        (error(503, "UNAVAILABLE"), false),
        (
            Reply::sse()
                .raw(gemini::partial_stream(&["a"]) + &gemini::error_event(500, "INTERNAL", &leak)),
            true,
        ),
        (
            Reply::json(200, gemini::response("fine")).header("x-echo", secrets),
            false,
        ),
    ]
}

// One thread, so that every task of the gateway logs to this test's
// subscriber.
#[tokio::test(flavor = "current_thread")]
async fn native_provider_secrets_appear_nowhere() {
    for (at, provider) in NATIVE_PROVIDERS.iter().enumerate() {
        assert_secrets_appear_nowhere(at, provider).await;
    }
}

/// Runs `provider` (the `at`-th) through [`NativeProvider::echoes`] and
/// the health and metrics routes, then asserts that none of its secrets
/// was seen by a client, in the logs or in the ledger.
async fn assert_secrets_appear_nowhere(at: usize, provider: &NativeProvider) {
    let logs = Captured::default();
    let _guard = tracing::subscriber::set_default(logs.subscriber());
    let fake = provider.fake.start().await;
    let upstream = fake.upstream();
    let dir = std::env::temp_dir().join(format!("tollgate-secrets-{}-{at}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ledger = dir.join("ledger.sqlite3");
    let ledger_path = format!("tollgate:\n  ledger_path: {}\n", ledger.display());
    let gateway = start_native(provider, &fake, &ledger_path).await;
    let client = client();
    let auth = format!("Bearer {MASTER_KEY}");
    let auth = [("authorization", auth.as_str())];
    let mut seen = common::leaks::Exposure::default();
    let url = gateway.url("/v1/chat/completions");

    upstream.push((provider.fine)());
    let first = call(&client, "POST", &url, chat_body("native", false), &auth).await;
    assert_eq!(first.status, 200, "provider {at}: {}", first.text());
    seen.answer(&format!("provider {at}, the first answer"), &first);
    // The secrets really were in play: the first request carried them.
    let sent = format!("{:?}", upstream.requests()[0].headers);
    let carried = (provider.sent)(&fake);
    assert!(!carried.is_empty(), "provider {at}");
    assert!(carried.iter().all(|s| sent.contains(s)), "provider {at}");

    let secrets = (provider.secrets)(&fake);
    assert!(!secrets.is_empty(), "provider {at}");
    let echoes = (provider.echoes)(&secrets.join(" "));
    let echoed = echoes.len();
    for (i, (reply, stream)) in echoes.into_iter().enumerate() {
        upstream.push(reply);
        let answer = call(&client, "POST", &url, chat_body("native", stream), &auth).await;
        seen.answer(&format!("provider {at}, answer {i}"), &answer);
    }
    // Every echo reached the gateway (none was skipped by an open
    // breaker, say).
    assert_eq!(upstream.requests().len(), 1 + echoed, "provider {at}");
    see_health_and_metrics(&gateway, &mut seen).await;
    gateway.shutdown().await;
    drop(_guard);
    seen.file("the ledger", &ledger);
    seen.saw("the logs", logs.text());
    assert!(
        logs.text().contains("chat_completions"),
        "the access log was captured"
    );
    // Every request's signature, too, not only the echoed one.
    let secrets = (provider.secrets)(&fake);
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    seen.assert_free_of(&secrets);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Google's token endpoint refusing the service account with an error that
/// echoes its private key: neither the key nor the assertion signed with it
/// reaches a client, a log line, `/metrics` or `/health/*`.
#[tokio::test(flavor = "current_thread")]
async fn a_refused_vertex_token_exchange_leaks_nothing() {
    let logs = Captured::default();
    let _guard = tracing::subscriber::set_default(logs.subscriber());
    let fake = FakeKind::Vertex.start().await;
    let key_lines = vertex_secrets(&fake);
    fake.vertex().refuse_tokens(Some(Reply::json(
        400,
        serde_json::json!({
            "error": "invalid_grant",
            "error_description": format!("Invalid JWT Signature. {}", key_lines.join(" ")),
        }),
    )));
    let gateway = start_native(&VERTEX, &fake, "").await;
    let client = client();
    let auth = format!("Bearer {MASTER_KEY}");
    let auth = [("authorization", auth.as_str())];
    let url = gateway.url("/v1/chat/completions");
    let mut seen = common::leaks::Exposure::default();
    for stream in [false, true] {
        let answer = call(&client, "POST", &url, chat_body("native", stream), &auth).await;
        assert!(answer.status.is_server_error(), "{}", answer.text());
        seen.answer(&format!("the answer (stream: {stream})"), &answer);
    }
    see_health_and_metrics(&gateway, &mut seen).await;
    gateway.shutdown().await;
    drop(_guard);
    seen.saw("the logs", logs.text());
    // The exchange really was tried, with a signed assertion, and refused.
    assert!(fake.vertex().token_requests() >= 1);
    assert!(fake.vertex().issued_tokens().is_empty());
    let secrets = vertex_secrets(&fake);
    assert!(secrets.len() > key_lines.len(), "no assertion was sent");
    seen.assert_free_of(&secrets.iter().map(String::as_str).collect::<Vec<_>>());
}

/// A gateway whose one deployment, `native`, is `provider`'s on `fake`,
/// behind the master key, without retries or cooldowns; `extra` appended.
async fn start_native(provider: &NativeProvider, fake: &Fake, extra: &str) -> TestGateway {
    let yaml = format!(
        "model_list:\n  - model_name: native\n    litellm_params:\n      {}general_settings:\n  master_key: {MASTER_KEY}\nrouter_settings:\n  num_retries: 0\n  cooldown_time: 0\n{extra}",
        (provider.params)(&fake.upstream().url()),
    );
    let env = (provider.env)(fake);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    TestGateway::start(&yaml, &env).await
}

/// Records what `/health/*` and `/metrics` show the master key.
async fn see_health_and_metrics(gateway: &TestGateway, seen: &mut common::leaks::Exposure) {
    let client = client();
    let auth = format!("Bearer {MASTER_KEY}");
    for path in [
        "/health",
        "/health/readiness",
        "/health/providers",
        "/health/circuit-breakers",
        "/metrics",
    ] {
        let answer = call(
            &client,
            "GET",
            &gateway.url(path),
            "",
            &[("authorization", auth.as_str())],
        )
        .await;
        seen.answer(path, &answer);
    }
}

/// Issue 20's acceptance 3: a virtual key — generated, used, regenerated,
/// used again, its team changed, for an end user too, listed and reported —
/// is in no listing, key, team or end-user info, metric, spend log or
/// report, ledger file or log line: only the two answers that hand it out
/// show it.
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

    let team = post(
        "/team/new",
        serde_json::json!({"team_id": "t", "team_alias": "Team T", "max_budget": 5}),
    )
    .await;
    assert_eq!(team.status, 200, "{}", team.text());
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
    // An end user's request, with the new key.
    let for_end_user = serde_json::json!({
        "model": "gpt-test", "user": "u-1",
        "messages": [{"role": "user", "content": "hi"}],
    });
    let auth = format!("Bearer {new}");
    let served = call(
        &client,
        "POST",
        &gateway.url("/v1/chat/completions"),
        for_end_user.to_string(),
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(served.status, 200);
    gateway.gateway.flush_spend().await;

    let mut answers = vec![
        post(
            "/customer/new",
            serde_json::json!({"user_id": "u-2", "rpm_limit": 5}),
        )
        .await,
        post("/customer/block", serde_json::json!({"user_ids": ["u-1"]})).await,
        post(
            "/customer/unblock",
            serde_json::json!({"user_ids": ["u-1"]}),
        )
        .await,
        post("/global/spend/end_users", serde_json::json!({})).await,
        post(
            "/key/update",
            serde_json::json!({"key": new, "metadata": {"k": 1}}),
        )
        .await,
        post("/key/block", serde_json::json!({"key": new})).await,
        post("/key/unblock", serde_json::json!({"key": new})).await,
        post(
            "/team/update",
            serde_json::json!({"team_id": "t", "metadata": {"k": 1}}),
        )
        .await,
        post("/team/block", serde_json::json!({"team_id": "t"})).await,
        post("/team/unblock", serde_json::json!({"team_id": "t"})).await,
    ];
    for path in [
        "/key/list",
        "/key/list?return_full_object=true",
        "/key/list?team_id=t&return_full_object=true",
        "/metrics",
        "/spend/logs",
        "/spend/summary",
        "/team/info?team_id=t",
        "/team/list",
        "/global/spend/teams",
        "/customer/list",
        "/customer/info?end_user_id=u-1",
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
        logs.contains("key.regenerate") && logs.contains("team.block"),
        "the audit log was captured"
    );
    assert!(
        logs.contains("end user changed"),
        "end-user changes are audited"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
