//! End-to-end: a hyper client against the scripted upstream, over real sockets.
//!
//! Real time throughout; tests wait for events (responses, frames, gates), never for
//! timers, except to show that nothing arrives after a stall.

use std::{error::Error as _, io, time::Duration};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::{Client, Error, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde_json::json;
use tollgate_testkit::{Gate, Reply, Upstream, openai};

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn get(client: &HttpClient, url: &str) -> Result<Response<Incoming>, Error> {
    client.get(url.parse().unwrap()).await
}

async fn text(response: Response<Incoming>) -> String {
    let body = response.into_body().collect().await.expect("a whole body");
    String::from_utf8(body.to_bytes().to_vec()).unwrap()
}

/// Reads frames until exactly `expected` has arrived (frames may split or merge).
async fn read_exactly(body: &mut Incoming, expected: &str) {
    let mut seen = Vec::new();
    while seen.len() < expected.len() {
        let frame = body.frame().await.expect("more body").expect("no error");
        seen.extend_from_slice(&frame.into_data().expect("data"));
    }
    assert_eq!(String::from_utf8(seen).unwrap(), expected);
}

/// Whether `err`'s source chain holds an I/O error of this kind.
fn has_io_kind(err: &(dyn std::error::Error + 'static), kind: io::ErrorKind) -> bool {
    let mut source = Some(err);
    while let Some(err) = source {
        if err
            .downcast_ref::<io::Error>()
            .is_some_and(|err| err.kind() == kind)
        {
            return true;
        }
        source = err.source();
    }
    false
}

#[tokio::test]
async fn json_reply() {
    let upstream = Upstream::start().await;
    let completion = openai::chat_completion("Hello!");
    upstream.push(Reply::json(200, completion.clone()).header("x-request-id", "req-1"));

    let response = get(&client(), &upstream.url()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["x-request-id"], "req-1");
    let length = response.headers()["content-length"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = text(response).await;
    assert_eq!(length, body.len().to_string());
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        completion
    );
}

#[tokio::test]
async fn script_then_default() {
    let upstream = Upstream::start().await;
    let client = client();
    upstream.push(Reply::json(
        429,
        openai::error_body("slow", "requests", None),
    ));
    upstream.push(Reply::bytes(200, "text/plain", "second").status(201));

    assert_eq!(get(&client, &upstream.url()).await.unwrap().status(), 429);
    let second = get(&client, &upstream.url()).await.unwrap();
    assert_eq!(second.status(), 201);
    assert_eq!(text(second).await, "second");

    let unscripted = get(&client, &upstream.url()).await.unwrap();
    assert_eq!(unscripted.status(), 500);
    let body: serde_json::Value = serde_json::from_str(&text(unscripted).await).unwrap();
    assert_eq!(body["error"]["message"], "testkit: no scripted reply");

    upstream.set_default(Reply::json(200, json!({"ok": true})));
    for _ in 0..3 {
        let response = get(&client, &upstream.url()).await.unwrap();
        assert_eq!(text(response).await, r#"{"ok":true}"#);
    }
    assert_eq!(upstream.requests().len(), 6);
    assert_eq!(
        upstream.connections(),
        1,
        "keep-alive reuses one connection"
    );
}

#[tokio::test]
async fn records_requests() {
    let upstream = Upstream::start().await;
    upstream.set_default(Reply::json(200, json!({})));
    let body = json!({"model": "gpt-4o-mini", "messages": []});
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("{}/v1/chat/completions?trace=1", upstream.url()))
        .header("authorization", "Bearer sk-test")
        .header("content-type", "application/json")
        .body(Full::from(body.to_string()))
        .unwrap();
    let client = client();
    tokio::spawn(async move { client.request(request).await });

    let requests = upstream.wait_for_requests(1).await;
    let seen = &requests[0];
    assert_eq!(seen.method, Method::POST);
    assert_eq!(seen.uri, "/v1/chat/completions?trace=1");
    assert_eq!(seen.version, Version::HTTP_11);
    assert_eq!(seen.headers["authorization"], "Bearer sk-test");
    assert_eq!(seen.json(), body);
    assert!(seen.received_at <= tokio::time::Instant::now());
}

#[tokio::test]
async fn recording_off_still_counts() {
    let upstream = Upstream::start().await;
    upstream.set_default(Reply::json(200, json!({})));
    upstream.set_recording(false);
    get(&client(), &upstream.url()).await.unwrap();
    assert!(upstream.wait_for_requests(1).await.is_empty());
}

#[tokio::test]
async fn sse_waits_for_the_gate() {
    let upstream = Upstream::start().await;
    let gate = Gate::new();
    let [first, second] = [json!({"n": 1}), json!({"n": 2})];
    upstream.push(Reply::sse().data(&first).wait(&gate).data(&second).done());

    let response = get(&client(), &upstream.url()).await.unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    read_exactly(&mut body, "data: {\"n\":1}\n\n").await;
    assert!(!gate.is_open(), "chunk 1 arrived while the gate was closed");
    gate.open();
    read_exactly(&mut body, "data: {\"n\":2}\n\ndata: [DONE]\n\n").await;
    assert!(body.frame().await.is_none(), "a clean end");
}

#[tokio::test]
async fn sse_without_done_ends_cleanly() {
    let upstream = Upstream::start().await;
    upstream.push(Reply::sse().data_each(openai::chunks(&["Hel", "lo"])));

    let body = text(get(&client(), &upstream.url()).await.unwrap()).await;
    let events: Vec<serde_json::Value> = body
        .split_terminator("\n\n")
        .map(|event| serde_json::from_str(event.strip_prefix("data: ").unwrap()).unwrap())
        .collect();
    assert_eq!(events, openai::chunks(&["Hel", "lo"]));
    assert!(!body.contains("[DONE]"));
}

#[tokio::test]
async fn reset_is_a_connection_error() {
    let upstream = Upstream::start().await;
    upstream.push(Reply::reset());

    let err = get(&client(), &upstream.url()).await.unwrap_err();
    assert!(!err.is_connect(), "the connection was made: {err:?}");
    assert!(
        has_io_kind(&err, io::ErrorKind::ConnectionReset),
        "reset by peer: {err:?}"
    );
    assert_eq!(upstream.requests().len(), 1, "recorded before the reset");
}

#[tokio::test]
async fn cut_fails_the_body() {
    let upstream = Upstream::start().await;
    upstream.push(Reply::sse().data("partial").cut().data("never"));

    let response = get(&client(), &upstream.url()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    read_exactly(&mut body, "data: partial\n\n").await;
    let err = body
        .frame()
        .await
        .expect("an error, not an end")
        .unwrap_err();
    assert!(has_io_kind(&err, io::ErrorKind::UnexpectedEof), "{err:?}");
}

#[tokio::test]
async fn cut_short_of_content_length() {
    let upstream = Upstream::start().await;
    let half = r#"{"id":"#;
    upstream.push(
        Reply::bytes(200, "application/json", half)
            .header("content-length", "100")
            .cut(),
    );

    let response = get(&client(), &upstream.url()).await.unwrap();
    assert_eq!(response.headers()["content-length"], "100");
    let mut body = response.into_body();
    read_exactly(&mut body, half).await;
    let err = body
        .frame()
        .await
        .expect("an error, not an end")
        .unwrap_err();
    assert!(has_io_kind(&err, io::ErrorKind::UnexpectedEof), "{err:?}");
}

#[tokio::test]
async fn stall_keeps_the_stream_silent() {
    let upstream = Upstream::start().await;
    upstream.push(Reply::sse().data("first").stall().data("never"));
    upstream.push(Reply::json(200, json!({"other": true})));
    let client = client();

    let mut stalled = get(&client, &upstream.url()).await.unwrap().into_body();
    read_exactly(&mut stalled, "data: first\n\n").await;

    // The stalled connection is busy, so this one opens a second connection.
    let other = get(&client, &upstream.url()).await.unwrap();
    assert_eq!(text(other).await, r#"{"other":true}"#);
    assert_eq!(upstream.connections(), 2);

    let silence = tokio::time::timeout(Duration::from_millis(50), stalled.frame()).await;
    assert!(silence.is_err(), "nothing after the stall");

    drop(upstream);
    let end = stalled.frame().await.expect("an error, not an end");
    assert!(end.is_err(), "dropping the upstream breaks the stall");
}

#[tokio::test]
async fn delay_headers_holds_the_response() {
    let upstream = Upstream::start().await;
    let delay = Duration::from_millis(20);
    upstream.push(Reply::json(200, json!({})).delay_headers(delay));

    let start = tokio::time::Instant::now();
    get(&client(), &upstream.url()).await.unwrap();
    assert!(start.elapsed() >= delay);
}

#[tokio::test]
async fn refused_url_fails_to_connect() {
    let err = get(&client(), &Upstream::refused_url()).await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    assert!(
        has_io_kind(&err, io::ErrorKind::ConnectionRefused),
        "{err:?}"
    );
}

#[tokio::test]
async fn speaks_h2c() {
    let upstream = Upstream::start().await;
    upstream.push(Reply::sse().data("a").done());
    upstream.push(Reply::reset());
    upstream.push(Reply::sse().data("a").cut());
    upstream.push(Reply::json(200, json!({"after": "reset"})));
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();

    let response = get(&client, &upstream.url()).await.unwrap();
    assert_eq!(response.version(), Version::HTTP_2);
    assert_eq!(text(response).await, "data: a\n\ndata: [DONE]\n\n");

    let err = get(&client, &upstream.url()).await.unwrap_err();
    let h2 = err
        .source()
        .and_then(|err| err.downcast_ref::<hyper::Error>());
    assert!(h2.is_some(), "a stream error: {err:?}");

    let mut cut = get(&client, &upstream.url()).await.unwrap().into_body();
    read_exactly(&mut cut, "data: a\n\n").await;
    assert!(cut.frame().await.expect("an error, not an end").is_err());

    let after = get(&client, &upstream.url()).await.unwrap();
    assert_eq!(text(after).await, r#"{"after":"reset"}"#);
    assert_eq!(
        upstream.connections(),
        1,
        "a stream reset keeps the connection"
    );
    assert_eq!(upstream.requests()[0].version, Version::HTTP_2);
}

#[tokio::test]
async fn open_connections_follow_the_clients() {
    let upstream = Upstream::start().await;
    upstream.push(Reply::sse().data("a").stall());
    assert_eq!(upstream.open_connections(), 0);
    let client = client();
    let url = format!("{}/v1/chat/completions", upstream.url());
    let mut response = get(&client, &url).await.unwrap();
    read_exactly(response.body_mut(), "data: a\n\n").await;
    assert_eq!(upstream.open_connections(), 1);
    // Dropping a response mid-body closes its HTTP/1.1 connection.
    drop(response);
    tokio::time::timeout(
        Duration::from_secs(10),
        upstream.wait_for_open_connections(0),
    )
    .await
    .expect("the server sees the connection close");
    assert_eq!(upstream.connections(), 1);
}
