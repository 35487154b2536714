use proptest::prelude::*;
use serde_json::{Value, json};
use tollgate_core::{ErrorClass, Failure};

use super::{Responses, ResponsesStream};
use crate::protocol::Protocol;
use crate::test_support::{
    Pieces, chat_sse, finish_chunk, json, text_chunk, tool_chunk, translate, usage_chunk,
};

fn chat_of(request: Value) -> Value {
    let chat = Responses::to_chat(request.to_string().as_bytes()).expect("a valid request");
    json(chat.bytes())
}

fn refusal(request: Value) -> Failure {
    Responses::to_chat(request.to_string().as_bytes()).expect_err("an invalid request")
}

#[test]
fn a_string_input_with_instructions_is_a_chat() {
    let chat = chat_of(
        json!({"model": "gpt-4o", "instructions": "Be brief.", "input": "Hi",
        "max_output_tokens": 50, "temperature": 0.1, "store": false,
        "reasoning": {"effort": "low"}, "text": {"format": {"type": "text"}}}),
    );
    assert_eq!(
        chat,
        json!({"model": "gpt-4o", "max_tokens": 50, "temperature": 0.1, "reasoning_effort": "low",
            "messages": [{"role": "system", "content": "Be brief."},
                         {"role": "user", "content": "Hi"}]})
    );
}

#[test]
fn items_function_calls_and_outputs_map_to_chat_messages() {
    let chat = chat_of(json!({"model": "m", "stream": true,
    "tools": [{"type": "function", "name": "weather", "description": "d",
               "parameters": {"type": "object"}, "strict": true}],
    "tool_choice": {"type": "function", "name": "weather"},
    "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}}},
    "input": [
        {"role": "developer", "content": "Rules."},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "Weather?"},
            {"type": "input_image", "image_url": "https://x/y.png", "detail": "low"}]},
        {"type": "reasoning", "summary": []},
        {"role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
        {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": "{}"},
        {"type": "function_call", "call_id": "call_2", "name": "time", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
        {"type": "function_call", "call_id": "call_3", "name": "time", "arguments": "{}"},
    ]}));
    assert_eq!(
        chat["messages"],
        json!([
            {"role": "system", "content": "Rules."},
            {"role": "user", "content": [
                {"type": "text", "text": "Weather?"},
                {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}}]},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{}"}},
                {"id": "call_2", "type": "function", "function": {"name": "time", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_3", "type": "function", "function": {"name": "time", "arguments": "{}"}}]},
        ])
    );
    assert_eq!(
        chat["tools"],
        json!([{"type": "function", "function": {"name": "weather", "description": "d",
            "parameters": {"type": "object"}, "strict": true}}])
    );
    assert_eq!(
        chat["tool_choice"],
        json!({"type": "function", "function": {"name": "weather"}})
    );
    assert_eq!(
        chat["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}}})
    );
    assert_eq!(chat["stream_options"], json!({"include_usage": true}));
    let object = chat_of(
        json!({"model": "m", "input": "x", "tool_choice": "required",
        "text": {"format": {"type": "json_object"}}}),
    );
    assert_eq!(object["tool_choice"], "required");
    assert_eq!(object["response_format"], json!({"type": "json_object"}));
}

#[test]
fn previous_response_id_and_bad_inputs_are_refused_clearly() {
    let failure = refusal(json!({"model": "m", "input": "x", "previous_response_id": "resp_1"}));
    assert_eq!(failure.class(), ErrorClass::BadRequest);
    assert!(failure.message().contains("keeps no conversation state"));
    for (request, says) in [
        (json!({"input": "x"}), "model"),
        (json!({"model": "m"}), "input"),
        (json!({"model": "m", "input": []}), "at least one message"),
        (
            json!({"model": "m", "input": [{"role": "tool", "content": "x"}]}),
            "input[0]: role",
        ),
        (
            json!({"model": "m", "input": [{"type": "web_search_call"}]}),
            "web_search_call",
        ),
        (
            json!({"model": "m", "input": [{"role": "user", "content": 3}]}),
            "content",
        ),
        (
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_file"}]}]}),
            "input_image",
        ),
        (
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]}),
            "file_id",
        ),
        (
            json!({"model": "m", "input": [{"role": "assistant", "content": [{"type": "refusal"}]}]}),
            "text parts",
        ),
        (
            json!({"model": "m", "input": [{"type": "function_call_output", "call_id": "c", "output": 3}]}),
            "output",
        ),
        (
            json!({"model": "m", "input": "x", "instructions": 3}),
            "instructions",
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}]}),
            "function tools",
        ),
        (json!({"model": "m", "input": "x", "tools": {}}), "tools"),
        (
            json!({"model": "m", "input": "x", "tools": [1]}),
            "tools[0]",
        ),
        (
            json!({"model": "m", "input": "x", "tool_choice": 3}),
            "tool_choice",
        ),
        (
            json!({"model": "m", "input": "x", "text": {"format": {"type": "xml"}}}),
            "text.format",
        ),
    ] {
        let failure = refusal(request.clone());
        assert_eq!(failure.class(), ErrorClass::BadRequest, "{request}");
        assert!(
            failure.message().contains(says),
            "{request}: {}",
            failure.message()
        );
    }
}

