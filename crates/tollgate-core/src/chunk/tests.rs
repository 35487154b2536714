//! [`ChunkView::read`] on hand-picked chunks, and held to its serde oracle
//! ([`read_with_serde`]) on generated ones: chat chunks of every shape the
//! layers read (content, reasoning, refusals, tool calls, finish reasons,
//! parts, several choices, choices as arrays), Responses' typed events,
//! escapes, bad UTF-8 and junk.

use std::borrow::Cow;

use proptest::prelude::*;
use proptest::test_runner::RngSeed;

use super::serde_oracle::{Key, read_with_serde};
use super::*;

#[test]
fn keys_are_borrowed_unless_escaped() {
    let Key(plain) = serde_json::from_str::<Key<'_>>(r#""choices""#).unwrap();
    assert!(matches!(plain, Cow::Borrowed("choices")));
    let Key(escaped) = serde_json::from_str::<Key<'_>>(r#""cho\u0069ces""#).unwrap();
    assert!(matches!(escaped, Cow::Owned(ref k) if k == "choices"));
}

/// Reads `data` both ways, insists on one answer, and returns it.
fn read_both(data: &[u8]) -> Option<ChunkView<'_>> {
    let ours = ChunkView::read(data);
    let serde = read_with_serde(data);
    let shown = String::from_utf8_lossy(data);
    assert_eq!(ours.as_ref().ok(), serde.as_ref().ok(), "{shown}");
    if let (Ok(ours), Ok(serde)) = (&ours, &serde) {
        // Borrowed where serde borrows: no copy of a plain text.
        let borrowed = |chunk: &ChunkView<'_>| matches!(chunk.text, Some(Cow::Borrowed(_)));
        assert_eq!(borrowed(ours), borrowed(serde), "{shown}");
    }
    ours.ok()
}

fn read(data: &str) -> ChunkView<'_> {
    read_both(data.as_bytes()).unwrap_or_else(|| panic!("{data}"))
}

