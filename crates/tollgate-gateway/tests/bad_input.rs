//! Bad input gets a clear OpenAI-shaped error, and the gateway keeps serving.

mod common;

use common::{Answer, TestGateway, call, chat_body, client, openai_config};
use tollgate_testkit::{Reply, Upstream, openai};

const ENV: &[(&str, &str)] = &[
    ("UPSTREAM_KEY", "sk-test-upstream"),
    ("MASTER_KEY", "sk-master-test"),
];
const AUTH: (&str, &str) = ("authorization", "Bearer sk-master-test");

async fn gateway_for(upstream: &Upstream) -> TestGateway {
    // No retries and no breaker: these tests are about what one upstream
    // answer becomes.
    let extra = "general_settings:\n  master_key: os.environ/MASTER_KEY\n  max_request_size_mb: 0.001\nrouter_settings:\n  num_retries: 0\n  cooldown_time: 0\n";
    TestGateway::start(&openai_config(&upstream.url(), extra), ENV).await
}

async fn post(gateway: &TestGateway, body: impl Into<bytes::Bytes>) -> Answer {
    call(
        &client(),
        "POST",
        &gateway.url("/v1/chat/completions"),
        body,
        &[AUTH],
    )
    .await
}

async fn assert_still_serving(gateway: &TestGateway, upstream: &Upstream) {
    upstream.push(Reply::json(200, openai::chat_completion("still here")));
    let answer = post(gateway, chat_body("gpt-test", false)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        answer.json()["choices"][0]["message"]["content"],
        "still here"
    );
}

#[tokio::test]
async fn malformed_requests_get_a_400_naming_the_problem() {
    let upstream = Upstream::start().await;
    let gateway = gateway_for(&upstream).await;
    let cases: [(&str, Option<&str>); 6] = [
        ("{\"model\": \"gpt-test\", \"messages\": [", None),
        ("[1, 2, 3]", None),
        ("42", None),
        (
            r#"{"messages":[{"role":"user","content":"hi"}]}"#,
            Some("model"),
        ),
        (r#"{"model":"gpt-test"}"#, Some("messages")),
        (
            r#"{"model":"gpt-test","messages":[{"role":"user","content":"x"}],"stream":"yes"}"#,
            None,
        ),
    ];
    for (body, param) in cases {
        let answer = post(&gateway, body).await;
        assert_eq!(answer.status, 400, "{body}: {}", answer.text());
        let error = answer.openai_error();
        assert_eq!(error["type"], "invalid_request_error", "{body}");
        if let Some(param) = param {
            assert_eq!(error["param"], param, "{body}");
        }
    }
    assert!(
        upstream.requests().is_empty(),
        "bad requests never go upstream"
    );
    assert_still_serving(&gateway, &upstream).await;
    gateway.shutdown().await;
}

#[tokio::test]
async fn an_oversized_body_gets_a_413() {
    let upstream = Upstream::start().await;
    let gateway = gateway_for(&upstream).await; // limit: 0.001 MB = 1048 bytes
    let big = chat_body("gpt-test", false).replace("Say hello", &"x".repeat(4000));
    let answer = post(&gateway, big.clone()).await;
    assert_eq!(answer.status, 413);
    assert_eq!(answer.openai_error()["code"], "request_too_large");

    // Without a Content-Length (chunked), the limit still holds.
    let chunks = big
        .into_bytes()
        .chunks(500)
        .map(bytes::Bytes::copy_from_slice)
        .collect();
    let chunked_client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let request = http::Request::post(gateway.url("/v1/chat/completions"))
        .header(AUTH.0, AUTH.1)
        .body(ChunkedBody(chunks))
        .unwrap();
    let response = chunked_client.request(request).await.unwrap();
    assert_eq!(response.status(), 413);

    assert_still_serving(&gateway, &upstream).await;
    gateway.shutdown().await;
}

/// A body of unknown length, so the client sends it chunked.
struct ChunkedBody(std::collections::VecDeque<bytes::Bytes>);

impl http_body::Body for ChunkedBody {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        std::task::Poll::Ready(
            self.get_mut()
                .0
                .pop_front()
                .map(|c| Ok(http_body::Frame::data(c))),
        )
    }
}

