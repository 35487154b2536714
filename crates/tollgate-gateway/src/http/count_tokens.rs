//! `POST /v1/messages/count_tokens`: Anthropic's token counting.
//!
//! Only Anthropic counts tokens for its own request shape, so the request
//! goes, as the client sent it (the model renamed to the deployment's), to
//! the first `anthropic/` deployment of the model group, or of Claude on
//! Vertex AI (`vertex_ai/claude-…`, at its `count-tokens:rawPredict`),
//! after the same checks as `/v1/messages` (the model, the key's model
//! list); the answer comes back redacted, errors in Anthropic's shape. A
//! group with neither gets a clear 400. It is a plain call, not a
//! completion: no retries, fallbacks, limits or ledger row (it costs
//! nothing).

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response, StatusCode};
use serde_json::Value;
use tollgate_core::{ErrorClass, Failure, Redactor, RequestBody};
use tollgate_inbound::Protocol;
use tollgate_inbound::messages::Messages;
use tower::ServiceExt;

use super::App;
use crate::access_log::AccessLog;
use crate::deployment::{DeploymentProvider, NativeDeployment};
use crate::keys::Principal;
use crate::response::GatewayBody;
use crate::upstream::UpstreamClient;

/// The deployment that counts: Anthropic's API, or Claude on Vertex AI.
#[derive(Clone, Copy)]
enum Counter<'a> {
    Anthropic(
        &'a tollgate_providers::Provider<UpstreamClient, tollgate_providers::anthropic::Anthropic>,
    ),
    Vertex(&'a tollgate_providers::vertex::VertexService<UpstreamClient>),
}

/// The largest count answer read: Anthropic's is a few bytes.
const MAX_ANSWER: usize = 64 * 1024;

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
    let redactor = super::chat::redactor(app, request.headers());
    match count(app, request, principal, log, &redactor).await {
        Ok(response) => response,
        Err(failure) => {
            log.class = Some(failure.class());
            Messages::error_response(&redactor.redact_failure(&failure))
        }
    }
}

async fn count<B>(
    app: &App,
    request: Request<B>,
    principal: Principal,
    log: &mut AccessLog,
    redactor: &Redactor,
) -> Result<Response<GatewayBody>, Failure>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let bytes = super::chat::read_request(app, request).await?;
    let mut body: Value = serde_json::from_slice(&bytes)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| {
            Failure::new(
                ErrorClass::BadRequest,
                "the request body is not valid JSON; it must be a JSON object",
            )
        })?;
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            Failure::new(ErrorClass::BadRequest, "model: Field required").with_param("model")
        })?
        .to_owned();
    let group = app.routing.group(&app.groups, &model).ok_or_else(|| {
        Failure::new(
            ErrorClass::ModelNotFound,
            format!(
                "The model `{}` does not exist or you do not have access to it.",
                tollgate_core::sanitize_message(&model)
            ),
        )
    })?;
    log.model_group = Some(group.name().clone());
    log.key = principal.virtual_key().map(|key| key.name());
    if !principal.allows_model(group.name()) {
        return Err(super::chat::refuse_model(&principal, group.name()));
    }
    let counter = group.members().find_map(|(target, deployment)| {
        let DeploymentProvider::Native(native) = &deployment.provider else {
            return None;
        };
        match &**native {
            NativeDeployment::Anthropic(provider) => Some((target, Counter::Anthropic(provider))),
            // Claude on Vertex AI counts too, under Google's auth; Gemini
            // does not take Anthropic's shape.
            NativeDeployment::Vertex(provider)
                if provider.protocol().counts_tokens(&target.upstream_model) =>
            {
                Some((target, Counter::Vertex(provider)))
            }
            NativeDeployment::Azure(_)
            | NativeDeployment::Gemini(_)
            | NativeDeployment::Bedrock(_)
            | NativeDeployment::Vertex(_) => None,
        }
    });
    let Some((target, counter)) = counter else {
        return Err(Failure::new(
            ErrorClass::BadRequest,
            format!(
                "Token counting needs an Anthropic model; `{}` has no anthropic/ deployment \
                 (nor Claude on vertex_ai/). Read `usage.input_tokens` of a /v1/messages \
                 answer instead.",
                tollgate_core::sanitize_message(group.name())
            ),
        )
        .with_code("count_tokens_unsupported"));
    };
    log.deployment = Some(target.deployment_id.clone());
    let upstream =
        crate::routing::upstream_model(&target.model_group, &target.upstream_model, &model);
    body["model"] = Value::String(upstream.to_owned());
    let sent = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
    let (mut head, ()) = Request::post("/v1/messages/count_tokens")
        .body(())
        .map_err(|_| Failure::new(ErrorClass::Internal, "could not build the request"))?
        .into_parts();
    let response = match counter {
        Counter::Anthropic(provider) => {
            provider.protocol().count_tokens(&mut head);
            let request = Request::from_parts(head, RequestBody::new(sent));
            provider.get_ref().clone().oneshot(request).await
        }
        Counter::Vertex(provider) => {
            provider.protocol().count_tokens(&mut head);
            let request = Request::from_parts(head, RequestBody::new(sent));
            provider.get_ref().clone().oneshot(request).await
        }
    }
    .map_err(|error| Failure::from_error(&*error))?;
    let (parts, body) = response.into_parts();
    let answer = tollgate_core::read_body_limited(body, None, MAX_ANSWER).await?;
    if let (Counter::Vertex(provider), false) = (&counter, parts.status.is_success()) {
        // Vertex refuses in Google's shape too (quota, permissions): read
        // by the translation's rules, answered in Anthropic's.
        use tollgate_providers::Protocol as _;
        return Err(provider
            .protocol()
            .classify(parts.status, &parts.headers, &answer));
    }
    let text = redactor.redact(&String::from_utf8_lossy(&answer));
    let mut response = Response::new(GatewayBody::full(text));
    *response.status_mut() = parts.status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if !parts.status.is_success() {
        log.class = Some(match parts.status {
            StatusCode::TOO_MANY_REQUESTS => ErrorClass::RateLimited,
            status if status.is_client_error() => ErrorClass::BadRequest,
            _ => ErrorClass::UpstreamUnavailable,
        });
    }
    Ok(response)
}
