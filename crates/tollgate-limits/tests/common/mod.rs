//! Helpers shared by the layer tests: a counting upstream that reports
//! usage, and requests that carry limits.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use tollgate_core::extensions::UsageReport;
use tollgate_core::{BoxError, ChatRequest, RequestBody};
use tollgate_limits::{Clock, KeyLimits, RateLimitLayer, RateLimited, ResponseBody, Store};
use tower::util::BoxCloneService;
use tower::{Layer, ServiceExt, service_fn};

pub type Limited =
    BoxCloneService<Request<RequestBody>, Response<ResponseBody<Full<Bytes>>>, BoxError>;

/// What the fake upstream does: counts calls and reports usage into the
/// request's `UsageReport`, as the gateway's cost glue would.
#[derive(Default)]
pub struct Upstream {
    calls: AtomicUsize,
    usage: Mutex<(Option<u64>, Option<u64>)>,
}

impl Upstream {
    /// Calls that reached the upstream.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Each later call reports `tokens` and `picos` (`None`: nothing).
    pub fn report(&self, tokens: Option<u64>, picos: Option<u64>) {
        *self.usage.lock().unwrap() = (tokens, picos);
    }
}

/// The layer over the fake upstream.
pub fn limited(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> (Limited, Arc<Upstream>) {
    let upstream = Arc::new(Upstream::default());
    let seen = upstream.clone();
    let inner = service_fn(move |request: Request<RequestBody>| {
        let upstream = seen.clone();
        async move {
            upstream.calls.fetch_add(1, Ordering::SeqCst);
            let (tokens, picos) = *upstream.usage.lock().unwrap();
            if let Some(report) = request.extensions().get::<Arc<UsageReport>>() {
                if let Some(tokens) = tokens {
                    report.add_tokens(tokens);
                }
                if let Some(picos) = picos {
                    report.add_picos(picos);
                }
            }
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"{}"))))
        }
    });
    let layer = RateLimitLayer::new(store).clock(clock);
    (BoxCloneService::new(layer.layer(inner)), upstream)
}

/// A request for the key with `limits`.
pub fn request(limits: &Arc<KeyLimits>) -> Request<RequestBody> {
    let mut request = Request::new(RequestBody::default());
    request.extensions_mut().insert(limits.clone());
    request
}

/// A chat request for the key with `limits`, asking for `max_tokens`.
pub fn chat(limits: &Arc<KeyLimits>, max_tokens: Option<u64>) -> Request<RequestBody> {
    let body = match max_tokens {
        Some(max) => format!(
            r#"{{"model":"m","max_tokens":{max},"messages":[{{"role":"user","content":"hi"}}]}}"#
        ),
        None => r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#.to_owned(),
    };
    // The request carries its parsed view, as the gateway's does.
    let chat = ChatRequest::parse(Bytes::from(body)).unwrap();
    let mut request = Request::new(RequestBody::from_chat(chat));
    request.extensions_mut().insert(limits.clone());
    request
}

/// Sends a request; the response, with its body still unread.
pub async fn send(
    service: &Limited,
    request: Request<RequestBody>,
) -> Result<Response<ResponseBody<Full<Bytes>>>, BoxError> {
    service.clone().oneshot(request).await
}

/// Sends a request and reads its body to the end (settling it).
pub async fn send_and_finish(
    service: &Limited,
    request: Request<RequestBody>,
) -> Result<(), BoxError> {
    use http_body_util::BodyExt;
    let response = send(service, request).await?;
    response
        .into_body()
        .collect()
        .await
        .map(drop)
        .map_err(Into::into)
}

/// The `RateLimited` a rejected call returned.
pub fn rejection(result: Result<impl Sized, BoxError>) -> RateLimited {
    match result {
        Ok(_) => panic!("the request was admitted"),
        Err(error) => RateLimited::find(&*error)
            .unwrap_or_else(|| panic!("not a RateLimited: {error}"))
            .clone(),
    }
}
