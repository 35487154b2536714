//! OpenAI's answer shapes, written by every translation: chunks, complete
//! answers, usage.
//!
//! Shapes from OpenAI's API reference, "Chat Completions" — "The chat
//! completion object" and "The chat completion chunk object"
//! (<https://platform.openai.com/docs/api-reference/chat>).

use bytes::Bytes;
use serde::Serialize;
use tollgate_core::Failure;

use crate::events::TranslatedEvents;
use crate::failures::malformed_response;

/// Token counts in OpenAI's meaning: prompt tokens include the ones read
/// from and written to the provider's cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TokenCounts {
    /// Prompt tokens neither read from nor written to the cache.
    pub(crate) input: u64,
    pub(crate) output: u64,
    pub(crate) cache_read: u64,
    pub(crate) cache_creation: u64,
    /// Output tokens spent on reasoning, counted in `output` too (OpenAI's
    /// `completion_tokens_details.reasoning_tokens`).
    pub(crate) reasoning: u64,
}

/// `usage`, as LiteLLM reports it for providers with prompt caching: the
/// cache reads in `prompt_tokens_details.cached_tokens`, the cache writes
/// in `prompt_tokens_details.cache_creation_tokens` and, as LiteLLM and
/// Anthropic name them, `cache_creation_input_tokens` /
/// `cache_read_input_tokens` — the cost layer prices the writes apart.
#[derive(Serialize)]
pub(crate) struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: PromptDetails,
    #[serde(skip_serializing_if = "Option::is_none")]
    completion_tokens_details: Option<CompletionDetails>,
    #[serde(skip_serializing_if = "is_zero")]
    cache_creation_input_tokens: u64,
    #[serde(skip_serializing_if = "is_zero")]
    cache_read_input_tokens: u64,
}

#[derive(Serialize)]
struct PromptDetails {
    cached_tokens: u64,
    #[serde(skip_serializing_if = "is_zero")]
    cache_creation_tokens: u64,
}

#[derive(Serialize)]
struct CompletionDetails {
    reasoning_tokens: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl From<TokenCounts> for Usage {
    fn from(counts: TokenCounts) -> Usage {
        let prompt = counts
            .input
            .saturating_add(counts.cache_read)
            .saturating_add(counts.cache_creation);
        Usage {
            prompt_tokens: prompt,
            completion_tokens: counts.output,
            total_tokens: prompt.saturating_add(counts.output),
            prompt_tokens_details: PromptDetails {
                cached_tokens: counts.cache_read,
                cache_creation_tokens: counts.cache_creation,
            },
            completion_tokens_details: (counts.reasoning > 0).then_some(CompletionDetails {
                reasoning_tokens: counts.reasoning,
            }),
            cache_creation_input_tokens: counts.cache_creation,
            cache_read_input_tokens: counts.cache_read,
        }
    }
}

/// One `chat.completion.chunk`.
#[derive(Serialize)]
pub(crate) struct Chunk<'a> {
    pub(crate) id: &'a str,
    pub(crate) object: &'static str,
    pub(crate) created: u64,
    pub(crate) model: &'a str,
    pub(crate) choices: &'a [ChunkChoice<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) usage: Option<Usage>,
}

/// The one choice of a chunk.
#[derive(Serialize)]
pub(crate) struct ChunkChoice<'a> {
    pub(crate) index: u32,
    pub(crate) delta: Delta<'a>,
    pub(crate) finish_reason: Option<&'a str>,
}

/// What a chunk adds to the answer.
#[derive(Serialize, Default)]
pub(crate) struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tool_calls: Option<[ToolCallDelta<'a>; 1]>,
}

/// A piece of a tool call: the first carries its id, type and name, the
/// next ones pieces of its arguments.
#[derive(Serialize)]
pub(crate) struct ToolCallDelta<'a> {
    pub(crate) index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub(crate) kind: Option<&'static str>,
    pub(crate) function: FunctionDelta<'a>,
}

/// The function part of a [`ToolCallDelta`].
#[derive(Serialize)]
pub(crate) struct FunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<&'a str>,
    pub(crate) arguments: &'a str,
}

/// A complete `chat.completion`.
#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<Choice<'a>>,
    usage: Usage,
}

/// The body of a complete `chat.completion` of `choices`, with `counts` as
/// its `usage`.
pub(crate) fn completion_body(
    id: &str,
    created: u64,
    model: &str,
    choices: Vec<Choice<'_>>,
    counts: TokenCounts,
) -> Result<Bytes, Failure> {
    let completion = Completion {
        id,
        object: "chat.completion",
        created,
        model,
        choices,
        usage: counts.into(),
    };
    let body = serde_json::to_vec(&completion).map_err(|_| malformed_response())?;
    Ok(Bytes::from(body))
}

