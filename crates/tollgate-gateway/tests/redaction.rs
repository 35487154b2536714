//! No upstream can make the gateway show a client a secret: an upstream that
//! echoes the credentials it was sent — and the other keys it knows — in
//! every place a client could see them (an error's message and `param`, a
//! stream's error event before and after content, response headers),
//! glued to other text, URL-encoded and JSON-escaped, for every provider
//! kind that talks to a real upstream (OpenAI-compatible and OpenRouter;
//! the mock provider echoes nothing). No configured secret, no credential
//! the request presented and no key-shaped token reaches the client.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::{Answer, TestClient, TestGateway, call, client, sse_data};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tollgate_testkit::openai;

/// An OpenAI-style key, a project key and an OpenRouter key, one per
/// deployment.
const OPENAI_KEY: &str = "sk-Tg7e2QmW9xLp4RzN8vKc1YbH6sJd3FaU5oGi0EwXyZqV2nBt";
const PROJECT_KEY: &str = "sk-proj-Tg7e2QmW9xLp4RzN8vKc1YbH6sJd3FaU5oGi0EwXyZqV2nBtA1b2C3d4";
const OPENROUTER_KEY: &str =
    "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";
/// A header value the OpenAI-style deployment sends upstream
/// (`extra_headers`): shaped like no key, so only the configured secrets
/// can catch it.
const CUSTOM_AUTH: &str = "tollgate-private-upstream-passphrase";
/// Read from the provider's own variable (`GROQ_API_KEY`): the config
/// names no key for that deployment.
const GROQ_KEY: &str = "gsk_Tg7e2QmW9xLp4RzN8vKc1YbH6sJd3FaU5oGi0EwXyZqV2nB";
const MASTER_KEY: &str = "sk-master-Tollgate-0a1b2c3d4e5f6a7b";
/// Keys the upstream mentions that the gateway never configured: only their
/// shape gives them away.
const AWS_ID: &str = "AKIAIOSFODNN7EXAMPLE";
const GOOGLE_KEY: &str = "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY";

/// Every position an upstream can put text in that reaches the client
/// (for OpenRouter, also an error in a 200 answer: `ok-error`).
const POSITIONS: [&str; 8] = [
    "message",
    "param",
    "auth",
    "server",
    "stream-first",
    "stream-mid",
    "headers",
    "stream-headers",
];

/// A secret written every way the issue found (and a few more): standing
/// alone, glued to other text, in a JSON document, in a path and a query,
/// after `Bearer`, percent-encoded once and twice, and JSON `\u`-escaped.
fn leaks(secret: &str) -> String {
    let url = percent_all(secret);
    let twice = percent_all(&url);
    let unicode: String = secret
        .encode_utf16()
        .map(|unit| format!("\\u{unit:04x}"))
        .collect();
    format!(
        "Incorrect API key provided: {secret}. key={secret}, {{\"api_key\":\"{secret}\"}}, \
         x-api-key:{secret}, GET /internal/{secret}, Bearer {secret}, url={url}, \
         twice={twice}, json={unicode}, see https://gw.internal/v1?api_key={secret}"
    )
}

/// Every byte as `%XX`: a URL-encoding no text could hold by chance.
fn percent_all(text: &str) -> String {
    text.bytes().map(|b| format!("%{b:02X}")).collect()
}

/// What the upstream answers at `position`, leaking `secret`.
fn reply(position: &str, secret: &str) -> Response<Full<Bytes>> {
    let error = |message: String, param: Value| json!({"error": {"message": message, "type": "invalid_request_error", "param": param, "code": null}});
    let leaky_headers = [
        (
            "content-type-params",
            format!("charset=utf-8; key={secret}"),
        ),
        ("x-ratelimit-limit-requests", format!("key={secret}")),
        ("x-ratelimit-remaining-tokens", percent_all(secret)),
        ("x-echo", secret.to_owned()),
    ];
    let sse = |events: Vec<String>| {
        events
            .into_iter()
            .map(|event| format!("data: {event}\n\n"))
            .collect::<String>()
    };
    let stream_error = json!({"error": {"message": leaks(secret), "code": 400}}).to_string();
    let chunks = openai::chunks(&["Hel", "lo"]);
    let (status, content_type, body, headers) = match position {
        "message" => (
            400,
            "application/json",
            error(leaks(secret), Value::Null).to_string(),
            false,
        ),
        "param" => (
            400,
            "application/json",
            error("Invalid parameter.".into(), Value::String(leaks(secret))).to_string(),
            false,
        ),
        "auth" => (
            401,
            "application/json",
            error(leaks(secret), Value::Null).to_string(),
            false,
        ),
        "server" => (
            500,
            "application/json",
            error(leaks(secret), Value::Null).to_string(),
            false,
        ),
        "stream-first" => (200, "text/event-stream", sse(vec![stream_error]), false),
        "stream-mid" => (
            200,
            "text/event-stream",
            sse(vec![
                chunks[0].to_string(),
                chunks[1].to_string(),
                stream_error,
            ]),
            false,
        ),
        "headers" => (
            200,
            "application/json",
            openai::chat_completion("fine").to_string(),
            true,
        ),
        "stream-headers" => (
            200,
            "text/event-stream",
            sse(chunks
                .iter()
                .map(Value::to_string)
                .chain(["[DONE]".into()])
                .collect()),
            true,
        ),
        "ok-error" => (
            200,
            "application/json",
            json!({"error": {"message": leaks(secret), "code": 400}}).to_string(),
            false,
        ),
        other => panic!("no position {other}"),
    };
    let mut response = Response::builder().status(status);
    if headers {
        for (name, value) in &leaky_headers {
            if *name == "content-type-params" {
                response = response.header("content-type", format!("{content_type}; {value}"));
            } else {
                response = response.header(*name, value);
            }
        }
    } else {
        response = response.header("content-type", content_type);
    }
    response.body(Full::new(Bytes::from(body))).unwrap()
}