#[tokio::test]
async fn unknown_model_and_bad_keys() {
    let upstream = Upstream::start().await;
    let gateway = gateway_for(&upstream).await;
    let answer = post(&gateway, chat_body("no-such-model", false)).await;
    assert_eq!(answer.status, 404);
    let error = answer.openai_error();
    assert_eq!(error["code"], "model_not_found");
    assert_eq!(error["param"], "model");

    let url = gateway.url("/v1/chat/completions");
    for headers in [
        vec![],
        vec![("authorization", "Bearer sk-wrong")],
        vec![("authorization", "sk-master-test")],
    ] {
        let answer = call(
            &client(),
            "POST",
            &url,
            chat_body("gpt-test", false),
            &headers,
        )
        .await;
        assert_eq!(answer.status, 401, "{headers:?}");
        assert_eq!(answer.openai_error()["type"], "authentication_error");
    }
    let models = call(&client(), "GET", &gateway.url("/v1/models"), "", &[]).await;
    assert_eq!(models.status, 401);
    let health = call(&client(), "GET", &gateway.url("/health"), "", &[]).await;
    assert_eq!(health.status, 200, "liveness needs no key");
    assert!(upstream.requests().is_empty());
    assert_still_serving(&gateway, &upstream).await;
    gateway.shutdown().await;
}

#[tokio::test]
async fn an_upstream_that_refuses_or_resets_gets_a_502() {
    // Refused: nothing listens at the deployment's address.
    let refused = Upstream::refused_url();
    let gateway = TestGateway::start(&openai_config(&refused, ""), ENV).await;
    let answer = call(
        &client(),
        "POST",
        &gateway.url("/v1/chat/completions"),
        chat_body("gpt-test", false),
        &[],
    )
    .await;
    assert_eq!(answer.status, 502);
    let error = answer.openai_error();
    assert_eq!(error["code"], "upstream_unavailable");
    assert!(
        !answer.text().contains("127.0.0.1"),
        "no internal addresses: {}",
        answer.text()
    );
    gateway.shutdown().await;

    // Reset: the upstream drops the connection before answering.
    let upstream = Upstream::start().await;
    let gateway = gateway_for(&upstream).await;
    upstream.push(Reply::reset());
    let answer = post(&gateway, chat_body("gpt-test", true)).await;
    assert_eq!(answer.status, 502);
    assert_eq!(answer.openai_error()["code"], "upstream_unavailable");
    assert_still_serving(&gateway, &upstream).await;
    gateway.shutdown().await;
}

#[tokio::test]
async fn upstream_errors_are_classified_and_sanitised() {
    let upstream = Upstream::start().await;
    let gateway = gateway_for(&upstream).await;
    upstream.push(Reply::json(
        400,
        openai::error_body(
            "This model's maximum context length is 8192 tokens.",
            "invalid_request_error",
            Some("context_length_exceeded"),
        ),
    ));
    let answer = post(&gateway, chat_body("gpt-test", false)).await;
    assert_eq!(answer.status, 400);
    let error = answer.openai_error();
    assert_eq!(error["code"], "context_length_exceeded");
    assert_eq!(
        error["message"],
        "This model's maximum context length is 8192 tokens."
    );

    upstream.push(
        Reply::json(
            429,
            openai::error_body(
                "Rate limit reached for org-abc123",
                "requests",
                Some("rate_limit_exceeded"),
            ),
        )
        .header("retry-after", "7"),
    );
    let answer = post(&gateway, chat_body("gpt-test", false)).await;
    assert_eq!(answer.status, 429);
    assert_eq!(answer.headers["retry-after"], "7");
    assert!(!answer.text().contains("org-abc123"));

    upstream.push(Reply::json(
        503,
        openai::error_body("db-3.internal overloaded", "server_error", None),
    ));
    let answer = post(&gateway, chat_body("gpt-test", false)).await;
    assert_eq!(answer.status, 502);
    assert!(!answer.text().contains("internal"));
    assert_still_serving(&gateway, &upstream).await;
    gateway.shutdown().await;
}

#[tokio::test]
async fn unknown_routes_and_methods() {
    let upstream = Upstream::start().await;
    let gateway = gateway_for(&upstream).await;
    let answer = call(&client(), "GET", &gateway.url("/v1/nope"), "", &[AUTH]).await;
    assert_eq!(answer.status, 404);
    answer.openai_error();
    let answer = call(
        &client(),
        "GET",
        &gateway.url("/v1/chat/completions"),
        "",
        &[AUTH],
    )
    .await;
    assert_eq!(answer.status, 405);
    answer.openai_error();
    gateway.shutdown().await;
}

