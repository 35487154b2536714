//! An OpenAI chat request as a Bedrock Converse request.
//!
//! From the Amazon Bedrock API Reference, "Converse"
//! (<https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html>)
//! and its data types (`Message`, `ContentBlock`, `SystemContentBlock`,
//! `InferenceConfiguration`, `ToolConfiguration`, `ToolChoice`,
//! `ImageBlock`, `ToolUseBlock`, `ToolResultBlock`, `CachePointBlock`):
//! the model id is in the URL, `messages` alternate `user` and `assistant`
//! with content blocks (`text`, `image` with base64 `bytes`, `toolUse`,
//! `toolResult`, `cachePoint`), `system` is a list of blocks,
//! `inferenceConfig` holds `maxTokens`, `temperature`, `topP` and
//! `stopSequences`, `toolConfig` the tools (`toolSpec`: `name`,
//! `description`, `inputSchema.json`) and `toolChoice` (`auto`, `any`,
//! `tool`). Model-specific fields go in `additionalModelRequestFields`.

use serde_json::{Map, Value, json};
use tollgate_core::Failure;

use crate::chat::{
    self, ImageSource, RequestFacts, content_items, function_of, image_source, message_parts,
    push_merged, tool_call_arguments, tool_call_id, trim_prefill, unsupported_role,
};
use crate::failures::bad_request;

/// Parameters dropped besides [`chat::dropped`]'s: with no Converse
/// equivalent.
const DROPPED: &[&str] = &["user", "metadata"];

/// Converse's own top-level fields, passed through as they are.
const CONVERSE_FIELDS: &[&str] = &[
    "guardrailConfig",
    "additionalModelResponseFieldPaths",
    "performanceConfig",
    "promptVariables",
    "requestMetadata",
];

/// Translates `body` into a Converse body.
pub(crate) fn translate(body: &[u8]) -> Result<(Vec<u8>, RequestFacts), Failure> {
    let (mut request, mut facts) = chat::read(body, "bedrock/")?;
    chat::refuse_choices(&request, "Bedrock")?;
    chat::refuse_response_format(&request, "Bedrock")?;
    if let Some(model) = facts.model.strip_prefix("converse/") {
        facts.model = model.to_owned();
    }
    if facts.model.is_empty() {
        return Err(bad_request(
            "`model` must name a Bedrock model",
            Some("model"),
        ));
    }
    let Some(Value::Array(messages)) = request.remove("messages") else {
        return Err(bad_request("`messages` must be an array", Some("messages")));
    };
    let (system, messages, uses_tools) = messages_of(messages)?;

    let mut out = Map::new();
    out.insert("messages".into(), Value::Array(messages));
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    let inference = inference_config(&mut request)?;
    if !inference.is_empty() {
        out.insert("inferenceConfig".into(), Value::Object(inference));
    }
    if let Some(config) = tool_config(
        request.remove("tools"),
        request.remove("tool_choice"),
        uses_tools,
    )? {
        out.insert("toolConfig".into(), config);
    }
    let mut additional = match request.remove("additionalModelRequestFields") {
        Some(Value::Object(fields)) => fields,
        _ => Map::new(),
    };
    for (key, value) in request {
        if CONVERSE_FIELDS.contains(&key.as_str()) {
            out.insert(key, value);
        } else if !chat::dropped(&key, DROPPED) && !value.is_null() {
            // Model-specific parameters (`top_k`, `thinking`...), where
            // Converse takes them, as LiteLLM sends them.
            additional.insert(key, value);
        }
    }
    if !additional.is_empty() {
        out.insert(
            "additionalModelRequestFields".into(),
            Value::Object(additional),
        );
    }
    let body = serde_json::to_vec(&Value::Object(out)).unwrap_or_default();
    Ok((body, facts))
}

/// `maxTokens`, `temperature`, `topP` and `stopSequences`.
fn inference_config(request: &mut Map<String, Value>) -> Result<Map<String, Value>, Failure> {
    let mut config = Map::new();
    let max_tokens = request.remove("max_completion_tokens");
    let max_tokens = max_tokens
        .filter(|v| !v.is_null())
        .or_else(|| request.remove("max_tokens"));
    request.remove("max_tokens");
    if let Some(max) = max_tokens.filter(|v| !v.is_null()) {
        let max = max.as_u64().ok_or_else(|| {
            bad_request(
                "`max_tokens` must be a positive integer",
                Some("max_tokens"),
            )
        })?;
        config.insert("maxTokens".into(), max.into());
    }
    for (from, to) in [("temperature", "temperature"), ("top_p", "topP")] {
        if let Some(value) = request.remove(from).filter(|v| !v.is_null()) {
            if !value.is_number() {
                return Err(bad_request(
                    format!("`{from}` must be a number"),
                    Some(from),
                ));
            }
            config.insert(to.into(), value);
        }
    }
    match request.remove("stop") {
        Some(Value::String(stop)) => {
            config.insert("stopSequences".into(), json!([stop]));
        }
        Some(Value::Array(stops)) => {
            config.insert("stopSequences".into(), Value::Array(stops));
        }
        Some(Value::Null) | None => {}
        Some(_) => {
            return Err(bad_request(
                "`stop` must be a string or an array",
                Some("stop"),
            ));
        }
    }
    Ok(config)
}

