//! The layer, its future and its body, over a scripted chat service.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use serde_json::json;
use tollgate_core::extensions::{NativeApi, NativeRequest};
use tollgate_core::{BoxError, ChatRequest, ErrorClass, Failure, RequestBody};
use tower::{Layer, ServiceExt, service_fn};

use crate::messages::{Messages, MessagesLayer};
use crate::protocol::Protocol;
use crate::responses::ResponsesLayer;
use crate::test_support::{Pieces, chat_sse, events, finish_chunk, json, text_chunk};

fn request(body: serde_json::Value) -> Request<RequestBody> {
    Request::new(RequestBody::new(Bytes::from(body.to_string())))
}

fn anthropic(stream: bool) -> Request<RequestBody> {
    request(json!({"model": "m", "max_tokens": 5, "stream": stream,
        "messages": [{"role": "user", "content": "Hi"}]}))
}

#[tokio::test]
async fn the_inner_service_gets_the_chat_request_and_its_view() {
    let chat = service_fn(|request: Request<RequestBody>| async move {
        let view = request.body().chat().cloned().unwrap();
        assert_eq!(request.body().bytes(), Some(view.bytes()));
        // One source of truth: no copy of the request travels beside it.
        assert!(request.extensions().get::<Arc<ChatRequest>>().is_none());
        assert!(view.stream() && view.include_usage());
        // The Anthropic request as written travels beside it.
        let native = request.extensions().get::<NativeRequest>().unwrap();
        assert_eq!(native.api, NativeApi::AnthropicMessages);
        assert_eq!(native.message_count, view.message_count());
        assert_eq!(json(&native.body)["max_tokens"], 5);
        let mut response = Response::new(Pieces::of([chat_sse(
            &[text_chunk("Hi"), finish_chunk("stop")],
            true,
        )]));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, "text/event-stream".parse().unwrap());
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, "999".parse().unwrap());
        Ok::<_, BoxError>(response)
    });
    let response = MessagesLayer::new()
        .layer(chat)
        .oneshot(anthropic(true))
        .await
        .unwrap();
    assert!(response.headers().get(header::CONTENT_LENGTH).is_none());
    assert!(response.body().get_ref().is_some());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let names: Vec<String> = events(&body).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names.last().map(String::as_str), Some("message_stop"));
}

#[tokio::test]
async fn a_request_translated_before_goes_on_as_it_is() {
    let chat = Messages::to_chat(
        json!({"model": "routed", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    let inner = service_fn(|request: Request<RequestBody>| async move {
        let view = request.body().chat().cloned().unwrap();
        assert_eq!(view.model(), "routed");
        assert!(request.extensions().get::<Arc<ChatRequest>>().is_none());
        let answer = json!({"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}]});
        Ok::<_, BoxError>(Response::new(Full::new(Bytes::from(answer.to_string()))))
    });
    // The body is not even a Messages request: the view is what counts.
    let mut request = Request::new(RequestBody::new(Bytes::from_static(b"ignored")));
    request.extensions_mut().insert(Arc::new(chat));
    let response = MessagesLayer::new()
        .layer(inner)
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(json(&body)["content"][0]["text"], "ok");
}

#[tokio::test]
async fn bad_input_fails_before_the_inner_service() {
    let inner = service_fn(|_: Request<RequestBody>| async move {
        panic!("never called");
        #[allow(unreachable_code)]
        Ok::<Response<Full<Bytes>>, BoxError>(Response::new(Full::default()))
    });
    let error = MessagesLayer::new()
        .layer(inner)
        .oneshot(request(json!({"model": "m"})))
        .await
        .unwrap_err();
    let failure = Failure::from_error(&*error);
    assert_eq!(failure.class(), ErrorClass::BadRequest);
    let response: Response<Bytes> = Messages::error_response(&failure);
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(response.body())["type"], "error");
}

#[tokio::test]
async fn inner_failures_pass_and_error_statuses_are_translated() {
    let failing = service_fn(|_: Request<RequestBody>| async move {
        Err::<Response<Full<Bytes>>, BoxError>(Box::new(Failure::new(
            ErrorClass::RateLimited,
            "slow",
        )))
    });
    let error = MessagesLayer::new()
        .layer(failing)
        .oneshot(anthropic(false))
        .await
        .unwrap_err();
    assert_eq!(
        Failure::from_error(&*error).class(),
        ErrorClass::RateLimited
    );

    let status = service_fn(|_: Request<RequestBody>| async move {
        let body = json!({"error": {"message": "no such model", "type": "invalid_request_error",
            "code": "model_not_found"}});
        let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
        *response.status_mut() = StatusCode::NOT_FOUND;
        Ok::<_, BoxError>(response)
    });
    let response = MessagesLayer::new()
        .layer(status)
        .oneshot(anthropic(false))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(json(&body)["error"]["type"], "not_found_error");
    assert!(
        json(&body)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no such model")
    );

    let garbage = service_fn(|request: Request<RequestBody>| async move {
        // The Responses request goes on beside its translation.
        let native = request.extensions().get::<NativeRequest>().unwrap();
        assert_eq!(native.api, NativeApi::OpenAiResponses);
        Ok::<_, BoxError>(Response::new(Full::new(Bytes::from_static(b"<html>"))))
    });
    let response = ResponsesLayer::new()
        .layer(garbage)
        .oneshot(request(json!({"model": "m", "input": "x"})))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(json(&body)["error"]["type"], "upstream_error");
}

#[tokio::test]
async fn a_complete_answer_larger_than_the_bound_fails() {
    let huge = service_fn(|_: Request<RequestBody>| async move {
        let piece = Bytes::from(vec![b' '; crate::MAX_ANSWER_BYTES / 2 + 1]);
        Ok::<_, BoxError>(Response::new(Pieces::of([piece.clone(), piece])))
    });
    let error = MessagesLayer::new()
        .layer(huge)
        .oneshot(anthropic(false))
        .await
        .unwrap_err();
    assert_eq!(
        Failure::from_error(&*error).class(),
        ErrorClass::UpstreamUnavailable
    );
}

#[test]
fn the_layer_and_service_describe_themselves() {
    let layer = MessagesLayer::default();
    assert!(format!("{:?}", layer.clone()).contains("Messages"));
    let service = layer.layer(());
    assert!(format!("{:?}", service.clone()).contains("Messages"));
    assert_eq!(service.get_ref(), &());
}
