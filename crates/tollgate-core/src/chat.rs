//! A light parsed view of a chat-completions request (and of the legacy
//! completions and embeddings requests, which share its fields).

use std::ops::Range;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;
use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::chat_fallbacks::{self, RequestFallbacks};
use crate::class::ErrorClass;
use crate::failure::Failure;
use crate::inputs::Inputs;
use crate::json_depth::nests_deeper_than;
use crate::operation::Operation;

/// How deeply arrays and objects may nest in a chat request; a deeper one
/// is refused at ingress.
///
/// serde_json refuses JSON nested past 128 levels when it builds values, but
/// skips the parts of a request the gateway does not read (the messages,
/// the tools) with no limit at all: without this one, a request nested
/// thousands deep would reach a provider, or a translation that parses it.
/// 64 leaves room for any real request (a JSON schema in `response_format`
/// or `tools` included) and for one that wraps it a few levels deeper.
pub const MAX_JSON_DEPTH: usize = 64;

/// The fields of a `/v1/chat/completions` request that the layers act on,
/// parsed once at ingress, over the untouched request bytes.
///
/// The same view serves the legacy `/v1/completions` and `/v1/embeddings`
/// requests ([`ChatRequest::parse_as`]): their [`Operation`] says which, and
/// which field carries the prompt (`prompt`, `input`) in place of
/// `messages`.
///
/// Every field the gateway does not know — tools, response formats, a new
/// parameter a provider added yesterday — stays exactly as the client sent it:
/// rewriting the model splices the new name into the original bytes instead
/// of re-serialising the request.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    bytes: Bytes,
    operation: Operation,
    model: String,
    model_span: Range<usize>,
    stream: bool,
    include_usage: bool,
    /// Where the value of `stream_options` lies, when the key is present.
    stream_options_span: Option<Range<usize>>,
    message_count: usize,
    max_tokens: Option<u64>,
    /// The fallbacks the body named (and that were cut out of `bytes`).
    fallbacks: Option<RequestFallbacks>,
    /// The end user the request is for (`user`), shared by every copy.
    user: Option<Arc<str>>,
}

#[derive(Deserialize)]
struct View<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    stream: Option<bool>,
    // Kept raw (null included) so that `with_include_usage` knows its span.
    #[serde(borrow, default, deserialize_with = "present")]
    stream_options: Option<&'a RawValue>,
    messages: Option<MessageCount>,
    // The prompt of a legacy completion and the input of embeddings: kept
    // raw (a chat request may carry either for all the gateway knows), and
    // checked only for the operation that reads it.
    #[serde(borrow, default)]
    prompt: Option<&'a RawValue>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    // LiteLLM's client-side fallbacks: read, then cut out of the request.
    #[serde(borrow, default, deserialize_with = "present")]
    fallbacks: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    context_window_fallbacks: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    content_policy_fallbacks: Option<&'a RawValue>,
    // OpenAI's end-user id; kept raw so that a non-string is a clear 400.
    #[serde(borrow, default)]
    user: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

/// The span of `include_usage` inside a `stream_options` object.
#[derive(Deserialize)]
struct IncludeUsageSpan<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    include_usage: Option<&'a RawValue>,
}

/// Deserializes a field that is present, `null` included, as `Some` of its
/// raw text (a plain `Option<&RawValue>` reads `null` as `None`).
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(deserializer).map(Some)
}

/// The offset of `inner`, a slice of `outer`, within it.
fn offset_in(outer: &[u8], inner: &str) -> usize {
    inner.as_ptr() as usize - outer.as_ptr() as usize
}

/// Counts the messages without building them.
struct MessageCount(usize);

impl<'de> Deserialize<'de> for MessageCount {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Count;
        impl<'de> Visitor<'de> for Count {
            type Value = MessageCount;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an array of messages")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<MessageCount, A::Error> {
                let mut n = 0;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(MessageCount(n))
            }
        }
        deserializer.deserialize_seq(Count)
    }
}

