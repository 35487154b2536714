//! `POST /v1/responses` to a deployment that serves OpenAI's Responses API
//! itself: the client's request goes as written (the deployment's model in
//! place of the group's), and the answer — JSON, or the typed events
//! `response.created` … `response.completed` — comes back untouched, marked
//! [`NativeAnswer`](tollgate_core::extensions::NativeAnswer) for
//! `tollgate-inbound` to pass on. The layers above read
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

use http::{Request, Uri};
use tollgate_core::extensions::{NativeApi, NativeRequest};
use tollgate_core::{ChatRequest, ErrorClass, Failure, RequestBody};

use crate::deadlines::Timeouts;
use crate::deployment::{Deployment, DeploymentProvider, NativeDeployment};
use crate::learned::StreamTimings;
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

/// The request that sends `native` to the deployment (one [`serves`])
/// under `timeouts`, made from `request` (the gateway's upstream request
/// for the attempt), and the client to send it with. Its answer is the
/// Responses API's own: the caller marks it
/// [`NativeAnswer`](tollgate_core::extensions::NativeAnswer).
pub(crate) fn request(
    client: UpstreamClient,
    deployment: &Deployment,
    chat: &ChatRequest,
    native: &NativeRequest,
    request: Request<RequestBody>,
    timeouts: Timeouts,
    timings: Option<&Arc<StreamTimings>>,
) -> Result<(UpstreamClient, Request<RequestBody>), Failure> {
    let target = &deployment.target;
    let model =
        crate::routing::upstream_model(&target.model_group, &target.upstream_model, chat.model());
    let (mut head, _) = request.into_parts();
    let (client, body) = match &deployment.provider {
        DeploymentProvider::Http(endpoint) => {
            head.uri = Uri::from_static("/responses");
            head.extensions.insert(Arc::clone(endpoint));
            let body = native.with_model(model).ok_or_else(|| {
                Failure::new(
                    ErrorClass::BadRequest,
                    "the request body must be a JSON object with a `model`",
                )
            })?;
            (client, body)
        }
        DeploymentProvider::Native(service) => match &**service {
            // Sent by the pooled client itself, not through the chat
            // translation: the answer is not chat.
            NativeDeployment::Azure(azure) => {
                let body = azure.protocol().responses(&mut head, native, model)?;
                (azure.get_ref().clone(), body)
            }
            _ => return Err(not_served()),
        },
        _ => return Err(not_served()),
    };
    head.extensions.insert(timeouts);
    if let Some(timings) = timings {
        head.extensions.insert(Arc::clone(timings));
    }
    Ok((client, Request::from_parts(head, RequestBody::new(body))))
}

fn not_served() -> Failure {
    Failure::new(
        ErrorClass::Internal,
        "the deployment does not serve the Responses API",
    )
}
