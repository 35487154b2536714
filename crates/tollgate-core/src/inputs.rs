//! [`Inputs`]: the `prompt` of a legacy completion or the `input` of
//! embeddings, checked for its shape without being built.

use serde::Deserialize;
use serde::de::{SeqAccess, Visitor};

/// Checks a `prompt` or an `input` without building it: a string, a list
/// of strings, a list of token ids, or a list of token-id lists; counts its
/// items (a string is one).
pub(crate) struct Inputs(pub(crate) usize);

impl<'de> Deserialize<'de> for Inputs {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// One item of a list: a string, a token id, or a list of token ids.
        struct Item;
        impl<'de> Deserialize<'de> for Item {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(ItemVisitor)
            }
        }
        struct ItemVisitor;
        impl<'de> Visitor<'de> for ItemVisitor {
            type Value = Item;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string, a token id or a list of token ids")
            }
            fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Item, E> {
                Ok(Item)
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Item, E> {
                Ok(Item)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Item, A::Error> {
                while seq.next_element::<u64>()?.is_some() {}
                Ok(Item)
            }
        }
        struct InputsVisitor;
        impl<'de> Visitor<'de> for InputsVisitor {
            type Value = Inputs;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "a string, a list of strings, a list of token ids or a list of token-id lists",
                )
            }
            fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Inputs, E> {
                Ok(Inputs(1))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Inputs, A::Error> {
                let mut n = 0;
                while seq.next_element::<Item>()?.is_some() {
                    n += 1;
                }
                Ok(Inputs(n))
            }
        }
        deserializer.deserialize_any(InputsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::Inputs;

    #[test]
    fn every_shape_openai_takes_is_counted_and_others_refused() {
        let count = |json: &str| serde_json::from_str::<Inputs>(json).map(|i| i.0);
        assert_eq!(count(r#""one""#).unwrap(), 1);
        assert_eq!(count(r#"["a","b"]"#).unwrap(), 2);
        assert_eq!(count("[1,2,3]").unwrap(), 3);
        assert_eq!(count("[[1,2],[3]]").unwrap(), 2);
        assert_eq!(count("[]").unwrap(), 0);
        for refused in ["{}", "1", "null", "[1.5]", r#"[["a"]]"#, "[-1]", "true"] {
            assert!(count(refused).is_err(), "{refused}");
        }
    }
}