#[test]
fn an_answer_becomes_a_response_object() {
    let chat = json!({"id": "chatcmpl-9", "model": "gpt-4o", "created": 42, "choices": [{"index": 0,
        "message": {"role": "assistant", "content": "Hi.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}]},
        "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 30, "completion_tokens": 5,
                  "completion_tokens_details": {"reasoning_tokens": 1}}});
    let response = json(&Responses::answer(chat.to_string().as_bytes()).unwrap());
    assert_eq!(response["id"], "resp_chatcmpl-9");
    assert_eq!(response["object"], "response");
    assert_eq!(response["created_at"], 42);
    assert_eq!(response["status"], "completed");
    assert_eq!(
        response["output"],
        json!([
            {"type": "message", "id": "msg_chatcmpl-9", "status": "completed", "role": "assistant",
             "content": [{"type": "output_text", "text": "Hi.", "annotations": []}]},
            {"type": "function_call", "id": "fc_chatcmpl-9_0", "call_id": "call_1",
             "name": "weather", "arguments": "{}", "status": "completed"},
        ])
    );
    assert_eq!(
        response["usage"],
        json!({"input_tokens": 30, "input_tokens_details": {"cached_tokens": 0},
               "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 1},
               "total_tokens": 35})
    );
    let cut = json!({"choices": [{"message": {"content": "x"}, "finish_reason": "length"}]});
    let response = json(&Responses::answer(cut.to_string().as_bytes()).unwrap());
    assert_eq!(response["status"], "incomplete");
    assert_eq!(
        response["incomplete_details"]["reason"],
        "max_output_tokens"
    );
    assert_eq!(
        json(&Responses::error_body(&Failure::new(
            ErrorClass::BadRequest,
            "bad"
        )))["error"]["message"],
        "bad"
    );
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(name, _)| name.as_str()).collect()
}

#[tokio::test]
async fn a_stream_becomes_typed_events_in_sequence() {
    let sse = chat_sse(
        &[
            text_chunk("Hel"),
            text_chunk("lo"),
            tool_chunk(0, Some(("call_1", "weather")), "{\"city\":"),
            tool_chunk(0, None, "\"Paris\"}"),
            finish_chunk("tool_calls"),
            usage_chunk(12, 3),
        ],
        true,
    );
    let events = translate(Pieces::of([sse]), ResponsesStream::default()).await;
    assert_eq!(
        names(&events),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    for (i, (name, data)) in events.iter().enumerate() {
        assert_eq!(data["type"], name.as_str());
        assert_eq!(data["sequence_number"], i);
    }
    assert_eq!(events[0].1["response"]["status"], "in_progress");
    assert_eq!(events[4].1["delta"], "Hel");
    assert_eq!(events[6].1["text"], "Hello");
    assert_eq!(events[9].1["output_index"], 1);
    assert_eq!(events[12].1["arguments"], "{\"city\":\"Paris\"}");
    let done = &events[14].1["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"][0]["content"][0]["text"], "Hello");
    assert_eq!(done["output"][1]["call_id"], "call_1");
    assert_eq!(done["usage"]["input_tokens"], 12);
    assert_eq!(done["usage"]["output_tokens"], 3);
}

#[tokio::test]
async fn a_cut_stream_ends_with_error_and_failed_never_completed() {
    let events = translate(
        Pieces::of([chat_sse(&[text_chunk("Hel")], false)]),
        ResponsesStream::default(),
    )
    .await;
    let names = names(&events);
    assert_eq!(names[names.len() - 2..], ["error", "response.failed"]);
    assert!(!names.contains(&"response.completed"));
    assert_eq!(events[names.len() - 2].1["code"], "stream_interrupted");
    assert_eq!(events[names.len() - 1].1["response"]["status"], "failed");
    let length = translate(
        Pieces::of([chat_sse(&[text_chunk("Hel"), finish_chunk("length")], true)]),
        ResponsesStream::default(),
    )
    .await;
    assert_eq!(length.last().unwrap().0, "response.incomplete");
    let empty = translate(
        Pieces::of([bytes::Bytes::from("data: [DONE]\n\n")]),
        ResponsesStream::default(),
    )
    .await;
    assert_eq!(
        names_of(&empty),
        [
            "response.created",
            "response.in_progress",
            "response.completed"
        ]
    );
    let nothing = translate(Pieces::of([]), ResponsesStream::default()).await;
    assert_eq!(
        names_of(&nothing),
        [
            "response.created",
            "response.in_progress",
            "error",
            "response.failed"
        ]
    );
}

fn names_of(events: &[(String, Value)]) -> Vec<String> {
    events.iter().map(|(name, _)| name.clone()).collect()
}

proptest! {
    /// However the upstream's bytes are cut, the events are the same.
    #[test]
    fn splits_do_not_change_the_events(cuts in proptest::collection::vec(0usize..2000, 0..12)) {
        let sse = chat_sse(
            &[text_chunk("Héllo"), tool_chunk(0, Some(("c", "f")), "{\"a\":1}"),
              finish_chunk("tool_calls"), usage_chunk(1, 2)],
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
        let whole = runtime.block_on(translate(Pieces::of([sse.clone()]), ResponsesStream::default()));
        let split = runtime.block_on(translate(Pieces::of(pieces), ResponsesStream::default()));
        prop_assert_eq!(whole, split);
    }
}
