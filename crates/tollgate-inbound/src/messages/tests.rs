use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{Value, json};
use tollgate_core::{ErrorClass, Failure};

use super::{Messages, MessagesStream, error_type};
use crate::protocol::Protocol;
use crate::test_support::{
    Pieces, chat_sse, finish_chunk, json, text_chunk, tool_chunk, translate, usage_chunk,
};

fn chat_of(request: Value) -> Value {
    let chat = Messages::to_chat(request.to_string().as_bytes()).expect("a valid request");
    json(chat.bytes())
}

fn refusal(request: Value) -> Failure {
    Messages::to_chat(request.to_string().as_bytes()).expect_err("an invalid request")
}

#[test]
fn system_text_and_limits_become_chat_fields() {
    let chat = chat_of(json!({
        "model": "gpt-4o", "max_tokens": 100, "stop_sequences": ["END"],
        "temperature": 0.2, "top_k": 5, "metadata": {"user_id": "u-1"},
        "system": [{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}],
        "messages": [{"role": "user", "content": "Hi"}],
    }));
    assert_eq!(
        chat,
        json!({
            "model": "gpt-4o", "max_tokens": 100, "stop": ["END"], "temperature": 0.2,
            "user": "u-1",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
            ],
        })
    );
}

#[test]
fn a_stream_asks_for_its_usage() {
    let request = json!({"model": "m", "max_tokens": 1, "stream": true,
        "messages": [{"role": "user", "content": "Hi"}]});
    let chat = Messages::to_chat(request.to_string().as_bytes()).unwrap();
    assert!(chat.stream());
    assert!(chat.include_usage());
    assert_eq!(chat.max_tokens(), Some(1));
}

#[test]
fn blocks_tool_use_and_tool_results_map_to_chat_messages() {
    let chat = chat_of(json!({
        "model": "m", "max_tokens": 10,
        "tools": [{"name": "weather", "description": "Weather by city",
                   "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        "tool_choice": {"type": "tool", "name": "weather", "disable_parallel_tool_use": true},
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Weather here?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "AAAA"}},
            ]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hm", "signature": "sig"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1",
                 "content": [{"type": "text", "text": "18C"}]},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "down", "is_error": true},
                {"type": "text", "text": "Thanks"},
            ]},
        ],
    }));
    assert_eq!(
        chat["tools"],
        json!([{"type": "function", "function": {"name": "weather",
            "description": "Weather by city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
    );
    assert_eq!(
        chat["tool_choice"],
        json!({"type": "function", "function": {"name": "weather"}})
    );
    assert_eq!(chat["parallel_tool_calls"], json!(false));
    assert_eq!(
        chat["messages"],
        json!([
            {"role": "user", "content": [
                {"type": "text", "text": "Weather here?"},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}},
            ]},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "toolu_1", "type": "function",
                 "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
            ]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: down"},
            {"role": "user", "content": "Thanks"},
        ])
    );
}

#[test]
fn tool_choices_map_both_ways_of_naming() {
    for (choice, want) in [
        (json!({"type": "auto"}), json!("auto")),
        (json!({"type": "any"}), json!("required")),
        (json!({"type": "none"}), json!("none")),
    ] {
        let chat = chat_of(json!({"model": "m", "max_tokens": 1, "tool_choice": choice,
            "messages": [{"role": "user", "content": "x"}]}));
        assert_eq!(chat["tool_choice"], want);
        assert!(chat.get("parallel_tool_calls").is_none());
    }
    let image = chat_of(
        json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user",
        "content": [{"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
                    {"type": "text", "text": "What?"}]}]}),
    );
    assert_eq!(
        image["messages"][0]["content"][0],
        json!({"type": "image_url", "image_url": {"url": "https://x/y.png"}})
    );
}

