//! The request reader: `ChatRequest::parse` on any body, and the rewrites
//! the layers make of a request that parsed (model, include_usage, an
//! assistant prefill).
//!
//! Checked, besides "no panic": a refusal is a 400 with an OpenAI-shaped
//! body; every rewrite is a request that parses again, with the change made
//! and every other field the layers read unchanged.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tollgate_core::{ChatRequest, ErrorClass};

fuzz_target!(|input: &[u8]| {
    let request = match ChatRequest::parse(Bytes::copy_from_slice(input)) {
        Ok(request) => request,
        Err(failure) => {
            assert_eq!(failure.class(), ErrorClass::BadRequest);
            assert_eq!(failure.status(), 400);
            let body: serde_json::Value =
                serde_json::from_slice(&failure.to_openai_body()).expect("error body is JSON");
            assert!(body["error"]["message"].is_string());
            assert!(body["error"]["type"].is_string());
            return;
        }
    };
    assert!(!request.model().is_empty());
    assert!(request.message_count() >= 1);

    // A fallback or a deployment renames the model.
    for model in [
        "fuzz/other-model",
        "a \"quoted\" \\ name\u{7f}",
        request.model(),
    ] {
        let renamed = ChatRequest::parse(request.with_model(model)).expect("renamed parses");
        assert_eq!(renamed.model(), model);
        same_fields(&request, &renamed);
        assert_eq!(renamed.include_usage(), request.include_usage());
    }

    // The cost layer asks a stream for its usage.
    let with_usage = request.with_include_usage();
    assert!(with_usage.include_usage());
    let reparsed = ChatRequest::parse(with_usage.bytes().clone()).expect("with usage parses");
    assert!(reparsed.include_usage());
    same_fields(&request, &reparsed);
    same_fields(&request, &with_usage);

    // A broken stream is continued from what the client already has.
    let continued = request
        .with_assistant_prefill("partial \"answer\"\n\u{2028}")
        .expect("a request that parsed takes a prefill");
    assert_eq!(continued.message_count(), request.message_count() + 1);
    assert_eq!(continued.model(), request.model());
    assert_eq!(continued.stream(), request.stream());
});

fn same_fields(a: &ChatRequest, b: &ChatRequest) {
    assert_eq!(a.stream(), b.stream());
    assert_eq!(a.message_count(), b.message_count());
    assert_eq!(a.max_tokens(), b.max_tokens());
}
