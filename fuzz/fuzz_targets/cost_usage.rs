//! The cost layer's usage reader: any status, headers and body (a complete
//! JSON answer or a stream, cut anywhere, reset, or abandoned by the
//! client) through `CostLayer`.
//!
//! Checked, besides "no panic, no hang": exactly one cost record per call,
//! whatever happened; a failed attempt (the call failed, or an error status)
//! is not billed; a cost renders as decimal text that parses back to it
//! exactly.
#![no_main]

use std::sync::{Arc, Mutex};

use http::Request;
use libfuzzer_sys::fuzz_target;
use tollgate_core::RequestBody;
use tollgate_cost::{Charge, CostLayer, CostRecord, Outcome, PriceTable};
use tollgate_fuzz::{FLAG_CALL_ERROR, FLAG_CLIENT_GONE, Script, block_on, read_body};
use tower::{Layer, ServiceExt, service_fn};

fuzz_target!(|input: &[u8]| {
    let Some(script) = Script::decode(input) else {
        return;
    };
    let records = Arc::new(Mutex::new(Vec::<CostRecord>::new()));
    let sink = {
        let records = records.clone();
        move |record| records.lock().expect("not poisoned").push(record)
    };
    // Small enough that the fuzzer reaches the "too large to read" path.
    let layer = CostLayer::new(Arc::new(PriceTable::builtin()), sink).body_limit(4096);
    let upstream = {
        let script = script.clone();
        service_fn(move |_request: Request<RequestBody>| {
            let response = script.response();
            async move { response }
        })
    };
    let service = layer.layer(upstream);
    let request = Request::post("/v1/chat/completions")
        .body(RequestBody::new(script.request_body()))
        .expect("a valid request");
    block_on(async {
        if let Ok(response) = service.oneshot(request).await {
            let body = response.into_body();
            if script.has(FLAG_CLIENT_GONE) {
                let mut body = std::pin::pin!(body);
                let _ = http_body_util::BodyExt::frame(&mut body).await;
            } else {
                read_body(body, script.frame_bound()).await;
            }
        }
    });

    let records = records.lock().expect("not poisoned");
    assert_eq!(records.len(), 1, "one record per call: {records:?}");
    let record = &records[0];
    if script.has(FLAG_CALL_ERROR) || !script.status.is_success() {
        assert_eq!(
            record.cost,
            Charge::NotBilled,
            "a failed attempt billed: {record:?}"
        );
        assert!(matches!(record.outcome, Outcome::Failed(_)), "{record:?}");
    }
    if let Charge::Provider(usd) | Charge::Priced(usd) = record.cost {
        // Renders and parses back exactly.
        let text = usd.to_string();
        assert_eq!(tollgate_cost::Usd::parse(&text).ok(), Some(usd), "{text}");
    }
});
