//! Azure's content filter and errors in Tollgate's classes.
//!
//! From "Content filtering" (Azure OpenAI): a filtered prompt is a 400 with
//! `error.code: "content_filter"` and `error.innererror` (`code:
//! "ResponsibleAIPolicyViolation"`, `content_filter_result` per category);
//! a filtered completion is `finish_reason: "content_filter"` with
//! `content_filter_results` on the choice. Each category result has
//! `filtered` (and `severity` or `detected`).

use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value};
use tollgate_core::classify::{ClassifyResponse, OpenAiClassifier};
use tollgate_core::{ErrorClass, Failure, Scope, sanitize_message};

#[derive(Deserialize, Default)]
struct Envelope {
    #[serde(default)]
    error: Option<ErrorObject>,
}

#[derive(Deserialize, Default)]
struct ErrorObject {
    #[serde(default)]
    code: Option<Value>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    innererror: Option<InnerError>,
}

#[derive(Deserialize, Default)]
struct InnerError {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    content_filter_result: Option<Map<String, Value>>,
}

/// Classifies an error answer: Azure's content filter, else as OpenAI's.
pub(crate) fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Failure {
    let envelope: Envelope = serde_json::from_slice(body).unwrap_or_default();
    if let Some(error) = &envelope.error {
        let inner = error.innererror.as_ref();
        let filtered = error.code.as_ref().and_then(Value::as_str) == Some("content_filter")
            || inner.and_then(|i| i.code.as_deref()) == Some("ResponsibleAIPolicyViolation");
        if filtered {
            let categories = inner
                .and_then(|i| i.content_filter_result.as_ref())
                .map(filtered_categories)
                .unwrap_or_default();
            let message = error.message.as_deref().map(sanitize_message);
            return content_policy(&categories, message.as_deref(), "prompt")
                .with_upstream_status(status);
        }
    }
    OpenAiClassifier::new().classify_error_body(status, headers, body)
}

/// The categories a `content_filter_result(s)` object marks `filtered`.
fn filtered_categories(results: &Map<String, Value>) -> Vec<String> {
    results
        .iter()
        .filter(|(_, result)| result["filtered"] == Value::Bool(true))
        .map(|(category, _)| category.clone())
        .collect()
}

/// A content-policy failure with its reason: the filtered categories.
pub(crate) fn content_policy(
    categories: &[String],
    message: Option<&str>,
    param: &'static str,
) -> Failure {
    let reason = if categories.is_empty() {
        String::new()
    } else {
        format!(" (filtered: {})", categories.join(", "))
    };
    let text = match message {
        Some(message) if !message.trim().is_empty() => format!("{message}{reason}"),
        _ => format!("Azure's content filter blocked the {param}{reason}"),
    };
    Failure::new(ErrorClass::ContentPolicy, text)
        .with_code("content_filter")
        .with_param(param)
        .with_scope(Scope::Model)
}

#[derive(Deserialize)]
struct AnswerView {
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    choices: Vec<ChoiceView>,
}

#[derive(Deserialize)]
struct ChoiceView {
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    message: Option<MessageView>,
    #[serde(default)]
    content_filter_results: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
struct MessageView {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<Value>>,
}

/// A complete 2xx answer: a failure when it holds an error, or when the
/// filter left nothing of it.
pub(crate) fn check_answer(body: &[u8]) -> Result<(), Failure> {
    let Ok(view) = serde_json::from_slice::<AnswerView>(body) else {
        return Err(Failure::new(
            ErrorClass::UpstreamUnavailable,
            "the provider's answer could not be read",
        )
        .with_subkind("malformed_response"));
    };
    if view.error.is_some() {
        return Err(classify(StatusCode::BAD_GATEWAY, &HeaderMap::new(), body));
    }
    let all_filtered = !view.choices.is_empty()
        && view.choices.iter().all(|choice| {
            let empty = choice.message.as_ref().is_none_or(|m| {
                m.content.as_deref().unwrap_or_default().is_empty()
                    && m.tool_calls.as_ref().is_none_or(Vec::is_empty)
            });
            choice.finish_reason.as_deref() == Some("content_filter") && empty
        });
    if all_filtered {
        let categories = view
            .choices
            .iter()
            .filter_map(|c| c.content_filter_results.as_ref())
            .flat_map(filtered_categories)
            .collect::<Vec<_>>();
        return Err(content_policy(&categories, None, "completion"));
    }
    Ok(())
}
