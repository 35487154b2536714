//! The cost layer's overhead on its hot paths.
//!
//! Run with: cargo bench -p tollgate-cost --bench cost -- --warm-up-time 1 --measurement-time 3
//!
//! Every variant drives the response future and body to their end with a
//! no-op waker: the inner service answers at once, so this measures the
//! layer, not a runtime. The request body carries its parsed view, as the
//! gateway's does from ingress.
//!
//! - `stream/*`: a 200-event answer (role chunk, 196 content chunks, finish,
//!   usage chunk, `[DONE]`), one event per frame. `passthrough` is the bare
//!   inner service; `layer_asked` is the layer when the client asked for
//!   usage (frames pass untouched, events are scanned); `layer_injected` is
//!   the layer asking for usage itself (the request is spliced, events are
//!   forwarded as slices and the usage chunk dropped). Throughput is per
//!   event.
//! - `json/*`: a complete answer, per request: the bare service, then the
//!   layer reading the body, pricing it and setting the cost header
//!   (`layer`: a short chat completion; `layer_anchor`: the anchor
//!   benchmark's 760-byte one; `layer_responses`: a Responses answer). The
//!   reading is `Reported::read`'s: `valgrind --tool=callgrind` on this
//!   binary with `--bench --profile-time 5 json/layer_anchor` gives its
//!   instructions per call.

#![allow(missing_docs)]

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::{Request, Response};
use http_body::{Body, Frame};
use tollgate_core::{ChatRequest, RequestBody};
use tollgate_cost::{CostLayer, CostRecord, PriceTable};
use tower::{Layer, Service, service_fn};

const EVENTS: usize = 200;

const STREAM_REQUEST: &[u8] =
    br#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Hello"}]}"#;
const STREAM_REQUEST_ASKED: &[u8] = br#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Hello"}]}"#;
const JSON_REQUEST: &[u8] =
    br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}"#;
const ANSWER: &[u8] = br#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hi there"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}"#;

/// The anchor's non-streaming answer, byte for byte (760 bytes, from
/// benches/anchor/nginx-mock.conf): the body the gateway's JSON figures in
/// BENCHMARKS.md are measured with.
const ANCHOR_ANSWER: &[u8] = br#"{"id":"chatcmpl-AnchorMock0000000000000000001","object":"chat.completion","created":1764201600,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! A circuit breaker stops calling a failing upstream for a cool-down period, then lets a few trial requests through before closing again. How can I help you further?","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":42,"completion_tokens":36,"total_tokens":78,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_anchor0001"}"#;
/// An OpenAI Responses answer (reference "Responses" → "The response
/// object"): usage with its details after a long `output`.
const RESPONSES_ANSWER: &[u8] = br#"{"id":"resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b","object":"response","created_at":1741476542,"status":"completed","error":null,"incomplete_details":null,"instructions":null,"max_output_tokens":null,"model":"gpt-4.1-2025-04-14","output":[{"type":"message","id":"msg_67ccd2bf17f0819081ff3bb2cf6508e60bb6a6b452d3795b","status":"completed","role":"assistant","content":[{"type":"output_text","text":"In a peaceful grove beneath a silver moon, a unicorn named Lumina discovered a hidden pool that reflected the stars.","annotations":[]}]}],"parallel_tool_calls":true,"previous_response_id":null,"reasoning":{"effort":null,"summary":null},"store":true,"temperature":1.0,"text":{"format":{"type":"text"}},"tool_choice":"auto","tools":[],"top_p":1.0,"truncation":"disabled","usage":{"input_tokens":36,"input_tokens_details":{"cached_tokens":0},"output_tokens":87,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":123},"user":null,"metadata":{}}"#;

