//! The OpenAI chat request as every native translation starts reading it:
//! the model, whether a stream (with usage) was asked for, what no native
//! API answers (`n > 1`, `response_format`), and the messages merged by
//! role.

use serde_json::{Map, Value, json};
use tollgate_core::{ErrorClass, Failure};

/// What the layer keeps of the OpenAI request.
#[derive(Debug)]
pub(crate) struct RequestFacts {
    /// The model, without the provider's prefix.
    pub(crate) model: String,
    pub(crate) stream: bool,
    pub(crate) include_usage: bool,
}

/// Parses `body` as a JSON object and takes out its `model` (without
/// `prefix`) and `stream`; refuses what `provider` cannot answer: `n > 1`
/// and `response_format` (see DECISIONS 18).
pub(crate) fn read(
    body: &[u8],
    prefix: &str,
    provider: &str,
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
    if request.contains_key("response_format") {
        return Err(bad_request(
            format!("`response_format` is not supported for {provider} models"),
            Some("response_format"),
        ));
    }
    Ok((
        request,
        RequestFacts {
            model,
            stream,
            include_usage,
        },
    ))
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

/// Appends a message, merged into the previous one when the role repeats:
/// native APIs want roles to alternate, and one turn's tool results in one
/// user message.
pub(crate) fn push_merged(out: &mut Vec<Value>, role: &'static str, blocks: Vec<Value>) {
    if let Some(previous) = out.last_mut()
        && previous["role"] == role
        && let Some(Value::Array(content)) = previous.get_mut("content")
    {
        content.extend(blocks);
        return;
    }
    out.push(json!({"role": role, "content": blocks}));
}

/// A `bad_request` naming the parameter at fault, when there is one.
pub(crate) fn bad_request(message: impl Into<String>, param: Option<&'static str>) -> Failure {
    let failure = Failure::new(ErrorClass::BadRequest, message.into());
    match param {
        Some(param) => failure.with_param(param),
        None => failure,
    }
}
