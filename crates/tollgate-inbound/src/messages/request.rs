//! An Anthropic Messages request as an OpenAI chat request.
//!
//! Shapes from Anthropic's API reference, "Messages"
//! (<https://docs.anthropic.com/en/api/messages>): `system` (a string or
//! text blocks), `messages` whose content is a string or blocks (`text`,
//! `image`, `tool_use`, `tool_result`), `tools` with an `input_schema`,
//! `tool_choice` (`auto`, `any`, `tool`, `none`), `stop_sequences`,
//! `max_tokens` (required).

use serde_json::{Map, Value, json};
use tollgate_core::{ChatRequest, ErrorClass, Failure};

use crate::request::{bad_request, finish, parse_object, text_of};

/// The chat request for an Anthropic Messages request body.
pub(crate) fn to_chat(body: &[u8]) -> Result<ChatRequest, Failure> {
    let mut request = parse_object(body)?;
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| bad_request("model: Field required").with_param("model"))?
        .to_owned();
    let max_tokens = request
        .get("max_tokens")
        .and_then(Value::as_u64)
        .ok_or_else(|| {
            bad_request("max_tokens: Field required (a positive integer)").with_param("max_tokens")
        })?;
    let mut messages = Vec::new();
    match request.remove("system") {
        None | Some(Value::Null) => {}
        Some(system) => {
            let text = text_of(&system)
                .ok_or_else(|| bad_request("system: must be a string or a list of text blocks"))?;
            messages.push(json!({"role": "system", "content": text}));
        }
    }
    let Some(Value::Array(turns)) = request.remove("messages") else {
        return Err(bad_request("messages: Field required (a list)").with_param("messages"));
    };
    if turns.is_empty() {
        return Err(
            bad_request("messages: at least one message is required").with_param("messages")
        );
    }
    for (i, turn) in turns.into_iter().enumerate() {
        turn_to_chat(turn, &mut messages).map_err(|e| e.at(i))?;
    }
    let mut chat = Map::new();
    chat.insert("model".into(), Value::String(model));
    chat.insert("messages".into(), Value::Array(messages));
    chat.insert("max_tokens".into(), max_tokens.into());
    for key in ["temperature", "top_p"] {
        if let Some(value) = request.remove(key) {
            chat.insert(key.into(), value);
        }
    }
    if let Some(stop) = request.remove("stop_sequences") {
        chat.insert("stop".into(), stop);
    }
    if let Some(user) = request
        .get("metadata")
        .and_then(|m| m.get("user_id"))
        .cloned()
    {
        chat.insert("user".into(), user);
    }
    if let Some(tools) = request.remove("tools") {
        chat.insert("tools".into(), tools_to_chat(tools)?);
    }
    if let Some(choice) = request.remove("tool_choice") {
        let (choice, parallel) = tool_choice_to_chat(&choice)?;
        chat.insert("tool_choice".into(), choice);
        if let Some(parallel) = parallel {
            chat.insert("parallel_tool_calls".into(), parallel.into());
        }
    }
    let stream = request
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    finish(chat, stream)
}

/// Why one message could not be translated, before its position is known.
pub(crate) struct TurnError(String);

impl TurnError {
    fn at(self, index: usize) -> Failure {
        bad_request(format!("messages.{index}: {}", self.0)).with_param("messages")
    }
}