/// The 200 events of the streamed answer, in OpenAI's shape.
fn stream_events() -> Arc<[Bytes]> {
    let head = r#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","system_fingerprint":"fp_1","choices":[{"index":0,"delta":"#;
    let mut events = vec![format!(
        "{head}{{\"role\":\"assistant\",\"content\":\"\"}},\"finish_reason\":null}}],\"usage\":null}}\n\n"
    )];
    for i in 0..EVENTS - 4 {
        events.push(format!(
            "{head}{{\"content\":\" token{i}\"}},\"finish_reason\":null}}],\"usage\":null}}\n\n"
        ));
    }
    events.push(format!(
        "{head}{{}},\"finish_reason\":\"stop\"}}],\"usage\":null}}\n\n"
    ));
    events.push(r#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":196,"total_tokens":205,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}"#.to_owned() + "\n\n");
    events.push("data: [DONE]\n\n".to_owned());
    assert_eq!(events.len(), EVENTS);
    events.into_iter().map(Bytes::from).collect()
}

/// A body whose frames are all ready at once.
struct Frames {
    frames: Arc<[Bytes]>,
    next: usize,
}

impl Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let frame = this.frames.get(this.next).cloned();
        this.next += 1;
        Poll::Ready(frame.map(|data| Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.next >= self.frames.len()
    }
}

fn request(body: &'static [u8]) -> Request<RequestBody> {
    let Ok(chat) = ChatRequest::parse(Bytes::from_static(body)) else {
        unreachable!("the bench's request parses")
    };
    Request::new(RequestBody::from_chat(chat))
}

/// An upstream answering `frames` at once, with `content_type`.
fn upstream(
    frames: Arc<[Bytes]>,
    content_type: &'static str,
) -> impl Service<
    Request<RequestBody>,
    Response = Response<Frames>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Frames>, Infallible>>,
> + Clone {
    service_fn(move |_request: Request<RequestBody>| {
        let frames = frames.clone();
        std::future::ready({
            let mut response = Response::new(Frames { frames, next: 0 });
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(content_type),
            );
            Ok(response)
        })
    })
}

/// Calls `service` and reads the whole body; returns the bytes read.
fn drive<S, B>(service: &mut S, request: Request<RequestBody>) -> usize
where
    S: Service<Request<RequestBody>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    let Poll::Ready(Ok(())) = service.poll_ready(&mut cx) else {
        unreachable!("the bench's services are always ready")
    };
    let future = pin!(service.call(request));
    let Poll::Ready(Ok(response)) = future.poll(&mut cx) else {
        unreachable!("the bench's services answer at once")
    };
    let mut body = pin!(response.into_body());
    let mut read = 0;
    while let Poll::Ready(Some(frame)) = body.as_mut().poll_frame(&mut cx) {
        if let Ok(data) = frame.map(|f| f.into_data()) {
            read += data.map_or(0, |d| d.len());
        }
    }
    read
}

fn layer() -> CostLayer {
    let sink = |record: CostRecord| {
        black_box(record);
    };
    CostLayer::new(Arc::new(PriceTable::builtin()), sink)
}

fn bench_stream(c: &mut Criterion) {
    let events = stream_events();
    let mut group = c.benchmark_group("stream");
    group.throughput(Throughput::Elements(EVENTS as u64));

    let mut bare = upstream(events.clone(), "text/event-stream");
    let asked = request(STREAM_REQUEST_ASKED);
    group.bench_function("passthrough", |b| {
        b.iter(|| black_box(drive(&mut bare, asked.clone())))
    });

    let mut layered = layer().layer(upstream(events.clone(), "text/event-stream"));
    group.bench_function("layer_asked", |b| {
        b.iter(|| black_box(drive(&mut layered, asked.clone())))
    });

    let injected = request(STREAM_REQUEST);
    let whole: usize = events.iter().map(Bytes::len).sum();
    assert!(drive(&mut layered, injected.clone()) < whole);
    group.bench_function("layer_injected", |b| {
        b.iter(|| black_box(drive(&mut layered, injected.clone())))
    });
    group.finish();
}

fn bench_json(c: &mut Criterion) {
    let answer: Arc<[Bytes]> = Arc::from(vec![Bytes::from_static(ANSWER)]);
    let mut group = c.benchmark_group("json");
    group.throughput(Throughput::Elements(1));
    let json = request(JSON_REQUEST);

    let mut bare = upstream(answer.clone(), "application/json");
    group.bench_function("passthrough", |b| {
        b.iter(|| black_box(drive(&mut bare, json.clone())))
    });

    let mut layered = layer().layer(upstream(answer, "application/json"));
    group.bench_function("layer", |b| {
        b.iter(|| black_box(drive(&mut layered, json.clone())))
    });

    for (name, body) in [
        ("layer_anchor", ANCHOR_ANSWER),
        ("layer_responses", RESPONSES_ANSWER),
    ] {
        let answer: Arc<[Bytes]> = Arc::from(vec![Bytes::from_static(body)]);
        let mut layered = layer().layer(upstream(answer, "application/json"));
        group.bench_function(name, |b| {
            b.iter(|| black_box(drive(&mut layered, json.clone())))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_stream, bench_json);
criterion_main!(benches);
