//! Reshaping OpenRouter's chat-completion JSON into OpenAI's, field by field.
//!
//! The rewrite runs as one serde pass that copies every value it keeps as
//! the raw text it arrived in (`&RawValue`, borrowed from the input), and
//! writes straight into the caller's buffer. So nothing is built in between
//! — no `serde_json::Value`, no per-field allocation — and numbers keep
//! their exact text: `usage.cost` stays `0.00029666`, not whatever an `f64`
//! prints.
//!
//! What changes, and why (the fields a strict OpenAI client would choke on,
//! or that expose OpenRouter's routing):
//!
//! | where | field | done |
//! |---|---|---|
//! | top level | `provider` | dropped: which provider OpenRouter routed to is not the client's business (and not OpenAI's shape) |
//! | top level | `error` | reported: the caller turns the body into an error |
//! | top level | `service_tier` | kept when `null` or one of OpenAI's values, else dropped (async-openai parses it as an enum) |
//! | top level | `system_fingerprint` | kept when a string or `null`, else dropped |
//! | top level | `usage` | kept as is: `cost`, `is_byok`, `cost_details` are extra keys that OpenAI clients ignore, and the cost layer reads `usage.cost` from the same place in streams and complete bodies |
//! | `choices[]` | `native_finish_reason` | dropped |
//! | `choices[]` | `finish_reason` | mapped onto OpenAI's five values; `"error"` is reported as an error |
//! | `choices[]` | `error` | reported: the caller turns the body into an error |
//! | `message` / `delta` | `reasoning` | renamed `reasoning_content` (as LiteLLM does), dropped when `null` |
//! | `message` / `delta` | `reasoning_details` | dropped: OpenRouter's structured reasoning has no OpenAI equivalent, and the text is already in `reasoning_content` |
//!
//! Everything else — `id` (`gen-…`, which the cost layer needs for
//! `/generation`), `refusal`, `logprobs`, `tool_calls`, `annotations`, and
//! keys nobody knows yet — is copied unchanged.

use std::fmt;

use bytes::{BufMut, BytesMut};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// What [`reshape`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reshaped {
    /// Nothing needed changing (or the input was not a JSON object): use the
    /// input as it is. Nothing was left in the output buffer.
    Unchanged,
    /// The reshaped object was appended to the output buffer.
    Written,
    /// The object carries an error (a top-level `error`, a choice's `error`,
    /// or `finish_reason: "error"`). Nothing was left in the output buffer.
    Error,
}

/// Reshapes one chat-completion object (a complete body or a stream chunk),
/// appending the result to `out` when anything changed.
pub(crate) fn reshape(json: &[u8], out: &mut BytesMut) -> Reshaped {
    // Validated once here, the text is not validated again string by string
    // and raw value by raw value, as it would be from a byte slice.
    let Ok(json) = std::str::from_utf8(json) else {
        return Reshaped::Unchanged;
    };
    let mark = out.len();
    let mut status = Status::default();
    let mut de = serde_json::Deserializer::from_str(json);
    let parsed = ObjectSeed {
        out: &mut *out,
        status: &mut status,
        level: Level::Top,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    if status.error {
        out.truncate(mark);
        return Reshaped::Error;
    }
    match parsed {
        Ok(()) if status.changed => Reshaped::Written,
        Ok(()) => {
            out.truncate(mark);
            Reshaped::Unchanged
        }
        Err(_) => {
            out.truncate(mark);
            drop_provider(json, out)
        }
    }
}

/// An object this walk cannot read (`choices` that is not an array of
/// objects, say) is no answer an OpenAI client can use, but it still must
/// not carry OpenRouter's `provider`: it goes, the rest stays as it came
/// (keys in serde_json's order). Malformed answers only, so a parse into a
/// map costs nothing on the common path.
fn drop_provider(json: &str, out: &mut BytesMut) -> Reshaped {
    let Ok(mut object) = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(json)
    else {
        return Reshaped::Unchanged;
    };
    if object.remove("provider").is_none() {
        return Reshaped::Unchanged;
    }
    // Serialising a map into memory cannot fail.
    let _ = serde_json::to_writer(out.writer(), &object);
    Reshaped::Written
}

/// Maps a finish reason onto OpenAI's set (`stop`, `length`, `tool_calls`,
/// `content_filter`, `function_call`); `None` for `"error"`, which is not a
/// way of finishing but a failure.
///
/// OpenRouter already normalises most providers' reasons (the raw one is in
/// `native_finish_reason`), but not all of them; anything unknown ends the
/// choice as `stop`, the only value that promises nothing more.
pub(crate) fn openai_finish_reason(reason: &str) -> Option<&'static str> {
    const LENGTH: &[&str] = &["length", "max_tokens", "max_output_tokens", "model_length"];
    const TOOLS: &[&str] = &["tool_calls", "tool_use", "tool_call", "function_calls"];
    const FILTER: &[&str] = &[
        "content_filter",
        "safety",
        "recitation",
        "blocklist",
        "prohibited_content",
        "spii",
        "refusal",
    ];
    let is = |names: &[&str]| names.iter().any(|n| reason.eq_ignore_ascii_case(n));
    if reason.eq_ignore_ascii_case("error") {
        None
    } else if is(LENGTH) {
        Some("length")
    } else if is(TOOLS) {
        Some("tool_calls")
    } else if is(FILTER) {
        Some("content_filter")
    } else if reason == "function_call" {
        Some("function_call")
    } else {
        // `stop`, `end_turn`, `stop_sequence`, `eos`... and anything new.
        Some("stop")
    }
}

