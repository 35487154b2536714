//! The stack the composition tests build: Tollgate's layers à la carte
//! around a plain hyper client, each model group on its own testkit
//! upstream (loopback).

#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tollgate::breaker::{BreakerConfig, Breakers, CircuitBreakerLayer, HostKey};
use tollgate::core::extensions::ModelGroup;
use tollgate::core::{BoxError, RequestBody};
use tollgate::cost::{CostLayer, CostRecord, PriceTable, TokenPrices, Usd};
use tollgate::fallback::{FallbackConfig, FallbackLayer};
use tollgate::retry::{RetryConfig, RetryLayer};
use tollgate_testkit::{Reply, Upstream, openai};
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt};

/// The whole stack as one cloneable service.
pub type Stack = BoxCloneSyncService<Request<RequestBody>, Response<ResponseBody>, BoxError>;

/// The stack's response body, boxed.
pub type ResponseBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// What a test reads after a call: the breakers and every cost record.
#[derive(Clone)]
pub struct Handles {
    pub breakers: Breakers,
    pub records: Arc<Mutex<Vec<CostRecord>>>,
}

/// `m` costs $1 a prompt token and $2 a completion token: easy sums.
pub fn prices() -> PriceTable {
    PriceTable::empty().with_model(
        "m",
        TokenPrices::new(Usd::parse("1").unwrap(), Usd::parse("2").unwrap()),
    )
}

/// Fallback → retry → route (model group → upstream) → breaker per host →
/// cost → hyper client. `routes` maps each model group to its upstream's
/// base URL; `consecutive_failures` opens a host's breaker, which stays
/// open for `cooldown`.
pub fn stack(
    routes: &[(&str, String)],
    fallbacks: &[(&str, &str)],
    consecutive_failures: u32,
    cooldown: Duration,
) -> (Stack, Handles) {
    let routes: Arc<HashMap<String, String>> = Arc::new(
        routes
            .iter()
            .map(|(group, url)| ((*group).to_owned(), url.clone()))
            .collect(),
    );
    let mut fallback = FallbackConfig::builder();
    for (from, to) in fallbacks {
        fallback = fallback.fallbacks(*from, [*to]);
    }
    let retry = RetryConfig::builder()
        .num_retries(2)
        // Real sockets run on real time: keep the backoff tiny.
        .base_backoff(Duration::from_millis(1))
        .min_backoff(Duration::ZERO)
        .max_backoff(Duration::from_millis(2))
        .build()
        .unwrap();
    let breaker = BreakerConfig::builder()
        .consecutive_failures(consecutive_failures)
        .cooldown(cooldown)
        .max_cooldown(cooldown)
        .jitter(0.0)
        .build()
        .unwrap();
    let breaker = CircuitBreakerLayer::new(breaker).key(HostKey);
    let records = Arc::new(Mutex::new(Vec::new()));
    let sink = {
        let records = records.clone();
        move |record: CostRecord| records.lock().unwrap().push(record)
    };
    let handles = Handles {
        breakers: breaker.breakers(),
        records,
    };
    let client: Client<HttpConnector, RequestBody> =
        Client::builder(TokioExecutor::new()).build_http();
    let service = ServiceBuilder::new()
        .layer(FallbackLayer::new(fallback.build().unwrap()))
        .layer(RetryLayer::new(retry))
        .map_request(move |request: Request<RequestBody>| route(&routes, request))
        .layer(breaker)
        .layer(CostLayer::new(Arc::new(prices()), sink))
        .service(client)
        .map_response(|response| response.map(|body| body.map_err(Into::into).boxed_unsync()));
    (BoxCloneSyncService::new(service), handles)
}

/// Sends the request to its model group's upstream.
fn route(
    routes: &HashMap<String, String>,
    mut request: Request<RequestBody>,
) -> Request<RequestBody> {
    let group = request
        .extensions()
        .get::<ModelGroup>()
        .map(|group| group.0.to_string())
        .unwrap_or_default();
    let base = routes.get(&group).expect("every group has an upstream");
    *request.uri_mut() = format!("{base}/v1/chat/completions")
        .parse::<Uri>()
        .unwrap();
    request
}

/// A chat request for `group`.
pub fn chat(group: &str, stream: bool) -> Request<RequestBody> {
    let body = format!(
        r#"{{"model":"m","stream":{stream},"messages":[{{"role":"user","content":"Hi"}}]}}"#
    );
    let mut request = Request::post("http://unrouted.invalid/v1/chat/completions")
        .header("content-type", "application/json")
        .body(RequestBody::new(Bytes::from(body)))
        .unwrap();
    request
        .extensions_mut()
        .insert(ModelGroup(Arc::from(group)));
    request
}

/// Calls the stack once, reading the whole body.
pub async fn call(
    stack: &Stack,
    request: Request<RequestBody>,
) -> Result<(http::response::Parts, Bytes), BoxError> {
    let response = stack.clone().oneshot(request).await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok((parts, body))
}

/// Waits for the cost records of the last call: a record is made when its
/// body ends, which the reader may see a moment before the sink does.
pub async fn records(handles: &Handles, count: usize) -> Vec<CostRecord> {
    for _ in 0..1_000 {
        {
            let records = handles.records.lock().unwrap();
            if records.len() >= count {
                return records.clone();
            }
        }
        tokio::task::yield_now().await;
    }
    panic!(
        "expected {count} cost records, got {:?}",
        handles.records.lock().unwrap()
    );
}

/// An overloaded upstream's 503.
pub fn overloaded() -> Reply {
    Reply::json(503, openai::error_body("overloaded", "server_error", None))
}

/// Scripts a 503, then an answer that used `prompt` and `completion`
/// tokens.
pub fn push_503_then_answer(upstream: &Upstream, prompt: u64, completion: u64) {
    upstream.push(overloaded());
    upstream.push(Reply::json(200, {
        let mut body = openai::chat_completion("Hello!");
        body["usage"] = openai::usage(prompt, completion);
        body
    }));
}

/// Scripts a stream ("Hel", "lo", a usage chunk of 4 + 2 tokens, `[DONE]`)
/// sent with its exact `content-length`, usage chunk included.
pub fn push_stream_with_its_length(upstream: &Upstream) {
    let events = openai::chunks(&["Hel", "lo"]);
    let mut sse = String::new();
    for event in &events {
        sse.push_str(&format!("data: {event}\n\n"));
    }
    sse.push_str(&format!("data: {}\n\n", openai::usage_chunk(4, 2)));
    sse.push_str("data: [DONE]\n\n");
    upstream.push(
        Reply::sse()
            .header(http::header::CONTENT_LENGTH, sse.len())
            .data_each(events)
            .data(openai::usage_chunk(4, 2))
            .done(),
    );
}
