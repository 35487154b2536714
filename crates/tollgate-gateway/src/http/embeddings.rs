//! `POST /v1/embeddings` (and `/embeddings`): OpenAI's embeddings, through
//! the same stack as chat.
//!
//! The request is read as chat's is ([`ChatRequest::parse_as`] with
//! [`Operation::Embeddings`]: `input` a string, a list of strings, token ids
//! or lists of token ids; `dimensions`, `encoding_format` and every other
//! field passed on as sent), and goes to `{api_base}/embeddings` (Azure:
//! `/openai/deployments/{d}/embeddings`). The answer comes back byte for
//! byte: float vectors and base64 ones alike are never decoded or
//! re-encoded. `gemini/`, `vertex_ai/` and `bedrock/` deployments embed
//! through their own APIs instead (`tollgate-providers`' `Embeddings`,
//! text inputs only), answered in OpenAI's shape. Its `usage.prompt_tokens` is priced at the deployment's
//! `input_cost_per_token`. Only a model group whose mode is `embedding`
//! (or unstated) takes it.
//!
//! [`ChatRequest::parse_as`]: tollgate_core::ChatRequest::parse_as

use tollgate_core::Operation;

/// What the route asks of the stack ([`chat::handle`](super::chat::handle)
/// walks it, under the shutdown's grace period, as chat does).
pub(super) const OPERATION: Operation = Operation::Embeddings;
