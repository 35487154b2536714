//! What both request translations share.

use bytes::Bytes;
use serde_json::{Map, Value, json};
use tollgate_core::{ChatRequest, ErrorClass, Failure};

/// A 400 with `message`.
pub(crate) fn bad_request(message: impl Into<String>) -> Failure {
    Failure::new(ErrorClass::BadRequest, message.into())
}

/// The body as a JSON object, or a 400 saying why it is not one.
pub(crate) fn parse_object(body: &[u8]) -> Result<Map<String, Value>, Failure> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(bad_request("the request body must be a JSON object")),
        Err(error) if error.is_data() || error.is_eof() || error.is_syntax() => Err(bad_request(
            "the request body is not valid JSON; it must be a JSON object",
        )),
        Err(_) => Err(bad_request("the request body could not be read as JSON")),
    }
}

/// The text of a string, or of a list of text blocks (`{"type": "text" |
/// "input_text" | "output_text", "text": ...}`) joined; `None` for anything
/// else.
pub(crate) fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Array(blocks) => {
            let mut text = String::new();
            for block in blocks {
                match block.get("type").and_then(Value::as_str) {
                    Some("text" | "input_text" | "output_text") => {
                        text.push_str(block.get("text")?.as_str()?);
                    }
                    _ => return None,
                }
            }
            Some(text)
        }
        _ => None,
    }
}

/// The chat request: `stream` set, and when streaming the usage chunk asked
/// for (both inbound APIs report usage at a stream's end).
pub(crate) fn finish(mut chat: Map<String, Value>, stream: bool) -> Result<ChatRequest, Failure> {
    if stream {
        chat.insert("stream".into(), Value::Bool(true));
        chat.insert("stream_options".into(), json!({"include_usage": true}));
    }
    let bytes = serde_json::to_vec(&Value::Object(chat)).map_err(|_| {
        Failure::new(
            ErrorClass::Internal,
            "the chat request could not be written",
        )
    })?;
    ChatRequest::parse(Bytes::from(bytes))
}
