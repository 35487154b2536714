//! An OpenAI chat request as a Gemini `GenerateContentRequest`.
//!
//! From the Gemini API reference, "Generating content"
//! (<https://ai.google.dev/api/generate-content>) and "Caching"'s `Content`
//! (<https://ai.google.dev/api/caching#Content>): `contents` (each a
//! `role` — `user` or `model` — and `parts`: `text`, `inlineData`,
//! `fileData`, `functionCall`, `functionResponse`), `systemInstruction`,
//! `tools` (`functionDeclarations`: `name`, `description`, `parameters`),
//! `toolConfig.functionCallingConfig` (`mode` `AUTO`/`ANY`/`NONE`,
//! `allowedFunctionNames`), `generationConfig` (`stopSequences`,
//! `candidateCount`, `maxOutputTokens`, `temperature`, `topP`, `topK`,
//! `seed`, `presencePenalty`, `frequencyPenalty`, `responseMimeType`,
//! `responseSchema`, `thinkingConfig`), `safetySettings`, `cachedContent`.

use std::collections::HashMap;

use serde_json::{Map, Value, json};
use tollgate_core::Failure;

use super::response::split_tool_call_id;
use crate::chat::{
    self, ImageSource, RequestFacts, content_items, function_of, image_source, message_parts,
    only_text, push_merged, tool_call_arguments, unsupported_part, unsupported_role,
};
use crate::failures::bad_request;

/// OpenAI's sampling parameters and their `generationConfig` names.
const GENERATION: &[(&str, &str)] = &[
    ("temperature", "temperature"),
    ("top_p", "topP"),
    ("top_k", "topK"),
    ("seed", "seed"),
    ("presence_penalty", "presencePenalty"),
    ("frequency_penalty", "frequencyPenalty"),
];

/// JSON-schema keys Gemini's OpenAPI-subset `Schema` rejects ("Unknown
/// name"), removed from tool parameters and response schemas as LiteLLM
/// does.
const UNSUPPORTED_SCHEMA_KEYS: &[&str] = &["$schema", "additionalProperties", "strict", "$id"];

/// Translates `body`.
pub(crate) fn translate(body: &[u8]) -> Result<(Vec<u8>, RequestFacts), Failure> {
    let (mut request, mut facts) = chat::read(body, "gemini/")?;
    if let Some(model) = facts.model.strip_prefix("models/") {
        facts.model = model.to_owned();
    }
    if !valid_model(&facts.model) {
        return Err(bad_request(
            "`model` must name a Gemini model",
            Some("model"),
        ));
    }
    let Some(Value::Array(messages)) = request.remove("messages") else {
        return Err(bad_request("`messages` must be an array", Some("messages")));
    };
    let (system, contents) = contents_of(messages)?;
    if contents.is_empty() {
        return Err(bad_request(
            "Gemini needs at least one user or assistant message",
            Some("messages"),
        ));
    }

    let mut out = Map::new();
    out.insert("contents".into(), Value::Array(contents));
    if !system.is_empty() {
        out.insert("systemInstruction".into(), json!({ "parts": system }));
    }
    if let Some(tools) = request.remove("tools").filter(|t| !t.is_null())
        && let Some(tools) = tools_of(tools)?
    {
        out.insert("tools".into(), tools);
    }
    if let Some(config) = tool_config_of(request.remove("tool_choice"))? {
        out.insert("toolConfig".into(), config);
    }
    let generation = generation_config(&mut request, facts.stream)?;
    if !generation.is_empty() {
        out.insert("generationConfig".into(), Value::Object(generation));
    }
    for (from, to) in [
        ("safety_settings", "safetySettings"),
        ("safetySettings", "safetySettings"),
        ("cached_content", "cachedContent"),
        ("cachedContent", "cachedContent"),
    ] {
        if let Some(value) = request.remove(from).filter(|v| !v.is_null()) {
            out.insert(to.into(), value);
        }
    }
    let body = serde_json::to_vec(&Value::Object(out)).unwrap_or_default();
    Ok((body, facts))
}

