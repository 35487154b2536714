//! The upstream client: a pooled hyper client as a tower `Service`.
//!
//! Each request names its deployment through an [`Arc<Endpoint>`] request
//! extension (base URL, credentials, extra headers), or carries an absolute
//! URI, and may carry [`Timeouts`](crate::deadlines::Timeouts); the client joins the base URL with the
//! request's path, sends
//! it over a pooled HTTP/1.1 or HTTP/2 (ALPN) connection with TCP_NODELAY, and
//! returns the response with a [`TimedBody`]. Every error it returns is a
//! classified [`Failure`](tollgate_core::Failure).
//!
//! [`Arc<Endpoint>`]: Endpoint

mod body;
mod client;
mod connector;
mod endpoint;
mod future;

pub use body::TimedBody;
pub use client::{ClientConfig, UpstreamClient, use_pool};
pub use connector::Dial;
pub(crate) use endpoint::gateway_headers;
pub use endpoint::{Endpoint, InvalidBaseUrl};
pub use future::ResponseFuture;
