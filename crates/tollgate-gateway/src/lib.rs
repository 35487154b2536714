//! placeholder
pub mod config;
pub mod mock;
pub mod upstream;

mod access_log;
mod app;
mod auth;
mod chat;
mod provider;
mod request_id;
mod response;
mod server;
mod stream;

pub use app::{
    BuildError, DEFAULT_MAX_REQUEST_BYTES, DEFAULT_STREAM_IDLE_TIMEOUT, DEFAULT_STREAM_TIMEOUT,
    DEFAULT_TIMEOUT, Gateway,
};
pub use response::GatewayBody;
pub use server::{DEFAULT_GRACE_PERIOD, bind, serve};
