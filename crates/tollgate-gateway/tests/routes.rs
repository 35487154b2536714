//! Issue 15's cross-cutting acceptance, route by route: every route that
//! asks a model — `/v1/embeddings`, `/v1/completions` (streamed and not),
//! `/v1/messages` (streamed and not, and its `count_tokens`) and
//! `/v1/responses` (not streamed: its streams are `tests/responses.rs`') —
//! is retried and falls back, costs exactly what its usage says in the
//! header and in the ledger, counts toward a key's budget and is refused in
//! its own shape past it, keeps a key to its models, and answers bad input
//! in its own error shape without going down.
//!
//! Retries run in memory under paused time (their backoff would be wall
//! time on a socket); the rest on loopback sockets with a ledger. The
//! upstream answers are OpenAI's shapes (API reference: "Chat",
//! "Completions", "Embeddings") and Anthropic's ("Messages", "Streaming
//! Messages").

mod common;

use bytes::Bytes;
use common::net::Net;
use common::{Answer, TestGateway, call, client, named_events, sse_data};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tollgate_testkit::{Reply, Upstream, anthropic, openai};

const MASTER_KEY: &str = "sk-routes-master-0123456789abcdef";
const UPSTREAM_KEY: &str = "sk-routes-upstream-0123456789";

/// Every model group's deployment: `{name}`, at `{host}`, priced per token.
fn group(name: &str, model: &str, host: &str, info: &str) -> String {
    format!(
        "  - model_name: {name}\n    litellm_params:\n      model: {model}\n      api_base: {host}/v1\n      api_key: os.environ/UPSTREAM_KEY\n    model_info:\n      id: {name}-1\n{info}"
    )
}

/// `chat`, `embed` and `text` on `primary`, each falling back to its
/// `-backup` on `backup`; `claude` (Anthropic) on `claude`. The chat groups
/// are `custom_openai/`: an `openai/` one would take `/v1/responses` as
/// written (DECISIONS 31), and these tests are of the bridge.
fn config(primary: &str, backup: &str, claude: &str, router: &str, rest: &str) -> String {
    let price = |input: &str, output: &str| {
        format!("      input_cost_per_token: {input}\n      output_cost_per_token: {output}\n")
    };
    let embedding =
        |input: &str| format!("      mode: embedding\n      input_cost_per_token: {input}\n");
    format!(
        "model_list:\n{}{}{}{}{}{}  - model_name: claude\n    litellm_params:\n      model: anthropic/claude-sonnet-4-5-20250929\n      api_base: {claude}\n      api_key: os.environ/UPSTREAM_KEY\n    model_info:\n      id: claude-1\nrouter_settings:\n  cooldown_time: 0\n{router}  fallbacks:\n    - chat: [\"chat-backup\"]\n    - embed: [\"embed-backup\"]\n    - text: [\"text-backup\"]\n{rest}",
        group(
            "chat",
            "custom_openai/chat-model",
            primary,
            &price("0.000002", "0.00001")
        ),
        group(
            "chat-backup",
            "custom_openai/backup-model",
            backup,
            &price("0.000001", "0.000005")
        ),
        group(
            "embed",
            "openai/text-embedding-3-small",
            primary,
            &embedding("0.0000001")
        ),
        group(
            "embed-backup",
            "openai/text-embedding-3-large",
            backup,
            &embedding("0.0000003")
        ),
        group(
            "text",
            "text-completion-openai/gpt-3.5-turbo-instruct",
            primary,
            &price("0.0000015", "0.000002")
        ),
        group(
            "text-backup",
            "openai/backup-instruct",
            backup,
            &format!("      mode: completion\n{}", price("0.000001", "0.000001"))
        ),
    )
}

/// One way to ask a model: a route, streamed or not.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Ask {
    Embeddings,
    Completion,
    CompletionStream,
    Messages,
    MessagesStream,
    Responses,
}

const EVERY: [Ask; 6] = [
    Ask::Embeddings,
    Ask::Completion,
    Ask::CompletionStream,
    Ask::Messages,
    Ask::MessagesStream,
    Ask::Responses,
];

