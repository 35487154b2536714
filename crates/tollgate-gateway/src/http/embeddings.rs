//! `POST /v1/embeddings` (and `/embeddings`): OpenAI's embeddings, through
//! the same stack as chat.
//!
//! The request is read as chat's is ([`ChatRequest::parse_as`] with
//! [`Operation::Embeddings`]: `input` a string, a list of strings, token ids
//! or lists of token ids; `dimensions`, `encoding_format` and every other
//! field passed on as sent), and goes to `{api_base}/embeddings` (Azure:
//! `/openai/deployments/{d}/embeddings`). The answer comes back byte for
//! byte: float vectors and base64 ones alike are never decoded or
//! re-encoded. Its `usage.prompt_tokens` is priced at the deployment's
//! `input_cost_per_token`. Only a model group whose mode is `embedding`
//! (or unstated) takes it.
//!
//! [`ChatRequest::parse_as`]: tollgate_core::ChatRequest::parse_as

use http::{Request, Response};
use tollgate_core::Operation;

use super::App;
use crate::access_log::AccessLog;
use crate::keys::Principal;
use crate::response::GatewayBody;

/// The answer, or `None` when the shutdown's grace period ended first.
pub(super) async fn handle<B>(
    app: &App,
    request: Request<B>,
    principal: Principal,
    log: &mut AccessLog,
) -> Option<Response<GatewayBody>>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let embeddings = super::chat::handle_as(app, request, principal, log, Operation::Embeddings);
    app.grace.run(embeddings).await
}
