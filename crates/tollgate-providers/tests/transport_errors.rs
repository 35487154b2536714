//! An inner service that fails without an answer (connect, reset) and
//! without a classification: the layer pairs its error with one.

#![cfg(feature = "anthropic")]

mod common;

use std::error::Error as _;
use std::io;

use common::{call, chat_request};
use serde_json::json;
use tollgate_core::{BoxError, Failure, RequestBody};
use tollgate_providers::anthropic::Anthropic;
use tollgate_providers::{ProviderConfig, UpstreamError};
use tower::Layer;

fn refused() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionRefused,
        "connection refused by 127.0.0.1:9",
    )
}

#[tokio::test]
async fn an_unclassified_inner_error_is_paired_with_its_failure() {
    let upstream = tower::service_fn(|_: http::Request<RequestBody>| async {
        Err::<http::Response<RequestBody>, BoxError>(Box::new(refused()))
    });
    let service = Anthropic::layer(&ProviderConfig::new())
        .unwrap()
        .layer(upstream);
    let request =
        chat_request(&json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}]}));

    let error = call(service, request).await.expect_err("no answer");
    let upstream_error = error
        .downcast_ref::<UpstreamError>()
        .expect("an UpstreamError");
    // The classification is the one the error itself gives, found the way
    // the other layers look for it.
    let expected = Failure::from_error(&refused());
    assert_eq!(upstream_error.failure().class(), expected.class());
    let found = Failure::find(&*error).expect("the failure is its source");
    assert_eq!(found.class(), expected.class());
    assert!(upstream_error.source().is_some());
    // The original error stays for the logs, and in the message.
    assert_eq!(upstream_error.cause().to_string(), refused().to_string());
    let message = upstream_error.to_string();
    assert!(
        message.contains("connection refused by 127.0.0.1:9"),
        "{message}"
    );
    assert!(message.contains(&expected.to_string()), "{message}");
}
