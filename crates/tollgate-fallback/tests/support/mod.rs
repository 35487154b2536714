//! Scripted model groups for the cascade's tests: each group plays its
//! script, one step per call, and every call is logged.

#![allow(dead_code, unreachable_pub)]

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tokio::time::{Instant, Sleep};
use tollgate_core::extensions::{Deadline, ModelGroup};
use tollgate_core::{BoxError, ChatRequest, ErrorClass, Failure, RequestBody};
use tower::Service;

/// One part of a scripted body.
#[derive(Clone, Debug)]
pub enum Part {
    /// These bytes.
    Data(Bytes),
    /// This error (a reset, a stall timeout from the stack below).
    Error(Failure),
    /// Nothing for this long.
    Wait(Duration),
    /// Nothing, ever.
    Hang,
}

/// What a group does on one call.
#[derive(Clone, Debug)]
pub enum Step {
    /// Answers with a status, a content type and a body.
    Respond(u16, &'static str, Vec<Part>),
    /// Fails with this error before any response.
    Fail(Failure),
    /// Never answers.
    Hang,
}

/// A 200 JSON answer naming `model`.
pub fn json(model: &str) -> Step {
    let body = format!(
        r#"{{"id":"x","object":"chat.completion","model":"{model}","choices":[{{"index":0,"message":{{"role":"assistant","content":"hi from {model}"}},"finish_reason":"stop"}}]}}"#
    );
    Step::Respond(200, "application/json", vec![Part::Data(body.into())])
}

/// An error response with an OpenAI error body.
pub fn error_response(status: u16, code: &str, message: &str) -> Step {
    let body = format!(
        r#"{{"error":{{"message":"{message}","type":"invalid_request_error","param":null,"code":"{code}"}}}}"#
    );
    Step::Respond(status, "application/json", vec![Part::Data(body.into())])
}

/// A stream of these parts.
pub fn stream(parts: Vec<Part>) -> Step {
    Step::Respond(200, "text/event-stream", parts)
}

/// A data event with a chunk of completion `id` from `model`.
pub fn chunk(id: &str, model: &str, delta: &str, finish: Option<&str>) -> String {
    let finish = finish.map_or("null".to_owned(), |f| format!("\"{f}\""));
    format!(
        "data: {{\"id\":\"{id}\",\"object\":\"chat.completion.chunk\",\"created\":{created},\"model\":\"{model}\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"finish_reason\":{finish}}}]}}\n\n",
        created = id.len()
    )
}

pub fn role(id: &str, model: &str) -> String {
    chunk(id, model, r#"{"role":"assistant","content":""}"#, None)
}

pub fn text(id: &str, model: &str, text: &str) -> String {
    let delta = serde_json::json!({ "content": text }).to_string();
    chunk(id, model, &delta, None)
}

pub fn finish(id: &str, model: &str) -> String {
    chunk(id, model, "{}", Some("stop"))
}

pub const DONE: &str = "data: [DONE]\n\n";

/// A whole stream: role chunk, one chunk per text, finish, `[DONE]`.
pub fn answer(id: &str, model: &str, texts: &[&str]) -> String {
    let mut out = role(id, model);
    for t in texts {
        out += &text(id, model, t);
    }
    out + &finish(id, model) + DONE
}

pub fn data(text: impl Into<String>) -> Part {
    Part::Data(Bytes::from(text.into()))
}

pub fn cut() -> Part {
    Part::Error(
        Failure::new(
            ErrorClass::UpstreamUnavailable,
            "the connection to the upstream failed",
        )
        .with_subkind("reset"),
    )
}

/// A call a group received.
#[derive(Clone, Debug)]
pub struct Call {
    pub group: String,
    pub at: Instant,
    pub body: Bytes,
    /// The content of the last message, when it is the assistant's.
    pub prefill: Option<String>,
    /// The body's parsed view matched its bytes.
    pub chat_matches_body: bool,
}

#[derive(Default)]
struct Scripts {
    steps: HashMap<String, VecDeque<Step>>,
    calls: Vec<Call>,
}

/// Groups that play scripts.
#[derive(Clone, Default)]
pub struct Upstream {
    scripts: Arc<Mutex<Scripts>>,
}

impl Upstream {
    pub fn new() -> Self {
        Upstream::default()
    }

    /// `group` plays `steps`, one per call, repeating the last.
    pub fn script(self, group: &str, steps: Vec<Step>) -> Self {
        self.scripts
            .lock()
            .unwrap()
            .steps
            .insert(group.to_owned(), steps.into());
        self
    }

    pub fn calls(&self) -> Vec<Call> {
        self.scripts.lock().unwrap().calls.clone()
    }

    /// The groups called, in order.
    pub fn groups(&self) -> Vec<String> {
        self.calls().into_iter().map(|c| c.group).collect()
    }
}

impl Service<Request<RequestBody>> for Upstream {
    type Response = Response<Scripted>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Scripted>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<RequestBody>) -> Self::Future {
        let group = request
            .extensions()
            .get::<ModelGroup>()
            .map(|g| g.0.to_string())
            .unwrap_or_default();
        let body = request.body().bytes().cloned().unwrap_or_default();
        let chat_matches_body = request
            .body()
            .chat()
            .is_some_and(|chat| *chat.bytes() == body);
        let prefill = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                let last = v["messages"].as_array()?.last()?.clone();
                (last["role"] == "assistant")
                    .then(|| last["content"].as_str().map(str::to_owned))?
            });
        let step = {
            let mut scripts = self.scripts.lock().unwrap();
            scripts.calls.push(Call {
                group: group.clone(),
                at: Instant::now(),
                body,
                prefill,
                chat_matches_body,
            });
            let steps = scripts.steps.get_mut(&group);
            match steps {
                Some(steps) if steps.len() > 1 => steps.pop_front(),
                Some(steps) => steps.front().cloned(),
                None => None,
            }
        };
        Box::pin(async move {
            match step {
                None => Err(Failure::new(ErrorClass::ModelNotFound, "no such group").into()),
                Some(Step::Fail(failure)) => Err(failure.into()),
                Some(Step::Hang) => std::future::pending().await,
                Some(Step::Respond(status, content_type, parts)) => {
                    let mut response = Response::new(Scripted::new(parts));
                    *response.status_mut() = StatusCode::from_u16(status).unwrap();
                    response
                        .headers_mut()
                        .insert("content-type", content_type.parse().unwrap());
                    Ok(response)
                }
            }
        })
    }
}

