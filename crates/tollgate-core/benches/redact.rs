//! What redaction costs: on the hot path, the upstream headers a healthy
//! answer forwards (`content-type`, `x-ratelimit-*`), scanned on every
//! request; on the cold path, an upstream error message.
//!
//! Run with: cargo bench -p tollgate-core --bench redact
//!
//! The redactor knows five configured secrets and the request's credential,
//! as a gateway with a few deployments does.

#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use http::HeaderValue;
use tollgate_core::{Redactor, Secrets};

fn redactor() -> Redactor {
    let secrets: Secrets = [
        "sk-Tg7e2QmW9xLp4RzN8vKc1YbH6sJd3FaU5oGi0EwXyZqV2nBt",
        "sk-proj-Tg7e2QmW9xLp4RzN8vKc1YbH6sJd3FaU5oGi0EwXyZqV2nBtA1b2C3d4",
        "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",
        "tollgate-private-upstream-passphrase",
        "sk-master-Tollgate-0a1b2c3d4e5f6a7b",
    ]
    .into_iter()
    .collect();
    Redactor::new(secrets).with_presented(HeaderValue::from_static(
        "Bearer sk-Zq3xW8vN1mK5jH7gF2dS4aP9oI6uY0tR3eW5qA8zX2c",
    ))
}

fn headers(c: &mut Criterion) {
    let redactor = redactor();
    for (name, value) in [
        ("content_type_json", "application/json"),
        ("content_type_sse", "text/event-stream; charset=utf-8"),
        ("ratelimit", "9999"),
    ] {
        let value = HeaderValue::from_static(value);
        // What passing the header on costs without redaction: the yardstick
        // on a busy machine.
        c.bench_function(&format!("pass_header/{name}"), |b| {
            b.iter(|| black_box(Some(black_box(value.clone()))))
        });
        c.bench_function(&format!("redact_header/{name}"), |b| {
            b.iter(|| black_box(redactor.header(black_box(value.clone()))))
        });
    }
}

fn messages(c: &mut Criterion) {
    let redactor = redactor();
    let plain = "This model's maximum context length is 8192 tokens. However, your messages \
                 resulted in 9000 tokens. Please reduce the length of the messages.";
    let leaky = "Incorrect API key provided: sk-Tg7e2QmW9xLp4RzN8vKc1YbH6sJd3FaU5oGi0EwXyZqV2nBt. \
                 You can find your API key at https://platform.openai.com/account/api-keys \
                 (key=sk-proj-Tg7e2QmW9xLp4RzN8vKc1YbH6sJd3FaU5oGi0EwXyZqV2nBtA1b2C3d4, \
                 url=sk%2Dor%2Dv1%2D3f9a1c7e5b2d8f4a6c0e9b7d5f3a1c8e6b4d2f0a9c7e5b3d1f8a6c4e2b0d9f7a)";
    c.bench_function("redact_message/plain", |b| {
        b.iter(|| black_box(redactor.redact(black_box(plain))))
    });
    c.bench_function("redact_message/leaky", |b| {
        b.iter(|| black_box(redactor.redact(black_box(leaky))))
    });
}

criterion_group!(benches, headers, messages);
criterion_main!(benches);
