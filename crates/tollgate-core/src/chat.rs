//! A light parsed view of a chat-completions request.

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;
use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::class::ErrorClass;
use crate::failure::Failure;

/// The fields of a `/v1/chat/completions` request that the layers act on,
/// parsed once at ingress, over the untouched request bytes.
///
/// Every field the gateway does not know — tools, response formats, a new
/// parameter a provider added yesterday — stays exactly as the client sent it:
/// rewriting the model splices the new name into the original bytes instead
/// of re-serialising the request.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    bytes: Bytes,
    model: String,
    model_span: Range<usize>,
    stream: bool,
    include_usage: bool,
    message_count: usize,
    max_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct View<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    messages: Option<MessageCount>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
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
    /// with it.
    pub fn parse(bytes: Bytes) -> Result<Self, Failure> {
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
        let message_count = view
            .messages
            .ok_or_else(|| {
                bad_request("Missing required parameter: 'messages'.").with_param("messages")
            })?
            .0;
        if message_count == 0 {
            return Err(
                bad_request("'messages' must contain at least one message").with_param("messages")
            );
        }
        Ok(ChatRequest {
            model,
            model_span,
            stream: view.stream.unwrap_or(false),
            include_usage: view
                .stream_options
                .and_then(|o| o.include_usage)
                .unwrap_or(false),
            message_count,
            max_tokens: view.max_completion_tokens.or(view.max_tokens),
            bytes,
        })
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

    /// How many messages the request carries.
    pub fn message_count(&self) -> usize {
        self.message_count
    }

    /// `max_completion_tokens`, else `max_tokens`.
    pub fn max_tokens(&self) -> Option<u64> {
        self.max_tokens
    }

    /// The request exactly as the client sent it.
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
        ChatRequest::parse(out.freeze())
    }
}

fn bad_request(message: impl Into<std::borrow::Cow<'static, str>>) -> Failure {
    Failure::new(ErrorClass::BadRequest, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &'static str) -> Result<ChatRequest, Failure> {
        ChatRequest::parse(Bytes::from_static(text.as_bytes()))
    }

    #[test]
    fn reads_the_fields_the_layers_need() {
        let req = parse(
            r#"{"model":"gpt","stream":true,"stream_options":{"include_usage":true},
               "messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}],
               "max_tokens":7,"tools":[{"x":1}]}"#,
        )
        .unwrap();
        assert_eq!(req.model(), "gpt");
        assert!(req.stream());
        assert!(req.include_usage());
        assert_eq!(req.message_count(), 2);
        assert_eq!(req.max_tokens(), Some(7));
    }

    #[test]
    fn rewriting_the_model_keeps_every_other_byte() {
        let text = r#"{ "temperature" : 0.5e0, "model": "g\u0070t", "messages":[{"role":"user","content":"hi"}], "x-new":{"k":[1,2]} }"#;
        let req = parse(text).unwrap();
        assert_eq!(req.model(), "gpt");
        let rewritten = req.with_model("deepseek/deepseek-chat:free");
        assert_eq!(
            std::str::from_utf8(&rewritten).unwrap(),
            text.replace(r#""g\u0070t""#, r#""deepseek/deepseek-chat:free""#)
        );
        assert_eq!(req.with_model("gpt"), req.bytes());
        let quoted = req.with_model("a\"b");
        let value: serde_json::Value = serde_json::from_slice(&quoted).unwrap();
        assert_eq!(value["model"], "a\"b");
    }

    #[test]
    fn an_assistant_prefill_is_appended_to_the_messages() {
        let req =
            parse(r#"{"model":"m","messages":[{"role":"user","content":"hi"}] ,"stream":true}"#)
                .unwrap();
        let continued = req.with_assistant_prefill("Hello \"world").unwrap();
        assert_eq!(continued.message_count(), 2);
        assert!(continued.stream());
        let value: serde_json::Value = serde_json::from_slice(continued.bytes()).unwrap();
        assert_eq!(value["messages"][1]["role"], "assistant");
        assert_eq!(value["messages"][1]["content"], "Hello \"world");
        // Its own spans are right: the model can still be rewritten.
        let rewritten = ChatRequest::parse(continued.with_model("other")).unwrap();
        assert_eq!(rewritten.model(), "other");
        assert_eq!(rewritten.message_count(), 2);
    }

    #[test]
    fn bad_input_gets_a_400_naming_the_problem() {
        let cases = [
            ("{not json", None),
            ("[1,2]", None),
            ("\"text\"", None),
            ("", None),
            (
                r#"{"messages":[{"role":"user","content":"x"}]}"#,
                Some("model"),
            ),
            (r#"{"model":"m"}"#, Some("messages")),
            (r#"{"model":"m","messages":[]}"#, Some("messages")),
            (r#"{"model":7,"messages":[{}]}"#, Some("model")),
            (r#"{"model":"m","messages":"hi"}"#, None),
            (r#"{"model":"m","messages":[{}],"stream":"yes"}"#, None),
        ];
        for (text, param) in cases {
            let err = parse(text).unwrap_err();
            assert_eq!(err.class(), ErrorClass::BadRequest, "{text}");
            assert_eq!(err.status(), http::StatusCode::BAD_REQUEST, "{text}");
            let body: serde_json::Value = serde_json::from_slice(&err.to_openai_body()).unwrap();
            match param {
                Some(param) => assert_eq!(body["error"]["param"], param, "{text}"),
                None => assert!(body["error"]["param"].is_null(), "{text}"),
            }
        }
    }
}
