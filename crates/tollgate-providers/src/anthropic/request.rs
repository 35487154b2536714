//! An OpenAI chat request as an Anthropic Messages request.
//!
//! From Anthropic's API reference, "Messages"
//! (<https://docs.anthropic.com/en/api/messages>): `system` is a top-level
//! field (a string or text blocks), `messages` alternate `user` and
//! `assistant` with string or block content (`text`, `image`, `tool_use`,
//! `tool_result`), `max_tokens` is required, `stop_sequences`, `tools`
//! (`name`, `description`, `input_schema`) and `tool_choice` (`auto`,
//! `any`, `tool`, `none`; `disable_parallel_tool_use`). A last `assistant`
//! message is a prefill: the answer continues it.

use serde_json::{Map, Value, json};
use tollgate_core::Failure;

use crate::chat::{
    self, ImageSource, RequestFacts, content_items, function_of, image_source, message_parts,
    only_text, push_merged, tool_call_arguments, tool_call_id, trim_prefill, unsupported_part,
    unsupported_role,
};
use crate::failures::bad_request;

/// Parameters dropped besides [`chat::dropped`]'s: read into other
/// fields (`max_completion_tokens`) or with no Anthropic equivalent; other
/// unknown keys are passed through (provider-specific parameters such as
/// `thinking`, `top_k` or `metadata`).
const DROPPED: &[&str] = &["max_completion_tokens", "reasoning_effort"];

/// Translates `body`; `default_max_tokens` is sent when the client gave no
/// `max_tokens`/`max_completion_tokens`.
pub(crate) fn translate(
    body: &[u8],
    default_max_tokens: u64,
) -> Result<(Vec<u8>, RequestFacts), Failure> {
    let (out, facts) = translate_object(body, default_max_tokens)?;
    let body = serde_json::to_vec(&Value::Object(out)).unwrap_or_default();
    Ok((body, facts))
}

/// Translates `body` into the Messages request as an object, for callers
/// that adjust it before sending (Claude on Vertex AI).
pub(crate) fn translate_object(
    body: &[u8],
    default_max_tokens: u64,
) -> Result<(Map<String, Value>, RequestFacts), Failure> {
    let (mut request, facts) = chat::read(body, "anthropic/")?;
    chat::refuse_choices(&request, "Anthropic")?;
    let output_format = output_format_of(request.remove("response_format"))?;
    let Some(Value::Array(messages)) = request.remove("messages") else {
        return Err(bad_request("`messages` must be an array", Some("messages")));
    };
    let (system, messages) = messages_of(messages)?;

    let mut out = Map::new();
    out.insert("model".into(), Value::String(facts.model.clone()));
    let max_tokens = request
        .get("max_completion_tokens")
        .or_else(|| request.get("max_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(default_max_tokens);
    request.remove("max_tokens");
    out.insert("max_tokens".into(), max_tokens.into());
    if let Some(system) = system {
        out.insert("system".into(), system);
    }
    out.insert("messages".into(), Value::Array(messages));
    match request.remove("stop") {
        Some(Value::String(stop)) => {
            out.insert("stop_sequences".into(), json!([stop]));
        }
        Some(Value::Array(stops)) => {
            out.insert("stop_sequences".into(), Value::Array(stops));
        }
        _ => {}
    }
    if let Some(user) = request.remove("user").filter(Value::is_string) {
        out.insert("metadata".into(), json!({ "user_id": user }));
    }
    let parallel = request.get("parallel_tool_calls").and_then(Value::as_bool);
    if let Some(tools) = request.remove("tools") {
        out.insert("tools".into(), tools_of(tools)?);
    }
    if let Some(choice) = tool_choice_of(request.remove("tool_choice"), parallel)? {
        out.insert("tool_choice".into(), choice);
    }
    if let Some(format) = output_format {
        // Next to whatever `output_config` the client passed (`effort`).
        match request.remove("output_config") {
            Some(Value::Object(mut config)) => {
                config.insert("format".into(), format);
                out.insert("output_config".into(), Value::Object(config));
            }
            _ => {
                out.insert("output_config".into(), json!({ "format": format }));
            }
        }
    }
    if facts.stream {
        out.insert("stream".into(), Value::Bool(true));
    }
    for (key, value) in request {
        if !chat::dropped(&key, DROPPED) && !value.is_null() {
            out.insert(key, value);
        }
    }
    Ok((out, facts))
}

/// Anthropic's `output_config.format` for OpenAI's `response_format`, from
/// Anthropic's "Structured outputs" guide: a `json_schema` format is
/// native (`{"type": "json_schema", "schema": …}`); `text` is the default
/// and needs nothing; `json_object` (any JSON, no schema) has no
/// equivalent and is refused rather than answered as free text.
fn output_format_of(format: Option<Value>) -> Result<Option<Value>, Failure> {
    let Some(format) = format.filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_schema") => {
            let schema = format
                .get("json_schema")
                .and_then(|s| s.get("schema"))
                .filter(|s| s.is_object())
                .ok_or_else(|| {
                    bad_request(
                        "`response_format.json_schema.schema` must be a JSON schema object",
                        Some("response_format"),
                    )
                })?;
            Ok(Some(json!({"type": "json_schema", "schema": schema})))
        }
        Some("json_object") => Err(bad_request(
            "Anthropic models take `response_format` of type `json_schema` (with a schema), \
             not `json_object`",
            Some("response_format"),
        )),
        _ => Err(bad_request(
            "`response_format.type` must be `text` or `json_schema` for Anthropic models",
            Some("response_format"),
        )),
    }
}

