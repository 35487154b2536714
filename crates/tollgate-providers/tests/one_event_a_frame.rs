//! Every protocol's translated stream goes out one whole OpenAI event per
//! frame, each published in the response's `SharedEvents`, even when the
//! upstream sends many events in one chunk: the layers above (cost,
//! breaker, fallback) take the events whole instead of splitting the
//! gateway's own output again.

mod common;

use std::collections::VecDeque;
use std::pin::pin;

use bytes::Bytes;
use common::{Chunks, chat_request, chunks, text_of};
use http::{Request, Response};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tollgate_core::sse::{EventReader, SharedEvents};
use tollgate_core::{BoxError, RequestBody};
use tower::{Service, ServiceExt, service_fn};

/// More frames than any stream here has: the read is bounded.
const MAX_FRAMES: usize = 64;

/// An upstream that answers with `chunks`, one frame each, as `content_type`.
fn upstream(
    chunks: Vec<Bytes>,
    content_type: &'static str,
) -> impl Service<Request<RequestBody>, Response = Response<Chunks>, Error = BoxError, Future: Send>
+ Clone {
    service_fn(move |_: Request<RequestBody>| {
        let response = Response::builder()
            .header("content-type", content_type)
            .body(Chunks(chunks.iter().cloned().collect::<VecDeque<_>>()))
            .unwrap();
        std::future::ready(Ok::<_, BoxError>(response))
    })
}

fn sse(stream: String) -> Vec<Bytes> {
    vec![Bytes::from(stream)]
}

fn ask(model: &str) -> Value {
    json!({
        "model": model,
        "stream": true,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "Say hello"}],
    })
}

/// The frames of the answer to `ask(model)`, each checked as it comes: one
/// whole event, and the event the response's `SharedEvents` published.
async fn read_frames<S, B>(service: S, model: &str) -> Vec<Bytes>
where
    S: Service<Request<RequestBody>, Response = Response<B>, Error = BoxError>,
    B: http_body::Body<Data = Bytes, Error = BoxError>,
{
    let response = service.oneshot(chat_request(&ask(model))).await.unwrap();
    let shared = response
        .extensions()
        .get::<SharedEvents>()
        .cloned()
        .expect("a stream's events are shared");
    let mut body = pin!(response.into_body());
    let mut frames = Vec::new();
    for _ in 0..MAX_FRAMES {
        let Some(frame) = body.frame().await else {
            return frames;
        };
        let data = frame.unwrap().into_data().unwrap();
        let mut above = EventReader::new(Some(shared.clone()));
        let events = above.push(data.clone());
        assert!(events.published(), "not published: {data:?}");
        let split: Vec<Bytes> = EventReader::new(None).push(data.clone()).collect();
        assert_eq!(split, std::slice::from_ref(&data), "not one whole event");
        frames.push(data);
    }
    panic!("more than {MAX_FRAMES} frames");
}

/// The frames of a text answer of `pieces` with usage: the role, a chunk a
/// piece, the finish, the usage and `[DONE]`.
fn assert_text_answer(frames: &[Bytes], text: &str, pieces: usize) {
    assert_eq!(frames.len(), pieces + 4, "{frames:?}");
    let (chunks, done) = chunks(&frames.concat());
    assert!(done);
    assert_eq!(text_of(&chunks), text);
    assert!(chunks.last().unwrap()["usage"]["completion_tokens"].is_u64());
}

#[cfg(feature = "anthropic")]
mod anthropic {
    use tollgate_providers::ProviderConfig;
    use tollgate_providers::anthropic::Anthropic;
    use tollgate_testkit::anthropic as fake;
    use tower::Layer;

    use super::*;

    fn layer() -> tollgate_providers::anthropic::AnthropicLayer {
        Anthropic::layer(&ProviderConfig::new().api_key("sk-ant-test")).unwrap()
    }

    #[tokio::test]
    async fn a_chunk_of_many_events_goes_out_one_event_a_frame() {
        let stream = sse(fake::text_stream(&["Hel", "lo", " there"]));
        let service = layer().layer(upstream(stream, "text/event-stream"));
        let frames = read_frames(service, "claude-sonnet-4-5").await;
        assert_text_answer(&frames, "Hello there", 3);
    }

