//! The translation layers' overhead over a no-op upstream `service_fn`,
//! which is measured alone as the baseline in the same run:
//!
//! - `request/*`: one non-streaming call — a 1 KB OpenAI chat request (a
//!   system prompt, three turns, one tool) translated and sent, the
//!   provider's answer translated back and drained;
//! - `stream/*`: a 400-delta answer, one event per chunk (as tokens
//!   arrive), drained through the layer; reported as events/s (whose
//!   inverse is the time per event).
//!
//! Run with: `cargo bench -p tollgate-providers -- --warm-up-time 1 --measurement-time 3`

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::{HeaderValue, Request, Response, header};
use http_body::{Body, Frame};
use serde_json::json;
use tollgate_providers::ProviderConfig;
use tollgate_providers::ProviderLayer;
use tollgate_providers::anthropic::Anthropic;
use tollgate_providers::azure::Azure;
use tollgate_providers::bedrock::Bedrock;
use tollgate_providers::gemini::Gemini;
use tollgate_providers::vertex::Vertex;
use tollgate_testkit::bedrock as bedrock_fake;
use tollgate_testkit::{anthropic as fake, gemini, openai};
use tower::{Layer, Service, service_fn};

/// Content deltas in the streamed answer.
const DELTAS: usize = 400;

/// An in-memory body: one frame per chunk.
struct Chunks(VecDeque<Bytes>);

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(
            self.get_mut()
                .0
                .pop_front()
                .map(|chunk| Ok(Frame::data(chunk))),
        )
    }
}

/// Everything here is in memory: one poll finishes it.
fn now<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => unreachable!("an in-memory future was pending"),
    }
}

/// Drains a body; returns the bytes it yielded.
fn drain<B: Body<Data = Bytes>>(body: B) -> usize
where
    B::Error: std::fmt::Debug,
{
    let mut body = pin!(body);
    let mut total = 0;
    while let Some(frame) = now(std::future::poll_fn(|cx| body.as_mut().poll_frame(cx))) {
        if let Ok(data) = frame.unwrap().into_data() {
            total += black_box(data).len();
        }
    }
    total
}

fn chat_request(stream: bool) -> Bytes {
    Bytes::from(
        json!({
            "model": "claude-sonnet-4-5",
            "stream": stream,
            "max_tokens": 1024,
            "temperature": 0.2,
            "messages": [
                {"role": "system", "content": "You are a helpful assistant for a travel agency. Answer briefly and cite the tool results you use."},
                {"role": "user", "content": "What is the weather in Paris tomorrow, and should I bring an umbrella?"},
                {"role": "assistant", "content": "Let me check the forecast for Paris."},
                {"role": "user", "content": "Also tell me about Rome, I am going there next week with my family."},
            ],
            "tools": [{"type": "function", "function": {"name": "weather", "description": "The forecast for a city and a day",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "day": {"type": "string"}}, "required": ["city"]}}}],
            "tool_choice": "auto",
        })
        .to_string(),
    )
}

/// The Anthropic stream: start, `DELTAS` text deltas, stop; one event per
/// chunk.
fn anthropic_stream() -> Vec<Bytes> {
    let parts: Vec<String> = (0..DELTAS).map(|i| format!(" word{i}")).collect();
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    split_events(&fake::text_stream(&parts))
}

/// An OpenAI stream of `DELTAS` content deltas (Azure's shape, and the
/// baseline's).
fn openai_stream() -> Vec<Bytes> {
    let parts: Vec<String> = (0..DELTAS).map(|i| format!(" word{i}")).collect();
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let mut text: String = openai::chunks(&parts)
        .iter()
        .map(|c| format!("data: {c}\n\n"))
        .collect();
    text += "data: [DONE]\n\n";
    split_events(&text)
}

/// The Gemini stream: `DELTAS` events of one text part each, the last
/// with the finish and usage; one event per chunk (Gemini ends events
/// with `\r\n\r\n`).
fn gemini_stream() -> Vec<Bytes> {
    let parts: Vec<String> = (0..DELTAS).map(|i| format!(" word{i}")).collect();
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    gemini::text_stream(&parts)
        .split_inclusive("\r\n\r\n")
        .map(|e| Bytes::from(e.to_owned()))
        .collect()
}

fn split_events(text: &str) -> Vec<Bytes> {
    text.split_inclusive("\n\n")
        .map(|e| Bytes::from(e.to_owned()))
        .collect()
}

/// An upstream answering `body` (an event stream when `sse`).
fn upstream(
    body: Vec<Bytes>,
    sse: bool,
) -> impl Service<Request<Bytes>, Response = Response<Chunks>, Error = Infallible, Future: Send> + Clone
{
    service_fn(move |_request: Request<Bytes>| {
        let mut response = Response::new(Chunks(body.iter().cloned().collect()));
        let kind = if sse {
            "text/event-stream"
        } else {
            "application/json"
        };
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
        std::future::ready(Ok::<_, Infallible>(response))
    })
}

fn call<S, B>(service: &mut S, body: &Bytes) -> usize
where
    S: Service<Request<Bytes>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let request = Request::post("/chat/completions")
        .body(body.clone())
        .unwrap();
    let response = now(service.call(request)).unwrap();
    drain(response.into_body())
}

