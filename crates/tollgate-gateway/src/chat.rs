//! `POST /v1/chat/completions`.

use std::sync::Arc;

use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use tollgate_core::classify::{OpenAiEos, is_event_stream};
use tollgate_core::extensions::{AttemptedRetries, Deadline, ModelGroup, Target};
use tollgate_core::{ChatRequest, ErrorClass, Failure, RequestBody, read_body_limited};
use tollgate_retry::{ATTEMPTED_RETRIES, GaveUp};
use tower::ServiceExt;

use crate::access_log::AccessLog;
use crate::app::App;
use crate::response::GatewayBody;
use crate::stack::StackBody;
use crate::stream::SseGuard;

const X_MODEL_GROUP: HeaderName = HeaderName::from_static("x-tollgate-model-group");
const X_DEPLOYMENT: HeaderName = HeaderName::from_static("x-tollgate-deployment");

pub(crate) async fn handle<B>(
    app: &App,
    request: Request<B>,
    log: &mut AccessLog,
) -> Response<GatewayBody>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match forward(app, request, log).await {
        Ok(response) => response,
        Err((failure, retries)) => {
            log.class = Some(failure.class());
            let mut response: Response<GatewayBody> = failure.to_response();
            if let Some(retries) = retries {
                response
                    .headers_mut()
                    .insert(ATTEMPTED_RETRIES, HeaderValue::from(retries));
            }
            response
        }
    }
}

/// The response, or the failure with the retries made before it (when the
/// request got as far as the retry layer).
async fn forward<B>(
    app: &App,
    request: Request<B>,
    log: &mut AccessLog,
) -> Result<Response<GatewayBody>, (Failure, Option<u32>)>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = request.into_parts();
    let content_length = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let bytes = read_body_limited(body, content_length, app.max_body)
        .await
        .map_err(|f| (f, None))?;
    let chat = ChatRequest::parse(bytes).map_err(|f| (f, None))?;
    log.stream = chat.stream();
    let group = app
        .groups
        .get(chat.model())
        .ok_or_else(|| {
            Failure::new(
                ErrorClass::ModelNotFound,
                format!(
                    "The model `{}` does not exist or you do not have access to it.",
                    tollgate_core::sanitize_message(chat.model())
                ),
            )
            .with_param("model")
        })
        .map_err(|f| (f, None))?;
    log.model_group = Some(group.name.clone());
    let chat = Arc::new(chat);
    let mut request = Request::new(RequestBody::new(chat.bytes().clone()));
    request
        .extensions_mut()
        .insert(ModelGroup(group.name.clone()));
    request.extensions_mut().insert(chat);
    // One deadline for the whole request, retries included.
    request
        .extensions_mut()
        .insert(Deadline::after(app.request_timeout));
    let response = app.stack.clone().oneshot(request).await.map_err(|error| {
        let retries = error.downcast_ref::<GaveUp>().map(GaveUp::retries);
        (Failure::from_error(&*error), retries)
    })?;
    let target = response.extensions().get::<Target>().cloned();
    let retries = response.extensions().get::<AttemptedRetries>().copied();
    let mut response = wrap_success(response);
    if let Some(AttemptedRetries(retries)) = retries {
        response
            .headers_mut()
            .insert(ATTEMPTED_RETRIES, HeaderValue::from(retries));
    }
    if let Some(target) = target {
        log.deployment = Some(target.deployment_id.clone());
        let headers = response.headers_mut();
        if let Ok(value) = HeaderValue::from_str(&target.model_group) {
            headers.insert(X_MODEL_GROUP, value);
        }
        if let Ok(value) = HeaderValue::from_str(&target.deployment_id) {
            headers.insert(X_DEPLOYMENT, value);
        }
    }
    Ok(response)
}

/// Wraps a successful response for the client: a stream is guarded, a JSON
/// body is forwarded as it arrives.
fn wrap_success(response: Response<StackBody>) -> Response<GatewayBody> {
    let (parts, body) = response.into_parts();
    if is_event_stream(&parts.headers) {
        let guard = SseGuard::new(body, OpenAiEos::default());
        let mut response = with_upstream_headers(&parts, GatewayBody::sse(guard));
        response
            .headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        response
    } else {
        with_upstream_headers(&parts, GatewayBody::forward(body))
    }
}

/// A response with the upstream's status and content type, and nothing else
/// of its headers: they may name internal hosts, set cookies or carry the
/// provider's own ids.
fn with_upstream_headers(
    parts: &http::response::Parts,
    body: GatewayBody,
) -> Response<GatewayBody> {
    let mut response = Response::new(body);
    *response.status_mut() = if parts.status.is_success() {
        parts.status
    } else {
        StatusCode::OK
    };
    let content_type = parts
        .headers
        .get(CONTENT_TYPE)
        .cloned()
        .unwrap_or(HeaderValue::from_static("application/json"));
    response.headers_mut().insert(CONTENT_TYPE, content_type);
    response
}