/// An upstream on `127.0.0.1` that echoes the credentials each request
/// carried (its `Authorization` token, its `x-custom-auth` header) and the
/// keys it was told about. The request's first message says where to put
/// which: `<position>:<index>`.
struct EchoUpstream {
    addr: SocketAddr,
    known: Arc<Mutex<Vec<String>>>,
    received: Arc<Mutex<Vec<String>>>,
    server: JoinHandle<()>,
}

impl EchoUpstream {
    async fn start() -> EchoUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let known = Arc::new(Mutex::new(Vec::new()));
        let received = Arc::new(Mutex::new(Vec::new()));
        let (k, r) = (known.clone(), received.clone());
        let server = tokio::spawn(async move {
            // Dropped with the server task: every connection ends with it.
            let mut connections = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let (known, received) = (k.clone(), r.clone());
                let service = service_fn(move |request| {
                    let (known, received) = (known.clone(), received.clone());
                    async move { Ok::<_, Infallible>(echo(request, &known, &received).await) }
                });
                connections.spawn(async move {
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        EchoUpstream {
            addr,
            known,
            received,
            server,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for EchoUpstream {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn echo(
    request: Request<Incoming>,
    known: &Mutex<Vec<String>>,
    received: &Mutex<Vec<String>>,
) -> Response<Full<Bytes>> {
    let mut credentials: Vec<String> = ["authorization", "x-custom-auth"]
        .into_iter()
        .filter_map(|name| request.headers().get(name)?.to_str().ok())
        .map(|value| value.strip_prefix("Bearer ").unwrap_or(value).to_owned())
        .collect();
    received.lock().unwrap().extend(credentials.iter().cloned());
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&body).unwrap();
    let scenario = body["messages"][0]["content"].as_str().unwrap();
    let (position, index) = scenario.split_once(':').unwrap();
    credentials.extend(known.lock().unwrap().iter().cloned());
    let secret = &credentials[index.parse::<usize>().unwrap() % credentials.len()];
    reply(position, secret)
}

fn config(api_base: &str) -> String {
    format!(
        "model_list:
  - model_name: openai-style
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {api_base}/v1
      api_key: os.environ/OPENAI_KEY
      extra_headers:
        x-custom-auth: os.environ/CUSTOM_AUTH
  - model_name: project
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {api_base}/v1
      api_key: os.environ/PROJECT_KEY
  - model_name: openrouter
    litellm_params:
      model: openrouter/deepseek/deepseek-chat:free
      api_base: {api_base}/api/v1
      api_key: os.environ/OPENROUTER_KEY
  - model_name: groq
    litellm_params:
      model: groq/llama3-8b-8192
      api_base: {api_base}/openai/v1
general_settings:
  master_key: os.environ/MASTER_KEY
router_settings:
  num_retries: 0
  cooldown_time: 0
"
    )
}

/// Asserts that nothing in `answer` — status line aside — holds a secret,
/// a part of one, an encoding of one, or a token shaped like a key.
fn assert_clean(what: &str, answer: &Answer, secrets: &[&str]) {
    let mut texts = vec![("body".to_owned(), answer.text())];
    for (name, value) in &answer.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        texts.push((format!("header {name}"), value));
    }
    for (place, text) in &texts {
        for secret in secrets {
            let tail = &secret[secret.len() - 12..];
            for form in [*secret, tail, &percent_all(secret), &percent_all(tail)] {
                assert!(
                    !text.contains(form),
                    "{what}: {place} shows {form:?}: {text}"
                );
            }
        }
        for shape in ["sk-", "AKIA", "AIza", "%73%6B%2D"] {
            assert!(
                !text.contains(shape),
                "{what}: {place} shows {shape:?}: {text}"
            );
        }
    }
}

async fn chat(
    client: &TestClient,
    gateway: &TestGateway,
    key: &str,
    group: &str,
    scenario: &str,
    stream: bool,
) -> Answer {
    let body = json!({
        "model": group,
        "stream": stream,
        "messages": [{"role": "user", "content": scenario}],
    });
    let auth = format!("Bearer {key}");
    call(
        client,
        "POST",
        &gateway.url("/v1/chat/completions"),
        body.to_string(),
        &[("authorization", &auth)],
    )
    .await
}

/// The client-visible text the upstream's words end up in, when they do
/// (after redaction): the error's message or `param`, the stream's error
/// event, a forwarded header. An upstream's auth or server error is told in
/// the gateway's own words.
fn shown(position: &str, answer: &Answer) -> Option<String> {
    // The upstream's words: each leak starts so.
    let error = |value: &Value| {
        value
            .as_str()
            .filter(|text| text.contains("Incorrect API key provided"))
            .map(str::to_owned)
    };
    match position {
        "message" | "stream-first" | "auth" | "server" | "ok-error" => {
            error(&answer.openai_error()["message"])
        }
        "param" => error(&answer.openai_error()["param"]),
        "stream-mid" => {
            let events = sse_data(&answer.body);
            let last: Value = serde_json::from_str(events.last()?).ok()?;
            error(&last["error"]["message"])
        }
        "headers" | "stream-headers" => answer
            .headers
            .get("x-ratelimit-limit-requests")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        _ => None,
    }
}

/// Where the client is told in the gateway's words, not the upstream's: an
/// auth or server error may be; OpenRouter's `param` is the normalizer's
/// own, and its stream error event is classified anew by the cascade,
/// which names only the class.
fn own_words(group: &str, position: &str) -> bool {
    matches!(position, "auth" | "server")
        || (group == "openrouter" && matches!(position, "param" | "stream-mid"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_upstream_echo_of_a_credential_reaches_the_client() {
    let upstream = EchoUpstream::start().await;
    let env = [
        ("OPENAI_KEY", OPENAI_KEY),
        ("PROJECT_KEY", PROJECT_KEY),
        ("OPENROUTER_KEY", OPENROUTER_KEY),
        ("CUSTOM_AUTH", CUSTOM_AUTH),
        ("MASTER_KEY", MASTER_KEY),
        ("GROQ_API_KEY", GROQ_KEY),
    ];
    let gateway = TestGateway::start(&config(&upstream.url()), &env).await;
    let client = client();
    let generated = call(
        &client,
        "POST",
        &gateway.url("/key/generate"),
        json!({"key_alias": "team"}).to_string(),
        &[("authorization", &format!("Bearer {MASTER_KEY}"))],
    )
    .await;
    assert_eq!(generated.status, 200, "{}", generated.text());
    let virtual_key = generated.json()["key"].as_str().unwrap().to_owned();
    upstream.known.lock().unwrap().extend([
        MASTER_KEY.to_owned(),
        virtual_key.clone(),
        AWS_ID.to_owned(),
        GOOGLE_KEY.to_owned(),
    ]);
    let secrets = [
        OPENAI_KEY,
        PROJECT_KEY,
        OPENROUTER_KEY,
        CUSTOM_AUTH,
        MASTER_KEY,
        GROQ_KEY,
        &virtual_key,
        AWS_ID,
        GOOGLE_KEY,
    ];

    for group in ["openai-style", "project", "openrouter", "groq"] {
        // Each credential the deployment sends, then each key the upstream
        // knows of, one at a time, so that every form of it fits in the
        // message the client may see.
        let error_in_200 = (group == "openrouter").then_some("ok-error");
        for index in 0..6 {
            for position in POSITIONS.into_iter().chain(error_in_200) {
                let stream = position.starts_with("stream");
                let scenario = format!("{position}:{index}");
                let answer = chat(&client, &gateway, &virtual_key, group, &scenario, stream).await;
                let what = format!("{group} {scenario}");
                let failed = matches!(
                    position,
                    "message" | "param" | "auth" | "server" | "stream-first" | "ok-error"
                );
                assert_eq!(
                    answer.status.as_u16() >= 400,
                    failed,
                    "{what}: {} {}",
                    answer.status,
                    answer.text()
                );
                assert_clean(&what, &answer, &secrets);
                // The upstream's words did reach the client, redacted, where
                // they may: the test exercised the path.
                match shown(position, &answer) {
                    Some(shown) => assert!(shown.contains("[redacted]"), "{what}: {shown}"),
                    None => assert!(own_words(group, position), "{what}: {}", answer.text()),
                }
                if position == "stream-mid" {
                    assert!(answer.text().contains("Hel"), "{what}: content came first");
                }
            }
        }
    }

    // The echoes were real: the upstream got each deployment's key, and the
    // extra header.
    let received = upstream.received.lock().unwrap().clone();
    for credential in [
        OPENAI_KEY,
        PROJECT_KEY,
        OPENROUTER_KEY,
        CUSTOM_AUTH,
        GROQ_KEY,
    ] {
        assert!(received.iter().any(|r| r == credential), "{credential}");
    }
    gateway.shutdown().await;
}