impl Ask {
    fn path(self) -> &'static str {
        match self {
            Ask::Embeddings => "/v1/embeddings",
            Ask::Completion | Ask::CompletionStream => "/v1/completions",
            Ask::Messages | Ask::MessagesStream => "/v1/messages",
            Ask::Responses => "/v1/responses",
        }
    }

    /// The path the upstream is asked at: messages and responses go as chat.
    fn upstream_path(self) -> &'static str {
        match self {
            Ask::Embeddings => "/v1/embeddings",
            Ask::Completion | Ask::CompletionStream => "/v1/completions",
            Ask::Messages | Ask::MessagesStream | Ask::Responses => "/v1/chat/completions",
        }
    }

    /// The primary group this asks (falling back to `{group}-backup`).
    fn group(self) -> &'static str {
        match self {
            Ask::Embeddings => "embed",
            Ask::Completion | Ask::CompletionStream => "text",
            Ask::Messages | Ask::MessagesStream | Ask::Responses => "chat",
        }
    }

    fn stream(self) -> bool {
        matches!(self, Ask::CompletionStream | Ask::MessagesStream)
    }

    /// Whether errors come in Anthropic's shape.
    fn anthropic(self) -> bool {
        matches!(self, Ask::Messages | Ask::MessagesStream)
    }

    /// The route's request for `model`.
    fn body(self, model: &str) -> Value {
        let stream = self.stream();
        match self {
            Ask::Embeddings => json!({"model": model, "input": ["first", "second"]}),
            Ask::Completion | Ask::CompletionStream => {
                json!({"model": model, "prompt": "Say hello", "max_tokens": 5, "stream": stream})
            }
            Ask::Messages | Ask::MessagesStream => json!({"model": model, "max_tokens": 64,
                "stream": stream, "messages": [{"role": "user", "content": "Say hello"}]}),
            Ask::Responses => json!({"model": model, "input": "Say hello"}),
        }
    }

    /// The upstream's whole answer, "Hello" with its usage.
    fn reply(self) -> Reply {
        let text_chunk = |text: &str, finish: Value| {
            json!({"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "m",
                "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": finish}]})
        };
        match self {
            // 12 prompt tokens.
            Ask::Embeddings => Reply::json(
                200,
                json!({"object": "list", "model": "text-embedding-3-small",
                    "data": [{"object": "embedding", "index": 0, "embedding": [0.25, -0.5]},
                             {"object": "embedding", "index": 1, "embedding": [0.125, 1e-7]}],
                    "usage": {"prompt_tokens": 12, "total_tokens": 12}}),
            ),
            // 4 + 3 tokens.
            Ask::Completion => {
                let mut answer = text_chunk("Hello", json!("stop"));
                answer["usage"] = openai::usage(4, 3);
                Reply::json(200, answer)
            }
            Ask::CompletionStream => Reply::sse()
                .data(text_chunk("Hel", Value::Null))
                .data(text_chunk("lo", json!("stop")))
                .data(openai::usage_chunk(4, 3))
                .done(),
            // The testkit's usage: 10 + 20 tokens.
            Ask::Messages | Ask::Responses => Reply::json(200, openai::chat_completion("Hello")),
            // 7 + 3 tokens.
            Ask::MessagesStream => Reply::sse()
                .data_each(openai::chunks(&["Hel", "lo"]))
                .data(openai::usage_chunk(7, 3))
                .done(),
        }
    }

    /// What the answer cost at the primary's prices, or the backup's.
    fn cost(self, backup: bool) -> &'static str {
        match (self, backup) {
            // 12 × 0.0000001; 12 × 0.0000003.
            (Ask::Embeddings, false) => "0.0000012",
            (Ask::Embeddings, true) => "0.0000036",
            // 4 × 0.0000015 + 3 × 0.000002; 7 × 0.000001.
            (Ask::Completion | Ask::CompletionStream, false) => "0.000012",
            (Ask::Completion | Ask::CompletionStream, true) => "0.000007",
            // 10 × 0.000002 + 20 × 0.00001; 10 × 0.000001 + 20 × 0.000005.
            (Ask::Messages | Ask::Responses, false) => "0.00022",
            (Ask::Messages | Ask::Responses, true) => "0.00011",
            // 7 × 0.000002 + 3 × 0.00001; 7 × 0.000001 + 3 × 0.000005.
            (Ask::MessagesStream, false) => "0.000044",
            (Ask::MessagesStream, true) => "0.000022",
        }
    }

    /// Asserts a whole answer in the route's shape.
    fn assert_answered(self, status: http::StatusCode, body: &[u8]) {
        let text = String::from_utf8_lossy(body);
        assert_eq!(status, 200, "{self:?}: {text}");
        let json = || -> Value {
            serde_json::from_slice(body).unwrap_or_else(|e| panic!("{self:?} ({e}): {text}"))
        };
        match self {
            Ask::Embeddings => assert_eq!(json()["data"][1]["embedding"][0], 0.125, "{text}"),
            Ask::Completion => assert_eq!(json()["choices"][0]["text"], "Hello", "{text}"),
            Ask::CompletionStream => {
                let events = sse_data(body);
                assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{text}");
                let said: String = events[..events.len() - 1]
                    .iter()
                    .map(|e| serde_json::from_str::<Value>(e).unwrap())
                    .filter_map(|e| e["choices"][0]["text"].as_str().map(str::to_owned))
                    .collect();
                assert_eq!(said, "Hello", "{text}");
            }
            Ask::Messages => {
                let message = json();
                assert_eq!(message["type"], "message", "{text}");
                assert_eq!(message["content"][0]["text"], "Hello", "{text}");
            }
            Ask::MessagesStream => {
                let events = named_events(body);
                assert_eq!(events.last().unwrap().0, "message_stop", "{text}");
                let said: String = events
                    .iter()
                    .filter_map(|(_, d)| d["delta"]["text"].as_str())
                    .collect();
                assert_eq!(said, "Hello", "{text}");
            }
            Ask::Responses => {
                let response = json();
                assert_eq!(response["status"], "completed", "{text}");
                assert_eq!(
                    response["output"][0]["content"][0]["text"], "Hello",
                    "{text}"
                );
            }
        }
    }

    /// Asserts an error in the route's shape, of HTTP `status` and saying
    /// `says`; returns its error object.
    fn assert_refused(self, answer: &Answer, status: u16, says: &str) -> Value {
        let text = answer.text();
        assert_eq!(answer.status, status, "{self:?}: {text}");
        assert_eq!(answer.headers["content-type"], "application/json", "{text}");
        let error = if self.anthropic() {
            let body = answer.json();
            assert_eq!(body["type"], "error", "{self:?}: {text}");
            body["error"].clone()
        } else {
            answer.openai_error()
        };
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{self:?}: `{says}` not in {text}");
        error
    }
}

