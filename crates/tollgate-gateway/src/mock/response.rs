//! [`MockDeployment`]: what one mock deployment answers.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::json;
use tollgate_core::sse;
use tollgate_core::{ChatRequest, Operation};

use super::body::{Ending, MockBody};
use crate::config::{MockFault, MockSettings};

/// One `mock/<name>` deployment: its canned answer, its latency and faults,
/// and a request counter that decides which requests get the fault.
#[derive(Debug)]
pub struct MockDeployment {
    model: String,
    content: String,
    settings: MockSettings,
    requests: AtomicU64,
}

/// What a request gets, decided when it arrives.
enum Plan {
    Answer,
    Status(u16),
    StreamError(u32),
    Stall(u32),
    Cut(u32),
}

impl MockDeployment {
    /// A mock deployment answering as `model` (the name after `mock/`), with
    /// `mock_response` as its answer when set.
    pub fn new(model: &str, mock_response: Option<&str>, settings: MockSettings) -> Self {
        let content = mock_response.map_or_else(
            || format!("Hello from Tollgate's offline mock provider ({model})."),
            str::to_owned,
        );
        MockDeployment {
            model: model.to_owned(),
            content,
            settings,
            requests: AtomicU64::new(0),
        }
    }

    /// Answers `request`, after the configured latency. A stall before the
    /// headers never answers: the caller's first-byte timeout decides.
    pub async fn respond(&self, request: &ChatRequest) -> Response<MockBody> {
        let plan = self.plan();
        if self.settings.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.settings.latency_ms)).await;
        }
        match plan {
            Plan::Status(status) => return self.error_status(status),
            Plan::Stall(_) if !request.stream() => std::future::pending().await,
            _ => {}
        }
        if request.stream() {
            self.stream(request, plan)
        } else if request.operation() == Operation::Embeddings {
            let (prompt, _) = self.usage(request);
            let body = super::embeddings::answer(request.bytes(), &self.model, prompt);
            self.whole(body, plan)
        } else {
            self.completion(request, plan)
        }
    }

    fn plan(&self) -> Plan {
        let n = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        let every = u64::from(self.settings.fail_every.max(1));
        match self.settings.fault {
            Some(fault) if n.is_multiple_of(every) => match fault {
                MockFault::ErrorStatus { status } => Plan::Status(status),
                MockFault::StreamError { after_chunks } => Plan::StreamError(after_chunks),
                MockFault::Stall { after_chunks } => Plan::Stall(after_chunks),
                MockFault::Cut { after_chunks } => Plan::Cut(after_chunks),
            },
            _ => Plan::Answer,
        }
    }

    fn error_status(&self, status: u16) -> Response<MockBody> {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let (kind, code) = match status.as_u16() {
            429 => ("requests", "rate_limit_exceeded"),
            400..=499 => ("invalid_request_error", "mock_fault"),
            _ => ("server_error", "mock_fault"),
        };
        let body = json!({"error": {
            "message": format!("mock fault: injected status {}", status.as_u16()),
            "type": kind, "param": null, "code": code,
        }});
        let mut response = json_response(status, body.to_string().into());
        if status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }

    fn completion(&self, request: &ChatRequest, plan: Plan) -> Response<MockBody> {
        let (prompt, completion) = self.usage(request);
        let legacy = request.operation() == Operation::Completions;
        // OpenAI's API reference: "The chat completion object", and for
        // `/v1/completions` "The completion object" (`text` in each choice).
        let choice = if legacy {
            json!({"index": 0, "text": self.content, "logprobs": null, "finish_reason": "stop"})
        } else {
            json!({
                "index": 0,
                "message": {"role": "assistant", "content": self.content, "refusal": null},
                "logprobs": null,
                "finish_reason": "stop",
            })
        };
        let body = json!({
            "id": format!("{}-mock-{}", id_prefix(legacy), self.requests.load(Ordering::Relaxed)),
            "object": if legacy { "text_completion" } else { "chat.completion" },
            "created": unix_now(),
            "model": self.model,
            "choices": [choice],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
            "system_fingerprint": null,
        });
        self.whole(Bytes::from(body.to_string()), plan)
    }

    /// A whole JSON answer, or under a cut or stream-error fault its first
    /// half.
    fn whole(&self, bytes: Bytes, plan: Plan) -> Response<MockBody> {
        match plan {
            // A broken upstream that answered 200 and died half-way.
            Plan::Cut(_) | Plan::StreamError(_) => {
                let half = bytes.slice(..bytes.len() / 2);
                let mut response = Response::new(MockBody::new(
                    VecDeque::from([half]),
                    Duration::ZERO,
                    Ending::Cut,
                ));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                response
            }
            _ => json_response(StatusCode::OK, bytes),
        }
    }

    fn stream(&self, request: &ChatRequest, plan: Plan) -> Response<MockBody> {
        let legacy = request.operation() == Operation::Completions;
        let id = format!(
            "{}-mock-{}",
            id_prefix(legacy),
            self.requests.load(Ordering::Relaxed)
        );
        let created = unix_now();
        // A legacy completion streams `text_completion` objects, text in
        // each choice (OpenAI's API reference, "Completions → Create
        // completion", streamed).
        let object = if legacy {
            "text_completion"
        } else {
            "chat.completion.chunk"
        };
        let chunk = |delta: serde_json::Value, finish: Option<&str>| {
            let choice = if legacy {
                json!({"index": 0, "text": delta.get("content").cloned().unwrap_or(json!("")),
                       "logprobs": null, "finish_reason": finish})
            } else {
                json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish})
            };
            json!({
                "id": id, "object": object, "created": created,
                "model": self.model,
                "choices": [choice],
            })
        };
        let mut events = if legacy {
            Vec::new()
        } else {
            vec![chunk(json!({"role": "assistant", "content": ""}), None)]
        };
        let content = self.answer_after_prefill(request);
        events.extend(words(content).map(|word| chunk(json!({ "content": word }), None)));
        events.push(chunk(json!({}), Some("stop")));
        if request.include_usage() {
            let (prompt, completion) = self.usage(request);
            events.push(json!({
                "id": id, "object": object, "created": created,
                "model": self.model, "choices": [],
                "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                          "total_tokens": prompt + completion},
            }));
        }
        let mut chunks: VecDeque<Bytes> = events.iter().map(data_event).collect();
        chunks.push_back(Bytes::from_static(sse::DONE));

        let cut_at = |after: u32| (after as usize).min(chunks.len());
        let ending = match plan {
            Plan::StreamError(after) => {
                chunks.truncate(cut_at(after));
                chunks.push_back(data_event(&json!({"error": {
                    "message": "mock fault: error in the stream",
                    "type": "server_error", "param": null, "code": "server_error",
                }})));
                Ending::Complete
            }
            Plan::Stall(after) => {
                chunks.truncate(cut_at(after));
                Ending::Stall
            }
            Plan::Cut(after) => {
                chunks.truncate(cut_at(after));
                Ending::Cut
            }
            Plan::Answer | Plan::Status(_) => Ending::Complete,
        };
        let delay = Duration::from_millis(self.settings.chunk_delay_ms);
        let mut response = Response::new(MockBody::new(chunks, delay, ending));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        response
    }

    /// The part of the answer still to send: all of it, or — when the request
    /// ends with an assistant message the answer starts with (a prefill, as a
    /// fallback cascade sends to continue a broken stream) — the rest, the
    /// way a real model continues its own text.
    fn answer_after_prefill<'a>(&'a self, request: &ChatRequest) -> &'a str {
        if request.message_count() < 2 {
            return &self.content;
        }
        let prefill = serde_json::from_slice::<serde_json::Value>(request.bytes())
            .ok()
            .and_then(|body| {
                let last = body["messages"].as_array()?.last()?.clone();
                (last["role"] == "assistant")
                    .then(|| last["content"].as_str().map(str::to_owned))
                    .flatten()
            });
        match prefill {
            Some(prefill) if self.content.starts_with(prefill.trim_end()) => {
                &self.content[prefill.trim_end().len()..]
            }
            _ => &self.content,
        }
    }

    /// Token counts: about four bytes a prompt token, one completion token a
    /// word. An estimate, but a stable one, so demo costs add up.
    fn usage(&self, request: &ChatRequest) -> (u64, u64) {
        let prompt = (request.bytes().len() as u64 / 4).max(1);
        let completion = words(&self.content).count() as u64;
        (prompt, completion)
    }
}

