//! The Bedrock fake's own checks: its CRCs, framing, signature check and
//! scripted replies.

use bytes::Bytes;
use http::{HeaderMap, Method, Uri};
use serde_json::{Value, json};

use super::*;

#[test]
fn crc_is_the_ieee_one() {
    // The standard check value of CRC-32/ISO-HDLC.
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
}

#[test]
fn a_message_frames_its_lengths_and_crcs() {
    let bytes = message(&[(":event-type", "x")], b"{}");
    let total = u32::from_be_bytes(bytes[0..4].try_into().unwrap()) as usize;
    assert_eq!(total, bytes.len());
    assert_eq!(
        u32::from_be_bytes(bytes[8..12].try_into().unwrap()),
        crc32(&bytes[0..8])
    );
    assert_eq!(
        u32::from_be_bytes(bytes[total - 4..].try_into().unwrap()),
        crc32(&bytes[..total - 4])
    );
}

#[test]
fn aws_get_vanilla_vector_verifies_and_a_change_does_not() {
    // AWS's SigV4 test suite, "get-vanilla".
    let mut headers = HeaderMap::new();
    headers.insert("host", "example.amazonaws.com".parse().unwrap());
    headers.insert("x-amz-date", "20150830T123600Z".parse().unwrap());
    headers.insert(
        "authorization",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
         SignedHeaders=host;x-amz-date, \
         Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
            .parse()
            .unwrap(),
    );
    let expected = Expected {
        access_key_id: "AKIDEXAMPLE",
        secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        region: "us-east-1",
        service: "service",
    };
    let uri: Uri = "/".parse().unwrap();
    assert_eq!(
        verify_sigv4(&Method::GET, &uri, &headers, b"", &expected),
        Ok(())
    );
    // A body the signature did not cover.
    let refusal = verify_sigv4(&Method::GET, &uri, &headers, b"x", &expected).unwrap_err();
    assert_eq!(refusal.kind, "InvalidSignatureException");
    // Another service's scope.
    let bedrock = Expected {
        service: "bedrock",
        ..expected
    };
    assert!(verify_sigv4(&Method::GET, &uri, &headers, b"", &bedrock).is_err());
    // Another key id.
    let other = Expected {
        access_key_id: "AKIDOTHER",
        ..expected
    };
    let refusal = verify_sigv4(&Method::GET, &uri, &headers, b"", &other).unwrap_err();
    assert_eq!(refusal.kind, "UnrecognizedClientException");
    // No signature at all.
    let refusal = verify_sigv4(&Method::GET, &uri, &HeaderMap::new(), b"", &expected).unwrap_err();
    assert_eq!(refusal.kind, "MissingAuthenticationTokenException");
    assert_eq!(refusal.reply().to_response().status(), 403);
}

#[tokio::test]
async fn the_upstream_refuses_unsigned_requests_before_the_script() {
    use http_body_util::{BodyExt, Full};
    use hyper_util::{client::legacy::Client, rt::TokioExecutor};

    let upstream = upstream().await;
    upstream.push(Reply::json(200, converse("scripted")));
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let uri: Uri = format!("{}/model/m/converse", upstream.url())
        .parse()
        .unwrap();
    let request = http::Request::post(uri)
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(
        response.headers()["x-amzn-errortype"]
            .to_str()
            .unwrap()
            .split(':')
            .next(),
        Some("MissingAuthenticationTokenException")
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("Missing Authentication Token"));
    // Recorded, and the scripted reply still waits for a signed request.
    assert_eq!(upstream.requests().len(), 1);
    upstream.set_recording(false);
    let request = http::Request::post(format!("{}/x", upstream.url()))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(client.request(request).await.unwrap().status(), 403);
    assert_eq!(upstream.wait_for_requests(2).await.len(), 1);
}

#[test]
fn scripted_replies_follow_what_is_asked() {
    let request = |path: &str, body: Value| crate::RecordedRequest {
        method: Method::POST,
        uri: path.parse().unwrap(),
        version: http::Version::HTTP_11,
        headers: HeaderMap::new(),
        body: Bytes::from(body.to_string()),
        received_at: tokio::time::Instant::now(),
    };
    let ask = |text: &str| json!({"messages": [{"role": "user", "content": [{"text": text}]}]});
    let status = |reply: Reply| reply.to_response().status();
    let converse_path = "/model/m/converse";
    assert_eq!(
        status(scripted_reply(&request(
            converse_path,
            ask("please throttle")
        ))),
        429
    );
    assert_eq!(
        status(scripted_reply(&request(
            converse_path,
            ask("this is too long")
        ))),
        400
    );
    let text = scripted_reply(&request(converse_path, ask("hi"))).to_response();
    assert_eq!(text.headers()["content-type"], "application/json");
    let stream = scripted_reply(&request("/model/m/converse-stream", ask("hi"))).to_response();
    assert_eq!(stream.headers()["content-type"], EVENT_STREAM);
    let mut tools = ask("weather?");
    tools["toolConfig"] = json!({"tools": [{"toolSpec": {"name": "weather"}}]});
    assert_eq!(
        status(scripted_reply(&request(converse_path, tools.clone()))),
        200
    );
    let tool_stream = scripted_reply(&request("/model/m/converse-stream", tools)).to_response();
    assert_eq!(tool_stream.headers()["content-type"], EVENT_STREAM);
}