#[test]
fn bad_requests_say_what_is_wrong() {
    let user = json!([{"role": "user", "content": "x"}]);
    for (request, says) in [
        (json!({"max_tokens": 1, "messages": user}), "model"),
        (json!({"model": "m", "messages": user}), "max_tokens"),
        (json!({"model": "m", "max_tokens": 1}), "messages"),
        (
            json!({"model": "m", "max_tokens": 1, "messages": []}),
            "at least one",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "system", "content": "x"}]}),
            "messages.0: role",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": 3}]}),
            "content",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user",
            "content": [{"type": "document", "source": {}}]}]}),
            "document",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user",
            "content": [{"type": "image", "source": {"type": "file"}}]}]}),
            "image source",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": user,
            "tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
            "served only by Anthropic",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": user, "tools": {}}),
            "tools",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": user, "tools": [3]}),
            "tools.0",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": user, "tool_choice": {"type": "x"}}),
            "tool_choice",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": user, "system": 3}),
            "system",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "image"}]}]}]}),
            "tool_result",
        ),
        (json!([1, 2]), "JSON object"),
    ] {
        let failure = refusal(request.clone());
        assert_eq!(failure.class(), ErrorClass::BadRequest, "{request}");
        assert!(
            failure.message().contains(says),
            "{request}: {}",
            failure.message()
        );
    }
    let failure = Messages::to_chat(b"{not json").unwrap_err();
    assert!(failure.message().contains("not valid JSON"));
}

#[test]
fn an_answer_becomes_a_message_with_blocks() {
    let chat = json!({"id": "chatcmpl-9", "model": "gpt-4o", "choices": [{"index": 0,
        "message": {"role": "assistant", "content": "Let me look.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"id": "call_2", "type": "function", "function": {"name": "time", "arguments": "not json"}},
            {"id": "call_3", "type": "function", "function": {"name": "noop", "arguments": ""}},
        ]}, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 30, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 10}}});
    let message = json(&Messages::answer(chat.to_string().as_bytes()).unwrap());
    assert_eq!(
        message,
        json!({
            "id": "msg_chatcmpl-9", "type": "message", "role": "assistant", "model": "gpt-4o",
            "content": [
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "call_2", "name": "time", "input": {"arguments": "not json"}},
                {"type": "tool_use", "id": "call_3", "name": "noop", "input": {}},
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 20, "output_tokens": 5,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 10},
        })
    );
    for (finish, stop) in [
        ("length", "max_tokens"),
        ("content_filter", "refusal"),
        ("stop", "end_turn"),
    ] {
        let chat = json!({"choices": [{"message": {"content": "x"}, "finish_reason": finish}]});
        let message = json(&Messages::answer(chat.to_string().as_bytes()).unwrap());
        assert_eq!(message["stop_reason"], stop);
        assert_eq!(message["id"], "msg_tollgate");
    }
    let failure = Messages::answer(b"<html>").unwrap_err();
    assert_eq!(failure.class(), ErrorClass::UpstreamUnavailable);
}