fn rate_limited() -> Reply {
    Reply::json(
        429,
        openai::error_body(
            "Rate limit reached",
            "requests",
            Some("rate_limit_exceeded"),
        ),
    )
}

fn unavailable() -> Reply {
    Reply::json(503, openai::error_body("overloaded", "server_error", None))
}

fn header<'a>(headers: &'a http::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in {headers:?}"))
        .to_str()
        .unwrap()
}

/// `ask` through an in-memory gateway, the whole answer read.
async fn ask_in_memory(gateway: &tollgate_gateway::Gateway, ask: Ask) -> http::Response<Bytes> {
    let request = http::Request::post(ask.path())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(ask.body(ask.group()).to_string())))
        .unwrap();
    let (parts, body) = gateway.handle(request).await.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    http::Response::from_parts(parts, body)
}

// Acceptance 2: on every route, a 429 is retried on the same group, and a
// group that fails its retries too is answered by its fallback — streams
// before their first byte included — at the answering group's price.
#[tokio::test(start_paused = true)]
async fn every_route_is_retried_then_answered_by_its_fallback() {
    let net = Net::new(&["primary.test", "backup.test"]).await;
    let (primary, backup) = (net.get("primary.test"), net.get("backup.test"));
    let yaml = config(
        "http://primary.test",
        "http://backup.test",
        "http://claude.test",
        "  num_retries: 1\n",
        "",
    );
    let gateway = net.gateway(&yaml);
    for ask in EVERY {
        let (asked, fell_back) = (primary.requests().len(), backup.requests().len());
        // Retried: a 429, then the answer.
        primary.push(rate_limited());
        primary.push(ask.reply());
        let answer = ask_in_memory(&gateway, ask).await;
        ask.assert_answered(answer.status(), answer.body());
        let headers = answer.headers();
        assert_eq!(
            header(headers, "x-tollgate-attempted-retries"),
            "1",
            "{ask:?}"
        );
        assert_eq!(
            header(headers, "x-tollgate-attempted-fallbacks"),
            "0",
            "{ask:?}"
        );
        assert_eq!(header(headers, "x-tollgate-model-group"), ask.group());
        if !ask.stream() {
            assert_eq!(header(headers, "x-tollgate-response-cost"), ask.cost(false));
        }
        assert_eq!(primary.requests().len(), asked + 2, "{ask:?}");

        // Failed twice (the attempt and its retry): the fallback answers.
        primary.push(unavailable());
        primary.push(unavailable());
        backup.push(ask.reply());
        let answer = ask_in_memory(&gateway, ask).await;
        ask.assert_answered(answer.status(), answer.body());
        let headers = answer.headers();
        assert_eq!(
            header(headers, "x-tollgate-attempted-fallbacks"),
            "1",
            "{ask:?}"
        );
        let backup_group = format!("{}-backup", ask.group());
        assert_eq!(header(headers, "x-tollgate-model-group"), backup_group);
        if !ask.stream() {
            assert_eq!(header(headers, "x-tollgate-response-cost"), ask.cost(true));
        }
        assert_eq!(primary.requests().len(), asked + 4, "{ask:?}");
        let sent = &backup.requests()[fell_back];
        assert_eq!(sent.uri.path(), ask.upstream_path(), "{ask:?}");
        if ask.stream() {
            // Usage asked for, to price the stream.
            assert_eq!(sent.json()["stream_options"]["include_usage"], true);
        }
    }
}