/// A choice of a [`Completion`] (one per candidate the provider answered).
#[derive(Serialize)]
pub(crate) struct Choice<'a> {
    index: u32,
    message: Message<'a>,
    finish_reason: &'a str,
}

impl<'a> Choice<'a> {
    /// The assistant's answer at `index`: its text, its reasoning and its
    /// tool calls.
    pub(crate) fn assistant(
        index: u32,
        content: Option<String>,
        reasoning_content: Option<String>,
        tool_calls: Vec<ToolCall<'a>>,
        finish_reason: &'a str,
    ) -> Self {
        Choice {
            index,
            message: Message {
                role: "assistant",
                content,
                reasoning_content,
                tool_calls,
            },
            finish_reason,
        }
    }
}

/// The assistant's message.
#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCall<'a>>,
}

/// A complete tool call.
#[derive(Serialize)]
pub(crate) struct ToolCall<'a> {
    pub(crate) id: &'a str,
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) function: Function<'a>,
}

/// The function of a [`ToolCall`]: its arguments as JSON text.
#[derive(Serialize)]
pub(crate) struct Function<'a> {
    pub(crate) name: &'a str,
    pub(crate) arguments: String,
}

/// What every chunk of one streamed answer repeats (its id, model and
/// creation time), the chunks written from it, whether content went out
/// and whether the stream ended: the part every stream translation shares.
#[derive(Debug)]
pub(crate) struct ChunkWriter {
    pub(crate) id: String,
    pub(crate) model: String,
    pub(crate) created: u64,
    include_usage: bool,
    committed: bool,
    ended: bool,
}

impl ChunkWriter {
    /// Chunks of `exchange`'s answer, under `id` (until the provider names
    /// another).
    pub(crate) fn new(exchange: &crate::protocol::Exchange, id: String) -> Self {
        ChunkWriter {
            id,
            model: exchange.model.to_string(),
            created: exchange.created,
            include_usage: exchange.include_usage,
            committed: false,
            ended: false,
        }
    }

    /// Appends the chunk that opens the answer: the assistant's role, no
    /// content yet.
    pub(crate) fn start(&self, out: &mut TranslatedEvents) {
        let delta = Delta {
            role: Some("assistant"),
            content: Some(""),
            ..Delta::default()
        };
        self.chunk(out, delta, None);
    }

    /// Appends one chunk of the answer's one choice.
    pub(crate) fn chunk(
        &self,
        out: &mut TranslatedEvents,
        delta: Delta<'_>,
        finish_reason: Option<&str>,
    ) {
        let choices = [ChunkChoice {
            index: 0,
            delta,
            finish_reason,
        }];
        self.write(out, &choices, None);
    }

    /// Appends a chunk that carries content: from here on the answer has
    /// started.
    pub(crate) fn content(&mut self, out: &mut TranslatedEvents, delta: Delta<'_>) {
        self.committed = true;
        self.chunk(out, delta, None);
    }

    /// Appends a piece of a tool call, as content.
    pub(crate) fn tool_call(&mut self, out: &mut TranslatedEvents, call: ToolCallDelta<'_>) {
        let delta = Delta {
            tool_calls: Some([call]),
            ..Delta::default()
        };
        self.content(out, delta);
    }

    /// Appends the chunk that gives the answer's `finish_reason`: from
    /// here on the answer has started, even when nothing came before.
    pub(crate) fn finish(&mut self, out: &mut TranslatedEvents, reason: &str) {
        self.committed = true;
        self.chunk(out, Delta::default(), Some(reason));
    }

    /// Ends the stream: the usage chunk (no choices, `counts`) when the
    /// client asked for `stream_options.include_usage`, then `[DONE]`.
    pub(crate) fn end(&mut self, out: &mut TranslatedEvents, counts: TokenCounts) {
        if self.include_usage {
            self.write(out, &[], Some(counts.into()));
        }
        out.write_done();
        self.committed = true;
        self.ended = true;
    }

    /// Whether content went out.
    pub(crate) fn committed(&self) -> bool {
        self.committed
    }

    /// Whether the stream ended.
    pub(crate) fn ended(&self) -> bool {
        self.ended
    }

    fn write(&self, out: &mut TranslatedEvents, choices: &[ChunkChoice<'_>], usage: Option<Usage>) {
        out.write_json(&Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices,
            usage,
        });
    }
}
