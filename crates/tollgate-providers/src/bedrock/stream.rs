//! ConverseStream's event stream as OpenAI chunks, message by message.
//!
//! From the Amazon Bedrock API Reference, "ConverseStream"
//! (<https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html>)
//! and `ConverseStreamOutput`: binary event-stream messages (see
//! [`eventstream`](super::eventstream)) whose `:event-type` is
//! `messageStart` (`role`), `contentBlockStart` (`start.toolUse`:
//! `toolUseId`, `name`), `contentBlockDelta` (`delta.text`,
//! `delta.toolUse.input`, `delta.reasoningContent.text`),
//! `contentBlockStop`, `messageStop` (`stopReason`) and `metadata`
//! (`usage`, `metrics`), each with `contentBlockIndex` where it applies;
//! failures arrive as `:message-type: exception` messages
//! (`throttlingException`, `validationException`,
//! `serviceUnavailableException`, `modelStreamErrorException`,
//! `internalServerException`) or `error` messages (`:error-code`).
//! New event types may appear: they are ignored.

use bytes::Bytes;
use serde::Deserialize;
use tollgate_core::{ErrorClass, Failure};

use super::classify::{classify_exception, content_policy};
use super::eventstream::{DecodeError, Decoder, Message};
use super::response::{ConverseUsage, finish_reason, is_refusal};
use crate::blocks::ToolBlocks;
use crate::events::TranslatedEvents;
use crate::failures::malformed_event;
use crate::openai::{ChunkWriter, Delta, FunctionDelta, TokenCounts, ToolCallDelta};
use crate::protocol::{Exchange, TranslateStream};

/// The state of one translated ConverseStream answer.
#[derive(Debug)]
pub struct BedrockStream {
    decoder: Decoder,
    chunks: ChunkWriter,
    counts: TokenCounts,
    /// Which content blocks are tool calls.
    blocks: ToolBlocks,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload<'a> {
    #[serde(default)]
    content_block_index: Option<usize>,
    #[serde(default, borrow)]
    start: Option<BlockStart<'a>>,
    #[serde(default, borrow)]
    delta: Option<BlockDelta<'a>>,
    #[serde(default, borrow)]
    stop_reason: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    usage: Option<ConverseUsage>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockStart<'a> {
    #[serde(default, borrow)]
    tool_use: Option<ToolStart<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolStart<'a> {
    #[serde(borrow)]
    tool_use_id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    name: std::borrow::Cow<'a, str>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockDelta<'a> {
    #[serde(default, borrow)]
    text: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    tool_use: Option<ToolDelta<'a>>,
    #[serde(default, borrow)]
    reasoning_content: Option<ReasoningDelta<'a>>,
}

#[derive(Deserialize)]
struct ToolDelta<'a> {
    #[serde(default, borrow)]
    input: std::borrow::Cow<'a, str>,
}

#[derive(Deserialize)]
struct ReasoningDelta<'a> {
    #[serde(default, borrow)]
    text: Option<std::borrow::Cow<'a, str>>,
}

impl BedrockStream {
    pub(crate) fn new(exchange: &Exchange, id: String) -> Self {
        BedrockStream {
            decoder: Decoder::default(),
            chunks: ChunkWriter::new(exchange, id),
            counts: TokenCounts::default(),
            blocks: ToolBlocks::default(),
        }
    }

