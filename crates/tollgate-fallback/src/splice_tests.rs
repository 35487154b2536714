//! Tests of `splice.rs`.

use super::*;
use tollgate_core::classify::OpenAiEos;
use tollgate_core::sse::SharedEvents;

fn drain(splicer: &mut Splicer<OpenAiEos>) -> String {
    let mut out = Vec::new();
    while let Some(bytes) = splicer.pop() {
        out.extend_from_slice(&bytes);
    }
    String::from_utf8(out).unwrap()
}

fn chunk(content: &str) -> String {
    format!(
        "data: {{\"id\":\"c1\",\"created\":1,\"choices\":[{{\"index\":0,\"delta\":{{\"content\":{}}},\"finish_reason\":null}}]}}\n\n",
        serde_json::to_string(content).unwrap()
    )
}

const ROLE: &str = "data: {\"id\":\"c1\",\"created\":1,\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n";
const FINISH: &str = "data: {\"id\":\"c1\",\"created\":1,\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";

#[test]
fn finds_the_data_of_raw_events() {
    let guess = |raw: &'static str| single_line_data(raw.as_bytes());
    assert_eq!(guess("data: {}\n\n").unwrap(), b"{}");
    assert_eq!(guess("data:{}\r\n\r\n").unwrap(), b"{}");
    assert!(guess(": keep-alive\n\n").is_none());
    let full = |raw: &'static str| full_data(&Bytes::from_static(raw.as_bytes()));
    assert_eq!(full("data: a\ndata: b\n\n").unwrap(), "a\nb");
    assert_eq!(full("event: x\ndata: a\n\n").unwrap(), "a");
    assert!(full(": keep-alive\n\n").is_none());
    assert!(full("id: 1\n\n").is_none());

    assert!(guess("data: a\ndata: b\n\n").is_none());
    // JSON across two lines would parse; SSE says the second line is
    // not data.
    assert!(guess("data: {\"a\":\n1}\n\n").is_none());
    let mut splicer = Splicer::new(OpenAiEos::default(), true, SharedEvents::new());
    splicer.push(Bytes::from_static(b"data: {\"a\":\n1}\n\n"));
    assert!(matches!(
        splicer.take_break(),
        Some(Break::BeforeContent(_))
    ));
    let mut splicer = Splicer::new(OpenAiEos::default(), true, SharedEvents::new());
    splicer.push(Bytes::from_static(
        b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\nid: 7\n\n",
    ));
    assert_eq!(splicer.prefill(), "a");
}

#[test]
fn commits_at_the_first_content_and_forwards_unchanged_bytes_as_slices() {
    let mut splicer = Splicer::new(OpenAiEos::default(), true, SharedEvents::new());
    let input = Bytes::from(format!(": hi\n\n{ROLE}"));
    splicer.push(input.clone());
    assert!(!splicer.committed());
    assert_eq!(splicer.held(), input.len());
    let content = Bytes::from(chunk("Hel") + &chunk("lo") + "data: {\"partial");
    splicer.push(content.clone());
    assert!(splicer.committed());
    // One whole event per piece, each a slice of the chunk it came in.
    let comment = splicer.pop().unwrap();
    assert_eq!(
        (comment.as_ptr(), &comment[..]),
        (input.as_ptr(), &b": hi\n\n"[..])
    );
    assert_eq!(splicer.pop().unwrap(), ROLE);
    let hel = splicer.pop().unwrap();
    assert_eq!(hel.as_ptr(), content.as_ptr());
    assert_eq!(hel, chunk("Hel"));
    let lo = splicer.pop().unwrap();
    assert_eq!(lo, chunk("lo"));
    assert!(splicer.pop().is_none());
    assert_eq!(splicer.prefill(), "Hello");
}

