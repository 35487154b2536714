//! [`skim`] and [`Reported::read`] held to serde's answers
//! ([`Reported::read_with_serde`], the reader it replaced): on hand-picked
//! edge cases, on every JSON body the repository keeps (fixtures, test
//! sources' literals, the anchor benchmark's bodies), and on generated and
//! mutated bodies from a seeded generator (deterministic, bounded).

use std::path::{Path, PathBuf};

use super::*;
use crate::usage::Reported;

/// What [`skim`] made of a body, for tallies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Object,
    Rejected,
    Unsure,
}

/// Reads `json` both ways and insists on one answer; returns what the
/// one-pass walk made of it.
fn same_as_serde(json: &[u8]) -> Verdict {
    assert_eq!(
        Reported::read(json),
        Reported::read_with_serde(json),
        "{:?}",
        String::from_utf8_lossy(json)
    );
    match skim(json) {
        Ok(_) => Verdict::Object,
        Err(Stop::Rejected) => Verdict::Rejected,
        Err(Stop::Unsure) => Verdict::Unsure,
    }
}

fn top_level_of(json: &str) -> TopLevel<'_> {
    match skim(json.as_bytes()) {
        Ok(top) => top,
        other => panic!("{json}: {other:?}"),
    }
}

#[test]
fn finds_the_values_the_layer_needs() {
    let top = top_level_of(
        r#" {"id":"x\"\\\u00e9","usage" : {"prompt_tokens":1} ,"choices":[{"a":[1,{}]},[],"s",-0.5e+3,true,null],
        "error":null,"response":null,"other":{"usage":{"nested":1}}} "#,
    );
    let usage = top.usage.as_ref().map(|usage| usage.prompt_tokens);
    assert_eq!(usage, Some(Count(Some(1))));
    assert_eq!(top.choices, Some(6));
    assert!(!top.error);
    let top = top_level_of(r#"{"choices":null,"error":{"message":"x"}}"#);
    assert_eq!((top.choices, top.error, top.usage), (None, true, None));
    assert_eq!(top_level_of("{}"), TopLevel::default());
    assert_eq!(top_level_of(r#"{"choices":[]}"#).choices, Some(0));
}

#[test]
fn rejects_what_serde_rejects() {
    let rejected = [
        "",
        "   ",
        "null",
        "\"usage\"",
        "1",
        r#"{"a":1}x"#,
        r#"{"a":1}{}"#,
        r#"{"a":1,}"#,
        r#"{"a" 1}"#,
        r#"{"a":[1,]}"#,
        r#"{"a":[1 2]}"#,
        r#"{"a":{"b":1,}}"#,
        r#"{"a":{1:2}}"#,
        r#"{"a":[}"#,
        r#"{"a":01}"#,
        r#"{"a":-}"#,
        r#"{"a":1.}"#,
        r#"{"a":1e}"#,
        r#"{"a":+1}"#,
        r#"{"a":nul}"#,
        r#"{"a":"\x"}"#,
        r#"{"a":"\u12g4"}"#,
        "{\"a\":\"tab\there\"}",
        r#"{"a":"open}"#,
        r#"{"usage":null,"usage":null}"#,
        r#"{"choices":{}}"#,
        r#"{"choices":"many"}"#,
    ];
    for json in rejected {
        assert_eq!(skim(json.as_bytes()), Err(Stop::Rejected), "{json}");
        assert_eq!(same_as_serde(json.as_bytes()), Verdict::Rejected, "{json}");
    }
    // Serde's verdicts on a `usage` of an unusual shape and on `response`,
    // which serde reads: its derive reads a struct from an array too.
    assert_eq!(skim(br#"{"response":1}"#), Err(Stop::Rejected));
    assert!(skim(br#"{"usage":[1]}"#).is_ok());
    assert_eq!(same_as_serde(br#"{"usage":[1]}"#), Verdict::Object);
    let usage = Reported::read(br#"{"usage":[1]}"#).and_then(|r| r.usage);
    assert_eq!(usage.map(|u| u.prompt_tokens), Some(1));
    // A key must be UTF-8, a skipped string need not be; nor a non-null
    // `error` (serde takes it as a raw value, which must be).
    assert_eq!(skim(b"{\"\xff\":1}"), Err(Stop::Rejected));
    assert!(skim(b"{\"a\":\"\xff\"}").is_ok());
    assert_eq!(skim(b"{\"error\":\"\xff\"}"), Err(Stop::Rejected));
    for json in [
        &b"{\"\xff\":1}"[..],
        b"{\"a\":\"\xff\"}",
        b"{\"error\":\"\xff\"}",
    ] {
        assert_ne!(same_as_serde(json), Verdict::Unsure);
    }
}

#[test]
fn leaves_to_serde_what_it_cannot_decide_alone() {
    for json in [
        // Serde's derive reads a struct from an array, field by field.
        "[]",
        r#"[{"prompt_tokens":3},[1,2],null]"#,
        r#"{"us\u0061ge":{"prompt_tokens":3}}"#,
        r#"{"\ud800":1}"#,
    ] {
        assert_eq!(skim(json.as_bytes()), Err(Stop::Unsure), "{json}");
        assert_eq!(same_as_serde(json.as_bytes()), Verdict::Unsure);
    }
    // Skipped values nest as deep as they go, as serde skips them.
    for depth in [64, 65, 200] {
        let deep = format!(r#"{{"a":{}1{}}}"#, "[".repeat(depth), "]".repeat(depth));
        assert_eq!(same_as_serde(deep.as_bytes()), Verdict::Object, "{depth}");
    }
    let reported = Reported::read(br#"[{"prompt_tokens":3},[1,2],null]"#).unwrap();
    assert_eq!(reported.usage.map(|u| u.prompt_tokens), Some(3));
    assert_eq!(reported.choices, Some(2));
}

/// Every JSON body the repository keeps: fixture files (`.json`, each
/// `data:` of an `.sse`), raw string literals of test sources that open an
/// object, and the bodies the anchor benchmark's mock answers with.
fn repository_bodies() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    let mut dirs = vec![
        root.join("crates"),
        root.join("tests"),
        root.join("benches"),
    ];
    // Each directory is read once; the repository is finite.
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() && name != "target" && name != "node_modules" {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut bodies = Vec::new();
    for path in files {
        let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let in_tests = path.components().any(|c| c.as_os_str() == "tests");
        match extension {
            "json" => bodies.push(std::fs::read(&path).expect("a readable fixture")),
            "sse" => bodies.extend(sse_data(&read_text(&path))),
            "rs" if in_tests || path.starts_with(root.join("crates/tollgate-cost")) => {
                bodies.extend(raw_literals(&read_text(&path)));
            }
            "conf" => bodies.extend(nginx_bodies(&read_text(&path))),
            _ => {}
        }
    }
    bodies
}

fn read_text(path: &PathBuf) -> String {
    std::fs::read_to_string(path).expect("a readable text file")
}

fn sse_data(text: &str) -> Vec<Vec<u8>> {
    text.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(|data| data.trim_start().as_bytes().to_vec())
        .collect()
}

/// The texts between each `open` and the `close` after it.
fn between<'t>(text: &'t str, open: &str, close: &str) -> Vec<&'t str> {
    text.split(open)
        .skip(1)
        .filter_map(|rest| rest.split_once(close).map(|(inside, _)| inside))
        .collect()
}

/// `r#"{...}"#` literals.
fn raw_literals(source: &str) -> Vec<Vec<u8>> {
    between(source, "r#\"", "\"#")
        .into_iter()
        .filter(|literal| literal.trim_start().starts_with('{'))
        .map(|literal| literal.as_bytes().to_vec())
        .collect()
}

/// The JSON bodies of nginx's `return <status> '{...}';`.
fn nginx_bodies(config: &str) -> Vec<Vec<u8>> {
    between(config, "'{", "'")
        .into_iter()
        .map(|body| format!("{{{body}").into_bytes())
        .collect()
}

#[test]
fn same_as_serde_on_every_body_the_repository_keeps() {
    let bodies = repository_bodies();
    let (mut objects, mut with_usage, mut unsure) = (0, 0, 0);
    for body in &bodies {
        match same_as_serde(body) {
            Verdict::Object => {
                objects += 1;
                with_usage += usize::from(Reported::read(body).is_some_and(|r| r.usage.is_some()));
            }
            // `[DONE]` and this file's own escaped keys.
            Verdict::Unsure => unsure += usize::from(body.starts_with(b"{")),
            Verdict::Rejected => {}
        }
    }
    // The walk found the fixtures, and decided them itself.
    assert!(bodies.len() > 200, "{} bodies", bodies.len());
    assert!(
        objects > 150 && with_usage > 30,
        "{objects} objects, {with_usage} with usage"
    );
    assert!(unsure < 5, "{unsure} objects left to serde");
}

/// splitmix64: a seeded, reproducible stream of choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const KEYS: [&str; 24] = [
    "usage",
    "choices",
    "error",
    "response",
    "prompt_tokens",
    "completion_tokens",
    "input_tokens",
    "output_tokens",
    "prompt_tokens_details",
    "completion_tokens_details",
    "input_tokens_details",
    "output_tokens_details",
    "cached_tokens",
    "cache_write_tokens",
    "cache_creation_tokens",
    "reasoning_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "cost",
    "total_tokens",
    "id",
    "us\\u0061ge",
    "",
    "\u{e9}",
];

const SCALARS: [&str; 22] = [
    "0",
    "42",
    "-1",
    "14.0",
    "1e2",
    "1.5E-3",
    "0.00029666",
    "18446744073709551615",
    "18446744073709551616",
    "-0",
    "\"8\"",
    "\" 12 \"",
    "\"0.5\"",
    "\"x\"",
    "\"\\u0041\\\"\\n\"",
    "\"\u{e9}\"",
    "\"\"",
    "null",
    "true",
    "false",
    "1.3e-7",
    "99999999999999999999.0",
];

const SPACES: [&str; 5] = ["", "", "", " ", "\n\t "];

/// A random JSON value, `depth` levels at most, with the keys and counts
/// the envelope reads.
fn random_value(rng: &mut Rng, depth: u32, out: &mut String) {
    match rng.below(if depth == 0 { 1 } else { 4 }) {
        0 => out.push_str(rng.pick(&SCALARS)),
        1 => {
            out.push('[');
            for i in 0..rng.below(4) {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(rng.pick(&SPACES));
                random_value(rng, depth - 1, out);
            }
            out.push(']');
        }
        _ => random_object(rng, depth - 1, out),
    }
}

fn random_object(rng: &mut Rng, depth: u32, out: &mut String) {
    out.push('{');
    for i in 0..rng.below(6) {
        if i > 0 {
            out.push(',');
        }
        out.push_str(rng.pick(&SPACES));
        out.push('"');
        out.push_str(rng.pick(&KEYS));
        out.push('"');
        out.push_str(rng.pick(&SPACES));
        out.push(':');
        out.push_str(rng.pick(&SPACES));
        random_value(rng, depth, out);
    }
    out.push_str(rng.pick(&SPACES));
    out.push('}');
}

/// Bytes that make or break JSON, and some that are neither.
const MUTANTS: &[u8] = b"{}[],:\"\\ \t\n0123456789-+.eEnulltrufsa\x00\x1f\x7f\xc3\xa9\xff";

/// One random edit of `body`: a byte changed, inserted or removed, a cut,
/// a span repeated, or a member spliced in.
fn mutate(rng: &mut Rng, body: &mut Vec<u8>) {
    let at = rng.below(body.len() + 1);
    let byte = MUTANTS[rng.below(MUTANTS.len())];
    match rng.below(6) {
        0 if at < body.len() => body[at] = byte,
        1 => body.insert(at, byte),
        2 if at < body.len() => {
            body.remove(at);
        }
        3 => body.truncate(at),
        4 => {
            let end = (at + rng.below(16)).min(body.len());
            let span = body[at..end].to_vec();
            body.splice(at..at, span);
        }
        _ => {
            let member = rng.pick(&[
                r#""usage":null,"#,
                r#""usage":{"prompt_tokens":3,"cost":0.5},"#,
                r#""choices":[1,[2],{"a":3}],"#,
                r#""error":{"code":1},"#,
                r#""response":{"usage":{"input_tokens":2,"output_tokens":"5"}},"#,
                r#""us\u0061ge":{},"#,
            ]);
            body.splice(at..at, member.bytes());
        }
    }
}

#[test]
fn same_as_serde_on_generated_and_mutated_bodies() {
    let mut rng = Rng(0x7011_6a7e);
    let mut seeds = repository_bodies();
    let (mut objects, mut with_usage, mut rejected, mut unsure) = (0, 0, 0, 0);
    for round in 0..40_000 {
        let mut body = if round % 2 == 0 {
            let mut text = String::new();
            text.push_str(rng.pick(&SPACES));
            random_object(&mut rng, 4, &mut text);
            text.push_str(rng.pick(&SPACES));
            text.into_bytes()
        } else {
            seeds[rng.below(seeds.len())].clone()
        };
        for _ in 0..rng.below(4) {
            mutate(&mut rng, &mut body);
        }
        match same_as_serde(&body) {
            Verdict::Object => {
                objects += 1;
                with_usage += usize::from(Reported::read(&body).is_some_and(|r| r.usage.is_some()));
            }
            Verdict::Rejected => rejected += 1,
            Verdict::Unsure => unsure += 1,
        }
        // Accepted mutants seed further rounds: mutations pile up.
        if round % 8 == 1 && serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok() {
            seeds.push(body);
        }
    }
    // Each kind of verdict came up often enough to mean something.
    assert!(
        objects > 10_000 && with_usage > 1_400 && rejected > 20_000 && unsure > 1_000,
        "{objects} objects ({with_usage} with usage), {rejected} rejected, {unsure} unsure"
    );
}

/// The usual-shape reading of `usage` on its own, against serde's: every
/// usage it reads, serde reads the same; most generated ones, it reads.
#[test]
fn reads_usual_usages_as_serde_does() {
    const COUNTS: [&str; 9] = [
        "0",
        "7",
        "1200",
        "9999999999999999999",
        "null",
        "01",
        "1.0",
        "\"3\"",
        "-1",
    ];
    let mut rng = Rng(0x05a6e);
    let mut read_here = 0;
    for round in 0..5_000 {
        let mut text = String::from("{");
        for i in 0..rng.below(7) {
            if i > 0 {
                text.push(',');
            }
            text.push_str(rng.pick(&SPACES));
            let key = rng.pick(&KEYS[4..20]);
            text.push_str(&format!("\"{key}\":"));
            if key.ends_with("details") && rng.below(4) > 0 {
                text.push_str(&format!(
                    r#"{{"{}":{}}}"#,
                    rng.pick(&KEYS[12..16]),
                    rng.pick(&COUNTS)
                ));
            } else {
                text.push_str(rng.pick(&COUNTS));
            }
        }
        text.push('}');
        let mut bytes = text.into_bytes();
        if round % 4 == 0 {
            mutate(&mut rng, &mut bytes);
        }
        let serde = serde_json::from_slice::<Option<UsageView<'_>>>(&bytes).ok();
        let mut cursor = Cursor::new(&bytes);
        // A value, and nothing after it: what `from_slice` reads.
        if let Some(usual) = usual_usage(&mut cursor)
            && cursor.peek().is_none()
        {
            read_here += 1;
            assert_eq!(Some(usual), serde, "{:?}", String::from_utf8_lossy(&bytes));
        }
    }
    assert!(read_here > 1_500, "{read_here} read here");
}
