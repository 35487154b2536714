//! The serde visitor [`ChunkView::read`] replaced, kept as its oracle: what
//! the walk reads, serde reads the same way.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{ChoiceFacts, ChunkView, Content, Finish, Loose};

/// Reads the data of one stream event through serde.
pub(super) fn read_with_serde(data: &[u8]) -> Result<ChunkView<'_>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(data);
    let chunk = de.deserialize_map(ChunkVisitor)?;
    de.end()?;
    Ok(chunk)
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
                chunk.typed_event(map.next_value::<Loose<'de>>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(chunk)
    }
}

/// An object key, borrowed from the input unless it was written with
/// escapes.
pub(super) struct Key<'de>(pub(super) Cow<'de, str>);

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
            self.0.add_choice(choice.into());
        }
        Ok(())
    }

    // `choices: null`, or an object: no choices.
    fn visit_unit<Er: de::Error>(self) -> Result<(), Er> {
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

/// One of `choices`, its fields as loose as [`Loose`] reads them.
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

/// A choice's `delta`.
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

impl<'a> From<Choice<'a>> for ChoiceFacts<'a> {
    fn from(choice: Choice<'a>) -> ChoiceFacts<'a> {
        let mut facts = ChoiceFacts {
            index: match choice.index {
                Loose::Number(n) => n,
                _ => 0,
            },
            finish: Finish::of(&choice.finish_reason),
            legacy_text: choice.text.is_present(),
            ..ChoiceFacts::default()
        };
        if let Some(delta) = choice.delta {
            facts.content = Content::of(delta.content);
            facts.reasoning = delta.reasoning_content.is_present() || delta.reasoning.is_present();
            facts.not_text = [delta.refusal, delta.tool_calls, delta.function_call]
                .iter()
                .any(Loose::is_present);
        }
        facts
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
