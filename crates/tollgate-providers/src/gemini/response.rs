//! A Gemini `GenerateContentResponse` as an OpenAI `chat.completion`, and
//! the pieces the stream shares with it: parts, finish reasons, usage,
//! tool-call ids, safety outcomes.
//!
//! From the Gemini API reference, "Generating content" — the response
//! (<https://ai.google.dev/api/generate-content#generatecontentresponse>):
//! `candidates` (each `content.parts`, `finishReason`, `safetyRatings`,
//! `index`), `promptFeedback` (`blockReason`, `safetyRatings`),
//! `usageMetadata` (`promptTokenCount` — cached tokens included —,
//! `cachedContentTokenCount`, `candidatesTokenCount`,
//! `toolUsePromptTokenCount`, `thoughtsTokenCount`, `totalTokenCount`),
//! `modelVersion`, `responseId`; a `Part` is `text` (a thought when
//! `thought` is true), `functionCall` (`id`, `name`, `args`) and may carry
//! a `thoughtSignature`.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use tollgate_core::{ErrorClass, Failure, Scope};

use crate::failures::malformed_response;
use crate::openai::{Choice, Function, TokenCounts, ToolCall, completion_body};
use crate::protocol::Exchange;

/// Between a tool call's id and the thought signature it carries (the
/// separator LiteLLM uses): Gemini's signatures must come back with the
/// calls they belong to, and an OpenAI client keeps only the id.
const SIGNATURE_SEPARATOR: &str = "__thought__";

/// One `GenerateContentResponse`: a complete answer, or one stream event.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GenerateContentResponse {
    #[serde(default)]
    pub(crate) candidates: Vec<Candidate>,
    #[serde(default)]
    pub(crate) prompt_feedback: Option<PromptFeedback>,
    #[serde(default)]
    pub(crate) usage_metadata: Option<UsageMetadata>,
    #[serde(default)]
    pub(crate) model_version: Option<String>,
    #[serde(default)]
    pub(crate) response_id: Option<String>,
    /// An error object, as a stream can carry one.
    #[serde(default)]
    pub(crate) error: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Candidate {
    #[serde(default)]
    pub(crate) content: Option<Content>,
    #[serde(default)]
    pub(crate) finish_reason: Option<String>,
    #[serde(default)]
    pub(crate) safety_ratings: Vec<SafetyRating>,
    #[serde(default)]
    pub(crate) index: Option<u32>,
}

#[derive(Deserialize, Default)]
pub(crate) struct Content {
    #[serde(default)]
    pub(crate) parts: Vec<Part>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Part {
    #[serde(default)]
    pub(crate) text: Option<String>,
    #[serde(default)]
    pub(crate) thought: bool,
    #[serde(default)]
    pub(crate) thought_signature: Option<String>,
    #[serde(default)]
    pub(crate) function_call: Option<FunctionCall>,
}

#[derive(Deserialize, Default)]
pub(crate) struct FunctionCall {
    #[serde(default)]
    pub(crate) id: Option<String>,
    #[serde(default)]
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) args: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PromptFeedback {
    #[serde(default)]
    pub(crate) block_reason: Option<String>,
    #[serde(default)]
    pub(crate) safety_ratings: Vec<SafetyRating>,
}

#[derive(Deserialize, Default)]
pub(crate) struct SafetyRating {
    #[serde(default)]
    pub(crate) category: String,
    #[serde(default)]
    pub(crate) blocked: bool,
}

/// Gemini's `usageMetadata`; in a stream, each event repeats it with the
/// counts so far.
#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UsageMetadata {
    #[serde(default)]
    pub(crate) prompt_token_count: u64,
    #[serde(default)]
    pub(crate) cached_content_token_count: u64,
    #[serde(default)]
    pub(crate) candidates_token_count: u64,
    #[serde(default)]
    pub(crate) tool_use_prompt_token_count: u64,
    #[serde(default)]
    pub(crate) thoughts_token_count: u64,
}

impl UsageMetadata {
    /// The counts in OpenAI's meaning: the prompt (tool-use prompt tokens
    /// included) with its cached part apart, the completion with its
    /// thoughts.
    pub(crate) fn counts(&self) -> TokenCounts {
        let cached = self.cached_content_token_count.min(self.prompt_token_count);
        TokenCounts {
            input: (self.prompt_token_count - cached)
                .saturating_add(self.tool_use_prompt_token_count),
            output: self
                .candidates_token_count
                .saturating_add(self.thoughts_token_count),
            cache_read: cached,
            cache_creation: 0,
            reasoning: self.thoughts_token_count,
        }
    }
}

/// Whether a finish reason means a filter stopped the answer.
pub(crate) fn is_policy_stop(reason: &str) -> bool {
    matches!(
        reason,
        "SAFETY"
            | "RECITATION"
            | "BLOCKLIST"
            | "PROHIBITED_CONTENT"
            | "SPII"
            | "IMAGE_SAFETY"
            | "IMAGE_PROHIBITED_CONTENT"
            | "IMAGE_RECITATION"
    )
}

/// OpenAI's `finish_reason` for Gemini's `finishReason`; `tool_calls` when
/// the candidate called a function.
pub(crate) fn finish_reason(reason: &str, called: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        reason if is_policy_stop(reason) => "content_filter",
        _ if called => "tool_calls",
        // `STOP`, `LANGUAGE`, `OTHER`, `MALFORMED_FUNCTION_CALL`...
        _ => "stop",
    }
}

