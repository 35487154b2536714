//! The service stack a chat request goes through, below the HTTP edge.
//!
//! ```text
//! PickDeployment   one deployment of the model group per attempt
//!   ProviderService   HTTP upstream or mock; error statuses become Err(Failure)
//! ```

use crate::pick::PickDeployment;
use crate::provider::{ProviderBody, ProviderService};
use crate::upstream::UpstreamClient;

/// The stack's service.
pub(crate) type Stack = PickDeployment<ProviderService>;

/// The body of the stack's responses.
pub(crate) type StackBody = ProviderBody;

pub(crate) fn build(client: UpstreamClient) -> Stack {
    PickDeployment::new(ProviderService::new(client))
}
