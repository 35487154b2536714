//! The OpenAI chat request as every native translation reads it: the
//! model, whether a stream (with usage) was asked for, what a provider
//! cannot answer (`n > 1`, `response_format`), the messages taken apart
//! and merged by role, tool-call arguments and image URLs.

use http::HeaderValue;
use http::request::Parts;
use serde_json::{Map, Value, json};
use tollgate_core::Failure;

use crate::failures::bad_request;
use crate::protocol::Exchange;

/// What the layer keeps of the OpenAI request.
#[derive(Debug)]
pub(crate) struct RequestFacts {
    /// The model, without the provider's prefix.
    pub(crate) model: String,
    pub(crate) stream: bool,
    pub(crate) include_usage: bool,
}

impl RequestFacts {
    /// Asks for the answer as `stream_type` when a stream was asked for,
    /// else as JSON.
    pub(crate) fn accept(&self, head: &mut Parts, stream_type: &'static str) {
        let accept = if self.stream {
            stream_type
        } else {
            "application/json"
        };
        head.headers
            .insert(http::header::ACCEPT, HeaderValue::from_static(accept));
    }

    /// What the layer keeps to translate the answer back, for a request
    /// sent at `created`.
    pub(crate) fn into_exchange(self, created: u64) -> Exchange {
        Exchange {
            stream: self.stream,
            include_usage: self.include_usage,
            model: self.model.into(),
            created,
        }
    }
}

/// OpenAI parameters with no equivalent in a native API that change
/// nothing a client relies on: a translation drops them, as LiteLLM's
/// `drop_params` does.
const OPENAI_ONLY: &[&str] = &[
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "seed",
    "service_tier",
    "store",
    "stream_options",
    "n",
    "parallel_tool_calls",
    "modalities",
    "prediction",
];

/// Whether a translation that passes unknown parameters on drops `key`
/// instead: one of [`OPENAI_ONLY`], or of the provider's own `also`
/// (parameters it reads elsewhere, or has no room for).
pub(crate) fn dropped(key: &str, also: &[&str]) -> bool {
    OPENAI_ONLY.contains(&key) || also.contains(&key)
}

/// Parses `body` as a JSON object and takes out its `model` (without
/// `prefix`) and `stream`; the rest is the provider's to translate.
pub(crate) fn read(
    body: &[u8],
    prefix: &str,
) -> Result<(Map<String, Value>, RequestFacts), Failure> {
    let Ok(Value::Object(mut request)) = serde_json::from_slice::<Value>(body) else {
        return Err(bad_request("the request body must be a JSON object", None));
    };
    let model = match request.remove("model") {
        Some(Value::String(model)) => model,
        _ => return Err(bad_request("`model` must be a string", Some("model"))),
    };
    let model = model.strip_prefix(prefix).unwrap_or(&model).to_owned();
    let stream = request.remove("stream").and_then(|s| s.as_bool()) == Some(true);
    let include_usage = request
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok((
        request,
        RequestFacts {
            model,
            stream,
            include_usage,
        },
    ))
}

/// Refuses `n > 1`: `provider` answers one choice.
pub(crate) fn refuse_choices(request: &Map<String, Value>, provider: &str) -> Result<(), Failure> {
    if request
        .get("n")
        .and_then(Value::as_u64)
        .is_some_and(|n| n > 1)
    {
        return Err(bad_request(
            format!("{provider} answers one choice: `n` must be 1"),
            Some("n"),
        ));
    }
    Ok(())
}

/// Refuses `response_format`, which `provider` has no way to honour (see
/// DECISIONS 18).
pub(crate) fn refuse_response_format(
    request: &Map<String, Value>,
    provider: &str,
) -> Result<(), Failure> {
    if request.contains_key("response_format") {
        return Err(bad_request(
            format!("`response_format` is not supported for {provider} models"),
            Some("response_format"),
        ));
    }
    Ok(())
}

/// One OpenAI message taken apart: the rest of its fields, its role and
/// its content (`null` when it has none).
pub(crate) fn message_parts(
    message: Value,
) -> Result<(Map<String, Value>, String, Value), Failure> {
    let Value::Object(mut message) = message else {
        return Err(bad_request(
            "each message must be an object",
            Some("messages"),
        ));
    };
    let role = match message.get("role").and_then(Value::as_str) {
        Some(role) => role.to_owned(),
        None => return Err(bad_request("each message needs a `role`", Some("messages"))),
    };
    let content = message.remove("content").unwrap_or(Value::Null);
    Ok((message, role, content))
}

/// The `tool_call_id` a `tool` message answers.
pub(crate) fn tool_call_id(message: &Map<String, Value>) -> Result<&str, Failure> {
    message
        .get("tool_call_id")
        .and_then(Value::as_str)
        .ok_or_else(|| bad_request("a tool message needs a `tool_call_id`", Some("messages")))
}