/// The system blocks, the alternating messages, and whether the history
/// holds tool calls or results (Converse then needs the tools declared).
fn messages_of(messages: Vec<Value>) -> Result<(Vec<Value>, Vec<Value>, bool), Failure> {
    let mut system: Vec<Value> = Vec::new();
    let mut out: Vec<Value> = Vec::new();
    let mut uses_tools = false;
    let count = messages.len();
    for (at, message) in messages.into_iter().enumerate() {
        let (mut message, role, content) = message_parts(message)?;
        let (role, blocks) = match role.as_str() {
            "system" | "developer" => {
                system.extend(content_blocks(content, false)?);
                continue;
            }
            "user" => ("user", content_blocks(content, true)?),
            "assistant" => {
                let mut blocks = content_blocks(content, false)?;
                if at + 1 == count {
                    trim_prefill(&mut blocks);
                }
                if let Some(Value::Array(calls)) = message.remove("tool_calls") {
                    uses_tools |= !calls.is_empty();
                    for call in calls {
                        blocks.push(tool_use_of(&call)?);
                    }
                }
                ("assistant", blocks)
            }
            "tool" => {
                uses_tools = true;
                let id = tool_call_id(&message)?;
                let mut result = content_blocks(content, false)?;
                if result.is_empty() {
                    result.push(json!({"text": ""}));
                }
                let block = json!({"toolResult": {"toolUseId": id, "content": result}});
                ("user", vec![block])
            }
            other => return Err(unsupported_role(other, "Bedrock")),
        };
        push_merged(&mut out, role, "content", blocks);
    }
    Ok((system, out, uses_tools))
}

/// A message's content as blocks: text (a `cachePoint` after a part with
/// `cache_control`, as LiteLLM sends it) and, where `images`, images.
fn content_blocks(content: Value, images: bool) -> Result<Vec<Value>, Failure> {
    content_items(
        content,
        |text| json!({ "text": text }),
        |part, blocks| {
            match part.get("type").and_then(Value::as_str) {
                Some("text") => {
                    let text = part.get("text").and_then(Value::as_str).unwrap_or_default();
                    blocks.push(json!({ "text": text }));
                }
                Some("image_url") if images => blocks.push(image_of(&part)?),
                Some(other) => {
                    return Err(bad_request(
                        format!(
                            "content part type `{other}` is not supported here for Bedrock models"
                        ),
                        Some("messages"),
                    ));
                }
                None => {
                    return Err(bad_request(
                        "a content part needs a `type`",
                        Some("messages"),
                    ));
                }
            }
            if part.get("cache_control").is_some() {
                blocks.push(json!({"cachePoint": {"type": "default"}}));
            }
            Ok(())
        },
    )
}

/// An `image_url` part as an `image` block. Converse takes image bytes (or
/// an S3 location), not URLs: only `data:` URLs can be sent.
fn image_of(part: &Value) -> Result<Value, Failure> {
    let Ok(ImageSource::Inline { media_type, data }) = image_source(part) else {
        return Err(bad_request(
            "Bedrock takes images as base64 data URLs (data:image/png;base64,...)",
            Some("messages"),
        ));
    };
    let format = match media_type {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpeg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        _ => {
            return Err(bad_request(
                "Bedrock takes png, jpeg, gif and webp images",
                Some("messages"),
            ));
        }
    };
    Ok(json!({"image": {"format": format, "source": {"bytes": data}}}))
}

/// An OpenAI tool call as a `toolUse` block: its arguments (JSON text) as
/// the `input` document.
fn tool_use_of(call: &Value) -> Result<Value, Failure> {
    let function = &call["function"];
    let input = tool_call_arguments(call)?;
    Ok(json!({"toolUse": {
        "toolUseId": call["id"],
        "name": function["name"],
        "input": input,
    }}))
}

/// `toolConfig` from OpenAI's `tools` and `tool_choice`. Converse has no
/// `none`: the tools are then left out, unless the history holds tool
/// calls (Converse refuses those without the tools declared), where the
/// model chooses.
fn tool_config(
    tools: Option<Value>,
    choice: Option<Value>,
    uses_tools: bool,
) -> Result<Option<Value>, Failure> {
    let tools = match tools {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(tools)) if tools.is_empty() => return Ok(None),
        Some(Value::Array(tools)) => tools,
        Some(_) => return Err(bad_request("`tools` must be an array", Some("tools"))),
    };
    let choice = match choice {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => Some(json!({"auto": {}})),
            "required" => Some(json!({"any": {}})),
            "none" if uses_tools => None,
            "none" => return Ok(None),
            _ => return Err(bad_request("unknown `tool_choice`", Some("tool_choice"))),
        },
        Some(object) => {
            let name = object["function"]["name"]
                .as_str()
                .ok_or_else(|| bad_request("unknown `tool_choice`", Some("tool_choice")))?;
            Some(json!({"tool": {"name": name}}))
        }
    };
    let specs = tools
        .into_iter()
        .map(|tool| {
            let function = function_of(&tool)?;
            let schema = function
                .get("parameters")
                .cloned()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
            let mut spec = json!({
                "name": function["name"],
                "inputSchema": {"json": schema},
            });
            if let Some(description) = function.get("description").filter(|d| d.is_string()) {
                spec["description"] = description.clone();
            }
            Ok(json!({ "toolSpec": spec }))
        })
        .collect::<Result<Vec<_>, Failure>>()?;
    let mut config = json!({ "tools": specs });
    if let Some(choice) = choice {
        config["toolChoice"] = choice;
    }
    Ok(Some(config))
}
