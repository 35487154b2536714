//! The cost layer fills core's `UsageReport` when the request carries one:
//! the one report the rate limits settle on.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::{BodyExt, Full};
use tollgate_core::extensions::UsageReport;
use tollgate_core::{BoxError, RequestBody};
use tollgate_cost::{CostLayer, PriceTable, TokenPrices, Usd};
use tower::{Layer, ServiceExt, service_fn};

const ANSWER: &str = r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#;

async fn call(model: &str, report: &Arc<UsageReport>) {
    let upstream = service_fn(|_request: Request<RequestBody>| async {
        let response = Response::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from_static(ANSWER.as_bytes())))
            .unwrap();
        Ok::<_, BoxError>(response)
    });
    let prices = PriceTable::empty().with_model(
        "priced",
        TokenPrices::new(Usd::from_picos(10), Usd::from_picos(100)),
    );
    let service = CostLayer::new(Arc::new(prices), |_| {}).layer(upstream);
    let body = format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"Hi"}}]}}"#);
    let mut request = Request::post("/v1/chat/completions")
        .body(RequestBody::new(Bytes::from(body)))
        .unwrap();
    request.extensions_mut().insert(report.clone());
    let response = service.oneshot(request).await.unwrap();
    response.into_body().collect().await.unwrap();
}

#[tokio::test]
async fn each_attempt_adds_its_tokens_and_cost() {
    let report = Arc::new(UsageReport::new());
    call("priced", &report).await;
    call("priced", &report).await;
    // Two attempts of 3 × 10 + 2 × 100 pico-dollars, 5 tokens each.
    assert_eq!(report.tokens(), Some(10));
    assert_eq!(report.picos(), Some(460));
}

#[tokio::test]
async fn an_unpriced_attempt_makes_the_cost_unknown() {
    let report = Arc::new(UsageReport::new());
    call("priced", &report).await;
    call("unpriced", &report).await;
    assert_eq!(report.tokens(), Some(10));
    assert_eq!(report.picos(), None, "a partial sum is not the cost");
}
