//! A stream through fallback → retry → breaker → cost is split into events
//! once: the innermost watcher (cost) cuts the upstream's chunks into whole
//! events, one per frame, and publishes each in the response's
//! `SharedEvents`; the layers above take every frame whole instead of
//! splitting it again. The bytes the client gets are the upstream's.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::{Future, ready};
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame};
use tollgate::breaker::CircuitBreakerLayer;
use tollgate::core::classify::{Classified, OpenAiClassifier};
use tollgate::core::extensions::ModelGroup;
use tollgate::core::sse::SharedEvents;
use tollgate::core::{ChatRequest, RequestBody};
use tollgate::cost::{CostLayer, PriceTable, TokenPrices, Usd};
use tollgate::fallback::FallbackLayer;
use tollgate::retry::RetryLayer;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

/// Frames handed out one by one, at once.
struct Frames(VecDeque<Bytes>);

impl Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|data| Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }
}

fn chunk(content: &str) -> String {
    format!(
        "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{content}\"}}}}]}}\n\n"
    )
}

const USAGE: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":3,\"total_tokens\":12}}\n\n";
const FINISH: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";

#[test]
fn a_stream_through_the_stack_is_split_once_and_arrives_unchanged() {
    let body = br#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Hi"}]}"#;
    through_the_stack(body, false);
}

#[test]
fn the_usage_chunk_the_cost_layer_asked_for_is_dropped_and_the_rest_still_shared() {
    let body = br#"{"model":"m","stream":true,"messages":[{"role":"user","content":"Hi"}]}"#;
    through_the_stack(body, true);
}

fn through_the_stack(body: &'static [u8], stripped: bool) {
    // Chunks as a network cuts them: several events in one, events across
    // two, a keep-alive comment.
    let stream = [
        chunk("Hel"),
        ": OPENROUTER PROCESSING\n\n".to_owned(),
        chunk("lo"),
        chunk(" there"),
        FINISH.to_owned(),
        USAGE.to_owned(),
        "data: [DONE]\n\n".to_owned(),
    ]
    .concat();
    let cuts = [0, 40, 300, 301, 420, 600, stream.len() - 5, stream.len()];
    let chunks: VecDeque<Bytes> = cuts
        .windows(2)
        .map(|w| Bytes::copy_from_slice(&stream.as_bytes()[w[0]..w[1]]))
        .collect();
    let upstream = service_fn(move |_request: Request<RequestBody>| {
        let mut response = Response::new(Frames(chunks.clone()));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/event-stream"),
        );
        ready(Ok::<_, Infallible>(response))
    });
    let records = Arc::new(Mutex::new(Vec::new()));
    let sink = records.clone();
    let prices = PriceTable::empty().with_model(
        "m",
        TokenPrices::new(Usd::from_picos(1_000_000), Usd::from_picos(2_000_000)),
    );
    let mut stack = ServiceBuilder::new()
        .layer(FallbackLayer::default())
        .layer(RetryLayer::default())
        .layer(CircuitBreakerLayer::default())
        .layer(CostLayer::new(Arc::new(prices), move |record| {
            sink.lock().unwrap().push(record);
        }))
        .service(upstream);

    let mut request = Request::post("/v1/chat/completions")
        .body(RequestBody::new(Bytes::from_static(body)))
        .unwrap();
    request.extensions_mut().insert(ModelGroup(Arc::from("m")));
    let parsed = ChatRequest::parse(Bytes::from_static(body)).unwrap();
    request.extensions_mut().insert(Arc::new(parsed));

    let mut cx = Context::from_waker(Waker::noop());
    let Poll::Ready(Ok(service)) = pin!(stack.ready()).poll(&mut cx) else {
        panic!("the stack is ready at once");
    };
    let Poll::Ready(Ok(response)) = pin!(service.call(request)).poll(&mut cx) else {
        panic!("the in-memory upstream answers at once");
    };
    // The head was classified once, by the innermost layer, for the others.
    assert!(
        response
            .extensions()
            .get::<Classified<OpenAiClassifier>>()
            .is_some()
    );
    let shared = response
        .extensions()
        .get::<SharedEvents>()
        .cloned()
        .expect("the layers share the stream's events");
    let mut body = pin!(response.into_body());
    let mut received = Vec::new();
    while let Poll::Ready(Some(frame)) = body.as_mut().poll_frame(&mut cx) {
        let data = frame.unwrap().into_data().unwrap();
        // Each frame is one whole event, published for a layer above.
        assert!(shared.is_published(&data), "{data:?}");
        assert!(data.ends_with(b"\n\n"), "{data:?}");
        received.extend_from_slice(&data);
    }
    let expected = if stripped {
        stream.replace(USAGE, "")
    } else {
        stream.clone()
    };
    assert_eq!(String::from_utf8(received).unwrap(), expected);
    let records = records.lock().unwrap();
    assert_eq!(records.len(), 1);
    let usage = records[0].usage.as_ref().expect("the usage chunk was read");
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (9, 3));
    assert!(!usage.estimated);
}