#[test]
fn reads_what_the_layers_care_about() {
    let chunk = read(r#"{"choices":[{"index":0,"delta":{"content":"a\"b"}}]}"#);
    assert!(chunk.content && !chunk.finish && !chunk.not_continuable);
    assert_eq!(chunk.text.as_deref(), Some("a\"b"));
    let plain = read(r#"{"choices":[{"index":0,"delta":{"content":"ab"}}]}"#);
    assert!(matches!(plain.text, Some(Cow::Borrowed("ab"))));
    let role =
        read(r#"{"choices":[{"delta":{"role":"assistant","content":""}}],"x":[1,{"y":null}]}"#);
    assert!(!role.content);
    let finish = read(r#"{"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}"#);
    assert!(finish.content && finish.finish);
    let tools = read(r#"{"choices":[{"delta":{"tool_calls":[{"index":0}]}}]}"#);
    assert!(tools.content && tools.not_continuable);
    let reasoning = read(r#"{"choices":[{"delta":{"reasoning":{"text":"hm"}}}]}"#);
    assert!(reasoning.content && !reasoning.not_continuable);
    let legacy = read(r#"{"choices":[{"index":0,"text":" Hi","finish_reason":null}]}"#);
    assert!(legacy.content && legacy.not_continuable && !legacy.finish);
    let legacy_empty = read(r#"{"choices":[{"index":0,"text":""}]}"#);
    assert!(!legacy_empty.content);
    let second = read(r#"{"choices":[{"index":1,"delta":{"content":"x"}}]}"#);
    assert!(second.not_continuable && second.text.is_none());
    let error = read(r#"{"choices":[{"delta":{},"finish_reason":"error"}]}"#);
    assert!(error.finish_error);
    let escaped_error = read(r#"{"choices":[{"delta":{},"finish_reason":"err\u006fr"}]}"#);
    assert!(escaped_error.finish_error);
    let usage = read(r#"{"choices":[],"usage":{"total_tokens":3}}"#);
    assert!(!usage.content);
    let both = read(
        r#"{"choices":[{"index":0,"delta":{"content":"a"}},{"index":0,"delta":{"content":"b"}}]}"#,
    );
    assert!(matches!(both.text, Some(Cow::Owned(ref t)) if t == "ab"));
    let completed = read(r#"{"type":"response.completed","response":{}}"#);
    assert!(completed.end && completed.finish && completed.not_continuable);
    for malformed in [
        r#"{"choices":[{"delta":{"content":"x"}}]"#,
        "[1]",
        r#"{"a":1} x"#,
        "",
        "[DONE]",
    ] {
        assert!(read_both(malformed.as_bytes()).is_none(), "{malformed}");
    }
}

/// Where serde's reading is stricter than a skim, or lenient in ways a
/// hand-written reader could miss.
#[test]
fn agrees_with_serde_at_the_edges() {
    let cases: &[&[u8]] = &[
        // A choice, and a delta, read from an array field by field.
        br#"{"choices":[[0,{"content":"x"},null,null]]}"#,
        br#"{"choices":[[0,["hi",null,null,null,null,null]]]}"#,
        br#"{"choices":[[0,null,null,null,null]]}"#,
        br#"{"choices":[[0,{"content":"x"},]]}"#,
        br#"{"choices":[[]]}"#,
        // Duplicate fields of a choice or delta; not of the chunk.
        br#"{"choices":[{"index":0,"index":1}]}"#,
        br#"{"choices":[{"ind\u0065x":0,"index":1}]}"#,
        br#"{"choices":[{"delta":{"content":"a","content":"b"}}]}"#,
        br#"{"choices":[{"delta":{"content":"a"}}],"choices":[{"delta":{"content":"b"}}]}"#,
        // Choices that are not a list.
        br#"{"choices":null}"#,
        br#"{"choices":{"a":1}}"#,
        br#"{"choices":{"\ud800":1}}"#,
        br#"{"choices":"x"}"#,
        br#"{"choices":1}"#,
        br#"{"choices":[null]}"#,
        br#"{"choices":[{"delta":"x"}]}"#,
        br#"{"choices":[{"delta":nul}]}"#,
        // Numbers serde reads as a u64, another number, or not at all.
        br#"{"choices":[{"index":18446744073709551615}]}"#,
        br#"{"choices":[{"index":18446744073709551616}]}"#,
        br#"{"choices":[{"index":-0}]}"#,
        br#"{"choices":[{"index":1.0}]}"#,
        br#"{"choices":[{"index":1e400}]}"#,
        br#"{"choices":[{"logprobs":1e400}]}"#,
        br#"{"choices":[{"index":01}]}"#,
        br#"{"choices":[{"index":-}]}"#,
        // UTF-8 and escapes: checked where serde reads text, not where it
        // skips.
        b"{\"choices\":[{\"delta\":{\"content\":\"\xff\"}}]}",
        b"{\"choices\":[{\"delta\":{\"role\":\"\xff\"}}]}",
        b"{\"\xff\":1}",
        br#"{"choices":[{"delta":{"content":"\ud83d\ude00"}}]}"#,
        br#"{"choices":[{"delta":{"content":"\ud83d"}}]}"#,
        br#"{"choices":[{"delta":{"role":"\ud83d"}}]}"#,
        br#"{"choices":[{"delta":{"content":"\q"}}]}"#,
        br#"{"choices":[{"delta":{"content":["\ud83d"]}}]}"#,
        br#"{"choices":[{"delta":{"content":{"\ud83d":1}}}]}"#,
        br#"{"choices":[{"delta":{"content":{"a":"\ud83d"}}}]}"#,
        br#"{"\u0074ype":"response.output_text.delta"}"#,
        br#"{"type":"respons\u0065.incomplete"}"#,
        br#"{"type":["response.completed"]}"#,
        // Whitespace everywhere it may be, and where it may not.
        b" \t\r\n{ \"choices\" : [ { \"delta\" : { \"content\" : \"x\" } } ] } \n",
        br#"{"choices":[{"delta":{"content":"x"}}]}  }"#,
        br#"{"choices":[{"delta":{"content":"x"},}]}"#,
        br#"{"choices":[{"delta":{"content":"x"}}],}"#,
        br#"{,}"#,
        br#"{"a" 1}"#,
        br#"{"a":tru}"#,
    ];
    for case in cases {
        read_both(case);
    }
    // Skipped values nest as deep as they go; serde's limit is for what it
    // builds, which a chunk's reader never nests deeply.
    let deep = format!(
        r#"{{"x":{}1{},"choices":[]}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    assert!(read_both(deep.as_bytes()).is_some());
}

/// Pieces of JSON text, some of them malformed.
fn select(pieces: &[&'static str]) -> BoxedStrategy<Vec<u8>> {
    prop::sample::select(pieces.to_vec())
        .prop_map(|piece| piece.as_bytes().to_vec())
        .boxed()
}

fn ws() -> impl Strategy<Value = &'static str> {
    prop_oneof![8 => Just(""), 1 => Just(" "), 1 => Just("\r\n\t ")]
}

fn string() -> BoxedStrategy<Vec<u8>> {
    let good = select(&[
        r#""""#,
        r#""Hi""#,
        r#""a longer piece of text, more than a word""#,
        r#""a\"b""#,
        r#""\u00e9t\u00E9""#,
        r#""\ud83d\ude00""#,
        "\"caf\u{e9}\"",
        r#""\/\b\f\n\r\t""#,
        r#""error""#,
        r#""err\u006fr""#,
        r#""stop""#,
        r#""response.completed""#,
        r#""response.created""#,
        r#""response.output_text.delta""#,
        r#""respons\u0065.incomplete""#,
    ]);
    let bad = prop_oneof![
        select(&[
            r#""\ud83d""#,
            r#""\ude00x""#,
            r#""\ud83d\u0041""#,
            r#""\x""#,
            r#""\u12""#,
            "\"tab\there\"",
            r#""unterminated"#,
        ]),
        Just(b"\"\xff\"".to_vec()),
        Just(b"\"\xc3\xa9\"".to_vec()),
    ];
    prop_oneof![12 => good, 1 => bad].boxed()
}

fn number() -> BoxedStrategy<Vec<u8>> {
    let good = select(&[
        "0",
        "1",
        "2",
        "-1",
        "-0",
        "1.5",
        "2e3",
        "1e-400",
        "18446744073709551615",
        "18446744073709551616",
    ]);
    let bad = select(&["1e400", "-1e400", "01", "1.", "-"]);
    prop_oneof![12 => good, 1 => bad].boxed()
}

fn key() -> BoxedStrategy<Vec<u8>> {
    let good = select(&[
        r#""id""#,
        r#""model""#,
        r#""usage""#,
        r#""role""#,
        r#""index""#,
        r#""content""#,
        r#""delta""#,
        r#""cho\u0069ces""#,
        r#""\u0074ype""#,
        r#""ind\u0065x""#,
        r#""cont\u0065nt""#,
        "\"caf\u{e9}\"",
    ]);
    let bad = prop_oneof![select(&[r#""\ud800""#]), Just(b"\"\xff\"".to_vec())];
    prop_oneof![12 => good, 1 => bad].boxed()
}

/// An object of `members`, or an array of `elements`, with whitespace.
fn object(members: Vec<(&'static str, Vec<u8>, Vec<u8>)>) -> Vec<u8> {
    let mut text = b"{".to_vec();
    for (i, (ws, key, value)) in members.into_iter().enumerate() {
        if i > 0 {
            text.push(b',');
        }
        text.extend_from_slice(ws.as_bytes());
        text.extend(key);
        text.extend_from_slice(ws.as_bytes());
        text.push(b':');
        text.extend(value);
    }
    text.push(b'}');
    text
}

fn array(elements: Vec<(&'static str, Vec<u8>)>) -> Vec<u8> {
    let mut text = b"[".to_vec();
    for (i, (ws, value)) in elements.into_iter().enumerate() {
        if i > 0 {
            text.push(b',');
        }
        text.extend_from_slice(ws.as_bytes());
        text.extend(value);
    }
    text.push(b']');
    text
}

fn any_value() -> BoxedStrategy<Vec<u8>> {
    let leaf = prop_oneof![
        12 => string(),
        12 => number(),
        12 => select(&["null", "true", "false"]),
        1 => select(&["nul", "tru"]),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec((ws(), inner.clone()), 0..4).prop_map(array),
            prop::collection::vec((ws(), key(), inner), 0..4).prop_map(object),
        ]
    })
    .boxed()
}

/// A member's key and value, as text.
type Member = (Vec<u8>, Vec<u8>);

/// Members whose keys are `names` (with their values) or any other.
fn members(
    named: Vec<(&'static str, BoxedStrategy<Vec<u8>>)>,
) -> impl Strategy<Value = Vec<(&'static str, Vec<u8>, Vec<u8>)>> {
    // The first named member the most often, any other key the least.
    let mut options: Vec<(u32, BoxedStrategy<Member>)> = named
        .into_iter()
        .enumerate()
        .map(|(i, (name, value))| {
            let weight = if i == 0 { 6 } else { 3 };
            let member = value.prop_map(move |value| (format!("\"{name}\"").into_bytes(), value));
            (weight, member.boxed())
        })
        .collect();
    options.push((1, (key(), any_value()).boxed()));
    let member = prop::strategy::Union::new_weighted(options);
    prop::collection::vec((ws(), member), 0..4).prop_map(|members| {
        members
            .into_iter()
            .map(|(ws, (key, value))| (ws, key, value))
            .collect()
    })
}

fn text_or_parts() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        4 => string(),
        1 => select(&["null", r#"[{"type":"text","text":"a"}]"#, "[]", "{}", "1"]),
        1 => any_value(),
    ]
    .boxed()
}

fn delta() -> BoxedStrategy<Vec<u8>> {
    let fields = members(vec![
        ("content", text_or_parts()),
        ("reasoning_content", text_or_parts()),
        ("reasoning", text_or_parts()),
        ("refusal", text_or_parts()),
        ("tool_calls", text_or_parts()),
        ("function_call", text_or_parts()),
        ("role", string()),
    ]);
    prop_oneof![
        6 => fields.prop_map(object),
        1 => Just(b"null".to_vec()),
        1 => prop::collection::vec((ws(), text_or_parts()), 0..8).prop_map(array),
        1 => any_value(),
    ]
    .boxed()
}

fn choice() -> BoxedStrategy<Vec<u8>> {
    let finish = prop_oneof![
        2 => Just(b"null".to_vec()),
        2 => select(&[r#""stop""#, r#""length""#, r#""error""#]),
        1 => any_value(),
    ]
    .boxed();
    let index = prop_oneof![number(), any_value()].boxed();
    let fields = members(vec![
        ("index", index.clone()),
        ("delta", delta()),
        ("finish_reason", finish.clone()),
        ("text", text_or_parts()),
        ("logprobs", any_value()),
    ]);
    let positional = (
        index,
        delta(),
        finish,
        text_or_parts(),
        any_value(),
        0..=5usize,
    )
        .prop_map(|(index, delta, finish, text, extra, n)| {
            let all = [index, delta, finish, text, extra];
            array(all.into_iter().take(n).map(|value| ("", value)).collect())
        });
    prop_oneof![
        8 => fields.prop_map(object),
        1 => positional,
        1 => any_value(),
    ]
    .boxed()
}

/// A chunk as providers send them, one choice or two, with a field of a
/// delta's that may be unusual.
fn typical() -> BoxedStrategy<Vec<u8>> {
    let one = (
        select(&["0", "0", "1"]),
        string(),
        prop::option::of((
            select(&[
                r#""reasoning""#,
                r#""refusal""#,
                r#""tool_calls""#,
                r#""role""#,
                r#""content""#,
            ]),
            text_or_parts(),
        )),
        select(&["null", "null", r#""stop""#, r#""error""#]),
    )
        .prop_map(|(index, content, extra, finish)| {
            let mut delta = vec![("", b"\"content\"".to_vec(), content)];
            delta.extend(extra.map(|(key, value)| ("", key, value)));
            let members = vec![
                ("", b"\"index\"".to_vec(), index),
                ("", b"\"delta\"".to_vec(), object(delta)),
                ("", b"\"finish_reason\"".to_vec(), finish),
            ];
            ("", object(members))
        });
    prop::collection::vec(one, 1..3)
        .prop_map(|choices| {
            let mut text =
                br#"{"id":"chatcmpl-1","object":"chat.completion.chunk","choices":"#.to_vec();
            text.extend(array(choices));
            text.extend_from_slice(br#","usage":null}"#);
            text
        })
        .boxed()
}

fn chunk() -> BoxedStrategy<Vec<u8>> {
    let choices = prop_oneof![
        8 => prop::collection::vec((ws(), choice()), 0..3).prop_map(array),
        1 => select(&["null", r#"{"a":[1]}"#]),
        1 => any_value(),
    ]
    .boxed();
    let kind = prop_oneof![string(), any_value()].boxed();
    let top = members(vec![("choices", choices), ("type", kind)]);
    prop_oneof![
        8 => typical(),
        12 => (ws(), top.prop_map(object), ws()).prop_map(|(before, mut text, after)| {
            text.splice(0..0, before.bytes());
            text.extend_from_slice(after.as_bytes());
            text
        }),
        1 => any_value(),
    ]
    .boxed()
}

/// Junk made of a chunk: cut short, a byte dropped, or one put in.
fn mutated(chunk: Vec<u8>, edit: (u8, usize, u8)) -> Vec<u8> {
    let (kind, at, byte) = edit;
    let mut text = chunk;
    let at = at % (text.len() + 1);
    match kind % 8 {
        0 => text.truncate(at),
        1 if at < text.len() => {
            text.remove(at);
        }
        2 => text.insert(at, byte),
        _ => {}
    }
    text
}

fn junk_byte() -> impl Strategy<Value = u8> {
    prop::sample::select(vec![
        b',', b']', b'}', b'[', b'{', b'"', b'\\', b':', b' ', b'0', b'-', b'n', 0xff, 0x01,
    ])
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 4096,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(0x7011_6a7e),
        ..ProptestConfig::default()
    })]

    /// The walk and serde agree on every generated chunk, whole or broken.
    #[test]
    fn reads_as_serde_reads(
        chunk in chunk(),
        edit in (any::<u8>(), any::<usize>(), junk_byte()),
    ) {
        read_both(&chunk);
        read_both(&mutated(chunk, edit));
    }

    /// A reader of a stream's chunks reads each as serde does, whatever
    /// the one before it was: here a chunk, then the same chunk broken
    /// (most often after the prefix they share) or another.
    #[test]
    fn a_reader_reads_as_serde_reads(
        first in chunk(),
        other in chunk(),
        edit in (any::<u8>(), any::<usize>(), junk_byte()),
    ) {
        let mut reader = ChunkReader::default();
        let second = mutated(first.clone(), edit);
        for data in [&first, &second, &first, &other, &second] {
            let ours = reader.read(data);
            prop_assert_eq!(ours.ok(), read_with_serde(data).ok());
        }
    }
}

/// Every `data:` line of the streams the repository keeps as fixtures
/// (real providers' chunks): read alike both ways.
#[test]
fn agrees_with_serde_on_the_fixture_streams() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut dirs = vec![root.join("crates"), root.join("tests")];
    let mut events = 0;
    // Each directory is read once; the repository is finite.
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for path in entries.flatten().map(|entry| entry.path()) {
            if path.is_dir() && !path.ends_with("target") {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "sse") {
                let text = std::fs::read(&path).expect("a readable fixture");
                let mut reader = ChunkReader::default();
                for line in text.split(|&b| b == b'\n') {
                    if let Some(data) = line.strip_prefix(b"data: ") {
                        let data = data.strip_suffix(b"\r").unwrap_or(data);
                        let chunk = read_both(data);
                        assert_eq!(reader.read(data).ok(), chunk);
                        events += 1;
                    }
                }
            }
        }
    }
    assert!(events > 50, "{events} events");
}
