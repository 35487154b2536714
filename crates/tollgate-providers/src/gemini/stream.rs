//! Gemini's stream as OpenAI chunks, event by event.
//!
//! From the Gemini API reference, "Generating content" —
//! `streamGenerateContent` with `alt=sse`
//! (<https://ai.google.dev/api/generate-content#method:-models.streamgeneratecontent>):
//! each `data:` event is a whole `GenerateContentResponse` holding the next
//! parts of the candidate (text pieces, whole `functionCall` parts) and
//! `usageMetadata` so far; the last one carries the `finishReason`. There
//! is no end event: the stream closes after it. A blocked prompt is an
//! event with `promptFeedback.blockReason` and no candidate; a failure
//! mid-stream an event with an `error` object.

use tollgate_core::Failure;
use tollgate_core::sse::Event;

use super::classify::classify_event;
use super::response::{
    GenerateContentResponse, arguments, finish_reason, is_policy_stop, no_candidate, refusal,
    tool_call_id,
};
use crate::events::TranslatedEvents;
use crate::failures::malformed_event;
use crate::openai::{ChunkWriter, Delta, FunctionDelta, TokenCounts, ToolCallDelta};
use crate::protocol::{Exchange, TranslateEvent};

/// The state of one translated stream.
#[derive(Debug)]
pub struct GeminiStream {
    chunks: ChunkWriter,
    counts: TokenCounts,
    /// Tool calls sent so far (the next one's OpenAI index).
    tools: u32,
    started: bool,
}

impl GeminiStream {
    /// The state for a stream answering `exchange`.
    pub fn new(exchange: &Exchange) -> Self {
        GeminiStream {
            chunks: ChunkWriter::new(exchange, String::new()),
            counts: TokenCounts::default(),
            tools: 0,
            started: false,
        }
    }

    /// The end: the finish chunk, the usage chunk when asked, `[DONE]`.
    fn finish(&mut self, out: &mut TranslatedEvents, reason: &str) {
        let reason = finish_reason(reason, self.tools > 0);
        self.chunks.finish(out, reason);
        self.chunks.end(out, self.counts);
    }
}

impl TranslateEvent for GeminiStream {
    fn event(&mut self, event: &Event, out: &mut TranslatedEvents) -> Result<(), Failure> {
        let response: GenerateContentResponse =
            serde_json::from_slice(&event.data).map_err(|_| malformed_event())?;
        if response.error.is_some() {
            return Err(classify_event(&event.data));
        }
        if let Some(usage) = &response.usage_metadata {
            self.counts = usage.counts();
        }
        let Some(candidate) = response.candidates.first() else {
            // A usage-only event says nothing; a blocked prompt refuses.
            return match &response.prompt_feedback {
                Some(feedback) if feedback.block_reason.is_some() => Err(no_candidate(&response)),
                _ => Ok(()),
            };
        };
        if !self.started {
            self.started = true;
            if let Some(id) = &response.response_id {
                self.chunks.id.clone_from(id);
            }
            if let Some(model) = &response.model_version {
                self.chunks.model.clone_from(model);
            }
            self.chunks.start(out);
        }
        let parts = candidate.content.as_ref().map_or(&[][..], |c| &c.parts);
        for part in parts {
            if let Some(call) = &part.function_call {
                let id = tool_call_id(call, part.thought_signature.as_deref(), self.chunks.created);
                let arguments = arguments(call);
                let delta = Delta {
                    tool_calls: Some([ToolCallDelta {
                        index: self.tools,
                        id: Some(&id),
                        kind: Some("function"),
                        function: FunctionDelta {
                            name: Some(&call.name),
                            arguments: &arguments,
                        },
                    }]),
                    ..Delta::default()
                };
                self.tools += 1;
                self.chunks.content(out, delta);
            } else if let Some(text) = part.text.as_deref().filter(|t| !t.is_empty()) {
                let delta = if part.thought {
                    Delta {
                        reasoning_content: Some(text),
                        ..Delta::default()
                    }
                } else {
                    Delta {
                        content: Some(text),
                        ..Delta::default()
                    }
                };
                self.chunks.content(out, delta);
            }
        }
        if let Some(reason) = candidate.finish_reason.as_deref() {
            // A filter that stopped the answer before anything was said is
            // a refusal, never an empty success.
            if !self.chunks.committed() && is_policy_stop(reason) {
                return Err(refusal("answer", reason, &candidate.safety_ratings));
            }
            self.finish(out, reason);
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