impl ChatRequest {
    /// Parses the request, or explains in an OpenAI-shaped 400 what is wrong
    /// with it — including bytes that are not UTF-8 and arrays or objects
    /// nested deeper than [`MAX_JSON_DEPTH`], anywhere in the body: the
    /// parts the gateway only passes on are checked too.
    pub fn parse(bytes: Bytes) -> Result<Self, Failure> {
        Self::parse_as(bytes, Operation::ChatCompletions)
    }

    /// Parses a request for `operation`, as [`parse`](Self::parse) does a
    /// chat request: a legacy completion needs a `prompt`, embeddings a
    /// non-empty `input` and no stream, each a string, a list of strings,
    /// a list of token ids or a list of token-id lists.
    ///
    /// ```
    /// use tollgate_core::{ChatRequest, Operation};
    ///
    /// let body = br#"{"model":"e","input":["a","b"],"encoding_format":"base64"}"#;
    /// let request = ChatRequest::parse_as(body.as_slice().into(), Operation::Embeddings).unwrap();
    /// assert_eq!(request.operation(), Operation::Embeddings);
    /// assert_eq!(request.message_count(), 2);
    /// // The wrong shape for the route is a 400 that names the field.
    /// let chat = br#"{"model":"e","messages":[{"role":"user","content":"hi"}]}"#;
    /// let refused = ChatRequest::parse_as(chat.as_slice().into(), Operation::Embeddings);
    /// let body = refused.unwrap_err().to_openai_body();
    /// assert!(std::str::from_utf8(&body).unwrap().contains(r#""param":"input""#));
    /// ```
    pub fn parse_as(bytes: Bytes, operation: Operation) -> Result<Self, Failure> {
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        if first != Some(&b'{') {
            let message = if serde_json::from_slice::<IgnoredAny>(&bytes).is_ok() {
                "the request body must be a JSON object"
            } else {
                "We could not parse the JSON body of your request. (HINT: This likely means \
                 you aren't using your HTTP library correctly. The OpenAI API expects a JSON \
                 payload.)"
            };
            return Err(bad_request(message));
        }
        // serde_json checks the UTF-8 of the strings it reads, not of those
        // it skips.
        if std::str::from_utf8(&bytes).is_err() {
            return Err(bad_request("the request body is not valid UTF-8"));
        }
        if nests_deeper_than(&bytes, MAX_JSON_DEPTH) {
            return Err(bad_request(format!(
                "the request body nests arrays and objects deeper than {MAX_JSON_DEPTH} levels"
            )));
        }
        let view: View<'_> = serde_json::from_slice(&bytes).map_err(|error| {
            if error.is_data() {
                bad_request(format!(
                    "invalid request: {}",
                    error.to_string().split(" at line").next().unwrap_or("")
                ))
            } else {
                bad_request(
                    "We could not parse the JSON body of your request. (HINT: This likely means \
                     you aren't using your HTTP library correctly. The OpenAI API expects a \
                     JSON payload.)",
                )
            }
        })?;
        let raw_model = view
            .model
            .ok_or_else(|| bad_request("you must provide a model parameter").with_param("model"))?;
        let model: String = serde_json::from_str(raw_model.get())
            .map_err(|_| bad_request("model must be a string").with_param("model"))?;
        if model.is_empty() {
            return Err(bad_request("you must provide a model parameter").with_param("model"));
        }
        // The raw value borrows from `bytes`, so its address gives its span.
        let start = raw_model.get().as_ptr() as usize - bytes.as_ptr() as usize;
        let model_span = start..start + raw_model.get().len();
        let include_usage = match view.stream_options {
            None => false,
            Some(raw) => serde_json::from_str::<Option<StreamOptions>>(raw.get())
                .map_err(|error| {
                    bad_request(format!(
                        "invalid request: {}",
                        error.to_string().split(" at line").next().unwrap_or("")
                    ))
                })?
                .and_then(|o| o.include_usage)
                .unwrap_or(false),
        };
        let stream_options_span = view.stream_options.map(|raw| {
            let start = offset_in(&bytes, raw.get());
            start..start + raw.get().len()
        });
        let field = operation.prompt_field();
        let missing =
            || bad_request(format!("Missing required parameter: '{field}'.")).with_param(field);
        let message_count = match operation {
            Operation::ChatCompletions => {
                let count = view.messages.ok_or_else(missing)?.0;
                if count == 0 {
                    return Err(bad_request("'messages' must contain at least one message")
                        .with_param("messages"));
                }
                count
            }
            Operation::Completions | Operation::Embeddings => {
                let raw = match operation {
                    Operation::Completions => view.prompt,
                    _ => view.input,
                }
                .ok_or_else(missing)?;
                let count = serde_json::from_str::<Inputs>(raw.get())
                    .map_err(|error| {
                        bad_request(format!(
                            "invalid '{field}': {}",
                            error.to_string().split(" at line").next().unwrap_or("")
                        ))
                        .with_param(field)
                    })?
                    .0;
                if operation == Operation::Embeddings {
                    if count == 0 || raw.get() == "\"\"" {
                        return Err(bad_request("'input' must not be empty").with_param("input"));
                    }
                    if view.stream == Some(true) {
                        return Err(bad_request("embeddings are not streamed: remove 'stream'")
                            .with_param("stream"));
                    }
                }
                count
            }
        };
        let raw_fallbacks = [
            view.fallbacks,
            view.context_window_fallbacks,
            view.content_policy_fallbacks,
        ];
        let fallbacks = chat_fallbacks::read(raw_fallbacks)?;
        let user = match view.user {
            None => None,
            Some(raw) => serde_json::from_str::<Option<String>>(raw.get())
                .map_err(|_| bad_request("user must be a string").with_param("user"))?
                .filter(|user| !user.is_empty())
                .map(Arc::from),
        };
        // Only a request that names fallbacks pays for cutting them out.
        let mut cut: Vec<Range<usize>> = if fallbacks.is_some() {
            raw_fallbacks
                .into_iter()
                .flatten()
                .map(|raw| {
                    let start = offset_in(&bytes, raw.get());
                    start..start + raw.get().len()
                })
                .collect()
        } else {
            Vec::new()
        };
        let request = ChatRequest {
            operation,
            model,
            model_span,
            stream: view.stream.unwrap_or(false),
            include_usage,
            stream_options_span,
            message_count,
            max_tokens: view.max_completion_tokens.or(view.max_tokens),
            fallbacks,
            user,
            bytes,
        };
        if cut.is_empty() {
            return Ok(request);
        }
        Ok(request.without(&mut cut))
    }

    /// The request with the members whose values lie at `values` cut out
    /// of its bytes, the spans moved to match.
    fn without(self, values: &mut [Range<usize>]) -> ChatRequest {
        let (bytes, cuts) = chat_fallbacks::cut_members(&self.bytes, values);
        let shift = |span: &Range<usize>| {
            chat_fallbacks::shifted(span.start, &cuts)..chat_fallbacks::shifted(span.end, &cuts)
        };
        ChatRequest {
            model_span: shift(&self.model_span),
            stream_options_span: self.stream_options_span.as_ref().map(shift),
            bytes,
            ..self
        }
    }

    /// The fallbacks the request named in its body (LiteLLM's client-side
    /// `fallbacks`, `context_window_fallbacks`, `content_policy_fallbacks`),
    /// which [`bytes`](Self::bytes) no longer carries.
    pub fn fallbacks(&self) -> Option<&RequestFallbacks> {
        self.fallbacks.as_ref()
    }

    /// The end user the request is for: OpenAI's `user` field (an
    /// Anthropic Messages request's `metadata.user_id` and a Responses
    /// request's `user` arrive here through their translation to chat).
    /// `None` when absent, `null` or empty.
    ///
    /// ```
    /// use tollgate_core::ChatRequest;
    ///
    /// let body = br#"{"model":"m","user":"alice","messages":[{"role":"user","content":"hi"}]}"#;
    /// let request = ChatRequest::parse(body.as_slice().into()).unwrap();
    /// assert_eq!(request.user().map(|u| &**u), Some("alice"));
    /// ```
    pub fn user(&self) -> Option<&Arc<str>> {
        self.user.as_ref()
    }

    /// Which endpoint's request this is.
    pub fn operation(&self) -> Operation {
        self.operation
    }

    /// The model (group) the client asked for.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Whether the client asked for a stream.
    pub fn stream(&self) -> bool {
        self.stream
    }

    /// Whether the client asked for `stream_options.include_usage`.
    pub fn include_usage(&self) -> bool {
        self.include_usage
    }

    /// How many messages the request carries (for a legacy completion or
    /// embeddings: how many prompts or inputs).
    pub fn message_count(&self) -> usize {
        self.message_count
    }

    /// `max_completion_tokens`, else `max_tokens`.
    pub fn max_tokens(&self) -> Option<u64> {
        self.max_tokens
    }

    /// The request as the client sent it, less the members that are the
    /// gateway's own (the body's [`fallbacks`](Self::fallbacks)): what goes
    /// upstream.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The request with `model` in place of the client's model name, every
    /// other byte unchanged. Returns the original bytes (no copy) when the name
    /// is the same.
    pub fn with_model(&self, model: &str) -> Bytes {
        if model == self.model {
            return self.bytes.clone();
        }
        // A JSON string literal of `model`, quotes and escapes included.
        let literal = serde_json::to_string(model).unwrap_or_else(|_| String::from("\"\""));
        let mut out =
            BytesMut::with_capacity(self.bytes.len() - self.model_span.len() + literal.len());
        out.put_slice(&self.bytes[..self.model_span.start]);
        out.put_slice(literal.as_bytes());
        out.put_slice(&self.bytes[self.model_span.end..]);
        out.freeze()
    }

    /// The request with `"stream_options":{"include_usage":true}`, so that a
    /// stream ends with a usage chunk, every other byte unchanged: a request
    /// without `stream_options` gets the member first in the object; a
    /// `stream_options` object without `include_usage` gets the key first in
    /// it; an `include_usage` that is not `true` (or a `stream_options` that
    /// is `null`) is replaced. Returns a clone (no copy of the bytes) when
    /// the client already asked for it.
    ///
    /// OpenAI refuses `stream_options` on a request that does not stream:
    /// call it for streaming requests only.
    ///
    /// The new request is not parsed again: the spans found when this one
    /// was parsed say where to splice.
    pub fn with_include_usage(&self) -> ChatRequest {
        if self.include_usage {
            return self.clone();
        }
        const MEMBER: &[u8] = br#""stream_options":{"include_usage":true}"#;
        const OBJECT: &[u8] = br#"{"include_usage":true}"#;
        const KEY: &[u8] = br#""include_usage":true"#;
        // What replaces which span, as (range, new bytes, separator after).
        let (range, insert, comma): (Range<usize>, &[u8], bool) = match &self.stream_options_span {
            None => {
                // Just after the request's opening brace: a request always
                // has `model` and `messages`, so a comma follows.
                let open = self.bytes.iter().position(|&b| b == b'{').unwrap_or(0);
                (open + 1..open + 1, MEMBER, true)
            }
            Some(span) => {
                let raw = &self.bytes[span.clone()];
                match raw.first() {
                    Some(b'{') => {
                        let found = std::str::from_utf8(raw)
                            .ok()
                            .and_then(|text| {
                                serde_json::from_str::<IncludeUsageSpan<'_>>(text).ok()
                            })
                            .and_then(|view| view.include_usage)
                            .map(|value| {
                                let start = offset_in(&self.bytes, value.get());
                                start..start + value.get().len()
                            });
                        match found {
                            Some(value) => (value, b"true", false),
                            None => {
                                let empty = raw[1..]
                                    .iter()
                                    .find(|b| !b.is_ascii_whitespace())
                                    .is_some_and(|&b| b == b'}');
                                (span.start + 1..span.start + 1, KEY, !empty)
                            }
                        }
                    }
                    // `null`, or something a provider would refuse anyway.
                    _ => (span.clone(), OBJECT, false),
                }
            }
        };
        let added = insert.len() + usize::from(comma);
        let mut out = BytesMut::with_capacity(self.bytes.len() - range.len() + added);
        out.put_slice(&self.bytes[..range.start]);
        out.put_slice(insert);
        if comma {
            out.put_u8(b',');
        }
        out.put_slice(&self.bytes[range.end..]);
        // Spans after the splice move by the difference in length.
        let shift = |at: usize| {
            if at >= range.end {
                at + added - range.len()
            } else {
                at
            }
        };
        let model_span = shift(self.model_span.start)..shift(self.model_span.end);
        let stream_options_span = match &self.stream_options_span {
            // The value of the new member, after `"stream_options":`.
            None => {
                let value = range.start + MEMBER.len() - OBJECT.len();
                value..value + OBJECT.len()
            }
            // A whole new object in place of the old value.
            Some(span) if range == *span => range.start..range.start + OBJECT.len(),
            // A splice inside the object.
            Some(span) => span.start..shift(span.end),
        };
        ChatRequest {
            bytes: out.freeze(),
            operation: self.operation,
            model: self.model.clone(),
            model_span,
            stream: self.stream,
            include_usage: true,
            stream_options_span: Some(stream_options_span),
            message_count: self.message_count,
            max_tokens: self.max_tokens,
            fallbacks: self.fallbacks.clone(),
            user: self.user.clone(),
        }
    }
}