/// A blocked prompt, or a candidate a filter stopped before anything was
/// said: a refusal with its reason (and the categories marked blocked).
pub(crate) fn refusal(what: &str, reason: &str, ratings: &[SafetyRating]) -> Failure {
    let blocked: Vec<&str> = ratings
        .iter()
        .filter(|rating| rating.blocked)
        .map(|rating| rating.category.as_str())
        .collect();
    let categories = if blocked.is_empty() {
        String::new()
    } else {
        format!(" ({})", blocked.join(", "))
    };
    Failure::new(
        ErrorClass::ContentPolicy,
        format!("Gemini blocked the {what}: {reason}{categories}"),
    )
    .with_code("content_filter")
    .with_param(if what == "prompt" {
        "messages"
    } else {
        "completion"
    })
    .with_scope(Scope::Model)
}

/// The failure a response with no candidate stands for: a blocked prompt,
/// else an answer with nothing in it.
pub(crate) fn no_candidate(response: &GenerateContentResponse) -> Failure {
    match &response.prompt_feedback {
        Some(PromptFeedback {
            block_reason: Some(reason),
            safety_ratings,
        }) => refusal("prompt", reason, safety_ratings),
        _ => malformed_response(),
    }
}

/// Numbers tool calls across the process: with the time, an id no other
/// call of a conversation has.
static NEXT_CALL: AtomicU64 = AtomicU64::new(0);

/// An OpenAI id for a `functionCall` part: Gemini's own when it gave one,
/// else a fresh one, followed by the part's thought signature.
pub(crate) fn tool_call_id(call: &FunctionCall, signature: Option<&str>, created: u64) -> String {
    let mut id = match call.id.as_deref().filter(|id| !id.is_empty()) {
        Some(id) => id.to_owned(),
        None => format!(
            "call_{created:x}{:06x}",
            NEXT_CALL.fetch_add(1, Ordering::Relaxed)
        ),
    };
    if let Some(signature) = signature {
        id.push_str(SIGNATURE_SEPARATOR);
        id.push_str(signature);
    }
    id
}

/// A tool call's id and the thought signature it carries, if any.
pub(crate) fn split_tool_call_id(id: &str) -> (&str, Option<&str>) {
    match id.split_once(SIGNATURE_SEPARATOR) {
        Some((id, signature)) if !signature.is_empty() => (id, Some(signature)),
        _ => (id, None),
    }
}

/// A tool call's arguments as JSON text.
pub(crate) fn arguments(call: &FunctionCall) -> String {
    call.args
        .as_ref()
        .map_or_else(|| "{}".to_owned(), Value::to_string)
}

/// Translates a complete answer.
pub(crate) fn translate(exchange: &Exchange, body: &[u8]) -> Result<Bytes, Failure> {
    let response: GenerateContentResponse =
        serde_json::from_slice(body).map_err(|_| malformed_response())?;
    if response.error.is_some() {
        return Err(super::classify::classify(
            http::StatusCode::OK,
            &http::HeaderMap::new(),
            body,
        ));
    }
    if response.candidates.is_empty() {
        return Err(no_candidate(&response));
    }
    let answers: Vec<CandidateAnswer<'_>> = response
        .candidates
        .iter()
        .enumerate()
        .map(|(at, candidate)| CandidateAnswer::of(at, candidate, exchange.created))
        .collect();
    if !answers.iter().any(CandidateAnswer::said_anything)
        && let Some(candidate) = response
            .candidates
            .iter()
            .find(|c| c.finish_reason.as_deref().is_some_and(is_policy_stop))
    {
        let reason = candidate.finish_reason.as_deref().unwrap_or_default();
        return Err(refusal("answer", reason, &candidate.safety_ratings));
    }
    let choices = answers.iter().map(CandidateAnswer::choice).collect();
    let counts = response.usage_metadata.unwrap_or_default().counts();
    let id = response.response_id.as_deref().unwrap_or_default();
    completion_body(
        id,
        exchange.created,
        response.model_version.as_deref().unwrap_or(&exchange.model),
        choices,
        counts,
    )
}

/// One candidate, read: its text, thoughts and calls (with their ids).
struct CandidateAnswer<'a> {
    index: u32,
    text: Option<String>,
    reasoning: Option<String>,
    calls: Vec<(&'a FunctionCall, String)>,
    reason: &'a str,
}

impl<'a> CandidateAnswer<'a> {
    fn of(at: usize, candidate: &'a Candidate, created: u64) -> Self {
        let mut answer = CandidateAnswer {
            index: candidate.index.unwrap_or(at as u32),
            text: None,
            reasoning: None,
            calls: Vec::new(),
            reason: candidate.finish_reason.as_deref().unwrap_or("STOP"),
        };
        let parts = candidate.content.as_ref().map_or(&[][..], |c| &c.parts);
        for part in parts {
            if let Some(call) = &part.function_call {
                let id = tool_call_id(call, part.thought_signature.as_deref(), created);
                answer.calls.push((call, id));
            } else if let Some(piece) = &part.text {
                let into = if part.thought {
                    &mut answer.reasoning
                } else {
                    &mut answer.text
                };
                into.get_or_insert_with(String::new).push_str(piece);
            }
        }
        answer
    }

    fn said_anything(&self) -> bool {
        self.text.as_deref().is_some_and(|t| !t.is_empty()) || !self.calls.is_empty()
    }

    fn choice(&self) -> Choice<'_> {
        let tool_calls = self
            .calls
            .iter()
            .map(|(call, id)| ToolCall {
                id,
                kind: "function",
                function: Function {
                    name: &call.name,
                    arguments: arguments(call),
                },
            })
            .collect();
        Choice::assistant(
            self.index,
            self.text.clone(),
            self.reasoning.clone(),
            tool_calls,
            finish_reason(self.reason, !self.calls.is_empty()),
        )
    }
}
