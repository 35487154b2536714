//! Test bodies and streams.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use serde_json::Value;
use tollgate_core::BoxError;

use crate::body::ResponseBody;
use crate::protocol::TranslateStream;

/// A body that yields the given pieces, then ends.
pub(crate) struct Pieces(pub(crate) VecDeque<Result<Bytes, BoxError>>);

impl Pieces {
    pub(crate) fn of(pieces: impl IntoIterator<Item = Bytes>) -> Self {
        Pieces(pieces.into_iter().map(Ok).collect())
    }
}

impl Body for Pieces {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.pop_front().map(|r| r.map(Frame::data)))
    }
}

/// An OpenAI stream of `chunks`, with `[DONE]` when `done`.
pub(crate) fn chat_sse(chunks: &[Value], done: bool) -> Bytes {
    let mut out = String::new();
    for chunk in chunks {
        out.push_str("data: ");
        out.push_str(&chunk.to_string());
        out.push_str("\n\n");
    }
    if done {
        out.push_str("data: [DONE]\n\n");
    }
    Bytes::from(out)
}

/// What a translator makes of `body`, as `(event name, data)` pairs.
pub(crate) async fn translate<T: TranslateStream>(
    body: Pieces,
    translator: T,
) -> Vec<(String, Value)> {
    let body = ResponseBody::stream(body, translator);
    let bytes = body
        .collect()
        .await
        .expect("a translated stream never fails")
        .to_bytes();
    events(&bytes)
}

/// The named events of an SSE text.
pub(crate) fn events(bytes: &[u8]) -> Vec<(String, Value)> {
    let text = std::str::from_utf8(bytes).expect("UTF-8");
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|event| {
            let mut name = String::new();
            let mut data = Value::Null;
            for line in event.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = n.to_owned();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(d).expect("JSON data");
                }
            }
            (name, data)
        })
        .collect()
}

/// A text chunk.
pub(crate) fn text_chunk(text: &str) -> Value {
    serde_json::json!({"id": "chatcmpl-1", "model": "gpt-4o", "created": 7,
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]})
}

/// A chunk finishing with `reason`.
pub(crate) fn finish_chunk(reason: &str) -> Value {
    serde_json::json!({"id": "chatcmpl-1", "model": "gpt-4o",
        "choices": [{"index": 0, "delta": {}, "finish_reason": reason}]})
}

/// The usage chunk.
pub(crate) fn usage_chunk(prompt: u64, completion: u64) -> Value {
    serde_json::json!({"id": "chatcmpl-1", "model": "gpt-4o", "choices": [],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                  "prompt_tokens_details": {"cached_tokens": 2}}})
}

/// A tool call's piece: its first (with id and name) or a later one.
pub(crate) fn tool_chunk(index: usize, id_name: Option<(&str, &str)>, arguments: &str) -> Value {
    let mut call = serde_json::json!({"index": index, "function": {"arguments": arguments}});
    if let Some((id, name)) = id_name {
        call["id"] = id.into();
        call["type"] = "function".into();
        call["function"]["name"] = name.into();
    }
    serde_json::json!({"id": "chatcmpl-1", "model": "gpt-4o",
        "choices": [{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": null}]})
}

/// The JSON of a complete answer body.
pub(crate) fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("JSON")
}
