//! The OpenRouter normalizer: any status, headers and body (JSON or an
//! event stream, cut anywhere, reset at the end) through `OpenRouterLayer`.
//!
//! Checked, besides "no panic, no hang":
//! - a failure is classified, and renders as an OpenAI error body;
//! - the configured key never reaches a client in an error message, even
//!   when the upstream's error echoes it (the seeds do, glued to text);
//! - what reaches the client in OpenAI's shape has none of OpenRouter's
//!   extra top-level fields (`provider`), in a complete body and in every
//!   data event of a stream (input that is not a JSON object passes
//!   through as it came).
#![no_main]

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use libfuzzer_sys::fuzz_target;
use tollgate_core::sse::{Frame, SseParser};
use tollgate_fuzz::{Script, block_on, check_failure, read_response};
use tollgate_openrouter::{OpenRouterConfig, OpenRouterLayer};
use tower::{Layer, ServiceExt, service_fn};

const KEY: &str = "sk-or-v1-fuzzkey0123456789abcdef";

fuzz_target!(|input: &[u8]| {
    let Some(script) = Script::decode(input) else {
        return;
    };
    let config = OpenRouterConfig::new().api_key(KEY).build();
    let layer = OpenRouterLayer::new(config.expect("valid config"));
    let upstream = {
        let script = script.clone();
        service_fn(move |_request: Request<Full<Bytes>>| {
            let response = script.response();
            async move { response }
        })
    };
    let service = layer.layer(upstream);
    let request = Request::post("/chat/completions")
        .body(Full::new(script.request_body()))
        .expect("a valid request");
    block_on(async move {
        match service.oneshot(request).await {
            Err(error) => check_failure(&*error, &[KEY]),
            Ok(response) => {
                if let Some((stream, out)) = read_response(&script, response).await {
                    if stream {
                        check_stream(&out);
                    } else {
                        check_object(&out);
                    }
                }
            }
        }
    });
});

/// Every complete data event is in OpenAI's shape.
fn check_stream(out: &[u8]) {
    let mut parser = SseParser::new();
    parser.push(Bytes::copy_from_slice(out));
    while let Ok(Some(frame)) = parser.next_frame() {
        if let Frame::Event(event) = frame {
            check_object(&event.data);
        }
    }
}

/// A JSON object the client gets has no `provider` field.
fn check_object(json: &[u8]) {
    if let Ok(serde_json::Value::Object(object)) = serde_json::from_slice(json) {
        assert!(
            !object.contains_key("provider"),
            "OpenRouter's `provider` reached the client: {}",
            String::from_utf8_lossy(json)
        );
    }
}