fn bench(c: &mut Criterion) {
    let anthropic = Anthropic::layer(&ProviderConfig::new().api_key("sk-ant-bench")).unwrap();
    let azure = Azure::layer(
        &ProviderConfig::new()
            .api_base("https://res.openai.azure.com")
            .api_key("bench-key"),
    )
    .unwrap();
    // Vertex's translation alone (its token layer sits below it); the
    // request names a Claude model, so this is Anthropic's translation plus
    // Vertex's model peek and body changes.
    let vertex = ProviderLayer::new(Vertex::new(&ProviderConfig::new(), "bench-project").unwrap());
    let message = vec![Bytes::from(
        fake::message(
            "Tomorrow in Paris: light rain, 14°C. Bring an umbrella. Rome next week: sunny, 24°C.",
        )
        .to_string(),
    )];
    let completion = vec![Bytes::from(
        openai::chat_completion(
            "Tomorrow in Paris: light rain, 14°C. Bring an umbrella. Rome next week: sunny, 24°C.",
        )
        .to_string(),
    )];
    let gemini_layer = Gemini::layer(&ProviderConfig::new().api_key("gemini-bench-key")).unwrap();
    let gemini_answer = vec![Bytes::from(
        gemini::response(
            "Tomorrow in Paris: light rain, 14°C. Bring an umbrella. Rome next week: sunny, 24°C.",
        )
        .to_string(),
    )];
    let request = chat_request(false);

    let mut group = c.benchmark_group("request");
    let mut passthrough = upstream(completion.clone(), false);
    group.bench_function("passthrough", |b| {
        b.iter(|| call(&mut passthrough, &request))
    });
    let mut through = anthropic.layer(upstream(message.clone(), false));
    group.bench_function("anthropic", |b| b.iter(|| call(&mut through, &request)));
    let mut through = vertex.layer(upstream(message, false));
    group.bench_function("vertex-claude", |b| b.iter(|| call(&mut through, &request)));
    let mut through = azure.layer(upstream(completion, false));
    group.bench_function("azure", |b| b.iter(|| call(&mut through, &request)));
    let mut through = gemini_layer.layer(upstream(gemini_answer, false));
    group.bench_function("gemini", |b| b.iter(|| call(&mut through, &request)));
    group.finish();

    let request = chat_request(true);
    let anthropic_events = anthropic_stream();
    let openai_events = openai_stream();
    let mut group = c.benchmark_group("stream");
    group.throughput(Throughput::Elements(anthropic_events.len() as u64));
    let mut passthrough = upstream(anthropic_events.clone(), true);
    group.bench_function("passthrough", |b| {
        b.iter(|| call(&mut passthrough, &request))
    });
    let mut through = anthropic.layer(upstream(anthropic_events.clone(), true));
    group.bench_function("anthropic", |b| b.iter(|| call(&mut through, &request)));
    let mut through = vertex.layer(upstream(anthropic_events, true));
    group.bench_function("vertex-claude", |b| b.iter(|| call(&mut through, &request)));
    group.throughput(Throughput::Elements(openai_events.len() as u64));
    let mut through = azure.layer(upstream(openai_events, true));
    group.bench_function("azure", |b| b.iter(|| call(&mut through, &request)));
    let gemini_events = gemini_stream();
    group.throughput(Throughput::Elements(gemini_events.len() as u64));
    let mut through = gemini_layer.layer(upstream(gemini_events, true));
    group.bench_function("gemini", |b| b.iter(|| call(&mut through, &request)));
    group.finish();
}

/// Bedrock: a Converse answer, and a ConverseStream of `DELTAS` text
/// deltas in AWS's binary event stream, one message per chunk; every
/// request signed (SigV4), every message's CRCs checked.
fn bench_bedrock(c: &mut Criterion) {
    let bedrock = Bedrock::layer(
        &ProviderConfig::new()
            .aws_credentials(bedrock_fake::ACCESS_KEY_ID, bedrock_fake::SECRET_ACCESS_KEY)
            .aws_region(bedrock_fake::REGION),
    )
    .unwrap();
    let answer = vec![Bytes::from(
        bedrock_fake::converse(
            "Tomorrow in Paris: light rain, 14°C. Bring an umbrella. Rome next week: sunny, 24°C.",
        )
        .to_string(),
    )];
    let parts: Vec<String> = (0..DELTAS).map(|i| format!(" word{i}")).collect();
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let events = bedrock_fake::text_stream(&parts);
    let event_stream = |body: Vec<Bytes>| {
        service_fn(move |_request: Request<Bytes>| {
            let mut response = Response::new(Chunks(body.iter().cloned().collect()));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(bedrock_fake::EVENT_STREAM),
            );
            std::future::ready(Ok::<_, Infallible>(response))
        })
    };

    let mut group = c.benchmark_group("request");
    let request = chat_request(false);
    let mut through = bedrock.layer(upstream(answer, false));
    group.bench_function("bedrock", |b| b.iter(|| call(&mut through, &request)));
    group.finish();

    let mut group = c.benchmark_group("stream");
    let request = chat_request(true);
    group.throughput(Throughput::Elements(events.len() as u64));
    let mut through = bedrock.layer(event_stream(events));
    group.bench_function("bedrock", |b| b.iter(|| call(&mut through, &request)));
    group.finish();
}

criterion_group!(benches, bench, bench_bedrock);
criterion_main!(benches);
