//! `POST /v1/messages/count_tokens`: Anthropic's token counting.
//!
//! Only Anthropic counts tokens for Anthropic's request shape, and the
//! gateway does not pass requests through to Anthropic unchanged yet (see
//! docs/DECISIONS.md): every model answers with a clear error in
//! Anthropic's shape, after the same checks as `/v1/messages` (the body,
//! the model, the key's model list), so a client learns what is wrong with
//! its request first.

use http::{Request, Response, StatusCode};
use tollgate_core::{ErrorClass, Failure};
use tollgate_inbound::Protocol;
use tollgate_inbound::messages::Messages;

use super::App;
use crate::access_log::AccessLog;
use crate::keys::Principal;
use crate::response::GatewayBody;

pub(super) async fn handle<B>(
    app: &App,
    request: Request<B>,
    principal: Principal,
    log: &mut AccessLog,
) -> Response<GatewayBody>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let failure = match refusal(app, request, principal, log).await {
        Ok(never) => match never {},
        Err(failure) => failure,
    };
    log.class = Some(failure.class());
    Messages::error_response(&failure)
}

/// Why the count is not answered.
async fn refusal<B>(
    app: &App,
    request: Request<B>,
    principal: Principal,
    log: &mut AccessLog,
) -> Result<std::convert::Infallible, Failure>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let bytes = super::chat::read_request(app, request).await?;
    let body: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| {
        Failure::new(
            ErrorClass::BadRequest,
            "the request body is not valid JSON; it must be a JSON object",
        )
    })?;
    let model = body
        .get("model")
        .and_then(serde_json::Value::as_str)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            Failure::new(ErrorClass::BadRequest, "model: Field required").with_param("model")
        })?;
    let group = app.routing.group(&app.groups, model).ok_or_else(|| {
        Failure::new(
            ErrorClass::ModelNotFound,
            format!(
                "The model `{}` does not exist or you do not have access to it.",
                tollgate_core::sanitize_message(model)
            ),
        )
    })?;
    log.model_group = Some(group.name().clone());
    if !principal.allows_model(group.name()) {
        return Err(super::chat::refuse_model(&principal, group.name()));
    }
    Err(Failure::new(
        ErrorClass::BadRequest,
        format!(
            "Token counting is not available through this gateway for `{}`: it needs \
             Anthropic's own endpoint, which the gateway does not pass requests to yet. \
             Read `usage.input_tokens` of a /v1/messages answer instead.",
            tollgate_core::sanitize_message(group.name())
        ),
    )
    .with_status(StatusCode::BAD_REQUEST)
    .with_code("count_tokens_unsupported"))
}
