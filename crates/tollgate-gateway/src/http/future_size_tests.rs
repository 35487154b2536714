//! The sizes of the futures a chat request goes through, bounded, and
//! printed by `cargo test -p tollgate-gateway future_size -- --nocapture`.
//!
//! Every `.await` of an async fn, and every layer whose response future
//! wraps its inner one by value, moves the inner future whole: the bytes
//! copied per request grow with these sizes (BENCHMARKS.md, "Instructions
//! per request against the anchor bench").

use std::mem::{size_of, size_of_val};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use tokio::time::Instant;
use tollgate_core::{Operation, RequestBody};
use tower_service::Service;

use super::chat;
use super::shape::OpenAi;
use crate::access_log::AccessLog;
use crate::app::Gateway;
use crate::keys::Principal;
use crate::stack::{Breaker, GroupStack, Stack};
use tollgate_inbound::messages::Messages;
use tollgate_inbound::responses::Responses;

const CONFIG: &str = "\
model_list:
  - model_name: gpt-4o-mini
    litellm_params: {model: openai/gpt-4o-mini, api_base: \"http://127.0.0.1:9/v1\", api_key: dummy}
general_settings:
  master_key: sk-future-sizes
";

const BODY: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;

fn chat_request() -> Request<Full<Bytes>> {
    Request::post("/v1/chat/completions")
        .header("authorization", "Bearer sk-future-sizes")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(BODY.as_bytes())))
        .expect("a valid request")
}

/// The size of `future`, which is dropped unpolled.
fn size_of_future<F: std::future::Future>(future: F) -> usize {
    size_of_val(&future)
}

