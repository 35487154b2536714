//! An OpenAI Responses request as a chat request.
//!
//! Shapes from OpenAI's API reference, "Responses" → "Create a model
//! response" (<https://platform.openai.com/docs/api-reference/responses/create>):
//! `input` (a string, or items: messages with text or image parts,
//! `function_call` and `function_call_output`), `instructions`, function
//! `tools`, `tool_choice`, `max_output_tokens`, `text.format`.

use serde_json::{Map, Value, json};
use tollgate_core::{ChatRequest, Failure};

use crate::request::{bad_request, finish, parse_object, text_of};

/// The chat request for a Responses request body.
pub(crate) fn to_chat(body: &[u8], stateful: bool) -> Result<ChatRequest, Failure> {
    let mut request = parse_object(body)?;
    if !stateful
        && request
            .get("previous_response_id")
            .is_some_and(|v| !v.is_null())
    {
        return Err(super::stateless_refusal());
    }
    request.remove("previous_response_id");
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| bad_request("Missing required parameter: 'model'.").with_param("model"))?
        .to_owned();
    let mut messages = Vec::new();
    if let Some(instructions) = request.remove("instructions").filter(|v| !v.is_null()) {
        let text = text_of(&instructions).ok_or_else(|| {
            bad_request("instructions must be a string").with_param("instructions")
        })?;
        messages.push(json!({"role": "system", "content": text}));
    }
    match request.remove("input") {
        Some(Value::String(text)) => messages.push(json!({"role": "user", "content": text})),
        Some(Value::Array(items)) => {
            for (i, item) in items.into_iter().enumerate() {
                item_to_chat(item, &mut messages).map_err(|message| {
                    bad_request(format!("input[{i}]: {message}")).with_param("input")
                })?;
            }
        }
        _ => {
            return Err(bad_request(
                "Missing required parameter: 'input' (a string or a list of items).",
            )
            .with_param("input"));
        }
    }
    if messages.iter().all(|m| m["role"] == "system") {
        return Err(bad_request("input must hold at least one message").with_param("input"));
    }
    let mut chat = Map::new();
    chat.insert("model".into(), Value::String(model));
    chat.insert("messages".into(), Value::Array(messages));
    if let Some(max) = request.remove("max_output_tokens").filter(|v| !v.is_null()) {
        chat.insert("max_tokens".into(), max);
    }
    for key in ["temperature", "top_p", "parallel_tool_calls", "user"] {
        if let Some(value) = request.remove(key).filter(|v| !v.is_null()) {
            chat.insert(key.into(), value);
        }
    }
    if let Some(effort) = request
        .get("reasoning")
        .and_then(|r| r.get("effort"))
        .filter(|v| !v.is_null())
    {
        chat.insert("reasoning_effort".into(), effort.clone());
    }
    if let Some(format) = request.get("text").and_then(|t| t.get("format"))
        && let Some(format) = format_to_chat(format)?
    {
        chat.insert("response_format".into(), format);
    }
    if let Some(tools) = request.remove("tools").filter(|v| !v.is_null()) {
        chat.insert("tools".into(), tools_to_chat(tools)?);
    }
    if let Some(choice) = request.remove("tool_choice").filter(|v| !v.is_null()) {
        chat.insert("tool_choice".into(), tool_choice_to_chat(choice)?);
    }
    let stream = request
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    finish(chat, stream)
}

/// One input item as chat messages; consecutive function calls join one
/// assistant message, as chat wants them.
fn item_to_chat(item: Value, out: &mut Vec<Value>) -> Result<(), String> {
    let kind = item
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("message");
    match kind {
        "message" => {
            let role = match item.get("role").and_then(Value::as_str) {
                Some("developer" | "system") => "system",
                Some("user") => "user",
                Some("assistant") => "assistant",
                _ => return Err("role must be 'user', 'assistant', 'system' or 'developer'".into()),
            };
            let content = content_to_chat(item.get("content").unwrap_or(&Value::Null), role)?;
            out.push(json!({"role": role, "content": content}));
        }
        "function_call" => {
            let call = json!({
                "id": item.get("call_id").and_then(Value::as_str).unwrap_or(""),
                "type": "function",
                "function": {
                    "name": item.get("name").and_then(Value::as_str).unwrap_or(""),
                    "arguments": item.get("arguments").and_then(Value::as_str).unwrap_or("{}"),
                },
            });
            match out.last_mut() {
                Some(last) if last["role"] == "assistant" && last.get("tool_calls").is_some() => {
                    if let Some(calls) = last["tool_calls"].as_array_mut() {
                        calls.push(call);
                    }
                }
                Some(last) if last["role"] == "assistant" => {
                    last["tool_calls"] = json!([call]);
                }
                _ => out.push(json!({"role": "assistant", "content": null, "tool_calls": [call]})),
            }
        }
        "function_call_output" => {
            let output = match item.get("output") {
                Some(Value::String(text)) => text.clone(),
                Some(other) => text_of(other).ok_or("output must be a string")?,
                None => String::new(),
            };
            out.push(json!({
                "role": "tool",
                "tool_call_id": item.get("call_id").and_then(Value::as_str).unwrap_or(""),
                "content": output,
            }));
        }
        // The model's earlier reasoning: nothing a chat upstream can read.
        "reasoning" => {}
        other => {
            return Err(format!(
                "item type '{}' is not supported for this model",
                tollgate_core::sanitize_message(other)
            ));
        }
    }
    Ok(())
}