/// Finds the span of the `messages` array in a request body (the slow way:
/// only continuations need it).
#[derive(Deserialize)]
struct MessagesSpan<'a> {
    #[serde(borrow)]
    messages: Option<&'a RawValue>,
}

impl ChatRequest {
    /// The request with one more message at the end of `messages`: the
    /// assistant's answer so far, for the model to continue from (an
    /// "assistant prefill"). Every other byte is unchanged.
    ///
    /// A fallback cascade uses it to continue a stream that broke after part
    /// of the answer reached the client. It parses the request again, which
    /// only that rare path pays for.
    pub fn with_assistant_prefill(&self, prefill: &str) -> Result<ChatRequest, Failure> {
        let span: MessagesSpan<'_> = serde_json::from_slice(&self.bytes).map_err(|_| {
            Failure::new(ErrorClass::Internal, "the request can no longer be parsed")
        })?;
        let messages = span
            .messages
            .ok_or_else(|| Failure::new(ErrorClass::Internal, "the request has no messages"))?;
        let start = messages.get().as_ptr() as usize - self.bytes.as_ptr() as usize;
        let close = start + messages.get().trim_end().len() - 1;
        if self.bytes.get(close) != Some(&b']') {
            return Err(Failure::new(
                ErrorClass::Internal,
                "messages is not an array",
            ));
        }
        let message = serde_json::json!({"role": "assistant", "content": prefill}).to_string();
        let mut out = BytesMut::with_capacity(self.bytes.len() + message.len() + 1);
        out.put_slice(&self.bytes[..close]);
        out.put_u8(b',');
        out.put_slice(message.as_bytes());
        out.put_slice(&self.bytes[close..]);
        // The body's fallbacks are no longer in the bytes: carried over.
        let mut request = ChatRequest::parse(out.freeze())?;
        request.fallbacks = self.fallbacks.clone();
        Ok(request)
    }
}

fn bad_request(message: impl Into<std::borrow::Cow<'static, str>>) -> Failure {
    Failure::new(ErrorClass::BadRequest, message)
}

#[cfg(test)]
#[path = "chat_tests.rs"]
mod tests;