    /// Translates one decoded message.
    fn message(&mut self, message: &Message, out: &mut TranslatedEvents) -> Result<(), Failure> {
        match message.message_type.as_deref() {
            Some("exception") => {
                let kind = message.exception_type.as_deref().unwrap_or_default();
                return Err(classify_exception(kind, &message.payload));
            }
            Some("error") => {
                let kind = message.error_code.as_deref().unwrap_or_default();
                let payload = serde_json::json!({
                    "message": message.error_message.as_deref().unwrap_or_default()
                });
                return Err(classify_exception(kind, payload.to_string().as_bytes()));
            }
            _ => {}
        }
        let event = message.event_type.as_deref().unwrap_or_default();
        let payload: Payload<'_> =
            serde_json::from_slice(&message.payload).map_err(|_| malformed_event())?;
        match event {
            "messageStart" => {
                self.chunks.start(out);
            }
            "contentBlockStart" => {
                let Some(tool) = payload.start.and_then(|s| s.tool_use) else {
                    return Ok(());
                };
                let index = self.blocks.start(payload.content_block_index)?;
                let call = self.blocks.open_tool(index);
                self.chunks.tool_call(
                    out,
                    ToolCallDelta {
                        index: call,
                        id: Some(&tool.tool_use_id),
                        kind: Some("function"),
                        function: FunctionDelta {
                            name: Some(&tool.name),
                            arguments: "",
                        },
                    },
                );
            }
            "contentBlockDelta" => {
                let delta = payload.delta.ok_or_else(malformed_event)?;
                if let Some(text) = delta.text.as_deref() {
                    let delta = Delta {
                        content: Some(text),
                        ..Delta::default()
                    };
                    self.chunks.content(out, delta);
                } else if let Some(tool) = delta.tool_use {
                    if let Some(call) = self.blocks.tool(payload.content_block_index)
                        && !tool.input.is_empty()
                    {
                        self.chunks.tool_call(
                            out,
                            ToolCallDelta {
                                index: call,
                                id: None,
                                kind: None,
                                function: FunctionDelta {
                                    name: None,
                                    arguments: &tool.input,
                                },
                            },
                        );
                    }
                } else if let Some(text) = delta.reasoning_content.and_then(|r| r.text) {
                    let delta = Delta {
                        reasoning_content: Some(&text),
                        ..Delta::default()
                    };
                    self.chunks.content(out, delta);
                }
            }
            "messageStop" => {
                let stop = payload.stop_reason.as_deref().unwrap_or("end_turn");
                // A refusal before anything was said is the answer: a
                // content-policy failure with its reason. After content it
                // ends the answer as OpenAI's `content_filter`.
                if is_refusal(stop) && !self.chunks.committed() {
                    return Err(content_policy(stop, None));
                }
                self.chunks.finish(out, finish_reason(stop));
            }
            "metadata" => {
                if let Some(usage) = payload.usage {
                    self.counts = usage.into();
                }
                self.chunks.end(out, self.counts);
            }
            // `contentBlockStop`, and types added later.
            _ => {}
        }
        Ok(())
    }
}

impl TranslateStream for BedrockStream {
    /// Translates every message `chunk` completes into `out`; after the
    /// first that fails, the rest is dropped.
    fn push(&mut self, chunk: Bytes, out: &mut TranslatedEvents) -> Result<(), Failure> {
        if self.chunks.ended() {
            return Ok(());
        }
        self.decoder.push(&chunk);
        loop {
            match self.decoder.next_message() {
                Ok(Some(message)) => {
                    self.message(&message, out)?;
                    if self.chunks.ended() {
                        return Ok(());
                    }
                }
                Ok(None) => return Ok(()),
                Err(error) => return Err(broken(error)),
            }
        }
    }

    fn committed(&self) -> bool {
        self.chunks.committed()
    }

    fn finished(&self) -> bool {
        self.chunks.ended()
    }
}

/// The event stream itself is broken (a CRC mismatch, impossible lengths):
/// nothing after it can be trusted.
fn broken(error: DecodeError) -> Failure {
    let message = match error {
        DecodeError::PreludeCrc | DecodeError::MessageCrc => {
            "the provider's event stream failed its CRC check"
        }
        DecodeError::Length => "the provider's event stream has an impossible message length",
        DecodeError::Header => "the provider's event stream has an unreadable header",
    };
    Failure::new(ErrorClass::UpstreamUnavailable, message).with_subkind("malformed_event")
}
