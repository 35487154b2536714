//! Anthropic's stream as OpenAI chunks, event by event.
//!
//! From Anthropic's API reference, "Streaming Messages"
//! (<https://docs.anthropic.com/en/docs/build-with-claude/streaming>):
//! `message_start` (the message, its input usage), per content block
//! `content_block_start` / `content_block_delta` (`text_delta`,
//! `input_json_delta`, `thinking_delta`, `signature_delta`) /
//! `content_block_stop`, then `message_delta` (`stop_reason`, cumulative
//! `usage`) and `message_stop`; `ping` events anywhere, `error` events
//! (`overloaded_error`...) anywhere. New event types may appear: they are
//! ignored.

use std::borrow::Cow;

use serde::Deserialize;
use tollgate_core::Failure;
use tollgate_core::sse::Event;

use super::classify::classify_event;
use super::response::{AnthropicUsage, finish_reason};
use crate::blocks::ToolBlocks;
use crate::events::TranslatedEvents;
use crate::failures::malformed_event;
use crate::openai::{ChunkWriter, Delta, FunctionDelta, TokenCounts, ToolCallDelta};
use crate::protocol::{Exchange, TranslateEvent};

/// The state of one translated stream.
#[derive(Debug)]
pub struct AnthropicStream {
    chunks: ChunkWriter,
    counts: TokenCounts,
    /// Which content blocks are tool calls.
    blocks: ToolBlocks,
}

#[derive(Deserialize)]
struct StreamEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    message: Option<MessageStart>,
    #[serde(default)]
    index: Option<usize>,
    #[serde(default, borrow)]
    content_block: Option<BlockStart<'a>>,
    #[serde(default, borrow)]
    delta: Option<BlockDelta<'a>>,
    #[serde(default)]
    usage: Option<AnthropicUsage>,
}

#[derive(Deserialize)]
struct MessageStart {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    usage: Option<AnthropicUsage>,
}

#[derive(Deserialize)]
struct BlockStart<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct BlockDelta<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    partial_json: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    thinking: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    stop_reason: Option<Cow<'a, str>>,
}

impl AnthropicStream {
    pub(crate) fn new(exchange: &Exchange) -> Self {
        AnthropicStream {
            chunks: ChunkWriter::new(exchange, String::new()),
            counts: TokenCounts::default(),
            blocks: ToolBlocks::default(),
        }
    }
}

impl TranslateEvent for AnthropicStream {
    fn event(&mut self, event: &Event, out: &mut TranslatedEvents) -> Result<(), Failure> {
        let parsed: StreamEvent<'_> =
            serde_json::from_slice(&event.data).map_err(|_| malformed_event())?;
        match &*parsed.kind {
            "message_start" => {
                let message = parsed.message.ok_or_else(malformed_event)?;
                if let Some(id) = message.id {
                    self.chunks.id = id;
                }
                if let Some(model) = message.model {
                    self.chunks.model = model;
                }
                if let Some(usage) = message.usage {
                    usage.apply(&mut self.counts);
                }
                self.chunks.start(out);
            }
            "content_block_start" => {
                let block = parsed.content_block.ok_or_else(malformed_event)?;
                let index = self.blocks.start(parsed.index)?;
                match &*block.kind {
                    "tool_use" => {
                        let tool = self.blocks.open_tool(index);
                        let call = ToolCallDelta {
                            index: tool,
                            id: block.id.as_deref(),
                            kind: Some("function"),
                            function: FunctionDelta {
                                name: block.name.as_deref(),
                                arguments: "",
                            },
                        };
                        self.chunks.tool_call(out, call);
                    }
                    "text" => {
                        if let Some(text) = block.text.as_deref().filter(|t| !t.is_empty()) {
                            let delta = Delta {
                                content: Some(text),
                                ..Delta::default()
                            };
                            self.chunks.content(out, delta);
                        }
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let delta = parsed.delta.ok_or_else(malformed_event)?;
                match delta.kind.as_deref() {
                    Some("text_delta") => {
                        let text = delta.text.as_deref().unwrap_or_default();
                        let delta = Delta {
                            content: Some(text),
                            ..Delta::default()
                        };
                        self.chunks.content(out, delta);
                    }
                    Some("thinking_delta") => {
                        let thinking = delta.thinking.as_deref().unwrap_or_default();
                        let delta = Delta {
                            reasoning_content: Some(thinking),
                            ..Delta::default()
                        };
                        self.chunks.content(out, delta);
                    }
                    Some("input_json_delta") => {
                        let partial = delta.partial_json.as_deref().unwrap_or_default();
                        if let Some(tool) = self.blocks.tool(parsed.index)
                            && !partial.is_empty()
                        {
                            let call = ToolCallDelta {
                                index: tool,
                                id: None,
                                kind: None,
                                function: FunctionDelta {
                                    name: None,
                                    arguments: partial,
                                },
                            };
                            self.chunks.tool_call(out, call);
                        }
                    }
                    // `signature_delta`, `citations_delta`...
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(usage) = parsed.usage {
                    usage.apply(&mut self.counts);
                }
                if let Some(stop) = parsed.delta.as_ref().and_then(|d| d.stop_reason.as_deref()) {
                    // A refusal with nothing before it is a failure the
                    // client hears as one, not an empty answer.
                    if stop == "refusal" && !self.chunks.committed() {
                        return Err(super::classify::refusal());
                    }
                    self.chunks.finish(out, finish_reason(stop));
                }
            }
            "message_stop" => {
                self.chunks.end(out, self.counts);
            }
            "error" => return Err(classify_event(&event.data)),
            // `ping`, `content_block_stop`, and types added later.
            _ => {}
        }
        Ok(())
    }

    fn committed(&self) -> bool {
        self.chunks.committed()
    }

    fn finished(&self) -> bool {
        self.chunks.ended()
    }
}