struct Setup {
    primary: Upstream,
    backup: Upstream,
    claude: Upstream,
    gateway: TestGateway,
    client: common::TestClient,
    _dir: tempfile::TempDir,
}

async fn setup(rest: &str) -> Setup {
    let (primary, backup, claude) = (
        Upstream::start().await,
        Upstream::start().await,
        Upstream::start().await,
    );
    let dir = tempfile::tempdir().unwrap();
    let rest = format!(
        "general_settings:\n  master_key: os.environ/MASTER_KEY\n{rest}tollgate:\n  ledger_path: {}\n",
        dir.path().join("ledger.sqlite3").display()
    );
    let yaml = config(
        &primary.url(),
        &backup.url(),
        &claude.url(),
        "  num_retries: 0\n",
        &rest,
    );
    let gateway = TestGateway::start(
        &yaml,
        &[("UPSTREAM_KEY", UPSTREAM_KEY), ("MASTER_KEY", MASTER_KEY)],
    )
    .await;
    Setup {
        primary,
        backup,
        claude,
        gateway,
        client: client(),
        _dir: dir,
    }
}

impl Setup {
    /// A request with `key` (as `x-api-key` on Anthropic's routes, as a
    /// bearer token elsewhere).
    async fn send(&self, method: &str, path: &str, body: impl ToString, key: &str) -> Answer {
        let bearer = format!("Bearer {key}");
        let auth = if path.starts_with("/v1/messages") {
            ("x-api-key", key)
        } else {
            ("authorization", bearer.as_str())
        };
        let headers = [("content-type", "application/json"), auth];
        let url = self.gateway.url(path);
        call(&self.client, method, &url, body.to_string(), &headers).await
    }

    async fn ask(&self, ask: Ask, model: &str, key: &str) -> Answer {
        self.send("POST", ask.path(), ask.body(model), key).await
    }

    /// A virtual key from `/key/generate` with `spec`.
    async fn key(&self, spec: Value) -> String {
        let answer = self.send("POST", "/key/generate", spec, MASTER_KEY).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        answer.json()["key"].as_str().unwrap().to_owned()
    }

    /// The ledger's rows for one request.
    async fn rows(&self, request_id: &str) -> Vec<Value> {
        self.gateway.gateway.flush_spend().await;
        let path = format!("/spend/logs?request_id={request_id}");
        let logs = self.send("GET", &path, "", MASTER_KEY).await;
        assert_eq!(logs.status, 200, "{}", logs.text());
        logs.json()["data"].as_array().unwrap().clone()
    }
}