/// A body that plays its parts.
#[derive(Debug)]
pub struct Scripted {
    parts: VecDeque<Part>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Scripted {
    pub fn new(parts: Vec<Part>) -> Self {
        Scripted {
            parts: parts.into(),
            sleep: None,
        }
    }
}

impl Body for Scripted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if let Some(sleep) = this.sleep.as_mut() {
                std::task::ready!(sleep.as_mut().poll(cx));
                this.sleep = None;
            }
            return match this.parts.pop_front() {
                None => Poll::Ready(None),
                Some(Part::Data(data)) => Poll::Ready(Some(Ok(Frame::data(data)))),
                Some(Part::Error(failure)) => Poll::Ready(Some(Err(failure.into()))),
                Some(Part::Wait(wait)) => {
                    this.sleep = Some(Box::pin(tokio::time::sleep(wait)));
                    continue;
                }
                Some(Part::Hang) => {
                    this.parts.push_front(Part::Hang);
                    Poll::Pending
                }
            };
        }
    }
}

/// A chat request for `group`, as the gateway makes it.
pub fn request(group: &str, stream: bool) -> Request<RequestBody> {
    let body = format!(
        r#"{{"model":"{group}","stream":{stream},"messages":[{{"role":"user","content":"Say hello"}}]}}"#
    );
    let chat = ChatRequest::parse(Bytes::from(body)).unwrap();
    let mut request = Request::post("/v1/chat/completions")
        .body(RequestBody::from_chat(chat))
        .unwrap();
    request
        .extensions_mut()
        .insert(ModelGroup(Arc::from(group)));
    request
}

/// The request with a deadline `after` from now.
pub fn with_deadline(mut request: Request<RequestBody>, after: Duration) -> Request<RequestBody> {
    request.extensions_mut().insert(Deadline::after(after));
    request
}

/// Reads a body to its end.
pub async fn read<B>(body: B) -> String
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let bytes = body.collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// What a client makes of a stream.
#[derive(Debug, Default)]
pub struct Seen {
    pub text: String,
    pub ids: Vec<String>,
    pub models: Vec<String>,
    pub roles: usize,
    pub finishes: Vec<String>,
    pub dones: usize,
    pub errors: Vec<serde_json::Value>,
    /// Events after `[DONE]` or after an error event.
    pub after_end: usize,
}

/// Parses a client-visible stream, panicking on anything a strict client
/// would choke on: a data event that is not JSON, a half event.
pub fn parse(stream: &str) -> Seen {
    assert!(
        stream.is_empty() || stream.ends_with("\n\n"),
        "ends mid-event: {stream:?}"
    );
    let mut seen = Seen::default();
    for event in stream.split("\n\n").filter(|e| !e.is_empty()) {
        if seen.dones > 0 || !seen.errors.is_empty() {
            seen.after_end += 1;
        }
        let data: Vec<&str> = event
            .lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        if data.is_empty() {
            continue; // a comment
        }
        let data = data.join("\n");
        if data == "[DONE]" {
            seen.dones += 1;
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(&data)
            .unwrap_or_else(|e| panic!("a data event that is not JSON ({e}): {data:?}"));
        if let Some(error) = value.get("error") {
            seen.errors.push(error.clone());
            continue;
        }
        seen.ids
            .push(value["id"].as_str().unwrap_or_default().to_owned());
        seen.models
            .push(value["model"].as_str().unwrap_or_default().to_owned());
        for choice in value["choices"].as_array().into_iter().flatten() {
            let delta = &choice["delta"];
            if delta.get("role").is_some() {
                seen.roles += 1;
            }
            if let Some(text) = delta["content"].as_str() {
                seen.text += text;
            }
            if let Some(reason) = choice["finish_reason"].as_str() {
                seen.finishes.push(reason.to_owned());
            }
        }
    }
    seen
}

/// The service type error of `service_fn` closures in tests.
pub type Never = Infallible;
