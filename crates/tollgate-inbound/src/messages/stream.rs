//! A stream of chat chunks as Anthropic's message events.
//!
//! Events from Anthropic's "Streaming Messages" reference
//! (<https://docs.anthropic.com/en/docs/build-with-claude/streaming>):
//! `message_start`, then per content block `content_block_start`,
//! `content_block_delta` (`text_delta`, `input_json_delta`) and
//! `content_block_stop`, then `message_delta` (`stop_reason`, `usage`) and
//! `message_stop`; a failure is an `error` event.

use bytes::BytesMut;
use serde_json::json;
use tollgate_core::Failure;

use super::answer::{message_id, stop_reason, tool_use_id, usage};
use super::error_object;
use crate::chat::{ChatAnswer, ChatUsage};
use crate::protocol::{TranslateStream, write_named};

/// The content block being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Text,
    /// A tool call: chat's index of it.
    Tool(usize),
}

/// Translates one chat stream into Anthropic's events.
#[derive(Debug, Default)]
pub struct MessagesStream {
    started: bool,
    /// The open block and its index.
    open: Option<(Block, usize)>,
    /// How many blocks were started.
    blocks: usize,
    finish: Option<&'static str>,
    usage: Option<ChatUsage>,
    ended: bool,
}

impl MessagesStream {
    fn start(&mut self, chunk: &ChatAnswer, out: &mut BytesMut) {
        if self.started {
            return;
        }
        self.started = true;
        let message = json!({
            "id": message_id(chunk.id.as_deref()),
            "type": "message",
            "role": "assistant",
            "model": chunk.model.as_deref().unwrap_or(""),
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        });
        write_named(
            out,
            "message_start",
            &json!({"type": "message_start", "message": message}),
        );
    }

    /// Closes the open block, if any.
    fn close(&mut self, out: &mut BytesMut) {
        if let Some((_, index)) = self.open.take() {
            write_named(
                out,
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            );
        }
    }

    /// Opens `block` unless it is the open one; its index.
    fn open(&mut self, block: Block, start: serde_json::Value, out: &mut BytesMut) -> usize {
        if let Some((open, index)) = self.open
            && open == block
        {
            return index;
        }
        self.close(out);
        let index = self.blocks;
        self.blocks += 1;
        self.open = Some((block, index));
        write_named(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": start}),
        );
        index
    }

    fn delta(out: &mut BytesMut, index: usize, delta: serde_json::Value) {
        write_named(
            out,
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index, "delta": delta}),
        );
    }
}

impl TranslateStream for MessagesStream {
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
            let index = self.open(Block::Text, json!({"type": "text", "text": ""}), out);
            Self::delta(out, index, json!({"type": "text_delta", "text": text}));
        }
        for call in &delta.tool_calls {
            let tool = call.index.unwrap_or(0);
            let function = call.function.as_ref();
            let name = function.and_then(|f| f.name.as_deref());
            // A call's first piece names it; later pieces (some servers
            // repeat the id and name in each) add arguments to its block.
            let start = json!({
                "type": "tool_use",
                "id": tool_use_id(call.id.as_deref()),
                "name": name.unwrap_or(""),
                "input": {},
            });
            let index = self.open(Block::Tool(tool), start, out);
            if let Some(arguments) = function
                .and_then(|f| f.arguments.as_deref())
                .filter(|a| !a.is_empty())
            {
                Self::delta(
                    out,
                    index,
                    json!({"type": "input_json_delta", "partial_json": arguments}),
                );
            }
        }
        if let Some(finish) = finish {
            self.finish = Some(stop_reason(Some(finish)));
            self.close(out);
        }
    }

    fn finish(&mut self, out: &mut BytesMut) {
        if self.ended {
            return;
        }
        if !self.started {
            self.start(&ChatAnswer::default(), out);
        }
        self.close(out);
        self.ended = true;
        let usage = usage(self.usage.unwrap_or_default());
        write_named(
            out,
            "message_delta",
            &json!({
                "type": "message_delta",
                "delta": {"stop_reason": self.finish.unwrap_or("end_turn"), "stop_sequence": null},
                "usage": usage,
            }),
        );
        write_named(out, "message_stop", &json!({"type": "message_stop"}));
    }

    fn fail(&mut self, failure: &Failure, out: &mut BytesMut) {
        if self.ended {
            return;
        }
        self.ended = true;
        write_named(out, "error", &error_object(failure));
    }
}
