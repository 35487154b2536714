//! [`ChunkView`]: what one chat-completions (or legacy completions) stream
//! chunk holds, as far as the layers care, read without building a JSON
//! tree.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// What a stream chunk's `choices` hold: where it commits a stream (its
/// first content), where it finishes, the text it adds. Every field is
/// read leniently — content as a list of parts, reasoning as an object — so
/// that a provider's variation is never mistaken for a malformed chunk.
///
/// ```
/// use tollgate_core::ChunkView;
///
/// let chunk = ChunkView::read(br#"{"choices":[{"index":0,"delta":{"content":"Hi"}}]}"#).unwrap();
/// assert!(chunk.content && !chunk.finish);
/// assert_eq!(chunk.text.as_deref(), Some("Hi"));
/// assert!(ChunkView::read(b"[DONE]").is_err());
/// ```
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ChunkView<'a> {
    /// `choices[0].delta.content`, borrowed unless it had escapes.
    pub text: Option<Cow<'a, str>>,
    /// Content, reasoning, a refusal, a tool call or a `finish_reason`.
    pub content: bool,
    /// A `finish_reason` other than `"error"`.
    pub finish: bool,
    /// `finish_reason: "error"` (OpenRouter's way of failing mid-stream).
    pub finish_error: bool,
    /// Tool calls, refusals, non-text content, several choices or a legacy
    /// completion's text: a prefill of messages cannot continue those.
    pub not_continuable: bool,
    /// The last event of a stream of OpenAI's Responses API
    /// (`response.completed`, `response.incomplete`): its clean end, which
    /// no `[DONE]` follows.
    pub end: bool,
}

impl<'a> ChunkView<'a> {
    /// Reads the data of one stream event.
    ///
    /// # Errors
    ///
    /// When the data is not one JSON object.
    pub fn read(data: &'a [u8]) -> Result<ChunkView<'a>, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_slice(data);
        let chunk = de.deserialize_map(ChunkVisitor)?;
        de.end()?;
        Ok(chunk)
    }
}

struct ChunkVisitor;

impl<'de> Visitor<'de> for ChunkVisitor {
    type Value = ChunkView<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a chat completion chunk")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ChunkView<'de>, A::Error> {
        let mut chunk = ChunkView::default();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if key == "choices" {
                map.next_value_seed(ChoicesSeed(&mut chunk))?;
            } else if key == "type" {
                typed_event(&mut chunk, map.next_value::<Loose<'de>>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(chunk)
    }
}

/// An event of OpenAI's Responses API, by its `type` (API reference,
/// "Responses" → "Streaming events"): the events before the first output
/// are no content, its last one finishes it, and no such stream can be
/// continued from a prefill of chat messages. A chat chunk has no `type`.
fn typed_event(chunk: &mut ChunkView<'_>, kind: Loose<'_>) {
    let Loose::Text(kind) = kind else { return };
    let Some(event) = kind.strip_prefix("response.") else {
        return;
    };
    chunk.not_continuable = true;
    match event {
        "created" | "in_progress" | "queued" => {}
        "completed" | "incomplete" => {
            chunk.content = true;
            chunk.finish = true;
            chunk.end = true;
        }
        _ => chunk.content = true,
    }
}

/// An object key, borrowed from the input unless it was written with
/// escapes. (serde's own `Cow<str>` always copies: one allocation per key of
/// every event, most of a stream's allocations.)
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<Er: de::Error>(self, v: &'de str) -> Result<Key<'de>, Er> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<Er: de::Error>(self, v: &str) -> Result<Key<'de>, Er> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<Er: de::Error>(self, v: String) -> Result<Key<'de>, Er> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct ChoicesSeed<'c, 'de>(&'c mut ChunkView<'de>);

impl<'de> de::DeserializeSeed<'de> for ChoicesSeed<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ChoicesSeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of choices")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(choice) = seq.next_element::<Choice<'de>>()? {
            let chunk = &mut *self.0;
            let index = match choice.index {
                Loose::Number(n) => n,
                _ => 0,
            };
            if index != 0 {
                chunk.not_continuable = true;
            }
            match choice.finish_reason {
                Loose::Null => {}
                Loose::Text(reason) if reason == "error" => chunk.finish_error = true,
                _ => {
                    chunk.finish = true;
                    chunk.content = true;
                }
            }
            // A legacy completion's chunk carries its text here, not in a
            // delta; a prefill of messages cannot continue it.
            if choice.text.is_present() {
                chunk.content = true;
                chunk.not_continuable = true;
            }
            let Some(delta) = choice.delta else { continue };
            match delta.content {
                Loose::Null => {}
                Loose::Text(text) => {
                    if !text.is_empty() {
                        chunk.content = true;
                        if index == 0 {
                            chunk.text = Some(match chunk.text.take() {
                                None => text,
                                Some(before) => Cow::Owned(before.into_owned() + &text),
                            });
                        }
                    }
                }
                other => {
                    chunk.content |= other.is_present();
                    chunk.not_continuable = true;
                }
            }
            for field in [delta.reasoning_content, delta.reasoning] {
                chunk.content |= field.is_present();
            }
            for field in [delta.refusal, delta.tool_calls, delta.function_call] {
                if field.is_present() {
                    chunk.content = true;
                    chunk.not_continuable = true;
                }
            }
        }
        Ok(())
    }

    // `choices: null`, or anything that is not a list: no choices.
    fn visit_unit<Er: de::Error>(self) -> Result<(), Er> {
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(default)]
    index: Loose<'a>,
    #[serde(borrow, default)]
    delta: Option<Delta<'a>>,
    #[serde(borrow, default)]
    finish_reason: Loose<'a>,
    /// `/v1/completions`' text.
    #[serde(borrow, default)]
    text: Loose<'a>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(borrow, default)]
    content: Loose<'a>,
    #[serde(borrow, default)]
    reasoning_content: Loose<'a>,
    #[serde(borrow, default)]
    reasoning: Loose<'a>,
    #[serde(borrow, default)]
    refusal: Loose<'a>,
    #[serde(borrow, default)]
    tool_calls: Loose<'a>,
    #[serde(borrow, default)]
    function_call: Loose<'a>,
}