/// The `system` field and the alternating messages.
fn messages_of(messages: Vec<Value>) -> Result<(Option<Value>, Vec<Value>), Failure> {
    let mut system: Vec<Value> = Vec::new();
    let mut out: Vec<Value> = Vec::new();
    let count = messages.len();
    for (at, message) in messages.into_iter().enumerate() {
        let (mut message, role, content) = message_parts(message)?;
        let (role, blocks) = match role.as_str() {
            "system" | "developer" => {
                system.extend(text_blocks(content)?);
                continue;
            }
            "user" => ("user", user_blocks(content)?),
            "assistant" => {
                let last = at + 1 == count;
                let mut blocks = assistant_text(content, last)?;
                if let Some(Value::Array(calls)) = message.remove("tool_calls") {
                    for call in calls {
                        blocks.push(tool_use_of(call)?);
                    }
                }
                ("assistant", blocks)
            }
            "tool" => {
                let id = tool_call_id(&message)?;
                let content = match content {
                    Value::String(text) => Value::String(text),
                    Value::Null => Value::String(String::new()),
                    other => Value::Array(text_blocks(other)?),
                };
                let block = json!({"type": "tool_result", "tool_use_id": id, "content": content});
                ("user", vec![block])
            }
            other => return Err(unsupported_role(other, "Anthropic")),
        };
        push_merged(&mut out, role, "content", blocks);
    }
    let system = match system.as_slice() {
        [] => None,
        [one] if one.get("cache_control").is_none() => one.get("text").cloned(),
        _ => Some(Value::Array(system)),
    };
    Ok((system, out))
}

/// Text content (a string or text parts) as text blocks, `cache_control`
/// kept.
fn text_blocks(content: Value) -> Result<Vec<Value>, Failure> {
    content_items(content, text_block, |part, blocks| {
        match part.get("type").and_then(Value::as_str) {
            Some("text") => blocks.push(text_part(part)),
            _ => return Err(only_text()),
        }
        Ok(())
    })
}

fn text_block(text: String) -> Value {
    json!({"type": "text", "text": text})
}

