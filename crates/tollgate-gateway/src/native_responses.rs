//! `POST /v1/responses` to a deployment that serves OpenAI's Responses API
//! itself: the client's request goes as written (the deployment's model in
//! place of the group's), and the answer — JSON, or the typed events
//! `response.created` … `response.completed` — comes back untouched, marked
//! [`NativeAnswer`] for `tollgate-inbound` to pass on. The layers above read
//! it as they read chat: the classifier knows a Responses stream's last
//! event and its `error` / `response.failed`, the cascade commits at its
//! first output, cost reads its `usage`.
//!
//! Which deployments: `openai/` (OpenAI's `POST /v1/responses`, API
//! reference "Responses"), at whatever `api_base` they name, as LiteLLM
//! sends them; `azure/` (the resource's Responses API, see
//! [`Azure::responses`](tollgate_providers::azure::Azure::responses)). Other
//! OpenAI-compatible prefixes go through the chat bridge: their providers
//! document chat completions, not the Responses API.

use std::sync::Arc;

use http::{Request, Response, Uri};
use tollgate_core::extensions::{NativeAnswer, NativeApi, NativeRequest};
use tollgate_core::{ChatRequest, ErrorClass, Failure, RequestBody};
use tower_service::Service;

use crate::deadlines::Timeouts;
use crate::deployment::{Deployment, DeploymentProvider, NativeDeployment};
use crate::learned::StreamTimings;
use crate::provider::{ProviderBody, reject_errors, upstream_request};
use crate::upstream::UpstreamClient;

/// Whether `deployment` takes `native`, a Responses request as written; a
/// request that is not one, or one a continuation has changed, goes the
/// usual way.
pub(crate) fn serves(deployment: &Deployment, chat: &ChatRequest, native: &NativeRequest) -> bool {
    native.api == NativeApi::OpenAiResponses
        && native.message_count == chat.message_count()
        && match &deployment.provider {
            DeploymentProvider::Http(_) => deployment.openai_responses,
            DeploymentProvider::Native(native) => matches!(**native, NativeDeployment::Azure(_)),
            _ => false,
        }
}

/// Sends `native` to the deployment (one [`serves`]) under `timeouts`; its
/// answer, marked [`NativeAnswer`], or the classified failure.
pub(crate) async fn call(
    mut client: UpstreamClient,
    deployment: &Deployment,
    chat: &ChatRequest,
    native: &NativeRequest,
    timeouts: Timeouts,
    timings: Option<&Arc<StreamTimings>>,
) -> Result<Response<ProviderBody>, Failure> {
    let target = &deployment.target;
    let model =
        crate::routing::upstream_model(&target.model_group, &target.upstream_model, chat.model());
    // The gateway's own headers and the target, as any upstream request.
    let request = upstream_request(deployment, chat)?;
    let (mut head, _) = request.into_parts();
    let body = match &deployment.provider {
        DeploymentProvider::Http(endpoint) => {
            head.uri = Uri::from_static("/responses");
            head.extensions.insert(Arc::clone(endpoint));
            native.with_model(model).ok_or_else(|| {
                Failure::new(
                    ErrorClass::BadRequest,
                    "the request body must be a JSON object with a `model`",
                )
            })?
        }
        DeploymentProvider::Native(service) => match &**service {
            NativeDeployment::Azure(azure) => {
                let body = azure.protocol().responses(&mut head, native, model)?;
                // Sent by the pooled client itself: the answer is not chat.
                client = azure.get_ref().clone();
                body
            }
            _ => return Err(not_served()),
        },
        _ => return Err(not_served()),
    };
    head.extensions.insert(timeouts);
    if let Some(timings) = timings {
        head.extensions.insert(Arc::clone(timings));
    }
    let request = Request::from_parts(head, RequestBody::new(body));
    let response = client
        .call(request)
        .await
        .map_err(|error| Failure::from_error(&*error))?;
    let mut response = reject_errors(response.map(|body| ProviderBody::Http { body })).await?;
    response
        .extensions_mut()
        .insert(NativeAnswer(NativeApi::OpenAiResponses));
    Ok(response)
}

fn not_served() -> Failure {
    Failure::new(
        ErrorClass::Internal,
        "the deployment does not serve the Responses API",
    )
}
