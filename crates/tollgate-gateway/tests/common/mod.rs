//! Helpers shared by the gateway's end-to-end tests: a gateway on a real
//! loopback socket, and a plain HTTP client.

#![allow(dead_code, unreachable_pub)]

pub mod binary;
pub mod leaks;
pub mod net;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tollgate_gateway::{Gateway, config};

/// A gateway serving on `127.0.0.1:0`.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub gateway: Gateway,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl TestGateway {
    /// Starts a gateway on `yaml`, with `env` as the only environment.
    pub async fn start(yaml: &str, env: &[(&str, &str)]) -> TestGateway {
        Self::start_with_grace(yaml, env, std::time::Duration::from_secs(5)).await
    }

    /// [`start`](Self::start), letting in-flight requests run on for
    /// `grace` after the shutdown signal.
    pub async fn start_with_grace(
        yaml: &str,
        env: &[(&str, &str)],
        grace: std::time::Duration,
    ) -> TestGateway {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let loaded = config::load_str(yaml, &|name: &str| env.get(name).cloned())
            .unwrap_or_else(|error| panic!("test config does not load: {error}"));
        let gateway = Gateway::new(&loaded.config).expect("test config builds");
        let (listener, addr) = tollgate_gateway::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let served = gateway.clone();
        let task = tokio::spawn(async move {
            tollgate_gateway::serve(
                listener,
                served,
                async {
                    let _ = rx.await;
                },
                grace,
            )
            .await;
        });
        TestGateway {
            addr,
            gateway,
            shutdown: Some(tx),
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Signals shutdown and waits for the server to drain.
    pub async fn shutdown(mut self) {
        self.begin_shutdown();
        self.finished().await;
    }

    /// Signals shutdown (like SIGTERM) without waiting.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Waits for the server to return.
    pub async fn finished(self) {
        self.task.await.expect("the server task does not panic");
    }
}

pub type TestClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A complete response.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts an OpenAI-shaped error body and returns its `error` object.
    pub fn openai_error(&self) -> serde_json::Value {
        let body = self.json();
        let error = body
            .get("error")
            .unwrap_or_else(|| panic!("no error object: {body}"))
            .clone();
        assert!(error["message"].is_string(), "{body}");
        assert!(error["type"].is_string(), "{body}");
        assert!(error.get("param").is_some(), "{body}");
        assert!(error.get("code").is_some(), "{body}");
        assert_eq!(
            self.headers["content-type"], "application/json",
            "error bodies are JSON"
        );
        error
    }
}

/// Sends a request and returns the response with its body still streaming.
pub async fn send(
    client: &TestClient,
    method: &str,
    url: &str,
    body: impl Into<Bytes>,
    headers: &[(&str, &str)],
) -> http::Response<Incoming> {
    let mut request = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(body.into())).unwrap();
    client.request(request).await.expect("the gateway answers")
}

/// Sends a request and reads the whole response.
pub async fn call(
    client: &TestClient,
    method: &str,
    url: &str,
    body: impl Into<Bytes>,
    headers: &[(&str, &str)],
) -> Answer {
    let response = send(client, method, url, body, headers).await;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("the body arrives").to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// A chat request body.
pub fn chat_body(model: &str, stream: bool) -> String {
    serde_json::json!({
        "model": model,
        "stream": stream,
        "messages": [{"role": "user", "content": "Say hello"}],
    })
    .to_string()
}

/// A config with one OpenAI-compatible deployment at `api_base`.
pub fn openai_config(api_base: &str, extra: &str) -> String {
    format!(
        "model_list:\n  - model_name: gpt-test\n    litellm_params:\n      model: openai/gpt-4o-mini\n      api_base: {api_base}/v1\n      api_key: os.environ/UPSTREAM_KEY\n    model_info:\n      id: primary\n{extra}"
    )
}

/// The text of a chat-completion stream's content deltas (error events and
/// `[DONE]` contribute nothing). Every other event must be whole JSON.
pub fn streamed_text(events: &[String]) -> String {
    events
        .iter()
        .filter(|data| *data != "[DONE]")
        .map(|data| {
            serde_json::from_str::<serde_json::Value>(data)
                .unwrap_or_else(|e| panic!("broken JSON reached the client ({e}): {data}"))
        })
        .filter_map(|chunk| {
            chunk["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

/// The data payloads of an SSE body, in order.
pub fn sse_data(body: &[u8]) -> Vec<String> {
    let mut parser = tollgate_core::sse::SseParser::new();
    parser.push(Bytes::copy_from_slice(body));
    let mut out = Vec::new();
    while let Ok(Some(frame)) = parser.next_frame() {
        if let tollgate_core::sse::Frame::Event(event) = frame {
            out.push(String::from_utf8_lossy(&event.data).into_owned());
        }
    }
    out
}

/// The named events of an SSE body (`event:` and its JSON `data:`), as
/// Anthropic's and OpenAI's Responses streams send them; data that is not
/// JSON is kept as a string.
pub fn named_events(body: &[u8]) -> Vec<(String, serde_json::Value)> {
    String::from_utf8_lossy(body)
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|event| {
            let mut name = String::new();
            let mut data = serde_json::Value::Null;
            for line in event.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = n.to_owned();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data =
                        serde_json::from_str(d).unwrap_or(serde_json::Value::String(d.to_owned()));
                }
            }
            (name, data)
        })
        .collect()
}

/// Reads a streaming `body` until `needle` has arrived.
pub async fn read_until(body: &mut Incoming, seen: &mut Vec<u8>, needle: &str) {
    while !String::from_utf8_lossy(seen).contains(needle) {
        let frame = body
            .frame()
            .await
            .expect("the stream ended before the expected chunk")
            .expect("the stream failed");
        if let Ok(data) = frame.into_data() {
            seen.extend_from_slice(&data);
        }
    }
}

/// Reads a streaming `body` to its end, which must be a clean one (not an
/// error).
pub async fn read_to_end(body: &mut Incoming, seen: &mut Vec<u8>) {
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("the stream ends cleanly, not cut off");
        if let Ok(data) = frame.into_data() {
            seen.extend_from_slice(&data);
        }
    }
}

/// Everything a tracing subscriber writes, for tests that read the logs.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// A JSON subscriber at every level, writing here.
    pub fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + 'static {
        tracing_subscriber::fmt()
            .event_format(tollgate_gateway::log_format::JsonLines)
            .with_max_level(tracing::Level::TRACE)
            .with_writer(self.clone())
            .finish()
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}