// Acceptance 3: each route's answer costs exactly its usage at its group's
// prices, in `x-tollgate-response-cost` (unstreamed answers: a stream's
// head goes before its usage) and in its ledger row; each route's spend
// counts toward the key's budget, and past it every route refuses in its
// own shape (Anthropic's on /v1/messages) before any upstream is asked.
#[tokio::test]
async fn every_routes_cost_is_exact_in_the_header_the_ledger_and_the_budget() {
    let s = setup("").await;
    // The six answers cost 0.0005092 together; the budget is a hair less,
    // so that only the last one takes the key past it.
    let key = s
        .key(json!({"key_alias": "budgeted", "max_budget": "0.0005091", "budget_duration": "30d"}))
        .await;
    for ask in EVERY {
        s.primary.push(ask.reply());
        let answer = s.ask(ask, ask.group(), &key).await;
        ask.assert_answered(answer.status, &answer.body);
        if !ask.stream() {
            assert_eq!(
                header(&answer.headers, "x-tollgate-response-cost"),
                ask.cost(false)
            );
        }
        let rows = s.rows(header(&answer.headers, "x-request-id")).await;
        assert_eq!(rows.len(), 1, "{ask:?}: {rows:?}");
        let row = &rows[0];
        assert_eq!(row["spend"], ask.cost(false), "{ask:?}: {row}");
        assert_eq!(row["model"], ask.group(), "{row}");
        assert_eq!(row["key"], "budgeted", "{row}");
        assert_eq!(row["stream"], ask.stream(), "{row}");
        assert_eq!(row["outcome"], "success", "{row}");
        assert!(row["prompt_tokens"].as_u64().unwrap() > 0, "{row}");
    }
    // Every route's spend is the key's.
    let summary = s
        .send("GET", "/spend/summary?group_by=key", "", MASTER_KEY)
        .await;
    assert_eq!(summary.status, 200, "{}", summary.text());
    let keys = summary.json()["data"].clone();
    let budgeted = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["key"] == "budgeted")
        .unwrap_or_else(|| panic!("{keys}"));
    assert_eq!(budgeted["spend"], "0.0005092", "{budgeted}");
    assert_eq!(budgeted["requests"], 6, "{budgeted}");

    let asked = s.primary.requests().len();
    for ask in EVERY {
        let answer = s.ask(ask, ask.group(), &key).await;
        let error = ask.assert_refused(&answer, 429, "budget");
        if ask.anthropic() {
            assert_eq!(error["type"], "rate_limit_error", "{}", answer.text());
        } else {
            assert_eq!(error["code"], "budget_exceeded", "{}", answer.text());
        }
        assert!(answer.headers.contains_key("retry-after"), "{ask:?}");
        assert!(!answer.text().contains(&key));
    }
    assert_eq!(
        s.primary.requests().len(),
        asked,
        "refused before any upstream"
    );
    // Another key is not held by this one's budget.
    s.primary.push(Ask::Messages.reply());
    let answer = s.ask(Ask::Messages, "chat", MASTER_KEY).await;
    Ask::Messages.assert_answered(answer.status, &answer.body);
}

// Acceptance 3: a key limited to one model reaches no other, on any route —
// nor sees another in the model list, the model's page, its info, or by
// counting tokens.
#[tokio::test]
async fn a_key_for_one_model_neither_reaches_nor_sees_another_on_any_route() {
    let s = setup("").await;
    let key = s
        .key(json!({"key_alias": "chat-only", "models": ["chat"]}))
        .await;
    for ask in EVERY {
        let other = match ask.group() {
            "chat" => "chat-backup",
            group => group,
        };
        let answer = s.ask(ask, other, &key).await;
        let error = ask.assert_refused(&answer, 403, "chat-only");
        if ask.anthropic() {
            assert_eq!(error["type"], "permission_error", "{}", answer.text());
        } else {
            assert_eq!(error["code"], "model_not_allowed", "{}", answer.text());
        }
        assert!(!answer.text().contains(&key));
    }
    let count = json!({"model": "claude", "messages": [{"role": "user", "content": "Hi"}]});
    let answer = s
        .send("POST", "/v1/messages/count_tokens", &count, &key)
        .await;
    let error = Ask::Messages.assert_refused(&answer, 403, "chat-only");
    assert_eq!(error["type"], "permission_error");
    for upstream in [&s.primary, &s.backup, &s.claude] {
        assert!(
            upstream.requests().is_empty(),
            "nothing reached an upstream"
        );
    }

    // What the key sees: its model, and no other.
    let ids = |answer: &Answer| -> Vec<String> {
        assert_eq!(answer.status, 200, "{}", answer.text());
        answer.json()["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect()
    };
    for path in ["/v1/models", "/models"] {
        let listed = s.send("GET", path, "", &key).await;
        assert_eq!(ids(&listed), ["chat"], "{path}");
        assert_eq!(listed.json()["object"], "list");
    }
    let all = s.send("GET", "/v1/models", "", MASTER_KEY).await;
    assert_eq!(
        ids(&all),
        [
            "chat",
            "chat-backup",
            "embed",
            "embed-backup",
            "text",
            "text-backup",
            "claude"
        ]
    );
    // A key for every model (`*`) lists every one.
    let any = s.key(json!({"key_alias": "any", "models": ["*"]})).await;
    assert_eq!(ids(&s.send("GET", "/v1/models", "", &any).await).len(), 7);
    for other in ["claude", "chat-backup"] {
        let page = s
            .send("GET", &format!("/v1/models/{other}"), "", &key)
            .await;
        assert_eq!(page.status, 404, "{}", page.text());
        assert_eq!(page.openai_error()["code"], "model_not_found");
    }
    let info = s.send("GET", "/model/info", "", &key).await;
    assert_eq!(info.status, 200, "{}", info.text());
    let names: Vec<Value> = info.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["model_name"].clone())
        .collect();
    assert_eq!(names, [json!("chat")]);
}