#[test]
fn errors_take_anthropics_shape_and_types() {
    let failure = Failure::new(ErrorClass::BadRequest, "bad");
    assert_eq!(
        json(&Messages::error_body(&failure)),
        json!({"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}})
    );
    let response: http::Response<Bytes> =
        Messages::error_response(&Failure::new(ErrorClass::RateLimited, "slow down"));
    assert_eq!(response.status(), 429);
    assert_eq!(json(response.body())["error"]["type"], "rate_limit_error");
    for (class, kind) in [
        (ErrorClass::Auth, "authentication_error"),
        (ErrorClass::ModelNotFound, "not_found_error"),
        (ErrorClass::InsufficientCredits, "billing_error"),
        (ErrorClass::UpstreamUnavailable, "api_error"),
        (ErrorClass::Timeout, "timeout_error"),
        (ErrorClass::StreamInterrupted, "api_error"),
        (ErrorClass::Internal, "api_error"),
    ] {
        assert_eq!(error_type(&Failure::new(class, "x")), kind, "{class:?}");
    }
    let forbidden = Failure::new(ErrorClass::Auth, "no").with_status(http::StatusCode::FORBIDDEN);
    assert_eq!(error_type(&forbidden), "permission_error");
    let large = Failure::new(ErrorClass::BadRequest, "big")
        .with_status(http::StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_type(&large), "request_too_large");
    let open = Failure::new(ErrorClass::UpstreamUnavailable, "open")
        .with_status(http::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_type(&open), "overloaded_error");
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(name, _)| name.as_str()).collect()
}

#[tokio::test]
async fn a_text_stream_becomes_anthropics_events() {
    let sse = chat_sse(
        &[
            text_chunk("Hel"),
            text_chunk("lo"),
            finish_chunk("stop"),
            usage_chunk(12, 3),
        ],
        true,
    );
    let events = translate(Pieces::of([sse]), MessagesStream::default()).await;
    assert_eq!(
        names(&events),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(events[0].1["message"]["id"], "msg_chatcmpl-1");
    assert_eq!(events[0].1["message"]["model"], "gpt-4o");
    assert_eq!(
        events[1].1["content_block"],
        json!({"type": "text", "text": ""})
    );
    assert_eq!(
        events[3].1["delta"],
        json!({"type": "text_delta", "text": "lo"})
    );
    assert_eq!(events[5].1["delta"]["stop_reason"], "end_turn");
    assert_eq!(events[5].1["usage"]["input_tokens"], 10);
    assert_eq!(events[5].1["usage"]["cache_read_input_tokens"], 2);
    assert_eq!(events[5].1["usage"]["output_tokens"], 3);
}

#[tokio::test]
async fn tool_calls_stream_as_tool_use_blocks() {
    let sse = chat_sse(
        &[
            text_chunk("Checking."),
            tool_chunk(0, Some(("call_1", "weather")), ""),
            tool_chunk(0, None, "{\"city\":"),
            tool_chunk(0, None, "\"Paris\"}"),
            tool_chunk(1, Some(("call_2", "time")), "{}"),
            finish_chunk("tool_calls"),
        ],
        true,
    );
    let events = translate(Pieces::of([sse]), MessagesStream::default()).await;
    assert_eq!(
        names(&events),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(
        events[4].1["content_block"],
        json!({"type": "tool_use", "id": "call_1", "name": "weather", "input": {}})
    );
    assert_eq!(events[4].1["index"], 1);
    assert_eq!(
        events[6].1["delta"],
        json!({"type": "input_json_delta", "partial_json": "\"Paris\"}"})
    );
    assert_eq!(events[8].1["index"], 2);
    assert_eq!(events[11].1["delta"]["stop_reason"], "tool_use");
}

#[tokio::test]
async fn a_broken_stream_ends_with_an_error_event_never_a_clean_end() {
    // Cut: no finish, no [DONE].
    let cut = translate(
        Pieces::of([chat_sse(&[text_chunk("Hel")], false)]),
        MessagesStream::default(),
    )
    .await;
    assert_eq!(
        names(&cut),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "error"
        ]
    );
    assert_eq!(cut[3].1["type"], "error");
    assert_eq!(cut[3].1["error"]["type"], "api_error");
    // The cascade's error event.
    let error = json!({"error": {"message": "the upstream broke", "type": "server_error",
        "code": "stream_interrupted"}});
    let events = translate(
        Pieces::of([chat_sse(&[text_chunk("Hel"), error], false)]),
        MessagesStream::default(),
    )
    .await;
    assert_eq!(events.last().unwrap().0, "error");
    assert_eq!(
        events.last().unwrap().1["error"]["message"],
        "the upstream broke"
    );
    // A body error.
    let mut pieces = Pieces::of([chat_sse(&[text_chunk("Hel")], false)]);
    pieces.0.push_back(Err(Box::new(Failure::new(
        ErrorClass::UpstreamUnavailable,
        "reset",
    ))));
    let events = translate(pieces, MessagesStream::default()).await;
    assert_eq!(events.last().unwrap().1["error"]["message"], "reset");
    // Not a chat chunk, and not SSE.
    let events = translate(
        Pieces::of([Bytes::from("data: <html>\n\n")]),
        MessagesStream::default(),
    )
    .await;
    assert_eq!(names(&events), ["error"]);
    // An empty stream that still ends cleanly has a message.
    let events = translate(
        Pieces::of([Bytes::from("data: [DONE]\n\n")]),
        MessagesStream::default(),
    )
    .await;
    assert_eq!(
        names(&events),
        ["message_start", "message_delta", "message_stop"]
    );
}

proptest! {
    /// However the upstream's bytes are cut, the events are the same.
    #[test]
    fn splits_do_not_change_the_events(cuts in proptest::collection::vec(0usize..2000, 0..12)) {
        let sse = chat_sse(
            &[
                text_chunk("Héllo, "),
                text_chunk("wörld"),
                tool_chunk(0, Some(("call_1", "weather")), "{\"city\":"),
                tool_chunk(0, None, "\"Paris\"}"),
                finish_chunk("tool_calls"),
                usage_chunk(9, 4),
            ],
            true,
        );
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (sse.len() + 1)).collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut pieces = Vec::new();
        let mut from = 0;
        for cut in cuts.into_iter().chain([sse.len()]) {
            pieces.push(sse.slice(from..cut));
            from = cut;
        }
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let whole = runtime.block_on(translate(Pieces::of([sse.clone()]), MessagesStream::default()));
        let split = runtime.block_on(translate(Pieces::of(pieces), MessagesStream::default()));
        prop_assert_eq!(whole, split);
    }
}