#[tokio::test]
async fn invalid_utf8_and_deep_nesting_are_refused_before_any_upstream_is_asked() {
    let upstream = Upstream::start().await;
    let gateway = gateway_for(&upstream).await; // bodies up to 1048 bytes
    let mut not_utf8 = br#"{"model":"gpt-test","messages":[{"role":"user","content":"caf"#.to_vec();
    not_utf8.extend_from_slice(b"\xE9\"}]}");
    // Arrays in a message's content: with the request's object, `messages`
    // and the message, `levels` deep in all.
    let nested = |levels: usize| {
        let inner = levels - 3;
        format!(
            r#"{{"model":"gpt-test","messages":[{{"role":"user","content":{}"x"{}}}]}}"#,
            "[".repeat(inner),
            "]".repeat(inner)
        )
    };
    let cases: [(bytes::Bytes, &str); 3] = [
        (not_utf8.into(), "not valid UTF-8"),
        (nested(65).into(), "deeper than 64 levels"),
        (nested(400).into(), "deeper than 64 levels"),
    ];
    for (body, message) in cases {
        let answer = post(&gateway, body).await;
        assert_eq!(answer.status, 400, "{}", answer.text());
        let error = answer.openai_error();
        assert_eq!(error["type"], "invalid_request_error");
        assert!(
            error["message"].as_str().unwrap().contains(message),
            "{error}"
        );
    }
    assert!(
        upstream.requests().is_empty(),
        "refused before any upstream is asked"
    );
    // At the limit, the request goes through.
    upstream.push(Reply::json(200, openai::chat_completion("deep enough")));
    let answer = post(&gateway, nested(64)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(upstream.requests().len(), 1);
    assert_still_serving(&gateway, &upstream).await;
    gateway.shutdown().await;
}

#[tokio::test]
async fn an_over_long_uri_and_too_large_headers_get_an_openai_error() {
    let upstream = Upstream::start().await;
    let gateway = gateway_for(&upstream).await;
    let long_uri = gateway.url(&format!("/v1/models?q={}", "x".repeat(10 * 1024)));
    let answer = call(&client(), "GET", &long_uri, "", &[AUTH]).await;
    assert_eq!(answer.status, 414);
    assert_eq!(answer.openai_error()["code"], "uri_too_long");

    let big = "x".repeat(40 * 1024);
    let answer = call(
        &client(),
        "POST",
        &gateway.url("/v1/chat/completions"),
        chat_body("gpt-test", false),
        &[AUTH, ("x-big", &big)],
    )
    .await;
    assert_eq!(answer.status, 431);
    assert_eq!(
        answer.openai_error()["code"],
        "request_header_fields_too_large"
    );
    assert!(upstream.requests().is_empty());
    assert_still_serving(&gateway, &upstream).await;
    gateway.shutdown().await;
}

/// Sends `request` as raw bytes and reads the answer until the gateway
/// closes the connection.
async fn raw_exchange(gateway: &TestGateway, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    // hyper closes the connection after such an answer; the bound only
    // keeps a regression from hanging the test.
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        tcp.read_to_end(&mut answer),
    )
    .await
    .expect("the gateway closes the connection")
    .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// What hyper refuses before the gateway sees a request, it answers itself,
/// with an empty body (the README lists these): a URI over 64 KiB, more
/// than 100 headers, a request line that does not parse. The gateway keeps
/// serving.
#[tokio::test]
async fn what_hyper_refuses_itself_gets_its_empty_answer_and_the_gateway_keeps_serving() {
    let upstream = Upstream::start().await;
    let gateway = gateway_for(&upstream).await;
    let huge_uri = format!(
        "GET /v1/models?q={} HTTP/1.1\r\nhost: x\r\n\r\n",
        "x".repeat(70 * 1024)
    );
    let mut many_headers = String::from("GET /health HTTP/1.1\r\nhost: x\r\n");
    for i in 0..100 {
        many_headers.push_str(&format!("x-h{i}: v\r\n"));
    }
    many_headers.push_str("\r\n");
    for (request, status) in [
        (huge_uri.as_str(), "414"),
        (many_headers.as_str(), "431"),
        ("NOT A REQUEST\r\n\r\n", "400"),
    ] {
        let answer = raw_exchange(&gateway, request.as_bytes()).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{answer}"
        );
        assert!(answer.contains("content-length: 0\r\n"), "{answer}");
    }
    assert_still_serving(&gateway, &upstream).await;
    gateway.shutdown().await;
}