/// A message of a role `provider` takes no message of.
pub(crate) fn unsupported_role(role: &str, provider: &str) -> Failure {
    bad_request(
        format!("unsupported message role `{role}` for {provider} models"),
        Some("messages"),
    )
}

/// A message's content as the provider's items: none for `null` or an
/// empty string, `text`'s item for a string, and for an array of parts
/// what `part` appends for each.
pub(crate) fn content_items(
    content: Value,
    text: impl FnOnce(String) -> Value,
    mut part: impl FnMut(Value, &mut Vec<Value>) -> Result<(), Failure>,
) -> Result<Vec<Value>, Failure> {
    match content {
        Value::Null => Ok(Vec::new()),
        Value::String(string) if string.is_empty() => Ok(Vec::new()),
        Value::String(string) => Ok(vec![text(string)]),
        Value::Array(parts) => {
            let mut items = Vec::with_capacity(parts.len());
            for each in parts {
                part(each, &mut items)?;
            }
            Ok(items)
        }
        _ => Err(bad_request(
            "message content must be a string or an array",
            Some("messages"),
        )),
    }
}

/// A content part of a type `provider` does not take here (or of none).
pub(crate) fn unsupported_part(part: &Value, provider: &str) -> Failure {
    match part.get("type").and_then(Value::as_str) {
        Some(other) => bad_request(
            format!("content part type `{other}` is not supported for {provider} models"),
            Some("messages"),
        ),
        None => bad_request("a content part needs a `type`", Some("messages")),
    }
}

/// A part other than text where only text is taken (a system message, an
/// assistant's text).
pub(crate) fn only_text() -> Failure {
    bad_request("only text parts are accepted here", Some("messages"))
}

/// The last assistant message is a prefill the answer continues: its
/// trailing whitespace, which the providers refuse there, is cut, and a
/// text item left empty dropped.
pub(crate) fn trim_prefill(items: &mut Vec<Value>) {
    if let Some(Value::String(text)) = items.last_mut().and_then(|item| item.get_mut("text")) {
        let trimmed = text.trim_end().len();
        text.truncate(trimmed);
        if text.is_empty() {
            items.pop();
        }
    }
}

/// Appends a turn `{"role", <items_key>: items}`, merged into the previous
/// one when the role repeats: native APIs want roles to alternate, and one
/// turn's tool results in one turn. A turn with no items is left out.
pub(crate) fn push_merged(
    out: &mut Vec<Value>,
    role: &'static str,
    items_key: &str,
    items: Vec<Value>,
) {
    if items.is_empty() {
        return;
    }
    if let Some(previous) = out.last_mut()
        && previous["role"] == role
        && let Some(Value::Array(existing)) = previous.get_mut(items_key)
    {
        existing.extend(items);
        return;
    }
    let mut turn = json!({ "role": role });
    turn[items_key] = Value::Array(items);
    out.push(turn);
}

/// An OpenAI tool call's arguments (JSON text) as a JSON value; empty text
/// is `{}`.
pub(crate) fn tool_call_arguments(call: &Value) -> Result<Value, Failure> {
    let arguments = call["function"]["arguments"].as_str().unwrap_or("{}");
    if arguments.trim().is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_str(arguments)
        .map_err(|_| bad_request("tool call arguments must be JSON", Some("messages")))
}

/// The `function` of an OpenAI tool: the only type of tool a provider
/// takes.
pub(crate) fn function_of(tool: &Value) -> Result<&Value, Failure> {
    tool.get("function")
        .filter(|_| tool["type"] == "function")
        .ok_or_else(|| bad_request("only function tools are supported", Some("tools")))
}

/// Where an `image_url` part's image is.
pub(crate) enum ImageSource<'a> {
    /// A base64 `data:` URL: its media type and data.
    Inline { media_type: &'a str, data: &'a str },
    /// Any other URL.
    Url(&'a str),
}

/// The image of an `image_url` part (`{"url": …}` or a bare string).
///
/// # Errors
///
/// A `data:` URL that is not base64, or no URL.
pub(crate) fn image_source(part: &Value) -> Result<ImageSource<'_>, Failure> {
    let url = match &part["image_url"] {
        Value::String(url) => url.as_str(),
        other => other["url"].as_str().unwrap_or_default(),
    };
    if let Some(data) = url.strip_prefix("data:") {
        let (media_type, data) = data
            .split_once(";base64,")
            .ok_or_else(|| bad_request("an image data URL must be base64", Some("messages")))?;
        return Ok(ImageSource::Inline { media_type, data });
    }
    if url.is_empty() {
        return Err(bad_request("an image needs a `url`", Some("messages")));
    }
    Ok(ImageSource::Url(url))
}
