//! Helpers shared by the integration tests: fixtures, a scripted upstream
//! body, a fixed clock, and strict mirrors of the OpenAI client types.

#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, StatusCode};
use http_body::{Body, Frame};
use tollgate_core::BoxError;
use tollgate_openrouter::{OpenRouterClassifier, OpenRouterConfig, OpenRouterLayer};

/// 2026-03-10T14:23:05Z, the `created` of the fixtures.
pub const NOW_SECS: u64 = 1_773_152_585;

pub fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW_SECS)
}

pub fn layer() -> OpenRouterLayer {
    OpenRouterLayer::new(
        OpenRouterConfig::new()
            .api_key("sk-or-v1-test")
            .build()
            .unwrap(),
    )
    .with_classifier(OpenRouterClassifier::new().with_clock(now))
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn fixture(dir: &str, file: &str) -> Bytes {
    let path = fixtures().join(dir).join(file);
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// A response head from a `.headers` sidecar: the status line, then one
/// header per line.
pub fn head_from_sidecar(text: &str) -> (StatusCode, Vec<(HeaderName, HeaderValue)>) {
    let mut lines = text.lines();
    let status_line = lines.next().unwrap();
    let code: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (
                HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
                HeaderValue::from_str(value.trim()).unwrap(),
            )
        })
        .collect();
    (StatusCode::from_u16(code).unwrap(), headers)
}

/// A body of scripted chunks, then an optional error.
#[derive(Debug, Clone)]
pub struct Chunks(pub VecDeque<Result<Bytes, &'static str>>);

impl Chunks {
    pub fn new(chunks: impl IntoIterator<Item = Bytes>) -> Self {
        Chunks(chunks.into_iter().map(Ok).collect())
    }

    /// `bytes` cut at the given offsets.
    pub fn split(bytes: &Bytes, cuts: &[usize]) -> Self {
        let mut at: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        at.sort_unstable();
        at.dedup();
        let mut last = 0;
        let mut chunks = Vec::new();
        for cut in at.into_iter().chain([bytes.len()]) {
            if cut > last {
                chunks.push(bytes.slice(last..cut));
            }
            last = cut;
        }
        Chunks::new(chunks)
    }
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.get_mut().0.pop_front().map(|item| match item {
            Ok(data) => Ok(Frame::data(data)),
            Err(message) => Err(BoxError::from(message)),
        }))
    }
}

pub fn response(
    status: StatusCode,
    headers: &[(HeaderName, HeaderValue)],
    body: Chunks,
) -> Response<Chunks> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    for (name, value) in headers {
        response.headers_mut().append(name.clone(), value.clone());
    }
    response
}

/// Runs a future that never waits: everything in these tests is in memory.
pub fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("an in-memory future was not ready"),
    }
}

/// The data of each event of an SSE body, as core's parser reads it.
pub fn sse_data(body: &Bytes) -> Vec<Bytes> {
    use tollgate_core::sse::{Frame, SseParser};
    let mut parser = SseParser::new();
    parser.push(body.clone());
    let mut out = Vec::new();
    while let Some(frame) = parser.next_frame().unwrap() {
        if let Frame::Event(event) = frame {
            out.push(event.data);
        }
    }
    assert_eq!(
        parser.finish().unwrap(),
        None,
        "the stream ends between events"
    );
    out
}

/// Mirrors of async-openai's response types (`async-openai/src/types/chat`),
/// with the same field types: a value that does not fit fails here as it
/// would there. Like async-openai, unknown keys are ignored.
pub mod openai {
    use serde::Deserialize;
    use serde_json::Value;

    #[derive(Debug, Deserialize)]
    pub struct CreateChatCompletionResponse {
        pub id: String,
        pub choices: Vec<ChatChoice>,
        pub created: u32,
        pub model: String,
        pub service_tier: Option<ServiceTier>,
        pub system_fingerprint: Option<String>,
        pub object: String,
        pub usage: Option<CompletionUsage>,
    }

    #[derive(Debug, Deserialize)]
    pub struct ChatChoice {
        pub index: u32,
        pub message: ChatCompletionResponseMessage,
        pub finish_reason: Option<FinishReason>,
        pub logprobs: Option<ChatChoiceLogprobs>,
    }

    #[derive(Debug, Deserialize)]
    pub struct ChatCompletionResponseMessage {
        pub content: Option<String>,
        pub refusal: Option<String>,
        pub tool_calls: Option<Vec<Value>>,
        pub annotations: Option<Vec<Value>>,
        pub role: Role,
        pub function_call: Option<Value>,
        pub audio: Option<Value>,
    }

    #[derive(Debug, Deserialize, PartialEq, Eq)]
    #[serde(rename_all = "lowercase")]
    pub enum Role {
        System,
        User,
        Assistant,
        Tool,
        Function,
    }

    #[derive(Debug, Deserialize, PartialEq, Eq)]
    #[serde(rename_all = "snake_case")]
    pub enum FinishReason {
        Stop,
        Length,
        ToolCalls,
        ContentFilter,
        FunctionCall,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum ServiceTier {
        Auto,
        Default,
        Flex,
        Scale,
        Priority,
    }

    #[derive(Debug, Deserialize)]
    pub struct ChatChoiceLogprobs {
        pub content: Option<Vec<Value>>,
        pub refusal: Option<Vec<Value>>,
    }

    #[derive(Debug, Deserialize)]
    pub struct CompletionUsage {
        pub prompt_tokens: u32,
        pub completion_tokens: u32,
        pub total_tokens: u32,
        pub prompt_tokens_details: Option<PromptTokensDetails>,
        pub completion_tokens_details: Option<CompletionTokensDetails>,
    }

    #[derive(Debug, Deserialize)]
    pub struct PromptTokensDetails {
        pub audio_tokens: Option<u32>,
        pub cached_tokens: Option<u32>,
    }

    #[derive(Debug, Deserialize)]
    pub struct CompletionTokensDetails {
        pub accepted_prediction_tokens: Option<u32>,
        pub audio_tokens: Option<u32>,
        pub reasoning_tokens: Option<u32>,
        pub rejected_prediction_tokens: Option<u32>,
    }

    #[derive(Debug, Deserialize)]
    pub struct CreateChatCompletionStreamResponse {
        pub id: String,
        pub choices: Vec<ChatChoiceStream>,
        pub created: u32,
        pub model: String,
        pub service_tier: Option<ServiceTier>,
        pub system_fingerprint: Option<String>,
        pub object: String,
        pub usage: Option<CompletionUsage>,
    }

    #[derive(Debug, Deserialize)]
    pub struct ChatChoiceStream {
        pub index: u32,
        pub delta: ChatCompletionStreamResponseDelta,
        pub finish_reason: Option<FinishReason>,
        pub logprobs: Option<ChatChoiceLogprobs>,
    }

    #[derive(Debug, Deserialize)]
    pub struct ChatCompletionStreamResponseDelta {
        pub content: Option<String>,
        pub function_call: Option<Value>,
        pub tool_calls: Option<Vec<Value>>,
        pub role: Option<Role>,
        pub refusal: Option<String>,
    }

    /// async-openai's `ApiError`, inside `{"error": ...}`.
    #[derive(Debug, Deserialize)]
    pub struct WrappedError {
        pub error: ApiError,
    }

    #[derive(Debug, Deserialize)]
    pub struct ApiError {
        pub message: String,
        pub r#type: Option<String>,
        pub param: Option<String>,
        pub code: Option<String>,
    }
}