    #[tokio::test]
    async fn an_error_after_content_is_a_frame_of_its_own() {
        let delta = |text: &str| {
            fake::event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": 0,
                        "delta": {"type": "text_delta", "text": text}}),
            )
        };
        // The first chunk brings the first content (an error in it would
        // still be an error answer); the second more content and the error.
        let stream = vec![
            Bytes::from(fake::start() + &delta("Hel")),
            Bytes::from(delta("lo") + &fake::error_event("overloaded_error", "Overloaded")),
        ];
        let service = layer().layer(upstream(stream, "text/event-stream"));
        let frames = read_frames(service, "claude-sonnet-4-5").await;
        // The role, the two pieces, the error event.
        assert_eq!(frames.len(), 4, "{frames:?}");
        let (chunks, done) = chunks(&frames.concat());
        assert!(!done);
        assert_eq!(text_of(&chunks), "Hello");
        assert!(chunks[3]["error"]["message"].is_string(), "{}", chunks[3]);
    }
}

#[cfg(feature = "azure")]
#[tokio::test]
async fn azure_a_chunk_of_many_events_goes_out_one_event_a_frame() {
    use tollgate_providers::ProviderConfig;
    use tollgate_providers::azure::Azure;
    use tollgate_testkit::openai;
    use tower::Layer;

    let mut stream: String = openai::chunks(&["Hel", "lo"])
        .iter()
        .map(|chunk| format!("data: {chunk}\n\n"))
        .collect();
    stream += "data: [DONE]\n\n";
    let layer = Azure::layer(
        &ProviderConfig::new()
            .api_base("https://res.openai.azure.com")
            .api_key("azure-test-key"),
    )
    .unwrap();
    let service = layer.layer(upstream(sse(stream.clone()), "text/event-stream"));
    let frames = read_frames(service, "gpt-4o").await;
    // Azure's events are OpenAI's: passed on as they came.
    assert_eq!(frames.concat(), stream.as_bytes());
    assert!(frames.len() > 2);
}

#[cfg(feature = "gemini")]
#[tokio::test]
async fn gemini_a_chunk_of_many_events_goes_out_one_event_a_frame() {
    use tollgate_providers::ProviderConfig;
    use tollgate_providers::gemini::Gemini;
    use tollgate_testkit::gemini as fake;
    use tower::Layer;

    let layer = Gemini::layer(&ProviderConfig::new().api_key("gemini-test-key")).unwrap();
    let stream = sse(fake::text_stream(&["Hel", "lo", " there"]));
    let service = layer.layer(upstream(stream, "text/event-stream"));
    let frames = read_frames(service, "gemini-2.0-flash").await;
    assert_text_answer(&frames, "Hello there", 3);
}

#[cfg(feature = "vertex")]
#[tokio::test]
async fn vertex_a_chunk_of_many_events_goes_out_one_event_a_frame() {
    use tollgate_providers::vertex::Vertex;
    use tollgate_providers::{ProviderConfig, ProviderLayer};
    use tollgate_testkit::{anthropic, gemini};
    use tower::Layer;

    // The translation alone: the token layer that sits below it in
    // `Vertex::layer` has nothing to do with the answer.
    let layer = ProviderLayer::new(Vertex::new(&ProviderConfig::new(), "test-project").unwrap());
    let claude = sse(anthropic::text_stream(&["Hel", "lo"]));
    let service = layer.layer(upstream(claude, "text/event-stream"));
    let frames = read_frames(service, "claude-3-5-sonnet@20240620").await;
    assert_text_answer(&frames, "Hello", 2);

    let stream = sse(gemini::text_stream(&["Wor", "ld"]));
    let service = layer.layer(upstream(stream, "text/event-stream"));
    let frames = read_frames(service, "gemini-2.0-flash").await;
    assert_text_answer(&frames, "World", 2);
}

#[cfg(feature = "bedrock")]
#[tokio::test]
async fn bedrock_a_chunk_of_many_messages_goes_out_one_event_a_frame() {
    use tollgate_providers::ProviderConfig;
    use tollgate_providers::bedrock::Bedrock;
    use tollgate_testkit::bedrock as fake;
    use tower::Layer;

    let layer = Bedrock::layer(
        &ProviderConfig::new()
            .aws_credentials(fake::ACCESS_KEY_ID, fake::SECRET_ACCESS_KEY)
            .aws_region(fake::REGION),
    )
    .unwrap();
    let stream = vec![fake::concat(&fake::text_stream(&["Hel", "lo", " there"]))];
    let service = layer.layer(upstream(stream, fake::EVENT_STREAM));
    let frames = read_frames(service, "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0").await;
    assert_text_answer(&frames, "Hello there", 3);
}