// Acceptance 4: malformed JSON, the wrong route's shape and an unknown model
// on every route: the route's error shape, a message that says what is
// wrong, nothing sent upstream, and the gateway serves on.
#[tokio::test]
async fn bad_input_on_every_route_gets_the_routes_error_shape_and_the_gateway_stays_up() {
    let s = setup("").await;
    let chat_body = json!({"model": "chat", "messages": [{"role": "user", "content": "Hi"}]});
    let messages_body = json!({"model": "chat", "max_tokens": 5,
        "messages": [{"role": "user", "content": "Hi"}]});
    // (as, path, body, status, says)
    let mut cases: Vec<(Ask, &str, String, u16, &str)> = vec![
        // Another route's body.
        (
            Ask::Embeddings,
            "/v1/embeddings",
            messages_body.to_string(),
            400,
            "'input'",
        ),
        (
            Ask::Completion,
            "/v1/completions",
            chat_body.to_string(),
            400,
            "'prompt'",
        ),
        (
            Ask::Messages,
            "/v1/messages",
            chat_body.to_string(),
            400,
            "max_tokens",
        ),
        (
            Ask::Responses,
            "/v1/responses",
            messages_body.to_string(),
            400,
            "input",
        ),
        (
            Ask::Messages,
            "/v1/messages/count_tokens",
            json!({"model": "nope", "messages": []}).to_string(),
            404,
            "nope",
        ),
        // Counting needs a group that counts.
        (
            Ask::Messages,
            "/v1/messages/count_tokens",
            json!({"model": "chat", "messages": []}).to_string(),
            400,
            "Token counting needs an Anthropic model",
        ),
    ];
    // Not JSON at all.
    for (ask, path, says) in [
        (Ask::Embeddings, "/v1/embeddings", "could not parse"),
        (Ask::Completion, "/v1/completions", "could not parse"),
        (Ask::Messages, "/v1/messages", "not valid JSON"),
        (Ask::Messages, "/v1/messages/count_tokens", "not valid JSON"),
        (Ask::Responses, "/v1/responses", "not valid JSON"),
    ] {
        cases.push((ask, path, "{not json".into(), 400, says));
    }
    // A model no group answers to, streamed and not.
    for ask in EVERY {
        cases.push((ask, ask.path(), ask.body("nope").to_string(), 404, "nope"));
    }
    for (ask, path, body, status, says) in cases {
        let answer = s.send("POST", path, body.clone(), MASTER_KEY).await;
        let error = ask.assert_refused(&answer, status, says);
        if ask.anthropic() {
            let kind = if status == 404 {
                "not_found_error"
            } else {
                "invalid_request_error"
            };
            assert_eq!(error["type"], kind, "{path} {body}: {}", answer.text());
        } else if status == 404 {
            assert_eq!(error["param"], "model", "{path} {body}: {}", answer.text());
        }
    }
    for upstream in [&s.primary, &s.backup, &s.claude] {
        assert!(
            upstream.requests().is_empty(),
            "nothing reached an upstream"
        );
    }
    // Still serving, every route.
    for ask in EVERY {
        s.primary.push(ask.reply());
        let answer = s.ask(ask, ask.group(), MASTER_KEY).await;
        ask.assert_answered(answer.status, &answer.body);
    }
}