/// A model name that can stand in the URL path as it is.
fn valid_model(model: &str) -> bool {
    !model.is_empty()
        && model
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// `generationConfig` from the sampling parameters.
fn generation_config(
    request: &mut Map<String, Value>,
    stream: bool,
) -> Result<Map<String, Value>, Failure> {
    let mut config = Map::new();
    for (from, to) in GENERATION {
        if let Some(value) = request.get(*from).filter(|v| v.is_number()) {
            config.insert((*to).into(), value.clone());
        }
    }
    let max_tokens = request
        .get("max_completion_tokens")
        .or_else(|| request.get("max_tokens"))
        .and_then(Value::as_u64);
    if let Some(max) = max_tokens {
        config.insert("maxOutputTokens".into(), max.into());
    }
    match request.get("stop") {
        Some(Value::String(stop)) => {
            config.insert("stopSequences".into(), json!([stop]));
        }
        Some(Value::Array(stops)) => {
            config.insert("stopSequences".into(), Value::Array(stops.clone()));
        }
        _ => {}
    }
    if let Some(n) = request.get("n").and_then(Value::as_u64).filter(|n| *n > 1) {
        if stream {
            // Gemini's stream gives no end per candidate to close on.
            return Err(bad_request(
                "a streamed Gemini answer has one choice: `n` must be 1",
                Some("n"),
            ));
        }
        config.insert("candidateCount".into(), n.into());
    }
    if let Some(format) = request.get("response_format") {
        match format.get("type").and_then(Value::as_str) {
            Some("text") | None => {}
            Some("json_object") => {
                config.insert("responseMimeType".into(), json!("application/json"));
            }
            Some("json_schema") => {
                config.insert("responseMimeType".into(), json!("application/json"));
                if let Some(schema) = format.pointer("/json_schema/schema") {
                    config.insert("responseSchema".into(), clean_schema(schema.clone()));
                }
            }
            Some(_) => {
                return Err(bad_request(
                    "unknown `response_format` type",
                    Some("response_format"),
                ));
            }
        }
    }
    // LiteLLM's budgets for `reasoning_effort` on Gemini.
    let budget = match request.get("reasoning_effort").and_then(Value::as_str) {
        Some("none" | "disable") => Some(0),
        Some("minimal" | "low") => Some(1024),
        Some("medium") => Some(2048),
        Some("high") => Some(4096),
        _ => None,
    };
    if let Some(budget) = budget {
        config.insert(
            "thinkingConfig".into(),
            json!({"thinkingBudget": budget, "includeThoughts": budget > 0}),
        );
    }
    Ok(config)
}

/// The system parts and the contents.
fn contents_of(messages: Vec<Value>) -> Result<(Vec<Value>, Vec<Value>), Failure> {
    let mut system = Vec::new();
    let mut contents: Vec<Value> = Vec::new();
    // The function each earlier tool call named: a tool result must name it.
    let mut called: HashMap<String, String> = HashMap::new();
    for message in messages {
        let (mut message, role, content) = message_parts(message)?;
        let (role, parts) = match role.as_str() {
            "system" | "developer" => {
                system.extend(text_parts(content)?);
                continue;
            }
            "user" => ("user", user_parts(content)?),
            "assistant" => {
                let mut parts = text_parts(content)?;
                if let Some(Value::Array(calls)) = message.remove("tool_calls") {
                    for call in calls {
                        parts.push(function_call_of(&call, &mut called)?);
                    }
                }
                ("model", parts)
            }
            "tool" | "function" => (
                "user",
                vec![function_response_of(&message, content, &called)?],
            ),
            other => return Err(unsupported_role(other, "Gemini")),
        };
        push_merged(&mut contents, role, "parts", parts);
    }
    Ok((system, contents))
}

/// Text content (a string or text parts) as text parts.
fn text_parts(content: Value) -> Result<Vec<Value>, Failure> {
    content_items(content, text_part, |part, parts| {
        match part.get("type").and_then(Value::as_str) {
            Some("text") => parts.push(text_part_of(&part)),
            _ => return Err(only_text()),
        }
        Ok(())
    })
}

fn text_part(text: String) -> Value {
    json!({ "text": text })
}

/// A `text` content part as a text part.
fn text_part_of(part: &Value) -> Value {
    json!({ "text": part.get("text").cloned().unwrap_or_default() })
}

/// A user message's content: text and images.
fn user_parts(content: Value) -> Result<Vec<Value>, Failure> {
    content_items(content, text_part, |part, parts| {
        match part.get("type").and_then(Value::as_str) {
            Some("text") => parts.push(text_part_of(&part)),
            Some("image_url") => parts.push(image_of(&part)?),
            _ => return Err(unsupported_part(&part, "Gemini")),
        }
        Ok(())
    })
}

/// An `image_url` part: a `data:` URL inline, another URL by reference
/// (`fileData`, which needs a MIME type: the extension's).
fn image_of(part: &Value) -> Result<Value, Failure> {
    let url = match image_source(part)? {
        ImageSource::Inline { media_type, data } => {
            return Ok(json!({"inlineData": {"mimeType": media_type, "data": data}}));
        }
        ImageSource::Url(url) => url,
    };
    if !["https://", "http://", "gs://"]
        .iter()
        .any(|scheme| url.starts_with(scheme))
    {
        return Err(bad_request("an image needs a `url`", Some("messages")));
    }
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let extension = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    let mime = match extension.as_deref() {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("webp") => "image/webp",
        Some("heic") => "image/heic",
        Some("heif") => "image/heif",
        Some("gif") => "image/gif",
        _ => {
            return Err(bad_request(
                "an image URL for Gemini must end in .png, .jpg, .jpeg, .webp, .heic, .heif or .gif, or be a data: URL",
                Some("messages"),
            ));
        }
    };
    Ok(json!({"fileData": {"mimeType": mime, "fileUri": url}}))
}

/// An OpenAI tool call as a `functionCall` part: its arguments (JSON text)
/// as `args`, the thought signature its id carries sent back beside it.
fn function_call_of(call: &Value, called: &mut HashMap<String, String>) -> Result<Value, Failure> {
    let function = &call["function"];
    let name = function["name"]
        .as_str()
        .ok_or_else(|| bad_request("a tool call needs a function name", Some("messages")))?;
    let args = tool_call_arguments(call)?;
    let id = call["id"].as_str().unwrap_or_default();
    called.insert(id.to_owned(), name.to_owned());
    let mut part = json!({"functionCall": {"name": name, "args": args}});
    if let (_, Some(signature)) = split_tool_call_id(id) {
        part["thoughtSignature"] = Value::String(signature.to_owned());
    }
    Ok(part)
}

/// A `tool` message as a `functionResponse` part, named after the call it
/// answers; a JSON object result is sent as it is, anything else as
/// `{"content": …}`.
fn function_response_of(
    message: &Map<String, Value>,
    content: Value,
    called: &HashMap<String, String>,
) -> Result<Value, Failure> {
    let name = message
        .get("tool_call_id")
        .and_then(Value::as_str)
        .and_then(|id| called.get(id).map(String::as_str))
        .or_else(|| message.get("name").and_then(Value::as_str))
        .ok_or_else(|| {
            bad_request(
                "a tool message must answer a tool call of an earlier assistant message",
                Some("messages"),
            )
        })?;
    let text = match content {
        Value::String(text) => text,
        Value::Null => String::new(),
        other => text_parts(other)?
            .iter()
            .filter_map(|part| part["text"].as_str())
            .collect(),
    };
    let response = match serde_json::from_str::<Value>(&text) {
        Ok(object @ Value::Object(_)) => object,
        _ => json!({ "content": text }),
    };
    Ok(json!({"functionResponse": {"name": name, "response": response}}))
}

/// OpenAI function tools as one Gemini tool of function declarations.
fn tools_of(tools: Value) -> Result<Option<Value>, Failure> {
    let Value::Array(tools) = tools else {
        return Err(bad_request("`tools` must be an array", Some("tools")));
    };
    let declarations = tools
        .into_iter()
        .map(|tool| {
            let function = function_of(&tool)?;
            let mut out = json!({ "name": function["name"] });
            if let Some(description) = function.get("description") {
                out["description"] = description.clone();
            }
            // A function without parameters is declared without them:
            // Gemini refuses an object schema with no properties.
            if let Some(parameters) = function.get("parameters").filter(|p| {
                p.get("properties")
                    .is_some_and(|p| p.as_object().is_some_and(|o| !o.is_empty()))
            }) {
                out["parameters"] = clean_schema(parameters.clone());
            }
            Ok(out)
        })
        .collect::<Result<Vec<_>, Failure>>()?;
    if declarations.is_empty() {
        return Ok(None);
    }
    Ok(Some(json!([{ "functionDeclarations": declarations }])))
}

/// A JSON schema without the keys Gemini's `Schema` rejects, at any depth.
fn clean_schema(mut schema: Value) -> Value {
    fn clean(value: &mut Value) {
        match value {
            Value::Object(map) => {
                for key in UNSUPPORTED_SCHEMA_KEYS {
                    map.remove(*key);
                }
                for (key, value) in map.iter_mut() {
                    match value {
                        // Property names are the caller's: only their
                        // schemas are cleaned.
                        Value::Object(properties) if key == "properties" => {
                            properties.values_mut().for_each(clean);
                        }
                        value => clean(value),
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(clean),
            _ => {}
        }
    }
    clean(&mut schema);
    schema
}

/// `tool_choice` as `toolConfig`.
fn tool_config_of(choice: Option<Value>) -> Result<Option<Value>, Failure> {
    let config = match choice {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => json!({"mode": "AUTO"}),
            "none" => json!({"mode": "NONE"}),
            "required" => json!({"mode": "ANY"}),
            _ => return Err(bad_request("unknown `tool_choice`", Some("tool_choice"))),
        },
        Some(object) => {
            let name = object["function"]["name"]
                .as_str()
                .ok_or_else(|| bad_request("unknown `tool_choice`", Some("tool_choice")))?;
            json!({"mode": "ANY", "allowedFunctionNames": [name]})
        }
    };
    Ok(Some(json!({ "functionCallingConfig": config })))
}
