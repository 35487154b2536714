//! Run the offline demo gateway, then this example:
//!
//!     cargo run -p tollgate-gateway -- --config examples/demo.yaml --host 127.0.0.1
//!     cargo run --example stack_hyper [-- http://127.0.0.1:4000/v1]
//!
//! Four Tollgate layers à la carte on a real hyper client: retry, circuit
//! breaker, cost and the OpenRouter normalizer (which makes any
//! OpenAI-compatible base URL — OpenRouter's, or here the demo gateway's —
//! answer in OpenAI's shape, failures as classified errors). It asks the
//! demo's `demo` group (priced here at $2.50 / $10 per million tokens, as
//! in demo.yaml), then `demo-flaky` (every second attempt a 503, which the
//! demo gateway's own retry hides), then `demo-down` three times: the first
//! call is retried three times and opens the breaker (one for the whole
//! client, the layer's default key), the next two are rejected at once —
//! the retry does not wait for the open breaker. It prints what each call
//! cost and how it ended.

use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tollgate::breaker::{BreakerConfig, CircuitBreakerLayer};
use tollgate::core::{BoxError, Failure, RequestBody};
use tollgate::cost::{CostLayer, CostRecord, PriceTable, TokenPrices, Usd};
use tollgate::openrouter::{OpenRouterConfig, OpenRouterLayer};
use tollgate::retry::RetryLayer;
use tower::{ServiceBuilder, ServiceExt};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let base = std::env::args()
        .nth(1)
        .unwrap_or("http://127.0.0.1:4000/v1".into());
    let per_token = |usd| Usd::parse(usd).expect("a price");
    let prices = PriceTable::empty()
        .with_model(
            "demo",
            TokenPrices::new(per_token("2.5e-6"), per_token("1e-5")),
        )
        .with_model(
            "demo-flaky",
            TokenPrices::new(per_token("2.5e-6"), per_token("1e-5")),
        );
    let breaker = BreakerConfig::builder().consecutive_failures(3).build()?;

    // The stack: ten lines.
    let client = ServiceBuilder::new()
        .layer(RetryLayer::default())
        .layer(CircuitBreakerLayer::new(breaker))
        .layer(CostLayer::new(Arc::new(prices), |record: CostRecord| {
            println!("    cost record: {:?}, {:?}", record.outcome, record.cost);
        }))
        .layer(OpenRouterLayer::new(
            OpenRouterConfig::new().api_base(base).build()?,
        ))
        .service(Client::builder(TokioExecutor::new()).build_http::<RequestBody>());

    for model in ["demo", "demo-flaky", "demo-down", "demo-down", "demo-down"] {
        println!("{model}:");
        let body =
            format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"Hi"}}]}}"#);
        let request = Request::post("/chat/completions")
            .header("content-type", "application/json")
            .body(RequestBody::new(Bytes::from(body)))?;
        match client.clone().oneshot(request).await {
            Ok(response) => {
                let (head, body) = response.into_parts();
                let body = body.collect().await?.to_bytes();
                let json: serde_json::Value = serde_json::from_slice(&body)?;
                println!(
                    "    {} after {} retries, cost ${}: {}",
                    head.status,
                    head.headers["x-tollgate-attempted-retries"].to_str()?,
                    head.headers
                        .get("x-tollgate-response-cost")
                        .map_or("?", |v| v.to_str().unwrap_or("?")),
                    json["choices"][0]["message"]["content"]
                );
            }
            Err(error) => {
                let failure = Failure::from_error(&*error);
                println!("    failed: {} ({error})", failure.class());
            }
        }
    }
    Ok(())
}