#[derive(Default)]
struct Status {
    changed: bool,
    error: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Top,
    Choice,
    Message,
}

/// What to do with one key.
enum Action {
    Copy,
    Drop,
    Error,
    Choices,
    Message,
    FinishReason,
    /// `reasoning` (written as `reasoning_content`) or `reasoning_content`
    /// as some providers already send it.
    Reasoning,
    ServiceTier,
    Fingerprint,
}

fn action(level: Level, key: &str) -> Action {
    match (level, key) {
        (Level::Top, "provider") => Action::Drop,
        (Level::Top | Level::Choice, "error") => Action::Error,
        (Level::Top, "choices") => Action::Choices,
        (Level::Top, "service_tier") => Action::ServiceTier,
        (Level::Top, "system_fingerprint") => Action::Fingerprint,
        (Level::Choice, "native_finish_reason") => Action::Drop,
        (Level::Choice, "finish_reason") => Action::FinishReason,
        (Level::Choice, "delta" | "message") => Action::Message,
        (Level::Message, "reasoning" | "reasoning_content") => Action::Reasoning,
        (Level::Message, "reasoning_details") => Action::Drop,
        _ => Action::Copy,
    }
}

/// A JSON string borrowed from the input when it had no escapes (always, for
/// the keys OpenRouter sends), owned otherwise.
enum Text<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Text<'_> {
    fn as_str(&self) -> &str {
        match self {
            Text::Borrowed(s) => s,
            Text::Owned(s) => s,
        }
    }
}

impl<'de> de::Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text::Borrowed(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text::Owned(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text::Owned(v))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

/// Writes an object member's key (and the comma before it).
fn write_key(out: &mut BytesMut, first: &mut bool, key: &Text<'_>) {
    if !std::mem::take(first) {
        out.put_u8(b',');
    }
    match key {
        // A borrowed key had no escape sequence, so it has no byte that needs one.
        Text::Borrowed(key) => {
            out.put_u8(b'"');
            out.put_slice(key.as_bytes());
            out.put_u8(b'"');
        }
        Text::Owned(key) => write_json_string(out, key),
    }
    out.put_u8(b':');
}

fn write_json_string(out: &mut BytesMut, text: &str) {
    // Serialising a `str` into memory cannot fail.
    let _ = serde_json::to_writer((&mut *out).writer(), text);
}

/// The raw value as a string, when it is one.
fn raw_str(raw: &RawValue) -> Option<Text<'_>> {
    let text = raw.get();
    if !text.starts_with('"') {
        return None;
    }
    let mut de = serde_json::Deserializer::from_str(text);
    de::Deserialize::deserialize(&mut de).ok()
}

/// Rewrites one object at `level`, or copies `null`.
struct ObjectSeed<'a> {
    out: &'a mut BytesMut,
    status: &'a mut Status,
    level: Level,
}

impl<'de> DeserializeSeed<'de> for ObjectSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        if self.level == Level::Top {
            deserializer.deserialize_map(self)
        } else {
            deserializer.deserialize_any(self)
        }
    }
}

