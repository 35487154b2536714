//! Answers in the Responses API itself (a `NativeAnswer`), passed through,
//! and streams ended early — by a layer below or by the caller's cut —
//! ending as the same response. Events in the shapes of OpenAI's API
//! reference, "Responses" → "Streaming events".

use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tollgate_core::extensions::{NativeAnswer, NativeApi};
use tollgate_core::{BoxError, ErrorClass, Failure, RequestBody};
use tower::{Layer, ServiceExt, service_fn};

use super::{Responses, ResponsesLayer, ResponsesStream};
use crate::body::ResponseBody;
use crate::protocol::Protocol;
use crate::test_support::{Pieces, chat_sse, events, text_chunk};

/// One typed event as OpenAI writes it.
fn typed(n: u64, name: &str, mut data: Value) -> String {
    data["type"] = json!(name);
    data["sequence_number"] = json!(n);
    format!("event: {name}\ndata: {data}\n\n")
}

fn response(status: &str) -> Value {
    json!({"id": "resp_up", "object": "response", "created_at": 1741476542,
        "status": status, "model": "gpt-4.1", "output": [], "usage": null})
}

/// The start of a stream: created, in progress, a message item and one delta.
fn start() -> String {
    typed(
        0,
        "response.created",
        json!({"response": response("in_progress")}),
    ) + &typed(
        1,
        "response.in_progress",
        json!({"response": response("in_progress")}),
    ) + &typed(
        2,
        "response.output_item.added",
        json!({"output_index": 0,
            "item": {"type": "message", "id": "msg_up", "role": "assistant", "content": []}}),
    ) + &typed(
        3,
        "response.output_text.delta",
        json!({"item_id": "msg_up",
            "output_index": 0, "content_index": 0, "delta": "Hel"}),
    )
}

fn request(stream: bool) -> Request<RequestBody> {
    let body = json!({"model": "m", "input": "Hi", "stream": stream});
    Request::new(RequestBody::new(Bytes::from(body.to_string())))
}

/// A service answering `body` (a stream when `sse`) in the Responses API.
async fn through(body: Pieces, sse: bool) -> Response<ResponseBody<Pieces, ResponsesStream>> {
    let answer = std::sync::Mutex::new(Some(body));
    let native = service_fn(move |_: Request<RequestBody>| {
        let body = answer.lock().unwrap().take().unwrap();
        async move {
            let mut response = Response::new(body);
            if sse {
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("text/event-stream"),
                );
            }
            response
                .extensions_mut()
                .insert(NativeAnswer(NativeApi::OpenAiResponses));
            Ok::<_, BoxError>(response)
        }
    });
    ResponsesLayer::new()
        .layer(native)
        .oneshot(request(sse))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_native_answer_and_stream_pass_through_untouched() {
    let answer = json!({"id": "resp_up", "object": "response", "status": "completed",
        "output": [], "usage": {"input_tokens": 3, "output_tokens": 1}})
    .to_string();
    let (head, tail) = answer.split_at(10);
    let body = Pieces::of([Bytes::from(head.to_owned()), Bytes::from(tail.to_owned())]);
    let answered = through(body, false).await;
    let bytes = answered.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(bytes, answer);

    let completed = typed(
        4,
        "response.completed",
        json!({"response": response("completed")}),
    );
    let whole = start() + &completed;
    // Split inside events: passed on whole, unchanged, nothing added.
    let pieces = whole
        .as_bytes()
        .chunks(7)
        .map(Bytes::copy_from_slice)
        .collect::<Vec<_>>();
    let answered = through(Pieces::of(pieces), true).await;
    let bytes = answered.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(bytes, whole);
}

/// The error event a chat layer below ends a stream with.
fn cascade_error() -> String {
    let failure = Failure::new(ErrorClass::StreamInterrupted, "the upstream broke");
    format!(
        "data: {}\n\n",
        String::from_utf8(failure.to_openai_body().to_vec()).unwrap()
    )
}

#[tokio::test]
async fn a_native_stream_ended_early_fails_as_the_same_response_numbered_on() {
    for ending in [cascade_error(), String::new()] {
        let body = Pieces::of([Bytes::from(start()), Bytes::from(ending.clone())]);
        let response = through(body, true).await;
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        assert!(text.starts_with(&start()), "{text}");
        let got = events(&bytes);
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names[4..], ["error", "response.failed"], "{text}");
        assert_eq!(got[4].1["sequence_number"], 4);
        assert_eq!(got[5].1["sequence_number"], 5);
        let failed = &got[5].1["response"];
        assert_eq!(failed["id"], "resp_up");
        assert_eq!(failed["model"], "gpt-4.1");
        assert_eq!(failed["created_at"], 1741476542);
        assert_eq!(failed["status"], "failed");
        assert!(
            !text.contains("\"error\":{\"message\""),
            "no chat error event: {text}"
        );
    }
}

#[tokio::test]
async fn a_cut_ends_a_bridged_or_native_stream_without_a_second_start() {
    // Bridged: the chat chunks already translated, then the cut.
    let chat = chat_sse(&[text_chunk("Hel")], false);
    let mut body = std::pin::pin!(ResponseBody::stream(
        Pieces::of([chat]),
        Responses::stream()
    ));
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    let failure = Failure::new(ErrorClass::Internal, "shutting down");
    let rest = body.as_mut().cut(&failure);
    assert!(body.frame().await.is_none(), "nothing after the cut");
    let got = events(&[first, rest].concat());
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names.iter().filter(|n| **n == "response.created").count(),
        1
    );
    assert_eq!(names[names.len() - 2..], ["error", "response.failed"]);
    let numbers: Vec<u64> = got
        .iter()
        .map(|(_, d)| d["sequence_number"].as_u64().unwrap())
        .collect();
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
    assert_eq!(
        got.last().unwrap().1["response"]["id"],
        got[0].1["response"]["id"]
    );

    // Native: the upstream's response, numbered on.
    let mut body = std::pin::pin!(ResponseBody::native_stream(
        Pieces::of([Bytes::from(start())]),
        Responses::stream()
    ));
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    let rest = body.as_mut().cut(&failure);
    let got = events(&[first, rest].concat());
    assert_eq!(got.len(), 6);
    assert_eq!(got[5].0, "response.failed");
    assert_eq!(got[5].1["sequence_number"], 5);
    assert_eq!(got[5].1["response"]["id"], "resp_up");
    // A complete answer has nothing to cut.
    let mut complete = std::pin::pin!(ResponseBody::<Full<Bytes>, ResponsesStream>::native(
        Full::new(Bytes::from_static(b"{}"))
    ));
    assert!(complete.as_mut().cut(&failure).is_empty());
}

#[test]
fn previous_response_id_is_for_a_stateful_deployment_to_take() {
    let body = json!({"model": "m", "input": "And then?", "previous_response_id": "resp_1"});
    let body = body.to_string();
    assert!(Responses::to_chat(body.as_bytes()).is_err());
    let chat = super::to_chat_stateful(body.as_bytes()).unwrap();
    let chat: Value = serde_json::from_slice(chat.bytes()).unwrap();
    assert!(chat.get("previous_response_id").is_none(), "{chat}");
    assert!(super::names_previous_response(body.as_bytes()));
    for without in [
        json!({"model": "m", "input": "x"}),
        json!({"model": "m", "input": "x", "previous_response_id": null}),
    ] {
        assert!(!super::names_previous_response(
            without.to_string().as_bytes()
        ));
    }
    let refusal = super::stateless_refusal();
    assert_eq!(refusal.class(), ErrorClass::BadRequest);
    assert!(refusal.message().contains("previous_response_id"));
}