/// The start of an answer's id: `cmpl` for a legacy completion, as
/// OpenAI's are.
fn id_prefix(legacy: bool) -> &'static str {
    if legacy { "cmpl" } else { "chatcmpl" }
}

/// Splits text into words that keep their leading space, so the deltas join
/// back into the text.
fn words(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let skip = rest.len() - rest.trim_start().len();
        let end = rest[skip..].find(' ').map_or(rest.len(), |i| i + skip);
        let (word, tail) = rest.split_at(end);
        rest = tail;
        Some(word)
    })
}

fn data_event(value: &serde_json::Value) -> Bytes {
    let mut buf = BytesMut::new();
    sse::write_data(&mut buf, value.to_string().as_bytes());
    buf.freeze()
}

fn json_response(status: StatusCode, body: Bytes) -> Response<MockBody> {
    let mut response = Response::new(MockBody::new(
        VecDeque::from([body]),
        Duration::ZERO,
        Ending::Complete,
    ));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn unix_now() -> u64 {
    u64::try_from(tollgate_core::time::unix_ms(SystemTime::now()) / 1000).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_their_spaces() {
        let parts: Vec<&str> = words("Hello  from the mock.").collect();
        assert_eq!(parts, ["Hello", "  from", " the", " mock."]);
        assert_eq!(parts.concat(), "Hello  from the mock.");
        assert_eq!(words("").count(), 0);
    }
}