/// One Anthropic message as chat messages: a user turn's tool results go
/// first, as `tool` messages (chat wants them right after the assistant's
/// calls), then its other content.
fn turn_to_chat(turn: Value, out: &mut Vec<Value>) -> Result<(), TurnError> {
    let role = turn
        .get("role")
        .and_then(Value::as_str)
        .ok_or_else(|| TurnError("role: Field required".into()))?;
    let role = match role {
        "user" => "user",
        "assistant" => "assistant",
        other => {
            return Err(TurnError(format!(
                "role: Input should be 'user' or 'assistant', not '{}'",
                tollgate_core::sanitize_message(other)
            )));
        }
    };
    let blocks = match turn.get("content") {
        Some(Value::String(text)) => {
            out.push(json!({"role": role, "content": text}));
            return Ok(());
        }
        Some(Value::Array(blocks)) => blocks,
        _ => {
            return Err(TurnError(
                "content: a string or a list of blocks is required".into(),
            ));
        }
    };
    let mut parts = Vec::new();
    let mut calls = Vec::new();
    for block in blocks {
        let kind = block.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "text" => {
                let text = block.get("text").and_then(Value::as_str).unwrap_or("");
                parts.push(json!({"type": "text", "text": text}));
            }
            "image" => parts.push(image_to_chat(block)?),
            "tool_use" => calls.push(json!({
                "id": block.get("id").and_then(Value::as_str).unwrap_or(""),
                "type": "function",
                "function": {
                    "name": block.get("name").and_then(Value::as_str).unwrap_or(""),
                    "arguments": serde_json::to_string(block.get("input").unwrap_or(&json!({})))
                        .unwrap_or_default(),
                },
            })),
            "tool_result" => {
                let id = block
                    .get("tool_use_id")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let content = match block.get("content") {
                    None | Some(Value::Null) => String::new(),
                    Some(content) => text_of(content)
                        .ok_or_else(|| TurnError("tool_result content: text blocks only".into()))?,
                };
                let content = if block.get("is_error").and_then(Value::as_bool) == Some(true) {
                    format!("Error: {content}")
                } else {
                    content
                };
                out.push(json!({"role": "tool", "tool_call_id": id, "content": content}));
            }
            // Reasoning the model showed before: no chat equivalent, and
            // its signature means nothing to another provider.
            "thinking" | "redacted_thinking" => {}
            other => {
                return Err(TurnError(format!(
                    "content block type '{}' is not supported for this model",
                    tollgate_core::sanitize_message(other)
                )));
            }
        }
    }
    let content = match parts.as_slice() {
        [] => None,
        [only] if only["type"] == "text" => Some(only["text"].clone()),
        _ if role == "assistant" => Some(Value::String(
            parts.iter().filter_map(|p| p["text"].as_str()).collect(),
        )),
        _ => Some(Value::Array(parts)),
    };
    if role == "assistant" && !calls.is_empty() {
        out.push(json!({
            "role": "assistant",
            "content": content.unwrap_or(Value::Null),
            "tool_calls": calls,
        }));
    } else if let Some(content) = content {
        out.push(json!({"role": role, "content": content}));
    }
    Ok(())
}

/// An image block as an `image_url` part: base64 data as a data URL.
fn image_to_chat(block: &Value) -> Result<Value, TurnError> {
    let source = block.get("source").unwrap_or(&Value::Null);
    let url = match source.get("type").and_then(Value::as_str) {
        Some("base64") => format!(
            "data:{};base64,{}",
            source
                .get("media_type")
                .and_then(Value::as_str)
                .unwrap_or("image/png"),
            source.get("data").and_then(Value::as_str).unwrap_or(""),
        ),
        Some("url") => source
            .get("url")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
        _ => {
            return Err(TurnError(
                "image source: 'base64' or 'url' is required".into(),
            ));
        }
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

/// Anthropic's tools as chat functions. Anthropic's own server tools (web
/// search, code execution, computer use...) have no schema to send
/// elsewhere.
fn tools_to_chat(tools: Value) -> Result<Value, Failure> {
    let Value::Array(tools) = tools else {
        return Err(bad_request("tools: a list is required").with_param("tools"));
    };
    let mut out = Vec::with_capacity(tools.len());
    for (i, tool) in tools.into_iter().enumerate() {
        let Value::Object(mut tool) = tool else {
            return Err(
                bad_request(format!("tools.{i}: an object is required")).with_param("tools")
            );
        };
        let kind = tool
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("custom")
            .to_owned();
        let Some(schema) = tool.remove("input_schema").filter(|_| kind == "custom") else {
            return Err(bad_request(format!(
                "tools.{i}: tool type '{}' is served only by Anthropic; send a custom tool with \
                 an input_schema",
                tollgate_core::sanitize_message(&kind)
            ))
            .with_param("tools"));
        };
        let mut function = Map::new();
        function.insert(
            "name".into(),
            tool.remove("name").unwrap_or(Value::String(String::new())),
        );
        if let Some(description) = tool.remove("description") {
            function.insert("description".into(), description);
        }
        function.insert("parameters".into(), schema);
        out.push(json!({"type": "function", "function": function}));
    }
    Ok(Value::Array(out))
}

/// `tool_choice` in chat's terms, and `parallel_tool_calls` when
/// `disable_parallel_tool_use` says.
fn tool_choice_to_chat(choice: &Value) -> Result<(Value, Option<bool>), Failure> {
    let parallel = choice
        .get("disable_parallel_tool_use")
        .and_then(Value::as_bool)
        .map(|disable| !disable);
    let choice = match choice.get("type").and_then(Value::as_str) {
        Some("auto") => json!("auto"),
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => {
            let name = choice.get("name").and_then(Value::as_str).unwrap_or("");
            json!({"type": "function", "function": {"name": name}})
        }
        _ => {
            return Err(Failure::new(
                ErrorClass::BadRequest,
                "tool_choice.type: one of 'auto', 'any', 'tool', 'none' is required",
            )
            .with_param("tool_choice"));
        }
    };
    Ok((choice, parallel))
}
