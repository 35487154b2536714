//! `POST /v1/chat/completions`.

use std::sync::Arc;

use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, USER_AGENT};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Limited};
use tollgate_core::classify::{ClassifyResponse, OpenAiClassifier, Verdict};
use tollgate_core::{ChatRequest, ErrorClass, Failure, RequestBody, read_body_limited};
use tower_service::Service;

use crate::access_log::AccessLog;
use crate::app::{App, Deployment, DeploymentProvider};
use crate::provider::ProviderBody;
use crate::response::GatewayBody;
use crate::stream::SseGuard;
use crate::upstream::TimedBody;

/// The most of an upstream error body read to classify it.
const MAX_ERROR_BODY: usize = 64 * 1024;

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
        Err(failure) => {
            log.class = Some(failure.class());
            failure.to_response()
        }
    }
}

async fn forward<B>(
    app: &App,
    request: Request<B>,
    log: &mut AccessLog,
) -> Result<Response<GatewayBody>, Failure>
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
    let bytes = read_body_limited(body, content_length, app.max_body).await?;
    let chat = ChatRequest::parse(bytes)?;
    log.stream = chat.stream();
    let group = app.groups.get(chat.model()).ok_or_else(|| {
        Failure::new(
            ErrorClass::ModelNotFound,
            format!(
                "The model `{}` does not exist or you do not have access to it.",
                tollgate_core::sanitize_message(chat.model())
            ),
        )
        .with_param("model")
    })?;
    let deployment = group.pick();
    log.model_group = Some(deployment.target.model_group.clone());
    log.deployment = Some(deployment.target.deployment_id.clone());

    let response = call_provider(app, deployment, &chat).await?;
    let mut response = classify_and_wrap(response).await?;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&deployment.target.model_group) {
        headers.insert(X_MODEL_GROUP, value);
    }
    if let Ok(value) = HeaderValue::from_str(&deployment.target.deployment_id) {
        headers.insert(X_DEPLOYMENT, value);
    }
    Ok(response)
}

/// Sends the request to the deployment's provider, under its deadlines.
async fn call_provider(
    app: &App,
    deployment: &Deployment,
    chat: &ChatRequest,
) -> Result<Response<ProviderBody>, Failure> {
    let timeouts = if chat.stream() {
        deployment.stream_timeouts
    } else {
        deployment.timeouts
    };
    match &deployment.provider {
        DeploymentProvider::Http(endpoint) => {
            let body = RequestBody::new(chat.with_model(&deployment.target.upstream_model));
            let mut request = Request::post(Uri::from_static("/chat/completions"))
                .header(CONTENT_TYPE, "application/json")
                .header(
                    ACCEPT,
                    if chat.stream() {
                        "text/event-stream"
                    } else {
                        "application/json"
                    },
                )
                .header(USER_AGENT, concat!("tollgate/", env!("CARGO_PKG_VERSION")))
                .body(body)
                .map_err(|_| {
                    Failure::new(ErrorClass::Internal, "could not build the upstream request")
                })?;
            request.extensions_mut().insert(Arc::clone(endpoint));
            request.extensions_mut().insert(timeouts);
            request.extensions_mut().insert(deployment.target.clone());
            let response = app
                .client
                .clone()
                .call(request)
                .await
                .map_err(|error| Failure::from_error(&*error))?;
            Ok(response.map(|body| ProviderBody::Http { body }))
        }
        DeploymentProvider::Mock(mock) => {
            let start = tokio::time::Instant::now();
            let first_byte = timeouts.first_byte.unwrap_or(crate::app::DEFAULT_TIMEOUT);
            let response = tokio::time::timeout(first_byte, mock.respond(chat))
                .await
                .map_err(|_| Failure::timeout(tollgate_core::TimeoutKind::FirstByte))?;
            let total_deadline = timeouts.total.map(|total| start + total);
            Ok(response.map(|body| ProviderBody::Mock {
                body: TimedBody::new(body, timeouts.stream_idle, total_deadline),
            }))
        }
    }
}

/// Classifies the provider's response at its head: an error becomes an
/// OpenAI-shaped error response (with a sanitised message), a stream is
/// guarded, a JSON body is forwarded as it arrives.
async fn classify_and_wrap(
    response: Response<ProviderBody>,
) -> Result<Response<GatewayBody>, Failure> {
    let classifier = OpenAiClassifier::new();
    match classifier.classify_response(&response) {
        Verdict::Failure(at_head) => {
            let (parts, body) = response.into_parts();
            // The error body is small; read a bounded prefix to refine the
            // class (context window, content policy...). A body that will not
            // come leaves the verdict from the head.
            let failure = match Limited::new(body, MAX_ERROR_BODY).collect().await {
                Ok(collected) => classifier.classify_error_body(
                    parts.status,
                    &parts.headers,
                    &collected.to_bytes(),
                ),
                Err(_) => at_head,
            };
            Err(failure)
        }
        Verdict::Success => {
            let (parts, body) = response.into_parts();
            Ok(with_upstream_headers(&parts, GatewayBody::forward(body)))
        }
        Verdict::Watch(eos) => {
            let (parts, body) = response.into_parts();
            let mut response =
                with_upstream_headers(&parts, GatewayBody::sse(SseGuard::new(body, eos)));
            response
                .headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            Ok(response)
        }
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