/// Each future a chat request goes through, by name, with its size.
fn sizes(gateway: &Gateway) -> Vec<(&'static str, usize)> {
    type StackFuture = <Stack as Service<Request<RequestBody>>>::Future;
    type GroupFuture = <GroupStack as Service<Request<RequestBody>>>::Future;
    type Cascade = tollgate_fallback::Fallback<GroupStack, crate::stack::GroupHealth>;
    type Balanced = tollgate_balance::Balance<
        Breaker,
        tollgate_breaker::Breakers,
        std::sync::Arc<crate::deployment::Deployment>,
    >;
    type Costed = tollgate_cost::Cost<crate::provider::ProviderService>;
    let app = gateway.app();
    let mut log = AccessLog::new("id".into(), "chat_completions", Instant::now());
    let headers = chat_request();
    let mut sizes = vec![
        (
            "Gateway::handle",
            size_of_future(gateway.handle(chat_request())),
        ),
        (
            "http::handle",
            size_of_future(super::handle(
                app.clone(),
                chat_request(),
                || unreachable!(),
            )),
        ),
        (
            "chat::handle (OpenAI)",
            size_of_future(chat::handle(
                &app,
                OpenAi(Operation::ChatCompletions),
                chat_request(),
                Principal::Master,
                &mut log,
            )),
        ),
        (
            "chat::handle (Messages)",
            size_of_future(chat::handle(
                &app,
                Messages,
                chat_request(),
                Principal::Master,
                &mut log,
            )),
        ),
        (
            "chat::handle (Responses)",
            size_of_future(chat::handle(
                &app,
                Responses,
                chat_request(),
                Principal::Master,
                &mut log,
            )),
        ),
        (
            "count_tokens::handle",
            size_of_future(super::count_tokens::handle(
                &app,
                chat_request(),
                Principal::Master,
                &mut log,
            )),
        ),
        (
            "admin::keys",
            size_of_future(super::admin::keys(&app, chat_request(), &mut log)),
        ),
        (
            "admin::teams",
            size_of_future(super::admin::teams(&app, chat_request(), &mut log)),
        ),
        (
            "admin::end_users",
            size_of_future(super::admin::end_users(&app, chat_request(), &mut log)),
        ),
        (
            "admin::spend",
            size_of_future(super::admin::spend(
                &app,
                super::route::Route::SpendLogs,
                None,
            )),
        ),
        (
            "Keys::authenticate",
            size_of_future(app.keys.authenticate(headers.headers(), 0)),
        ),
        (
            "teams::admit",
            size_of_future(crate::teams::admit(&app.teams, &Principal::Master, "g", 0)),
        ),
    ];
    let mut extensions = http::Extensions::new();
    sizes.push((
        "EndUsers::admit_request",
        size_of_future(app.end_users.admit_request(&mut extensions, "u".into(), 0)),
    ));
    sizes.push((
        "chat::read_request",
        size_of_future(chat::read_request(&app, chat_request())),
    ));
    sizes.extend([
        ("(Request<Full<Bytes>>)", size_of::<Request<Full<Bytes>>>()),
        ("(Request<RequestBody>)", size_of::<Request<RequestBody>>()),
        (
            "(Response<GatewayBody>)",
            size_of::<http::Response<crate::response::GatewayBody>>(),
        ),
        ("(StackBody)", size_of::<crate::stack::StackBody>()),
        (
            "(InboundBody<MessagesStream>)",
            size_of::<crate::response::InboundBody<tollgate_inbound::messages::MessagesStream>>(),
        ),
        (
            "(InboundBody<ResponsesStream>)",
            size_of::<crate::response::InboundBody<tollgate_inbound::responses::ResponsesStream>>(),
        ),
        (
            "(cost ResponseBody<ProviderBody>)",
            size_of::<
                tollgate_cost::ResponseBody<
                    crate::provider::ProviderBody,
                    tollgate_core::classify::OpenAiEos,
                >,
            >(),
        ),
        ("(ProviderBody)", size_of::<crate::provider::ProviderBody>()),
        ("(AccessLog)", size_of::<AccessLog>()),
        ("(Redactor)", size_of::<tollgate_core::Redactor>()),
        ("(Failure)", size_of::<tollgate_core::Failure>()),
        ("stack: RateLimit", size_of::<StackFuture>()),
        (
            "stack: Oneshot<Stack>",
            size_of::<tower::util::Oneshot<Stack, Request<RequestBody>>>(),
        ),
        (
            "cascade: Fallback",
            size_of::<<Cascade as Service<Request<RequestBody>>>::Future>(),
        ),
        ("group: Retry", size_of::<GroupFuture>()),
        (
            "group: Balance",
            size_of::<<Balanced as Service<Request<RequestBody>>>::Future>(),
        ),
        (
            "deployment: CircuitBreaker",
            size_of::<<Breaker as Service<Request<RequestBody>>>::Future>(),
        ),
        (
            "deployment: Cost",
            size_of::<<Costed as Service<Request<RequestBody>>>::Future>(),
        ),
    ]);
    sizes
}

/// The bounds hold in a debug build (a release build's futures are no
/// larger). Before the cold awaits were boxed and `GracePeriod::run`
/// written out, a debug build's handler future was 8,936 bytes, the
/// key, team and end-user admissions' 1,656, 2,008 and 1,256, and the
/// stack's 704.
#[tokio::test]
async fn a_chat_requests_futures_stay_small() {
    let config = crate::config::load_str(CONFIG, &|_| None)
        .expect("a valid config")
        .config;
    let gateway = Gateway::new(&config).expect("a gateway");
    let sizes = sizes(&gateway);
    for (name, size) in &sizes {
        println!("{name:<40} {size:>6} bytes");
    }
    let size = |name: &str| {
        sizes
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, size)| *size)
            .expect("measured")
    };
    // Moved whole several times per request: the admin routes' futures
    // (Redis, SQLite) must not be inline in it, nor the work twice.
    assert!(size("Gateway::handle") < 4096, "{sizes:?}");
    // A Redis round trip is boxed, off the path of requests without one.
    for admission in [
        "Keys::authenticate",
        "teams::admit",
        "EndUsers::admit_request",
    ] {
        assert!(size(admission) < 512, "{admission}: {sizes:?}");
    }
    // The stack's services hold one `Arc` of the upstream client each.
    assert!(size("stack: RateLimit") < 512, "{sizes:?}");
}
