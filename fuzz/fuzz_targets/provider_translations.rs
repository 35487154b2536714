//! The native provider translations (`tollgate-providers`): any status,
//! headers and body — an Anthropic Messages answer or event stream, an
//! Azure OpenAI answer or stream, cut anywhere, reset at the end — through
//! the Anthropic and the Azure layers in turn.
//!
//! Checked, besides "no panic, no hang":
//! - a failure is classified, and renders as an OpenAI error body with
//!   neither provider's configured key in it (the seeds echo them);
//! - a translated stream is OpenAI's: every data event the client gets is
//!   `[DONE]` or a JSON object, nothing after `[DONE]`.
#![no_main]

use bytes::Bytes;
use http::Request;
use libfuzzer_sys::fuzz_target;
use tollgate_core::sse::{Frame, SseParser};
use tollgate_fuzz::{FLAG_CLIENT_GONE, Script, block_on, check_failure, read_body};
use tollgate_providers::ProviderConfig;
use tollgate_providers::anthropic::Anthropic;
use tollgate_providers::azure::Azure;
use tower::{Layer, Service, ServiceExt, service_fn};

const ANTHROPIC_KEY: &str = "sk-ant-api03-fuzzkey0123456789abcdef";
const AZURE_KEY: &str = "azurefuzzkey0123456789abcdef0123";

fuzz_target!(|input: &[u8]| {
    let Some(script) = Script::decode(input) else {
        return;
    };
    let upstream = {
        let script = script.clone();
        service_fn(move |_request: Request<Bytes>| {
            let response = script.response();
            async move { response }
        })
    };
    let anthropic = Anthropic::layer(&ProviderConfig::new().api_key(ANTHROPIC_KEY))
        .expect("valid config")
        .layer(upstream.clone());
    let azure = Azure::layer(
        &ProviderConfig::new()
            .api_base("https://fuzz.openai.azure.com")
            .api_key(AZURE_KEY),
    )
    .expect("valid config")
    .layer(upstream);
    check(&script, anthropic);
    check(&script, azure);
});

fn check<S, B>(script: &Script, service: S)
where
    S: Service<Request<Bytes>, Response = http::Response<B>>,
    S::Error: Into<tollgate_core::BoxError>,
    B: http_body::Body<Data = Bytes>,
{
    let request = Request::post("/chat/completions")
        .body(script.request_body())
        .expect("a valid request");
    block_on(async move {
        match service.oneshot(request).await {
            Err(error) => {
                let error: tollgate_core::BoxError = error.into();
                check_failure(&*error, &[ANTHROPIC_KEY, AZURE_KEY]);
            }
            Ok(response) => {
                let stream = tollgate_core::classify::is_event_stream(response.headers());
                let body = response.into_body();
                if script.has(FLAG_CLIENT_GONE) {
                    let mut body = std::pin::pin!(body);
                    let _ = http_body_util::BodyExt::frame(&mut body).await;
                    return;
                }
                let (out, _clean) = read_body(body, script.frame_bound()).await;
                if stream {
                    check_stream(&out);
                }
            }
        }
    });
}

/// Every data event is `[DONE]`, last, or a JSON object.
fn check_stream(out: &[u8]) {
    let mut parser = SseParser::new();
    parser.push(Bytes::copy_from_slice(out));
    let mut done = false;
    while let Ok(Some(frame)) = parser.next_frame() {
        if let Frame::Event(event) = frame {
            assert!(!done, "an event after [DONE]");
            if &event.data[..] == b"[DONE]" {
                done = true;
                continue;
            }
            assert!(
                matches!(
                    serde_json::from_slice(&event.data),
                    Ok(serde_json::Value::Object(_))
                ),
                "not a JSON object: {}",
                String::from_utf8_lossy(&event.data)
            );
        }
    }
}
