//! The layer changes a body only when it strips the usage chunk it asked
//! for; then the upstream's `content-length` no longer holds and must go.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, header};
use http_body::Body as _;
use http_body_util::{BodyExt, Full};
use tollgate_core::{BoxError, RequestBody};
use tollgate_cost::{CostLayer, PriceTable};
use tower::{Layer, ServiceExt, service_fn};

const SSE: &str = concat!(
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n",
    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\n",
    "data: [DONE]\n\n",
);

/// An upstream that answers every request with [`SSE`] and its exact length.
fn upstream() -> impl tower::Service<
    Request<RequestBody>,
    Response = Response<Full<Bytes>>,
    Error = BoxError,
    Future = impl Send,
> + Clone {
    service_fn(|_request: Request<RequestBody>| async {
        let response = Response::builder()
            .header(header::CONTENT_TYPE, "text/event-stream")
            .header(header::CONTENT_LENGTH, SSE.len())
            .body(Full::new(Bytes::from_static(SSE.as_bytes())))
            .unwrap();
        Ok::<_, BoxError>(response)
    })
}

fn request(json: &'static str) -> Request<RequestBody> {
    Request::post("/v1/chat/completions")
        .body(RequestBody::new(Bytes::from_static(json.as_bytes())))
        .unwrap()
}

#[tokio::test]
async fn a_stripped_stream_loses_the_upstreams_content_length() {
    let service = CostLayer::new(Arc::new(PriceTable::empty()), |_| {}).layer(upstream());
    // The client did not ask for usage: the layer asks, and strips it.
    let response = service
        .oneshot(request(
            r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"Hi"}]}"#,
        ))
        .await
        .unwrap();
    assert_eq!(
        response.headers().get(header::CONTENT_LENGTH),
        None,
        "the length of a body the layer shortened"
    );
    assert_eq!(response.body().size_hint().exact(), None);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(!body.windows(7).any(|w| w == b"\"usage\""), "{body:?}");
    assert!(body.ends_with(b"data: [DONE]\n\n"));
}

#[tokio::test]
async fn an_untouched_stream_keeps_it() {
    let service = CostLayer::new(Arc::new(PriceTable::empty()), |_| {}).layer(upstream());
    // The client asked for usage itself: the body goes through as it came.
    let response = service
        .oneshot(request(
            r#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#,
        ))
        .await
        .unwrap();
    assert_eq!(
        response.headers()[header::CONTENT_LENGTH],
        SSE.len().to_string().as_str()
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, SSE.as_bytes());
}