/// A field read without insisting on its type, so that a provider's
/// variation (content as a list of parts, reasoning as an object) is never
/// mistaken for a malformed event.
#[derive(Debug, Default)]
enum Loose<'a> {
    #[default]
    Null,
    Text(Cow<'a, str>),
    Number(u64),
    List(usize),
    Other,
}

impl Loose<'_> {
    /// Whether the field carries anything: a non-empty text or list, or any
    /// other value.
    fn is_present(&self) -> bool {
        match self {
            Loose::Null => false,
            Loose::Text(text) => !text.is_empty(),
            Loose::List(n) => *n > 0,
            Loose::Number(_) | Loose::Other => true,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Loose<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LooseVisitor;
        impl<'de> Visitor<'de> for LooseVisitor {
            type Value = Loose<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<Er: de::Error>(self) -> Result<Loose<'de>, Er> {
                Ok(Loose::Null)
            }
            fn visit_none<Er: de::Error>(self) -> Result<Loose<'de>, Er> {
                Ok(Loose::Null)
            }
            fn visit_borrowed_str<Er: de::Error>(self, v: &'de str) -> Result<Loose<'de>, Er> {
                Ok(Loose::Text(Cow::Borrowed(v)))
            }
            fn visit_str<Er: de::Error>(self, v: &str) -> Result<Loose<'de>, Er> {
                Ok(Loose::Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<Er: de::Error>(self, v: String) -> Result<Loose<'de>, Er> {
                Ok(Loose::Text(Cow::Owned(v)))
            }
            fn visit_u64<Er: de::Error>(self, v: u64) -> Result<Loose<'de>, Er> {
                Ok(Loose::Number(v))
            }
            fn visit_i64<Er: de::Error>(self, _: i64) -> Result<Loose<'de>, Er> {
                Ok(Loose::Other)
            }
            fn visit_f64<Er: de::Error>(self, _: f64) -> Result<Loose<'de>, Er> {
                Ok(Loose::Other)
            }
            fn visit_bool<Er: de::Error>(self, _: bool) -> Result<Loose<'de>, Er> {
                Ok(Loose::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Loose<'de>, A::Error> {
                let mut n = 0;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(Loose::List(n))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Loose<'de>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Loose::Other)
            }
        }
        deserializer.deserialize_any(LooseVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_borrowed_unless_escaped() {
        let Key(plain) = serde_json::from_str::<Key<'_>>(r#""choices""#).unwrap();
        assert!(matches!(plain, Cow::Borrowed("choices")));
        let Key(escaped) = serde_json::from_str::<Key<'_>>(r#""cho\u0069ces""#).unwrap();
        assert!(matches!(escaped, Cow::Owned(ref k) if k == "choices"));
    }

    #[test]
    fn reads_what_the_layers_care_about() {
        let chunk =
            ChunkView::read(br#"{"choices":[{"index":0,"delta":{"content":"a\"b"}}]}"#).unwrap();
        assert!(chunk.content && !chunk.finish && !chunk.not_continuable);
        assert_eq!(chunk.text.as_deref(), Some("a\"b"));
        let role = ChunkView::read(
            br#"{"choices":[{"delta":{"role":"assistant","content":""}}],"x":[1,{"y":null}]}"#,
        )
        .unwrap();
        assert!(!role.content);
        let finish =
            ChunkView::read(br#"{"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}"#)
                .unwrap();
        assert!(finish.content && finish.finish);
        let tools =
            ChunkView::read(br#"{"choices":[{"delta":{"tool_calls":[{"index":0}]}}]}"#).unwrap();
        assert!(tools.content && tools.not_continuable);
        let reasoning =
            ChunkView::read(br#"{"choices":[{"delta":{"reasoning":{"text":"hm"}}}]}"#).unwrap();
        assert!(reasoning.content && !reasoning.not_continuable);
        let legacy =
            ChunkView::read(br#"{"choices":[{"index":0,"text":" Hi","finish_reason":null}]}"#)
                .unwrap();
        assert!(legacy.content && legacy.not_continuable && !legacy.finish);
        let legacy_empty = ChunkView::read(br#"{"choices":[{"index":0,"text":""}]}"#).unwrap();
        assert!(!legacy_empty.content);
        let second =
            ChunkView::read(br#"{"choices":[{"index":1,"delta":{"content":"x"}}]}"#).unwrap();
        assert!(second.not_continuable && second.text.is_none());
        let error =
            ChunkView::read(br#"{"choices":[{"delta":{},"finish_reason":"error"}]}"#).unwrap();
        assert!(error.finish_error);
        let usage = ChunkView::read(br#"{"choices":[],"usage":{"total_tokens":3}}"#).unwrap();
        assert!(!usage.content);
        assert!(ChunkView::read(br#"{"choices":[{"delta":{"content":"x"}}]"#).is_err());
        assert!(ChunkView::read(b"[1]").is_err());
        assert!(ChunkView::read(br#"{"a":1} x"#).is_err());
    }
}