#[test]
fn an_error_event_or_malformed_json_breaks_and_nothing_after_it_goes_out() {
    let mut splicer = Splicer::new(OpenAiEos::default(), true, SharedEvents::new());
    splicer.push(Bytes::from(
        chunk("a") + "data: {\"error\":{\"message\":\"x\",\"code\":503}}\n\n" + &chunk("b"),
    ));
    assert_eq!(drain(&mut splicer), chunk("a"));
    match splicer.take_break() {
        Some(Break::AfterContent(failure)) => {
            assert_eq!(failure.class(), ErrorClass::UpstreamUnavailable)
        }
        other => panic!("{other:?}"),
    }

    let mut splicer = Splicer::new(OpenAiEos::default(), true, SharedEvents::new());
    splicer.push(Bytes::from(format!("{ROLE}data: {{\"choices\":\n\n")));
    assert_eq!(drain(&mut splicer), ROLE);
    match splicer.take_break() {
        Some(Break::BeforeContent(failure)) => {
            assert_eq!(failure.subkind(), Some("malformed_event"))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_end_after_the_finish_is_completed_with_done() {
    let mut splicer = Splicer::new(OpenAiEos::default(), true, SharedEvents::new());
    splicer.push(Bytes::from(chunk("a") + FINISH));
    splicer.end();
    assert!(splicer.take_break().is_none());
    assert!(splicer.done());
    assert_eq!(
        drain(&mut splicer),
        chunk("a") + FINISH + "data: [DONE]\n\n"
    );

    let mut splicer = Splicer::new(OpenAiEos::default(), true, SharedEvents::new());
    splicer.push(Bytes::from(chunk("a")));
    splicer.end();
    assert!(matches!(splicer.take_break(), Some(Break::AfterContent(_))));
}

#[test]
fn a_continuation_is_rewritten_into_the_original_completion() {
    let mut splicer = Splicer::new(OpenAiEos::default(), true, SharedEvents::new());
    splicer.push(Bytes::from(ROLE.to_owned() + &chunk("Hello, ")));
    splicer.end();
    assert!(matches!(splicer.take_break(), Some(Break::AfterContent(_))));
    assert_eq!(splicer.prefill(), "Hello,");
    drain(&mut splicer);

    splicer.resume(OpenAiEos::default(), SharedEvents::new());
    let role = "data: {\"id\":\"c2\",\"created\":2,\"model\":\"m2\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]}\n\n";
    let first = "data: {\"id\":\"c2\",\"created\":2,\"model\":\"m2\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\" world\"}}]}\n\n";
    splicer.push(Bytes::from(format!(": ping\n\n{role}")));
    assert!(!splicer.has_output());
    splicer.push(Bytes::from(format!("{first}data: [DONE]\n\n")));
    let out = drain(&mut splicer);
    let events: Vec<&str> = out.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.len(), 2, "{out}");
    let value: Value = serde_json::from_str(events[0].strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(value["id"], "c1");
    assert_eq!(value["created"], 1);
    assert_eq!(value["model"], "m2");
    assert_eq!(value["choices"][0]["delta"]["content"], "world");
    assert!(value["choices"][0]["delta"].get("role").is_none());
    assert_eq!(events[1], "data: [DONE]");
    assert_eq!(splicer.prefill(), "Hello, world");
}

#[test]
fn common_prefixes_are_counted_in_bytes() {
    assert_eq!(common_prefix(" world", " "), 1);
    assert_eq!(common_prefix("world", " "), 0);
    assert_eq!(common_prefix("\n\nB", "\n\n"), 2);
    assert_eq!(common_prefix("\n", "\n\n"), 1);
    assert_eq!(common_prefix("é", "e"), 0);
}

/// A stream of OpenAI's Responses API (API reference, "Responses" →
/// "Streaming events"), one event of each kind the cascade tells apart.
fn typed(name: &str, rest: &str) -> String {
    format!("event: {name}\ndata: {{\"type\":\"{name}\",{rest}}}\n\n")
}

#[test]
fn a_responses_stream_commits_at_its_first_output_and_ends_with_its_own_last_event() {
    let created = typed(
        "response.created",
        r#""sequence_number":0,"response":{"id":"resp_1","status":"in_progress","usage":null}"#,
    );
    let added = typed(
        "response.output_item.added",
        r#""sequence_number":1,"output_index":0,"item":{"type":"message","content":[]}"#,
    );
    let delta = typed(
        "response.output_text.delta",
        r#""sequence_number":2,"item_id":"msg_1","delta":"Hi""#,
    );
    let completed = typed(
        "response.completed",
        r#""sequence_number":3,"response":{"id":"resp_1","status":"completed"}"#,
    );
    let mut splicer = Splicer::new(OpenAiEos::default(), true, SharedEvents::new());
    splicer.push(Bytes::from(created.clone()));
    assert!(!splicer.committed());
    splicer.push(Bytes::from(added.clone() + &delta));
    assert!(splicer.committed());
    assert!(
        !splicer.continuable(),
        "no prefill continues a Responses stream"
    );
    splicer.push(Bytes::from(completed.clone()));
    splicer.end();
    assert!(splicer.take_break().is_none());
    assert!(splicer.done());
    // Passed on byte for byte, and no `[DONE]` added.
    assert_eq!(drain(&mut splicer), created + &added + &delta + &completed);

    let incomplete =
        tollgate_core::ChunkView::read(br#"{"type":"response.incomplete","response":{}}"#).unwrap();
    assert!(incomplete.end && incomplete.finish);
    let chat = tollgate_core::ChunkView::read(br#"{"type":"x","choices":[]}"#).unwrap();
    assert!(!chat.end && !chat.not_continuable);
}

#[test]
fn a_responses_stream_cut_or_failed_after_its_first_output_breaks() {
    let added = typed("response.output_item.added", r#""sequence_number":1"#);
    let mut splicer = Splicer::new(OpenAiEos::default(), true, SharedEvents::new());
    splicer.push(Bytes::from(added.clone()));
    splicer.end();
    assert!(matches!(splicer.take_break(), Some(Break::AfterContent(_))));

    let mut splicer = Splicer::new(OpenAiEos::default(), true, SharedEvents::new());
    splicer.push(Bytes::from(
        typed("response.created", r#""sequence_number":0"#)
            + &typed(
                "error",
                r#""code":"server_error","message":"boom","sequence_number":1"#,
            ),
    ));
    match splicer.take_break() {
        Some(Break::BeforeContent(failure)) => {
            assert_eq!(failure.class(), ErrorClass::UpstreamUnavailable)
        }
        other => panic!("{other:?}"),
    }
}
