//! Pieces every native translation uses: the failures a request or an
//! answer turns into, merged turns, tool-call arguments, image URLs and
//! the provider's error messages.

use std::time::Duration;

use http::StatusCode;
use serde_json::{Value, json};
use tollgate_core::{ErrorClass, Failure, Scope, sanitize_message};

/// A request the provider cannot be sent: a `bad_request` naming `param`.
pub(crate) fn bad_request(message: impl Into<String>, param: Option<&'static str>) -> Failure {
    let failure = Failure::new(ErrorClass::BadRequest, message.into());
    match param {
        Some(param) => failure.with_param(param),
        None => failure,
    }
}

/// A complete JSON answer to a request that asked for a stream: not what
/// the client can read.
pub(crate) fn json_for_stream() -> Failure {
    Failure::new(
        ErrorClass::UpstreamUnavailable,
        "the provider answered a stream request without a stream",
    )
    .with_subkind("malformed_response")
}

/// Appends a turn `{"role", <items_key>: items}`, merged into the previous
/// one when the role repeats: providers that alternate roles want the
/// results of one turn's tool calls in one turn.
pub(crate) fn push_merged(
    out: &mut Vec<Value>,
    role: &'static str,
    items_key: &str,
    items: Vec<Value>,
) {
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

/// The provider's message, made safe for a client, or `default`.
pub(crate) fn message_or(message: &str, default: &'static str) -> String {
    let clean = sanitize_message(message);
    if clean.trim().is_empty() {
        default.to_owned()
    } else {
        clean
    }
}

/// `failure` with the wait the provider asked for, when a retry is what
/// it is for (a rate limit, an unavailable provider).
pub(crate) fn with_wait(failure: Failure, wait: Option<Duration>) -> Failure {
    match wait {
        Some(wait)
            if matches!(
                failure.class(),
                ErrorClass::RateLimited | ErrorClass::UpstreamUnavailable
            ) =>
        {
            failure.with_retry_after(wait)
        }
        _ => failure,
    }
}

/// The provider refused the gateway's own credentials: not the client's
/// fault, so a 502 of its own code.
pub(crate) fn upstream_auth_failed() -> Failure {
    Failure::new(
        ErrorClass::Auth,
        "the provider rejected the gateway's credentials",
    )
    .with_scope(Scope::Key)
    .with_status(StatusCode::BAD_GATEWAY)
    .with_code("upstream_auth_failed")
}

/// The provider's model was not found (its own message when it gave one).
pub(crate) fn model_not_found(message: &str) -> Failure {
    Failure::new(
        ErrorClass::ModelNotFound,
        message_or(message, "the model was not found"),
    )
    .with_scope(Scope::Model)
}

/// The provider is unavailable for now, for `subkind`'s reason
/// (`overloaded`, `upstream_timeout`, `server_error`): retryable, and
/// another provider may answer.
pub(crate) fn provider_unavailable(subkind: &'static str) -> Failure {
    let message = match subkind {
        "overloaded" => "the provider is overloaded",
        "upstream_timeout" => "the provider timed out",
        _ => "the upstream provider failed",
    };
    Failure::new(ErrorClass::UpstreamUnavailable, message)
        .with_subkind(subkind)
        .with_scope(Scope::Provider)
}

/// The provider's context window is smaller than the prompt.
pub(crate) fn context_window(message: String) -> Failure {
    Failure::new(ErrorClass::ContextWindowExceeded, message)
        .with_param("messages")
        .with_scope(Scope::Model)
}
