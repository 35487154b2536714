//! Tests of [`super`]: parsing, rewriting and the checks at the door.

use super::*;
use crate::json_depth::openers;

fn parse(text: &'static str) -> Result<ChatRequest, Failure> {
    ChatRequest::parse(Bytes::from_static(text.as_bytes()))
}

#[test]
fn reads_the_fields_the_layers_need() {
    let req = parse(
        r#"{"model":"gpt","stream":true,"stream_options":{"include_usage":true},
           "messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}],
           "max_tokens":7,"tools":[{"x":1}]}"#,
    )
    .unwrap();
    assert_eq!(req.model(), "gpt");
    assert!(req.stream());
    assert!(req.include_usage());
    assert_eq!(req.message_count(), 2);
    assert_eq!(req.max_tokens(), Some(7));
}

#[test]
fn rewriting_the_model_keeps_every_other_byte() {
    let text = r#"{ "temperature" : 0.5e0, "model": "g\u0070t", "messages":[{"role":"user","content":"hi"}], "x-new":{"k":[1,2]} }"#;
    let req = parse(text).unwrap();
    assert_eq!(req.model(), "gpt");
    let rewritten = req.with_model("deepseek/deepseek-chat:free");
    assert_eq!(
        std::str::from_utf8(&rewritten).unwrap(),
        text.replace(r#""g\u0070t""#, r#""deepseek/deepseek-chat:free""#)
    );
    assert_eq!(req.with_model("gpt"), req.bytes());
    let quoted = req.with_model("a\"b");
    let value: serde_json::Value = serde_json::from_slice(&quoted).unwrap();
    assert_eq!(value["model"], "a\"b");
}

#[test]
fn an_assistant_prefill_is_appended_to_the_messages() {
    let req = parse(r#"{"model":"m","messages":[{"role":"user","content":"hi"}] ,"stream":true}"#)
        .unwrap();
    let continued = req.with_assistant_prefill("Hello \"world").unwrap();
    assert_eq!(continued.message_count(), 2);
    assert!(continued.stream());
    let value: serde_json::Value = serde_json::from_slice(continued.bytes()).unwrap();
    assert_eq!(value["messages"][1]["role"], "assistant");
    assert_eq!(value["messages"][1]["content"], "Hello \"world");
    // Its own spans are right: the model can still be rewritten.
    let rewritten = ChatRequest::parse(continued.with_model("other")).unwrap();
    assert_eq!(rewritten.model(), "other");
    assert_eq!(rewritten.message_count(), 2);
}

#[test]
fn include_usage_is_spliced_in_every_shape_of_stream_options() {
    let cases = [
        // No stream_options at all: a new first member.
        (
            r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
            r#"{"stream_options":{"include_usage":true},"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
        ),
        (
            r#"  { "model" : "m", "messages":[{}], "stream":true }"#,
            r#"  {"stream_options":{"include_usage":true}, "model" : "m", "messages":[{}], "stream":true }"#,
        ),
        // An object without include_usage: a new first key.
        (
            r#"{"model":"m","messages":[{}],"stream":true,"stream_options":{"include_obfuscation":false}}"#,
            r#"{"model":"m","messages":[{}],"stream":true,"stream_options":{"include_usage":true,"include_obfuscation":false}}"#,
        ),
        (
            r#"{"stream_options": { } ,"model":"m","messages":[{}],"stream":true}"#,
            r#"{"stream_options": {"include_usage":true } ,"model":"m","messages":[{}],"stream":true}"#,
        ),
        // include_usage false or null: replaced.
        (
            r#"{"stream":true,"stream_options":{"x":1, "include_usage" : false},"model":"m","messages":[{}]}"#,
            r#"{"stream":true,"stream_options":{"x":1, "include_usage" : true},"model":"m","messages":[{}]}"#,
        ),
        (
            r#"{"stream":true,"stream_options":{"include_usage":null},"model":"m","messages":[{}]}"#,
            r#"{"stream":true,"stream_options":{"include_usage":true},"model":"m","messages":[{}]}"#,
        ),
        // stream_options null: a whole object in its place.
        (
            r#"{"stream":true,"stream_options":null,"model":"m","messages":[{}]}"#,
            r#"{"stream":true,"stream_options":{"include_usage":true},"model":"m","messages":[{}]}"#,
        ),
    ];
    for (text, expected) in cases {
        let req = parse(text).unwrap();
        assert!(!req.include_usage(), "{text}");
        let with = req.with_include_usage();
        assert_eq!(std::str::from_utf8(with.bytes()).unwrap(), expected);
        assert!(with.include_usage());
        assert!(with.stream());
        assert_eq!(with.model(), "m");
        assert_eq!(with.message_count(), req.message_count());
        // The spans it carries are those a fresh parse finds.
        let fresh = ChatRequest::parse(with.bytes().clone()).unwrap();
        assert!(fresh.include_usage());
        assert_eq!(with.model_span, fresh.model_span, "{text}");
        assert_eq!(
            with.stream_options_span, fresh.stream_options_span,
            "{text}"
        );
        let renamed = ChatRequest::parse(with.with_model("other/model")).unwrap();
        assert_eq!(renamed.model(), "other/model");
        assert!(renamed.include_usage());
        // Asking again changes nothing and copies nothing.
        let again = with.with_include_usage();
        assert_eq!(again.bytes().as_ptr(), with.bytes().as_ptr());
    }
}

#[test]
fn include_usage_already_asked_for_is_a_cheap_clone() {
    let req = parse(
        r#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{}]}"#,
    )
    .unwrap();
    let with = req.with_include_usage();
    assert_eq!(with.bytes().as_ptr(), req.bytes().as_ptr());
    assert!(with.include_usage());
}

#[test]
fn stream_options_keep_their_400s() {
    for text in [
        r#"{"model":"m","messages":[{}],"stream_options":"yes"}"#,
        r#"{"model":"m","messages":[{}],"stream_options":{"include_usage":"yes"}}"#,
    ] {
        let err = parse(text).unwrap_err();
        assert_eq!(err.class(), ErrorClass::BadRequest, "{text}");
    }
    let req = parse(r#"{"model":"m","messages":[{}],"stream_options":null}"#).unwrap();
    assert!(!req.include_usage());
}

#[test]
fn bytes_that_are_not_utf8_are_refused_even_where_nothing_reads_them() {
    let mut text = br#"{"model":"m","messages":[{"role":"user","content":"caf"#.to_vec();
    text.extend_from_slice(&[0xE9, b'"', b'}', b']', b'}']);
    // serde_json alone skips the content unchecked.
    assert!(serde_json::from_slice::<View<'_>>(&text).is_ok());
    let err = ChatRequest::parse(Bytes::from(text)).unwrap_err();
    assert_eq!(err.class(), ErrorClass::BadRequest);
    assert_eq!(err.message(), "the request body is not valid UTF-8");
    // Escaped and multi-byte characters are fine.
    parse(r#"{"model":"m","messages":[{"content":"caf\u00e9 café 🦀"}]}"#).unwrap();
}

/// A request whose message content nests `depth` arrays (the request's
/// own object, `messages` and the message add three levels).
fn nested(depth: usize) -> Bytes {
    let inner = depth - 3;
    let text = format!(
        r#"{{"model":"m","messages":[{{"role":"user","content":{}1{}}}]}}"#,
        "[".repeat(inner),
        "]".repeat(inner)
    );
    Bytes::from(text)
}

#[test]
fn openers_are_counted_in_and_out_of_strings_across_blocks() {
    let mut text = "{\"a\":[1,\"[{\"]}".repeat(100).into_bytes();
    text.extend((0..=255u8).cycle().take(1000));
    let expected = text.iter().filter(|&&b| b == b'[' || b == b'{').count();
    assert_eq!(openers(&text), expected);
    assert_eq!(openers(b""), 0);
}

#[test]
fn nesting_past_the_limit_is_refused_even_where_nothing_reads_it() {
    ChatRequest::parse(nested(MAX_JSON_DEPTH)).unwrap();
    let err = ChatRequest::parse(nested(MAX_JSON_DEPTH + 1)).unwrap_err();
    assert_eq!(err.class(), ErrorClass::BadRequest);
    assert!(
        err.message().contains("deeper than 64"),
        "{}",
        err.message()
    );
    // serde_json alone skips it, however deep.
    assert!(serde_json::from_slice::<View<'_>>(&nested(10_000)).is_ok());
    assert!(ChatRequest::parse(nested(10_000)).is_err());
    // Brackets in strings, escaped quotes included, are text.
    let in_strings = format!(
        r#"{{"model":"m","messages":[{{"content":"{}\"{}\\"}}]}}"#,
        "[".repeat(100),
        "{".repeat(100)
    );
    ChatRequest::parse(Bytes::from(in_strings)).unwrap();
}

#[test]
fn bad_input_gets_a_400_naming_the_problem() {
    let cases = [
        ("{not json", None),
        ("[1,2]", None),
        ("\"text\"", None),
        ("", None),
        (
            r#"{"messages":[{"role":"user","content":"x"}]}"#,
            Some("model"),
        ),
        (r#"{"model":"m"}"#, Some("messages")),
        (r#"{"model":"m","messages":[]}"#, Some("messages")),
        (r#"{"model":7,"messages":[{}]}"#, Some("model")),
        (r#"{"model":"m","messages":"hi"}"#, None),
        (r#"{"model":"m","messages":[{}],"stream":"yes"}"#, None),
    ];
    for (text, param) in cases {
        let err = parse(text).unwrap_err();
        assert_eq!(err.class(), ErrorClass::BadRequest, "{text}");
        assert_eq!(err.status(), http::StatusCode::BAD_REQUEST, "{text}");
        let body: serde_json::Value = serde_json::from_slice(&err.to_openai_body()).unwrap();
        match param {
            Some(param) => assert_eq!(body["error"]["param"], param, "{text}"),
            None => assert!(body["error"]["param"].is_null(), "{text}"),
        }
    }
}

proptest::proptest! {
    /// The scan agrees with the real depth of any JSON serde_json
    /// writes, strings full of brackets, quotes and escapes included.
    #[test]
    fn the_depth_scan_agrees_with_the_value(value in json_value()) {
        let text = value.to_string();
        let depth = depth_of(&value);
        proptest::prop_assert!(!nests_deeper_than(text.as_bytes(), depth));
        if depth > 0 {
            proptest::prop_assert!(nests_deeper_than(text.as_bytes(), depth - 1));
        }
    }
}

fn depth_of(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::Array(items) => 1 + items.iter().map(depth_of).max().unwrap_or(0),
        serde_json::Value::Object(map) => 1 + map.values().map(depth_of).max().unwrap_or(0),
        _ => 0,
    }
}

fn json_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
    use proptest::prelude::*;
    let text = r#"[\\\[\]{}"a-z]{0,8}"#;
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<i64>().prop_map(serde_json::Value::from),
        text.prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(12, 64, 4, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            proptest::collection::btree_map(text, inner, 0..4)
                .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
        ]
    })
}

/// The request's bytes as JSON.
fn sent(req: &ChatRequest) -> serde_json::Value {
    serde_json::from_slice(req.bytes()).expect("the bytes left are JSON")
}

#[test]
fn body_fallbacks_are_read_and_cut_out_of_what_goes_upstream() {
    let req = parse(
        r#"{"model":"gpt-4o","fallbacks":["claude", "gpt-4o-mini"],
           "messages":[{"role":"user","content":"hi"}],"stream":true,
           "context_window_fallbacks" : ["long"],"temperature":0}"#,
    )
    .unwrap();
    let fallbacks = req.fallbacks().expect("named in the body");
    assert_eq!(
        fallbacks.fallbacks.as_deref().unwrap(),
        [Arc::<str>::from("claude"), Arc::from("gpt-4o-mini")]
    );
    assert_eq!(
        fallbacks.context_window.as_deref().unwrap(),
        [Arc::<str>::from("long")]
    );
    assert_eq!(fallbacks.content_policy, None);
    assert_eq!(
        fallbacks.groups().map(|g| &**g).collect::<Vec<_>>(),
        ["claude", "gpt-4o-mini", "long"]
    );
    let body = sent(&req);
    assert!(body.get("fallbacks").is_none(), "{body}");
    assert!(body.get("context_window_fallbacks").is_none(), "{body}");
    assert_eq!(body["temperature"], 0);
    assert_eq!(body["messages"][0]["content"], "hi");
    // The spans moved with the cut: rewriting still lands on the model.
    let renamed: serde_json::Value =
        serde_json::from_slice(&req.with_model("claude-sonnet")).unwrap();
    assert_eq!(renamed["model"], "claude-sonnet");
    assert!(renamed.get("fallbacks").is_none());
    let usage = req.with_include_usage();
    assert_eq!(sent(&usage)["stream_options"]["include_usage"], true);
    assert_eq!(usage.fallbacks(), req.fallbacks());
    let prefilled = req.with_assistant_prefill("so far").unwrap();
    assert_eq!(prefilled.fallbacks(), req.fallbacks());
    assert!(sent(&prefilled).get("fallbacks").is_none());
}

#[test]
fn body_fallbacks_are_cut_wherever_they_stand() {
    let cases = [
        // First, with the member after it.
        r#"{"fallbacks":["b"],"model":"a","messages":[{"role":"user","content":"x"}]}"#,
        // Last, after the required members.
        r#"{"model":"a","messages":[{"role":"user","content":"x"}],"fallbacks":["b"]}"#,
        // Two side by side, first in the object.
        r#"{ "fallbacks" : ["b"] , "content_policy_fallbacks":[] , "model":"a","messages":[{"role":"user","content":"x"}]}"#,
        // Two side by side, last in the object, with whitespace about.
        "{\"model\":\"a\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}] ,\n \"fallbacks\": [\"b\"],\n\t\"context_window_fallbacks\":null }",
        // All three, apart, one key escaped.
        r#"{"content_policy_fallbacks":["c"],"model":"a","fall\u0062acks":["b"],"messages":[{"role":"user","content":"x"}],"context_window_fallbacks":["d"],"n":1}"#,
    ];
    for text in cases {
        let req = parse(text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
        assert!(req.fallbacks().is_some(), "{text}");
        let body = sent(&req);
        let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
        assert!(
            keys.iter().all(|k| !k.ends_with("fallbacks")),
            "{text} → {body}"
        );
        assert_eq!(body["model"], "a", "{text}");
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&req.with_model("zz")).unwrap()["model"],
            "zz",
            "{text}"
        );
    }
    // `null` names nothing; an empty list turns that kind off.
    let req = parse(
        r#"{"model":"a","messages":[{"role":"user","content":"x"}],"fallbacks":null,"content_policy_fallbacks":[]}"#,
    )
    .unwrap();
    let fallbacks = req.fallbacks().unwrap();
    assert_eq!(fallbacks.fallbacks, None);
    assert_eq!(fallbacks.content_policy.as_deref(), Some(&[][..]));
}

#[test]
fn a_request_without_body_fallbacks_is_passed_on_untouched() {
    let text =
        r#"{"model":"a","messages":[{"role":"user","content":"fallbacks"}],"x_fallbacks":[1]}"#;
    let req = parse(text).unwrap();
    assert!(req.fallbacks().is_none());
    assert_eq!(req.bytes(), text.as_bytes());
}

#[test]
fn body_fallbacks_that_are_not_model_names_are_refused() {
    for (text, param) in [
        (
            r#"{"model":"a","messages":[{"role":"user","content":"x"}],"fallbacks":"b"}"#,
            "fallbacks",
        ),
        (
            r#"{"model":"a","messages":[{"role":"user","content":"x"}],"fallbacks":[{"a":["b"]}]}"#,
            "fallbacks",
        ),
        (
            r#"{"model":"a","messages":[{"role":"user","content":"x"}],"context_window_fallbacks":[""]}"#,
            "context_window_fallbacks",
        ),
        (
            r#"{"model":"a","messages":[{"role":"user","content":"x"}],"content_policy_fallbacks":[1]}"#,
            "content_policy_fallbacks",
        ),
    ] {
        let failure = parse(text).unwrap_err();
        assert_eq!(failure.class(), ErrorClass::BadRequest, "{text}");
        assert_eq!(failure.status(), http::StatusCode::BAD_REQUEST);
        let body: serde_json::Value = serde_json::from_slice(&failure.to_openai_body()).unwrap();
        assert_eq!(body["error"]["param"], param, "{text}");
        assert!(failure.message().contains(param), "{}", failure.message());
    }
}

#[test]
fn body_fallbacks_resolve_through_a_lookup() {
    let req = parse(
        r#"{"model":"a","messages":[{"role":"user","content":"x"}],"fallbacks":["alias","b"],"content_policy_fallbacks":["b"]}"#,
    )
    .unwrap();
    let known = |name: &str| match name {
        "alias" => Some(Arc::from("group")),
        "b" => Some(Arc::from("b")),
        _ => None,
    };
    let resolved = req.fallbacks().unwrap().resolved(known).unwrap();
    assert_eq!(
        resolved.groups().map(|g| &**g).collect::<Vec<_>>(),
        ["group", "b", "b"]
    );
    let req = parse(
        r#"{"model":"a","messages":[{"role":"user","content":"x"}],"context_window_fallbacks":["b","nope"]}"#,
    )
    .unwrap();
    assert_eq!(
        req.fallbacks()
            .unwrap()
            .resolved(known)
            .unwrap_err()
            .as_ref(),
        "nope"
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Whatever the order of the members, the whitespace around them and
    /// which fallback lists are present, the bytes left are the request
    /// without those lists, and the model still rewrites in place.
    #[test]
    fn body_fallbacks_are_cut_from_any_layout(
        order in proptest::strategy::Strategy::prop_shuffle(
            proptest::sample::subsequence((0..6usize).collect::<Vec<_>>(), 2..=6),
        ),
        spaces in proptest::collection::vec(0..3usize, 12),
    ) {
        use proptest::prelude::*;
        let members = [
            r#""model":"a""#,
            r#""messages":[{"role":"user","content":"x"}]"#,
            r#""fallbacks":["b","c"]"#,
            r#""context_window_fallbacks":["d"]"#,
            r#""content_policy_fallbacks":[]"#,
            r#""temperature":0.5"#,
        ];
        // `model` and `messages` are required: always there.
        let mut chosen: Vec<usize> = order.clone();
        for required in [0, 1] {
            if !chosen.contains(&required) {
                chosen.push(required);
            }
        }
        let pad = |i: usize| " \n\t"[..spaces[i % spaces.len()]].to_owned();
        let mut text = format!("{{{}", pad(0));
        for (at, &member) in chosen.iter().enumerate() {
            if at > 0 {
                text += &format!("{},{}", pad(2 * at), pad(2 * at + 1));
            }
            text += members[member];
        }
        text += &format!("{}}}", pad(11));
        let req = ChatRequest::parse(Bytes::from(text.clone())).unwrap();
        let mut expected: serde_json::Value = serde_json::from_str(&text).unwrap();
        let names = chosen.iter().any(|m| (2..5).contains(m));
        prop_assert_eq!(req.fallbacks().is_some(), names);
        for key in ["fallbacks", "context_window_fallbacks", "content_policy_fallbacks"] {
            expected.as_object_mut().unwrap().remove(key);
        }
        let left: serde_json::Value = serde_json::from_slice(req.bytes())
            .map_err(|e| TestCaseError::fail(format!("{e}: {:?}", req.bytes())))?;
        prop_assert_eq!(&left, &expected);
        let renamed: serde_json::Value = serde_json::from_slice(&req.with_model("zz")).unwrap();
        expected["model"] = "zz".into();
        prop_assert_eq!(renamed, expected);
    }
}

#[test]
fn completions_and_embeddings_read_their_own_prompt_field() {
    let parse_as =
        |text: &'static str, op| ChatRequest::parse_as(Bytes::from_static(text.as_bytes()), op);
    let completion = parse_as(
        r#"{"model":"m","prompt":"Say hi","max_tokens":7,"stream":true}"#,
        Operation::Completions,
    )
    .unwrap();
    assert_eq!(completion.operation(), Operation::Completions);
    assert_eq!(completion.max_tokens(), Some(7));
    assert!(completion.stream());
    assert_eq!(completion.message_count(), 1);
    // Every shape OpenAI takes: strings, token ids, lists of token ids.
    for input in [r#""x""#, r#"["a","b"]"#, "[1,2,3]", "[[1,2],[3]]"] {
        let body: &'static str =
            Box::leak(format!(r#"{{"model":"e","input":{input}}}"#).into_boxed_str());
        let request = parse_as(body, Operation::Embeddings).unwrap();
        assert_eq!(request.operation(), Operation::Embeddings);
        assert!(request.message_count() >= 1, "{input}");
    }
    // The include-usage splice keeps the operation.
    assert_eq!(
        completion.with_include_usage().operation(),
        Operation::Completions
    );
    // A plain chat parse is a chat request.
    let chat = parse(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#).unwrap();
    assert_eq!(chat.operation(), Operation::ChatCompletions);
}

#[test]
fn the_wrong_shape_for_the_route_is_a_400_naming_the_field() {
    let refused = |text: &'static str, op| {
        let failure = ChatRequest::parse_as(Bytes::from_static(text.as_bytes()), op).unwrap_err();
        assert_eq!(failure.class(), ErrorClass::BadRequest);
        String::from_utf8(failure.to_openai_body().to_vec()).unwrap()
    };
    let chat_body = r#"{"model":"e","messages":[{"role":"user","content":"hi"}]}"#;
    let body = refused(chat_body, Operation::Embeddings);
    assert!(
        body.contains("Missing required parameter: 'input'"),
        "{body}"
    );
    assert!(body.contains(r#""param":"input""#), "{body}");
    let body = refused(chat_body, Operation::Completions);
    assert!(body.contains("'prompt'"), "{body}");
    let body = refused(r#"{"model":"e","input":{"a":1}}"#, Operation::Embeddings);
    assert!(body.contains("invalid 'input'"), "{body}");
    let body = refused(r#"{"model":"e","input":[1.5]}"#, Operation::Embeddings);
    assert!(body.contains("invalid 'input'"), "{body}");
    let body = refused(r#"{"model":"e","input":[]}"#, Operation::Embeddings);
    assert!(body.contains("must not be empty"), "{body}");
    let body = refused(r#"{"model":"e","input":""}"#, Operation::Embeddings);
    assert!(body.contains("must not be empty"), "{body}");
    let body = refused(
        r#"{"model":"e","input":"x","stream":true}"#,
        Operation::Embeddings,
    );
    assert!(body.contains("not streamed"), "{body}");
    // A chat request needs its messages, as before.
    let body = refused(r#"{"model":"e","prompt":"x"}"#, Operation::ChatCompletions);
    assert!(body.contains("'messages'"), "{body}");
}

#[test]
fn the_end_user_is_read_from_user() {
    let req =
        parse(r#"{"model":"m","user":"u-1","messages":[{"role":"user","content":"x"}]}"#).unwrap();
    assert_eq!(req.user().map(|u| &**u), Some("u-1"));
    // Carried through the rewrites that build new requests.
    assert_eq!(req.with_include_usage().user().map(|u| &**u), Some("u-1"));
    let prefilled = req.with_assistant_prefill("so").unwrap();
    assert_eq!(prefilled.user().map(|u| &**u), Some("u-1"));
    for absent in [
        r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#,
        r#"{"model":"m","user":null,"messages":[{"role":"user","content":"x"}]}"#,
        r#"{"model":"m","user":"","messages":[{"role":"user","content":"x"}]}"#,
    ] {
        assert_eq!(parse(absent).unwrap().user(), None, "{absent}");
    }
    let refused =
        parse(r#"{"model":"m","user":7,"messages":[{"role":"user","content":"x"}]}"#).unwrap_err();
    let body = refused.to_openai_body();
    assert!(
        std::str::from_utf8(&body)
            .unwrap()
            .contains(r#""param":"user""#)
    );
}