/// A message's content: a string, or parts (`input_text`, `output_text`,
/// `input_image`).
fn content_to_chat(content: &Value, role: &str) -> Result<Value, String> {
    let Value::Array(parts) = content else {
        return match content {
            Value::String(_) => Ok(content.clone()),
            _ => Err("content must be a string or a list of parts".into()),
        };
    };
    if role != "user" {
        return text_of(content)
            .map(Value::String)
            .ok_or_else(|| "only text parts are supported here".into());
    }
    let mut out = Vec::with_capacity(parts.len());
    for part in parts {
        match part.get("type").and_then(Value::as_str) {
            Some("input_text" | "output_text" | "text") => out.push(json!({
                "type": "text",
                "text": part.get("text").and_then(Value::as_str).unwrap_or(""),
            })),
            Some("input_image") => {
                let url = part
                    .get("image_url")
                    .and_then(Value::as_str)
                    .ok_or("input_image needs an image_url (file_id is not supported)")?;
                let mut image = json!({"url": url});
                if let Some(detail) = part.get("detail") {
                    image["detail"] = detail.clone();
                }
                out.push(json!({"type": "image_url", "image_url": image}));
            }
            _ => return Err("content parts must be input_text or input_image".into()),
        }
    }
    Ok(Value::Array(out))
}

/// Function tools in chat's nesting; hosted tools (web search, file
/// search, code interpreter...) exist only at OpenAI.
fn tools_to_chat(tools: Value) -> Result<Value, Failure> {
    let Value::Array(tools) = tools else {
        return Err(bad_request("tools must be a list").with_param("tools"));
    };
    let mut out = Vec::with_capacity(tools.len());
    for (i, tool) in tools.into_iter().enumerate() {
        let Value::Object(mut tool) = tool else {
            return Err(bad_request(format!("tools[{i}] must be an object")).with_param("tools"));
        };
        let kind = tool.remove("type");
        if kind.as_ref().and_then(Value::as_str) != Some("function") {
            return Err(bad_request(format!(
                "tools[{i}]: only function tools are supported for this model"
            ))
            .with_param("tools"));
        }
        out.push(json!({"type": "function", "function": tool}));
    }
    Ok(Value::Array(out))
}

/// `tool_choice`: the strings are the same; a named function nests.
fn tool_choice_to_chat(choice: Value) -> Result<Value, Failure> {
    match &choice {
        Value::String(_) => Ok(choice),
        Value::Object(object) if object.get("type") == Some(&json!("function")) => {
            let name = object.get("name").cloned().unwrap_or(Value::Null);
            Ok(json!({"type": "function", "function": {"name": name}}))
        }
        _ => Err(
            bad_request("tool_choice must be 'auto', 'none', 'required' or a function")
                .with_param("tool_choice"),
        ),
    }
}

/// `text.format` as chat's `response_format`.
fn format_to_chat(format: &Value) -> Result<Option<Value>, Failure> {
    match format.get("type").and_then(Value::as_str) {
        None | Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let mut schema = Map::new();
            for key in ["name", "schema", "strict", "description"] {
                if let Some(value) = format.get(key) {
                    schema.insert(key.into(), value.clone());
                }
            }
            Ok(Some(json!({"type": "json_schema", "json_schema": schema})))
        }
        Some(_) => Err(
            bad_request("text.format.type must be text, json_object or json_schema")
                .with_param("text.format"),
        ),
    }
}