impl<'de> Visitor<'de> for ObjectSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.out.put_slice(b"null");
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let ObjectSeed { out, status, level } = self;
        out.put_u8(b'{');
        let mut first = true;
        let mut wrote_reasoning = false;
        while let Some(key) = map.next_key::<Text<'de>>()? {
            match action(level, key.as_str()) {
                Action::Copy => {
                    let value: &RawValue = map.next_value()?;
                    write_key(out, &mut first, &key);
                    out.put_slice(value.get().as_bytes());
                }
                Action::Drop => {
                    map.next_value::<IgnoredAny>()?;
                    status.changed = true;
                }
                Action::Error => {
                    let value: &RawValue = map.next_value()?;
                    if value.get() != "null" {
                        status.error = true;
                    }
                    status.changed = true;
                }
                Action::Choices => {
                    write_key(out, &mut first, &key);
                    map.next_value_seed(ChoicesSeed {
                        out: &mut *out,
                        status: &mut *status,
                    })?;
                }
                Action::Message => {
                    write_key(out, &mut first, &key);
                    map.next_value_seed(ObjectSeed {
                        out: &mut *out,
                        status: &mut *status,
                        level: Level::Message,
                    })?;
                }
                Action::FinishReason => {
                    let value: &RawValue = map.next_value()?;
                    if value.get() == "null" {
                        write_key(out, &mut first, &key);
                        out.put_slice(b"null");
                        continue;
                    }
                    let Some(reason) = raw_str(value) else {
                        // Not a string: no OpenAI client can read it.
                        status.changed = true;
                        continue;
                    };
                    match openai_finish_reason(reason.as_str()) {
                        None => status.error = true,
                        Some(mapped) => {
                            write_key(out, &mut first, &key);
                            write_json_string(out, mapped);
                            status.changed |= mapped != reason.as_str();
                        }
                    }
                }
                Action::Reasoning => {
                    let value: &RawValue = map.next_value()?;
                    // A null says nothing, and a second reasoning key would
                    // be a duplicate member: drop both.
                    if value.get() == "null" || wrote_reasoning {
                        status.changed = true;
                        continue;
                    }
                    wrote_reasoning = true;
                    if key.as_str() == "reasoning" {
                        status.changed = true;
                        write_key(out, &mut first, &Text::Borrowed("reasoning_content"));
                    } else {
                        write_key(out, &mut first, &key);
                    }
                    out.put_slice(value.get().as_bytes());
                }
                Action::ServiceTier => {
                    let value: &RawValue = map.next_value()?;
                    let known = value.get() == "null"
                        || raw_str(value).is_some_and(|tier| {
                            ["auto", "default", "flex", "scale", "priority"]
                                .contains(&tier.as_str())
                        });
                    if known {
                        write_key(out, &mut first, &key);
                        out.put_slice(value.get().as_bytes());
                    } else {
                        status.changed = true;
                    }
                }
                Action::Fingerprint => {
                    let value: &RawValue = map.next_value()?;
                    if value.get() == "null" || value.get().starts_with('"') {
                        write_key(out, &mut first, &key);
                        out.put_slice(value.get().as_bytes());
                    } else {
                        status.changed = true;
                    }
                }
            }
        }
        out.put_u8(b'}');
        Ok(())
    }
}

/// Rewrites the `choices` array, or copies `null`.
struct ChoicesSeed<'a> {
    out: &'a mut BytesMut,
    status: &'a mut Status,
}