// Acceptance 2: a stream passed through to Anthropic as Anthropic's events,
// cut mid-answer, still ends with Anthropic's `error` event, never with
// `message_stop`.
#[tokio::test]
async fn a_messages_stream_from_anthropic_cut_mid_answer_ends_with_its_error_event() {
    let s = setup("").await;
    // Anthropic's own events, broken off after the first words.
    let begun = anthropic::start()
        + &anthropic::event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}),
        )
        + &anthropic::event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": "Once upon"}}),
        );
    s.claude.push(Reply::sse().raw(begun).cut());
    let mut body = Ask::MessagesStream.body("claude");
    body["max_tokens"] = json!(64);
    let answer = s.send("POST", "/v1/messages", &body, MASTER_KEY).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let events = named_events(&answer.body);
    let said: String = events
        .iter()
        .filter_map(|(_, d)| d["delta"]["text"].as_str())
        .collect();
    assert_eq!(said, "Once upon", "{}", answer.text());
    let (last, data) = events.last().unwrap();
    assert_eq!(last, "error", "{}", answer.text());
    assert_eq!(data["type"], "error");
    assert!(data["error"]["message"].is_string(), "{data}");
    assert!(!events.iter().any(|(name, _)| name == "message_stop"));
    assert!(!answer.text().contains(UPSTREAM_KEY));
}

// Build 4: token counting for Claude on Vertex AI goes to Vertex's
// `count-tokens:rawPredict` with the service account's token, Anthropic's
// body and the deployment's model; a Gemini deployment does not count.
#[tokio::test]
async fn count_tokens_for_claude_on_vertex_goes_to_vertex_with_googles_token() {
    use tollgate_testkit::vertex::{self as fake, Vertex};
    const CLAUDE: &str = "claude-3-5-sonnet@20240620";
    let vertex = Vertex::start().await;
    let deployment = |group: &str, model: &str| {
        format!(
            "  - model_name: {group}\n    litellm_params:\n      model: vertex_ai/{model}\n      api_base: {url}\n      vertex_project: {project}\n      vertex_location: us-east5\n      vertex_credentials: os.environ/VERTEX_KEY_JSON\n",
            url = vertex.url(),
            project = fake::PROJECT,
        )
    };
    let yaml = format!(
        "model_list:\n{}{}general_settings:\n  master_key: os.environ/MASTER_KEY\n",
        deployment("claude", CLAUDE),
        deployment("gemini", "gemini-2.0-flash")
    );
    let account = vertex.service_account_json();
    let gateway = TestGateway::start(
        &yaml,
        &[
            ("VERTEX_KEY_JSON", account.as_str()),
            ("MASTER_KEY", MASTER_KEY),
        ],
    )
    .await;
    let client = client();
    let url = gateway.url("/v1/messages/count_tokens");
    let headers = [
        ("content-type", "application/json"),
        ("x-api-key", MASTER_KEY),
    ];
    let request = json!({"model": "claude", "system": "Be brief.",
        "messages": [{"role": "user", "content": "Hello"}]});
    vertex
        .upstream()
        .push(Reply::json(200, json!({"input_tokens": 14})));
    let answer = call(&client, "POST", &url, request.to_string(), &headers).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json(), json!({"input_tokens": 14}));
    let sent = &vertex.upstream().requests()[0];
    assert_eq!(
        sent.uri.path(),
        fake::model_path("us-east5", "anthropic", "count-tokens", "rawPredict")
    );
    let token = vertex.issued_tokens().pop().expect("a token was issued");
    assert_eq!(sent.headers["authorization"], format!("Bearer {token}"));
    assert!(sent.headers.get("x-api-key").is_none());
    let mut want = request.clone();
    want["model"] = json!(CLAUDE);
    assert_eq!(sent.json(), want, "Anthropic's body, the model renamed");

    // Vertex's refusal in Google's shape comes back in Anthropic's.
    vertex.upstream().push(fake::google_error(
        429,
        "RESOURCE_EXHAUSTED",
        "Quota exceeded",
    ));
    let answer = call(&client, "POST", &url, request.to_string(), &headers).await;
    assert_eq!(answer.status, 429, "{}", answer.text());
    let refused = answer.json();
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["error"]["type"], "rate_limit_error", "{refused}");

    let gemini = json!({"model": "gemini", "messages": [{"role": "user", "content": "Hello"}]});
    let answer = call(&client, "POST", &url, gemini.to_string(), &headers).await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    assert_eq!(answer.json()["error"]["type"], "invalid_request_error");
    assert_eq!(
        vertex.upstream().requests().len(),
        2,
        "Gemini was not asked"
    );
}
