//! A stream of chat chunks as the Responses API's typed events.
//!
//! Events from OpenAI's API reference, "Responses" → "Streaming events"
//! (<https://platform.openai.com/docs/api-reference/responses-streaming>):
//! `response.created`, `response.in_progress`, per output item
//! `response.output_item.added` / `.done`, for text
//! `response.content_part.added`, `response.output_text.delta` / `.done`,
//! `response.content_part.done`, for calls
//! `response.function_call_arguments.delta` / `.done`, and at the end
//! `response.completed` (or `response.incomplete`); a failure is an `error`
//! event followed by `response.failed`. Every event carries its `type` and
//! a `sequence_number`.
//!
//! The closing events repeat the whole output (`output_text.done`,
//! `response.completed`), so the text and arguments streamed are kept until
//! the end: the protocol asks for it.

use bytes::BytesMut;
use serde_json::{Value, json};
use tollgate_core::Failure;

use super::answer::{
    Header, function_call_item, message_item, message_item_id, output_text, response_id,
};
use crate::chat::{ChatAnswer, ChatUsage};
use crate::protocol::{TranslateStream, write_named};

/// What a passed-through Responses event tells the translator: its type,
/// its number, and the response it carries, if any (every field but these
/// is skipped).
#[derive(serde::Deserialize)]
struct NativeEvent<'a> {
    #[serde(borrow, default, rename = "type")]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    sequence_number: Option<u64>,
    #[serde(default)]
    response: Option<NativeResponse>,
}

#[derive(serde::Deserialize)]
struct NativeResponse {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    created_at: Option<f64>,
    #[serde(default)]
    model: Option<String>,
}

/// A function call being streamed.
#[derive(Debug)]
struct Call {
    /// Chat's index of the call.
    chat_index: usize,
    output_index: usize,
    item_id: String,
    call_id: String,
    name: String,
    arguments: String,
    open: bool,
}

/// Translates one chat stream into the Responses API's events.
#[derive(Debug, Default)]
pub struct ResponsesStream {
    id: String,
    created: u64,
    model: String,
    sequence: u64,
    started: bool,
    /// The message item's output index while it is open, and its text.
    text_open: Option<usize>,
    text: String,
    calls: Vec<Call>,
    next_output: usize,
    /// Finished items, in order.
    output: Vec<Value>,
    finish: Option<String>,
    usage: Option<ChatUsage>,
    ended: bool,
}

impl ResponsesStream {
    fn emit(&mut self, out: &mut BytesMut, name: &'static str, mut data: Value) {
        data["type"] = Value::from(name);
        data["sequence_number"] = Value::from(self.sequence);
        self.sequence += 1;
        write_named(out, name, &data);
    }

    fn header(&self) -> Header<'_> {
        Header {
            id: &self.id,
            created: self.created,
            model: &self.model,
        }
    }

    fn start(&mut self, chunk: &ChatAnswer, out: &mut BytesMut) {
        if self.started {
            return;
        }
        self.started = true;
        self.id = response_id(chunk.id.as_deref());
        self.created = chunk.created.unwrap_or(0);
        self.model = chunk.model.clone().unwrap_or_default();
        let response = self.header().response(Vec::new(), None, None);
        self.emit(out, "response.created", json!({"response": response}));
        let response = self.header().response(Vec::new(), None, None);
        self.emit(out, "response.in_progress", json!({"response": response}));
    }

    fn text(&mut self, text: &str, out: &mut BytesMut) {
        let item_id = message_item_id(&self.id);
        let output_index = match self.text_open {
            Some(index) => index,
            None => {
                self.close_calls(out);
                let index = self.next_output;
                self.next_output += 1;
                self.text_open = Some(index);
                let item = json!({
                    "type": "message", "id": item_id, "status": "in_progress",
                    "role": "assistant", "content": [],
                });
                self.emit(
                    out,
                    "response.output_item.added",
                    json!({"output_index": index, "item": item}),
                );
                self.emit(
                    out,
                    "response.content_part.added",
                    json!({"item_id": item_id, "output_index": index, "content_index": 0,
                           "part": output_text("")}),
                );
                index
            }
        };
        self.text.push_str(text);
        self.emit(
            out,
            "response.output_text.delta",
            json!({"item_id": item_id, "output_index": output_index, "content_index": 0,
                   "delta": text, "logprobs": []}),
        );
    }

    fn close_text(&mut self, out: &mut BytesMut) {
        let Some(index) = self.text_open.take() else {
            return;
        };
        let item_id = message_item_id(&self.id);
        let text = std::mem::take(&mut self.text);
        self.emit(
            out,
            "response.output_text.done",
            json!({"item_id": item_id, "output_index": index, "content_index": 0,
                   "text": text, "logprobs": []}),
        );
        self.emit(
            out,
            "response.content_part.done",
            json!({"item_id": item_id, "output_index": index, "content_index": 0,
                   "part": output_text(&text)}),
        );
        let item = message_item(&self.id, &text, "completed");
        self.emit(
            out,
            "response.output_item.done",
            json!({"output_index": index, "item": item.clone()}),
        );
        self.output.push(item);
    }

    fn call(
        &mut self,
        chat_index: usize,
        id: Option<&str>,
        name: Option<&str>,
        out: &mut BytesMut,
    ) -> usize {
        if let Some(i) = self
            .calls
            .iter()
            .position(|c| c.chat_index == chat_index && c.open)
        {
            return i;
        }
        self.close_text(out);
        self.close_calls(out);
        let output_index = self.next_output;
        self.next_output += 1;
        let call = Call {
            chat_index,
            output_index,
            item_id: super::answer::call_item_id(&self.id, self.calls.len()),
            call_id: id.unwrap_or("").to_owned(),
            name: name.unwrap_or("").to_owned(),
            arguments: String::new(),
            open: true,
        };
        let item = json!({
            "type": "function_call", "id": call.item_id, "call_id": call.call_id,
            "name": call.name, "arguments": "", "status": "in_progress",
        });
        self.calls.push(call);
        self.emit(
            out,
            "response.output_item.added",
            json!({"output_index": output_index, "item": item}),
        );
        self.calls.len() - 1
    }

    fn close_calls(&mut self, out: &mut BytesMut) {
        for i in 0..self.calls.len() {
            if !self.calls[i].open {
                continue;
            }
            self.calls[i].open = false;
            let call = &self.calls[i];
            let (item_id, output_index) = (call.item_id.clone(), call.output_index);
            let item = function_call_item(
                &self.id,
                i,
                &call.call_id,
                &call.name,
                &call.arguments,
                "completed",
            );
            let arguments = call.arguments.clone();
            self.emit(
                out,
                "response.function_call_arguments.done",
                json!({"item_id": item_id, "output_index": output_index, "arguments": arguments}),
            );
            self.emit(
                out,
                "response.output_item.done",
                json!({"output_index": output_index, "item": item.clone()}),
            );
            self.output.push(item);
        }
    }
}

