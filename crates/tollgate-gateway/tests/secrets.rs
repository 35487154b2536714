//! Keys never reach a log line, an error body or a response header.

mod common;

use common::{Answer, Captured, TestGateway, call, chat_body, client, openai_config};
use tollgate_testkit::{Reply, Upstream, openai};

const UPSTREAM_KEY: &str = "sk-upstream-SECRET-4f9a8b7c6d5e";
const MASTER_KEY: &str = "sk-master-SECRET-1a2b3c4d5e6f";

// One thread, so that every task of the gateway logs to this test's
// subscriber.
#[tokio::test(flavor = "current_thread")]
async fn keys_appear_in_no_log_body_or_header() {
    let logs = Captured::default();
    let _guard = tracing::subscriber::set_default(logs.subscriber());

    let upstream = Upstream::start().await;
    let env = [("UPSTREAM_KEY", UPSTREAM_KEY), ("MASTER_KEY", MASTER_KEY)];
    // One answer per request, so the script lines up with the requests.
    let extra = "general_settings:\n  master_key: os.environ/MASTER_KEY\nrouter_settings:\n  num_retries: 0\n  cooldown_time: 0\n";
    let gateway = TestGateway::start(&openai_config(&upstream.url(), extra), &env).await;
    let url = gateway.url("/v1/chat/completions");
    let auth = format!("Bearer {MASTER_KEY}");
    let auth = [("authorization", auth.as_str())];
    let leak = format!("Incorrect API key provided: {UPSTREAM_KEY}. Master: {MASTER_KEY}");

    upstream.push(Reply::json(200, openai::chat_completion("fine")).header("x-echo", UPSTREAM_KEY));
    upstream.push(Reply::json(
        401,
        openai::error_body(&leak, "invalid_request_error", Some("invalid_api_key")),
    ));
    upstream.push(Reply::json(
        500,
        openai::error_body(&leak, "server_error", None),
    ));
    upstream.push(Reply::json(
        400,
        openai::error_body(&leak, "invalid_request_error", None),
    ));
    upstream.push(
        Reply::sse()
            .data(&openai::chunks(&["a"])[0])
            .data(serde_json::json!({"error": {"message": leak, "code": 500}}))
            .done(),
    );
    let chunks = openai::chunks(&["ok"]);
    upstream.push(Reply::sse().data_each(chunks).done());

    let client = client();
    let mut answers: Vec<Answer> = Vec::new();
    for stream in [false, false, false, false, true, true] {
        answers.push(call(&client, "POST", &url, chat_body("gpt-test", stream), &auth).await);
    }
    // The client's own wrong keys, and no key.
    let wrong = format!("Bearer {MASTER_KEY}x");
    answers.push(
        call(
            &client,
            "POST",
            &url,
            chat_body("gpt-test", false),
            &[("authorization", &wrong)],
        )
        .await,
    );
    answers.push(call(&client, "POST", &url, chat_body("gpt-test", false), &[]).await);
    answers.push(call(&client, "GET", &gateway.url("/v1/models"), "", &auth).await);

    assert_eq!(
        answers
            .iter()
            .map(|a| a.status.as_u16())
            .collect::<Vec<_>>(),
        [200, 502, 502, 400, 502, 200, 401, 401, 200]
    );
    // The keys really were in play: the upstream got the upstream key.
    let requests = upstream.requests();
    assert_eq!(
        requests[0].headers["authorization"],
        format!("Bearer {UPSTREAM_KEY}").as_str()
    );
    // ...and never the client's master key.
    assert!(
        requests
            .iter()
            .all(|r| !format!("{:?}", r.headers).contains(MASTER_KEY))
    );

    gateway.shutdown().await;
    drop(_guard);

    for (i, answer) in answers.iter().enumerate() {
        for key in [UPSTREAM_KEY, MASTER_KEY] {
            assert!(
                !answer.text().contains(key),
                "answer {i} body leaks a key: {}",
                answer.text()
            );
            for (name, value) in &answer.headers {
                assert!(
                    !value.to_str().unwrap_or("").contains(key),
                    "answer {i} header {name} leaks a key"
                );
            }
        }
    }
    let logs = logs.text();
    assert!(
        logs.matches("chat_completions").count() >= 8,
        "the access log was captured: {logs}"
    );
    for key in [UPSTREAM_KEY, MASTER_KEY] {
        assert!(!logs.contains(key), "the logs leak a key");
        assert!(!logs.contains(&key[10..]), "the logs leak part of a key");
    }
}