fn text_part(part: Value) -> Value {
    let mut block = json!({"type": "text", "text": part.get("text").cloned().unwrap_or_default()});
    if let Some(cache) = part.get("cache_control") {
        block["cache_control"] = cache.clone();
    }
    block
}

/// A user message's content: text and images.
fn user_blocks(content: Value) -> Result<Vec<Value>, Failure> {
    content_items(content, text_block, |part, blocks| {
        match part.get("type").and_then(Value::as_str) {
            Some("text") => blocks.push(text_part(part)),
            Some("image_url") => blocks.push(image_of(&part)?),
            _ => return Err(unsupported_part(&part, "Anthropic")),
        }
        Ok(())
    })
}

/// An `image_url` part as an `image` block: a `data:` URL as base64, any
/// other URL by reference.
fn image_of(part: &Value) -> Result<Value, Failure> {
    let source = match image_source(part)? {
        ImageSource::Inline { media_type, data } => {
            json!({"type": "base64", "media_type": media_type, "data": data})
        }
        ImageSource::Url(url) if url.starts_with("http://") || url.starts_with("https://") => {
            json!({"type": "url", "url": url})
        }
        ImageSource::Url(_) => return Err(bad_request("an image needs a `url`", Some("messages"))),
    };
    let mut block = json!({"type": "image", "source": source});
    if let Some(cache) = part.get("cache_control") {
        block["cache_control"] = cache.clone();
    }
    Ok(block)
}

/// An assistant message's text; the last one (a prefill) without trailing
/// whitespace, which Anthropic rejects there.
fn assistant_text(content: Value, last: bool) -> Result<Vec<Value>, Failure> {
    let mut blocks = text_blocks(content)?;
    if last {
        trim_prefill(&mut blocks);
    }
    Ok(blocks)
}

/// An OpenAI tool call as a `tool_use` block: its arguments (JSON text) as
/// the `input` object.
fn tool_use_of(call: Value) -> Result<Value, Failure> {
    let function = &call["function"];
    let input = tool_call_arguments(&call)?;
    Ok(json!({
        "type": "tool_use",
        "id": call["id"],
        "name": function["name"],
        "input": input,
    }))
}

/// OpenAI function tools as Anthropic tools.
fn tools_of(tools: Value) -> Result<Value, Failure> {
    let Value::Array(tools) = tools else {
        return Err(bad_request("`tools` must be an array", Some("tools")));
    };
    let tools = tools
        .into_iter()
        .map(|tool| {
            let function = function_of(&tool)?;
            let mut out = json!({
                "name": function["name"],
                "input_schema": function
                    .get("parameters")
                    .cloned()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            });
            if let Some(description) = function.get("description") {
                out["description"] = description.clone();
            }
            if let Some(cache) = tool.get("cache_control") {
                out["cache_control"] = cache.clone();
            }
            Ok(out)
        })
        .collect::<Result<Vec<_>, Failure>>()?;
    Ok(Value::Array(tools))
}

/// `tool_choice` (and `parallel_tool_calls: false`) in Anthropic's terms.
fn tool_choice_of(choice: Option<Value>, parallel: Option<bool>) -> Result<Option<Value>, Failure> {
    let mut out = match choice {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => Some(json!({"type": "auto"})),
            "none" => Some(json!({"type": "none"})),
            "required" => Some(json!({"type": "any"})),
            _ => return Err(bad_request("unknown `tool_choice`", Some("tool_choice"))),
        },
        Some(object) => {
            let name = object["function"]["name"]
                .as_str()
                .ok_or_else(|| bad_request("unknown `tool_choice`", Some("tool_choice")))?;
            Some(json!({"type": "tool", "name": name}))
        }
    };
    if parallel == Some(false) {
        let choice = out.get_or_insert_with(|| json!({"type": "auto"}));
        if choice["type"] != "none" {
            choice["disable_parallel_tool_use"] = Value::Bool(true);
        }
    }
    Ok(out)
}