impl<'de> DeserializeSeed<'de> for ChoicesSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ChoicesSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of choices")
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.out.put_slice(b"null");
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let ChoicesSeed { out, status } = self;
        out.put_u8(b'[');
        let mut first = true;
        loop {
            // The comma goes in before we know whether an element follows;
            // take it back at the end.
            let mark = out.len();
            if !first {
                out.put_u8(b',');
            }
            let more = seq.next_element_seed(ObjectSeed {
                out: &mut *out,
                status: &mut *status,
                level: Level::Choice,
            })?;
            if more.is_none() {
                out.truncate(mark);
                break;
            }
            first = false;
        }
        out.put_u8(b']');
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(json: &str) -> (Reshaped, String) {
        let mut out = BytesMut::new();
        let verdict = reshape(json.as_bytes(), &mut out);
        (verdict, String::from_utf8(out.to_vec()).unwrap())
    }

    fn reshaped(json: &str) -> String {
        let (verdict, out) = run(json);
        assert_eq!(verdict, Reshaped::Written, "{json}");
        out
    }

    #[test]
    fn drops_routing_fields_and_keeps_the_rest_verbatim() {
        let out = reshaped(
            r#"{"id":"gen-1","provider":"Chutes","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null,"native_finish_reason":null}],"usage":{"cost":0.00029666,"x":1e-7}}"#,
        );
        assert_eq!(
            out,
            r#"{"id":"gen-1","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}],"usage":{"cost":0.00029666,"x":1e-7}}"#
        );
    }

    #[test]
    fn an_openai_chunk_is_left_alone() {
        let chunk = r#"{"id":"c","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":"stop"}],"system_fingerprint":"fp"}"#;
        let (verdict, out) = run(chunk);
        assert_eq!(verdict, Reshaped::Unchanged);
        assert!(out.is_empty());
    }

    #[test]
    fn reasoning_becomes_reasoning_content_once() {
        let out = reshaped(
            r#"{"choices":[{"message":{"content":"a","reasoning":"think","reasoning_details":[{"type":"reasoning.text"}],"reasoning_content":"dup"}}]}"#,
        );
        assert_eq!(
            out,
            r#"{"choices":[{"message":{"content":"a","reasoning_content":"think"}}]}"#
        );
        let out = reshaped(r#"{"choices":[{"delta":{"content":"a","reasoning":null}}]}"#);
        assert_eq!(out, r#"{"choices":[{"delta":{"content":"a"}}]}"#);
    }

    #[test]
    fn finish_reasons_map_onto_openais_set() {
        assert_eq!(openai_finish_reason("stop"), Some("stop"));
        assert_eq!(openai_finish_reason("end_turn"), Some("stop"));
        assert_eq!(openai_finish_reason("MAX_TOKENS"), Some("length"));
        assert_eq!(openai_finish_reason("tool_use"), Some("tool_calls"));
        assert_eq!(openai_finish_reason("SAFETY"), Some("content_filter"));
        assert_eq!(openai_finish_reason("something new"), Some("stop"));
        assert_eq!(openai_finish_reason("error"), None);
        let out = reshaped(r#"{"choices":[{"finish_reason":"end_turn"},{"finish_reason":7}]}"#);
        assert_eq!(out, r#"{"choices":[{"finish_reason":"stop"},{}]}"#);
    }

    #[test]
    fn errors_are_reported_not_written() {
        for json in [
            r#"{"error":{"code":502,"message":"x"},"user_id":"u"}"#,
            r#"{"choices":[{"finish_reason":"error","message":{"content":"part"}}]}"#,
            r#"{"choices":[{"error":{"code":502},"finish_reason":null}]}"#,
        ] {
            let (verdict, out) = run(json);
            assert_eq!(verdict, Reshaped::Error, "{json}");
            assert!(out.is_empty());
        }
        // A null error is no error.
        assert_eq!(run(r#"{"error":null,"id":"x"}"#).0, Reshaped::Written);
    }

    #[test]
    fn unknown_service_tiers_and_odd_fingerprints_are_dropped() {
        let out = reshaped(r#"{"service_tier":"standard","system_fingerprint":12,"id":"x"}"#);
        assert_eq!(out, r#"{"id":"x"}"#);
        let (verdict, _) = run(r#"{"service_tier":"default","system_fingerprint":null}"#);
        assert_eq!(verdict, Reshaped::Unchanged);
    }

    #[test]
    fn escaped_keys_are_escaped_again() {
        let out = reshaped(r#"{"provider":"p","a\"b":1,"\u00e9":2}"#);
        assert_eq!(out, r#"{"a\"b":1,"é":2}"#);
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(value["a\"b"], 1);
    }

    #[test]
    fn not_an_object_is_left_alone_and_the_buffer_is_restored() {
        let mut out = BytesMut::from(&b"keep"[..]);
        for json in ["[1,2]", "\"x\"", "{\"provider\":", "{} trailing", ""] {
            assert_eq!(reshape(json.as_bytes(), &mut out), Reshaped::Unchanged);
            assert_eq!(out, "keep");
        }
    }

    /// Found by the `openrouter_response` fuzz target: `choices` that is
    /// not an array made the walk give up, and `provider` went through.
    #[test]
    fn an_object_of_an_unknown_shape_still_loses_its_provider() {
        for json in [
            r#"{"id":"x","provider":"Z.AI","choices":{}}"#,
            r#"{"provider":"p","choices":[1]}"#,
        ] {
            let mut out = BytesMut::from(&b"keep"[..]);
            assert_eq!(reshape(json.as_bytes(), &mut out), Reshaped::Written);
            let value: serde_json::Value = serde_json::from_slice(&out[4..]).unwrap();
            assert!(value.get("provider").is_none(), "{value}");
            assert!(value.get("choices").is_some());
        }
        let mut out = BytesMut::new();
        let json = r#"{"id":"x","choices":{}}"#;
        assert_eq!(reshape(json.as_bytes(), &mut out), Reshaped::Unchanged);
        assert!(out.is_empty());
    }

    #[test]
    fn appends_after_what_the_buffer_holds() {
        let mut out = BytesMut::from(&b"data: "[..]);
        assert_eq!(
            reshape(br#"{"provider":"p","id":"x"}"#, &mut out),
            Reshaped::Written
        );
        assert_eq!(out, r#"data: {"id":"x"}"#);
    }
}
