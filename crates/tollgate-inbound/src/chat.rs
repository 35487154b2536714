//! OpenAI's chat-completions answers as the inbound protocols read them: a
//! `chat.completion`, or one `chat.completion.chunk` of a stream (shapes
//! from OpenAI's API reference, "Chat", "The chat completion object" and
//! "The chat completion chunk object").
//!
//! Only the fields a translation uses are read; the rest is skipped without
//! being built.

use serde::Deserialize;
use tollgate_core::{ErrorClass, Failure};

/// A `chat.completion`, one chunk of a stream, or an error event, as the
/// translations read it (what a [`TranslateStream`](crate::TranslateStream)
/// is given; its fields are the crate's own).
#[derive(Debug, Default, Deserialize)]
pub struct ChatAnswer {
    #[serde(default)]
    pub(crate) id: Option<String>,
    #[serde(default)]
    pub(crate) model: Option<String>,
    #[serde(default)]
    pub(crate) created: Option<u64>,
    #[serde(default)]
    pub(crate) choices: Vec<Choice>,
    #[serde(default)]
    pub(crate) usage: Option<ChatUsage>,
    /// An error event inside a stream (`data: {"error": {...}}`).
    #[serde(default)]
    pub(crate) error: Option<ChatError>,
}

/// One choice; the translations read the first only (`n` is not sent).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Choice {
    /// A complete answer's message.
    #[serde(default)]
    pub(crate) message: Option<ChatMessage>,
    /// A chunk's increment.
    #[serde(default)]
    pub(crate) delta: Option<ChatMessage>,
    #[serde(default)]
    pub(crate) finish_reason: Option<String>,
}

/// A message or a chunk's delta.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ChatMessage {
    #[serde(default)]
    pub(crate) content: Option<String>,
    #[serde(default)]
    pub(crate) refusal: Option<String>,
    #[serde(default)]
    pub(crate) tool_calls: Vec<ToolCall>,
}

/// A tool call, whole (in a message) or in pieces (in deltas, keyed by
/// `index`: the first piece has the id and name, later ones more
/// arguments).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ToolCall {
    #[serde(default)]
    pub(crate) index: Option<usize>,
    #[serde(default)]
    pub(crate) id: Option<String>,
    #[serde(default)]
    pub(crate) function: Option<FunctionCall>,
}

/// A tool call's function: its name and (the next piece of) its arguments.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct FunctionCall {
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) arguments: Option<String>,
}

/// `usage`, with the details the inbound shapes report.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
pub(crate) struct ChatUsage {
    #[serde(default)]
    pub(crate) prompt_tokens: u64,
    #[serde(default)]
    pub(crate) completion_tokens: u64,
    #[serde(default)]
    pub(crate) prompt_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    pub(crate) completion_tokens_details: Option<CompletionDetails>,
}

impl ChatUsage {
    /// Prompt tokens read from the provider's cache.
    pub(crate) fn cached(&self) -> u64 {
        self.prompt_tokens_details
            .and_then(|d| d.cached_tokens)
            .unwrap_or(0)
    }

    /// Output tokens spent reasoning.
    pub(crate) fn reasoning(&self) -> u64 {
        self.completion_tokens_details
            .and_then(|d| d.reasoning_tokens)
            .unwrap_or(0)
    }
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
pub(crate) struct PromptDetails {
    #[serde(default)]
    pub(crate) cached_tokens: Option<u64>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
pub(crate) struct CompletionDetails {
    #[serde(default)]
    pub(crate) reasoning_tokens: Option<u64>,
}

/// An OpenAI error object: what an error event or an error body holds.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ChatError {
    #[serde(default)]
    pub(crate) message: String,
    #[serde(default)]
    pub(crate) code: Option<serde_json::Value>,
    #[serde(default, rename = "type")]
    pub(crate) kind: Option<String>,
}

impl ChatError {
    /// The failure it reports: the class Tollgate's code names (the
    /// cascade writes its classes as codes), else a broken stream.
    pub(crate) fn to_failure(&self) -> Failure {
        let class = self
            .code
            .as_ref()
            .and_then(serde_json::Value::as_str)
            .and_then(ErrorClass::from_name)
            .or_else(|| self.kind.as_deref().and_then(ErrorClass::from_name))
            .unwrap_or(ErrorClass::StreamInterrupted);
        let message = if self.message.is_empty() {
            "the upstream stream failed".to_owned()
        } else {
            self.message.clone()
        };
        Failure::new(class, message)
    }
}

impl ChatAnswer {
    /// Parses one answer or chunk; a malformed one is an upstream failure.
    pub(crate) fn parse(bytes: &[u8]) -> Result<ChatAnswer, Failure> {
        serde_json::from_slice(bytes).map_err(|_| {
            Failure::new(
                ErrorClass::UpstreamUnavailable,
                "the upstream's answer is not a chat completion",
            )
        })
    }

    /// The first choice's message (or delta), if any.
    pub(crate) fn first(&self) -> Option<(&ChatMessage, Option<&str>)> {
        let choice = self.choices.first()?;
        let message = choice.message.as_ref().or(choice.delta.as_ref())?;
        Some((message, choice.finish_reason.as_deref()))
    }
}