impl TranslateStream for ResponsesStream {
    fn chunk(&mut self, chunk: &ChatAnswer, out: &mut BytesMut) {
        if self.ended {
            return;
        }
        self.start(chunk, out);
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage);
        }
        let Some((delta, finish)) = chunk.first() else {
            return;
        };
        let text = delta.content.as_deref().or(delta.refusal.as_deref());
        if let Some(text) = text.filter(|t| !t.is_empty()) {
            self.text(text, out);
        }
        for piece in &delta.tool_calls {
            let function = piece.function.as_ref();
            let name = function.and_then(|f| f.name.as_deref());
            let i = self.call(piece.index.unwrap_or(0), piece.id.as_deref(), name, out);
            if let Some(arguments) = function
                .and_then(|f| f.arguments.as_deref())
                .filter(|a| !a.is_empty())
            {
                self.calls[i].arguments.push_str(arguments);
                let (item_id, output_index) =
                    (self.calls[i].item_id.clone(), self.calls[i].output_index);
                self.emit(
                    out,
                    "response.function_call_arguments.delta",
                    json!({"item_id": item_id, "output_index": output_index, "delta": arguments}),
                );
            }
        }
        if let Some(finish) = finish {
            self.finish = Some(finish.to_owned());
        }
    }

    fn finish(&mut self, out: &mut BytesMut) {
        if self.ended {
            return;
        }
        if !self.started {
            self.start(&ChatAnswer::default(), out);
        }
        self.close_text(out);
        self.close_calls(out);
        self.ended = true;
        let output = std::mem::take(&mut self.output);
        let finish = Some(self.finish.as_deref().unwrap_or("stop"));
        let response = self.header().response(output, self.usage, Some(finish));
        let name = if response["status"] == "incomplete" {
            "response.incomplete"
        } else {
            "response.completed"
        };
        self.emit(out, name, json!({"response": response}));
    }

    /// Keeps the response's id, creation time and model (from the events
    /// that carry it) and the last sequence number, so that a stream cut
    /// here ends with `error` and `response.failed` of the same response,
    /// numbered on. `response.completed`, `.incomplete` and `.failed` are
    /// last.
    fn native_event(&mut self, event: &tollgate_core::sse::Event) -> bool {
        let Ok(typed) = serde_json::from_slice::<NativeEvent<'_>>(&event.data) else {
            return false;
        };
        self.sequence = typed.sequence_number.map_or(self.sequence + 1, |n| n + 1);
        if let Some(response) = typed.response
            && !self.started
        {
            self.started = true;
            self.id = response.id.unwrap_or_default();
            self.created = response.created_at.map_or(0, |at| at as u64);
            self.model = response.model.unwrap_or_default();
        }
        let last = matches!(
            typed.kind.as_deref(),
            Some("response.completed" | "response.incomplete" | "response.failed")
        );
        self.ended |= last;
        last
    }

    fn fail(&mut self, failure: &Failure, out: &mut BytesMut) {
        if self.ended {
            return;
        }
        if !self.started {
            self.start(&ChatAnswer::default(), out);
        }
        self.ended = true;
        let code = failure.class().as_str();
        self.emit(
            out,
            "error",
            json!({"code": code, "message": failure.message(), "param": null}),
        );
        let output = std::mem::take(&mut self.output);
        let mut response = self.header().response(output, self.usage, None);
        response["status"] = json!("failed");
        response["error"] = json!({"code": code, "message": failure.message()});
        self.emit(out, "response.failed", json!({"response": response}));
    }
}
