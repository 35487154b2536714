//! [`TokenUsage`], and reading it (with a provider's `usage.cost`) from
//! response JSON.

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;
use tollgate_core::extensions::Usage;

use tollgate_core::Usd;

use crate::top_level::Stop;
use crate::top_level::skim;

/// The tokens one attempt used, as the provider reported them — or as the
/// layer estimated them, when `estimated` is set.
///
/// Prompt tokens include the cached ones and the ones written to the cache;
/// completion tokens include the reasoning ones — OpenAI's meaning, which
/// OpenRouter and LiteLLM keep for every provider. Where a provider reports
/// them, they come from:
///
/// | field | OpenAI-style | Anthropic through LiteLLM / OpenRouter |
/// |---|---|---|
/// | `cached_prompt_tokens` | `prompt_tokens_details.cached_tokens` | `cache_read_input_tokens` |
/// | `cache_write_tokens` | — | `prompt_tokens_details.cache_write_tokens`, `cache_creation_input_tokens` |
/// | `reasoning_tokens` | `completion_tokens_details.reasoning_tokens` | same |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct TokenUsage {
    /// Prompt tokens, cached and cache-write ones included.
    pub prompt_tokens: u64,
    /// Completion tokens, reasoning ones included.
    pub completion_tokens: u64,
    /// Prompt tokens read from the provider's cache.
    pub cached_prompt_tokens: u64,
    /// Prompt tokens written to the provider's cache.
    pub cache_write_tokens: u64,
    /// Completion tokens spent on reasoning.
    pub reasoning_tokens: u64,
    /// True when the counts are the layer's estimate, not the provider's
    /// report (see [`TokenUsage::estimate`]).
    pub estimated: bool,
}

impl TokenUsage {
    /// Prompt plus completion tokens.
    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }

    /// Prompt tokens neither read from nor written to the cache.
    pub fn uncached_prompt_tokens(&self) -> u64 {
        self.prompt_tokens
            .saturating_sub(self.cached_prompt_tokens)
            .saturating_sub(self.cache_write_tokens)
    }

    /// The estimate for an attempt that ended without a usage report: the
    /// prompt is a token per 4 bytes of the request body (rounded up), the
    /// completion a token per content-bearing data event of the stream
    /// (OpenAI-compatible providers send about one token per delta), and
    /// nothing is counted as cached or reasoning. `estimated` is set.
    pub fn estimate(request_bytes: u64, content_events: u64) -> TokenUsage {
        TokenUsage {
            prompt_tokens: request_bytes.div_ceil(4),
            completion_tokens: content_events,
            estimated: true,
            ..TokenUsage::default()
        }
    }
}

impl From<TokenUsage> for Usage {
    /// Core's usage, without the cache-write count it has no field for.
    fn from(usage: TokenUsage) -> Usage {
        Usage {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            cached_prompt_tokens: usage.cached_prompt_tokens,
            reasoning_tokens: usage.reasoning_tokens,
            estimated: usage.estimated,
        }
    }
}

/// What one JSON body or stream chunk reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Reported {
    /// Its `usage`, when it had token counts.
    pub(crate) usage: Option<TokenUsage>,
    /// Its `usage.cost`, exact.
    pub(crate) cost: Option<Usd>,
    /// How many `choices` it had (`None` without the key).
    pub(crate) choices: Option<usize>,
    /// Whether it had a non-null top-level `error`.
    pub(crate) error: bool,
}

impl Reported {
    /// Reads a chat-completions body or chunk — or an OpenAI Responses
    /// answer, or the event of its stream that carries the response
    /// (`response.completed`), whose `usage` is in its `response`; `None`
    /// when it is not a JSON object.
    ///
    /// One pass over the top level ([`skim`]) reads the values it needs
    /// and skips the rest; what that pass cannot decide alone, serde reads
    /// whole ([`Reported::read_with_serde`]). The answers are the same
    /// either way.
    pub(crate) fn read(json: &[u8]) -> Option<Reported> {
        match skim(json) {
            Ok(top) => Some(Reported::from_views(top.usage, top.choices, top.error)),
            Err(Stop::Rejected) => None,
            Err(Stop::Unsure) => Reported::read_with_serde(json),
        }
    }

    /// [`Reported::read`] by serde alone: the whole body into an envelope.
    pub(crate) fn read_with_serde(json: &[u8]) -> Option<Reported> {
        let envelope: Envelope<'_> = serde_json::from_slice(json).ok()?;
        Some(Reported::from_views(
            envelope
                .usage
                .or_else(|| envelope.response.and_then(|r| r.usage)),
            envelope.choices.map(|c| c.len()),
            envelope.error.is_some(),
        ))
    }

    fn from_views(usage: Option<UsageView<'_>>, choices: Option<usize>, error: bool) -> Reported {
        let (usage, cost) = match usage {
            Some(view) => (view.usage(), view.cost.and_then(|c| read_cost(c.0))),
            None => (None, None),
        };
        Reported {
            usage,
            cost,
            choices,
            error,
        }
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    usage: Option<UsageView<'a>>,
    // A vector of a zero-sized type: counting allocates nothing.
    #[serde(default)]
    choices: Option<Vec<IgnoredAny>>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
    /// A Responses stream event's response.
    #[serde(borrow, default)]
    response: Option<ResponseView<'a>>,
}

/// The response of a Responses stream event (`response.completed`...): its
/// usage only (reference "Responses" → "Streaming events").
#[derive(Deserialize)]
pub(crate) struct ResponseView<'a> {
    #[serde(borrow, default)]
    pub(crate) usage: Option<UsageView<'a>>,
}

/// A `usage` object as read: serde's derive, or
/// [`top_level`](crate::top_level)'s reading of the common shapes.
#[derive(Debug, Default, PartialEq, Eq, Deserialize)]
pub(crate) struct UsageView<'a> {
    #[serde(default, alias = "input_tokens")]
    pub(crate) prompt_tokens: Count,
    #[serde(default, alias = "output_tokens")]
    pub(crate) completion_tokens: Count,
    #[serde(default, alias = "input_tokens_details")]
    pub(crate) prompt_tokens_details: Option<PromptDetails>,
    #[serde(default, alias = "output_tokens_details")]
    pub(crate) completion_tokens_details: Option<CompletionDetails>,
    #[serde(default)]
    pub(crate) cache_read_input_tokens: Count,
    #[serde(default)]
    pub(crate) cache_creation_input_tokens: Count,
    #[serde(borrow, default)]
    pub(crate) cost: Option<CostText<'a>>,
}

#[derive(Debug, Default, PartialEq, Eq, Deserialize)]
pub(crate) struct PromptDetails {
    #[serde(default)]
    pub(crate) cached_tokens: Count,
    #[serde(default)]
    pub(crate) cache_write_tokens: Count,
    #[serde(default)]
    pub(crate) cache_creation_tokens: Count,
}

#[derive(Debug, Default, PartialEq, Eq, Deserialize)]
pub(crate) struct CompletionDetails {
    #[serde(default)]
    pub(crate) reasoning_tokens: Count,
}

/// The JSON text of a non-null `usage.cost`, as it came (serde takes it
/// as a raw value): read by [`read_cost`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CostText<'a>(pub(crate) &'a str);

impl<'de: 'a, 'a> Deserialize<'de> for CostText<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <&'de RawValue>::deserialize(deserializer).map(|raw| CostText(raw.get()))
    }
}

impl UsageView<'_> {
    fn usage(&self) -> Option<TokenUsage> {
        if self.prompt_tokens.0.is_none() && self.completion_tokens.0.is_none() {
            return None;
        }
        let prompt = self.prompt_tokens_details.as_ref();
        let first = |counts: &[Count]| counts.iter().find_map(|c| c.0).unwrap_or(0);
        Some(TokenUsage {
            prompt_tokens: self.prompt_tokens.get(),
            completion_tokens: self.completion_tokens.get(),
            cached_prompt_tokens: first(&[
                prompt.map_or(Count(None), |p| p.cached_tokens),
                self.cache_read_input_tokens,
            ]),
            cache_write_tokens: first(&[
                prompt.map_or(Count(None), |p| p.cache_write_tokens),
                prompt.map_or(Count(None), |p| p.cache_creation_tokens),
                self.cache_creation_input_tokens,
            ]),
            reasoning_tokens: self
                .completion_tokens_details
                .as_ref()
                .map_or(0, |c| c.reasoning_tokens.get()),
            estimated: false,
        })
    }
}

/// The exact amount of a `usage.cost`: a JSON number read from its text (or
/// a string holding one). `null`, a negative amount or anything else is no
/// cost.
fn read_cost(text: &str) -> Option<Usd> {
    let parsed = if text.starts_with('"') {
        serde_json::from_str::<&str>(text)
            .ok()
            .and_then(|s| Usd::parse(s.trim()).ok())
    } else {
        Usd::parse(text).ok()
    };
    if parsed.is_none() && text != "null" {
        tracing::debug!(
            cost = text,
            "cost: ignoring a usage.cost that is not an amount"
        );
    }
    parsed
}

/// A token count that never fails the parse around it: an integer, an
/// integral float (`14.0`) or a numeric string; anything else (negative,
/// null, text) is absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Count(pub(crate) Option<u64>);

impl Count {
    fn get(self) -> u64 {
        self.0.unwrap_or(0)
    }
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Count, D::Error> {
        struct Visitor;

        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Count;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a token count")
            }
            fn visit_u64<E>(self, n: u64) -> Result<Count, E> {
                Ok(Count(Some(n)))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Count, E> {
                Ok(Count(u64::try_from(n).ok()))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Count, E> {
                let whole = n >= 0.0 && n.fract() == 0.0 && n < u64::MAX as f64;
                Ok(Count(whole.then_some(n as u64)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Count, E> {
                Ok(Count(s.trim().parse().ok()))
            }
            fn visit_unit<E>(self) -> Result<Count, E> {
                Ok(Count(None))
            }
            fn visit_none<E>(self) -> Result<Count, E> {
                Ok(Count(None))
            }
            fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Count, D::Error> {
                Count::deserialize(d)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Count, E> {
                Ok(Count(None))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Count, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Count(None))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Count, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Count(None))
            }
        }

        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_openai_usage_with_details() {
        let body = br#"{"choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":2006,"completion_tokens":300,"total_tokens":2306,
            "prompt_tokens_details":{"cached_tokens":1920,"audio_tokens":0},
            "completion_tokens_details":{"reasoning_tokens":192,"audio_tokens":0}}}"#;
        let reported = Reported::read(body).unwrap();
        assert_eq!(
            reported.usage,
            Some(TokenUsage {
                prompt_tokens: 2006,
                completion_tokens: 300,
                cached_prompt_tokens: 1920,
                cache_write_tokens: 0,
                reasoning_tokens: 192,
                estimated: false,
            })
        );
        assert_eq!(reported.cost, None);
        assert_eq!(reported.choices, Some(1));
        assert!(!reported.error);
    }

    #[test]
    fn reads_anthropic_style_cache_counts() {
        // LiteLLM's shape for Anthropic: both spellings of each count.
        let body = br#"{"usage":{"prompt_tokens":1300,"completion_tokens":50,
            "cache_creation_input_tokens":200,"cache_read_input_tokens":1000}}"#;
        let usage = Reported::read(body).unwrap().usage.unwrap();
        assert_eq!(usage.cached_prompt_tokens, 1000);
        assert_eq!(usage.cache_write_tokens, 200);
        assert_eq!(usage.uncached_prompt_tokens(), 100);
        // OpenRouter's shape.
        let body = br#"{"choices":[],"usage":{"prompt_tokens":1300,"completion_tokens":50,
            "prompt_tokens_details":{"cached_tokens":1000,"cache_write_tokens":200}}}"#;
        let reported = Reported::read(body).unwrap();
        assert_eq!(reported.usage, Some(usage));
        assert_eq!(reported.choices, Some(0));
    }

    #[test]
    fn reads_the_provider_cost_from_its_text() {
        let cost = |body: &[u8]| Reported::read(body).unwrap().cost;
        assert_eq!(
            cost(br#"{"usage":{"prompt_tokens":1,"cost":0.00029666}}"#),
            Some(Usd::from_picos(296_660_000))
        );
        assert_eq!(
            cost(br#"{"usage":{"prompt_tokens":1,"cost":1.3e-7}}"#),
            Some(Usd::from_picos(130_000))
        );
        assert_eq!(
            cost(br#"{"usage":{"prompt_tokens":1,"cost":"0.5"}}"#),
            Some(Usd::from_picos(500_000_000_000))
        );
        assert_eq!(
            cost(br#"{"usage":{"prompt_tokens":1,"cost":0}}"#),
            Some(Usd::ZERO)
        );
        assert_eq!(cost(br#"{"usage":{"prompt_tokens":1,"cost":null}}"#), None);
        assert_eq!(cost(br#"{"usage":{"prompt_tokens":1,"cost":-1}}"#), None);
    }

    #[test]
    fn odd_counts_do_not_lose_the_rest() {
        let body = br#"{"usage":{"prompt_tokens":14.0,"completion_tokens":"8",
            "prompt_tokens_details":null,"completion_tokens_details":{"reasoning_tokens":null}}}"#;
        let usage = Reported::read(body).unwrap().usage.unwrap();
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (14, 8));
        assert_eq!(usage.reasoning_tokens, 0);
        // No counts at all: no usage.
        assert_eq!(Reported::read(br#"{"usage":{}}"#).unwrap().usage, None);
        assert_eq!(Reported::read(br#"{"usage":null}"#).unwrap().usage, None);
        assert!(Reported::read(b"[1]").is_none());
        assert!(Reported::read(b"not json").is_none());
    }

    /// OpenAI's Responses API: the answer's `usage`, and the one of the
    /// response a stream's `response.completed` event carries (reference
    /// "Responses" → "The response object", "Streaming events").
    #[test]
    fn reads_responses_usage_from_an_answer_and_its_completed_event() {
        let usage = r#"{"input_tokens":1200,"input_tokens_details":{"cached_tokens":1024},
            "output_tokens":300,"output_tokens_details":{"reasoning_tokens":128},"total_tokens":1500}"#;
        let expected = TokenUsage {
            prompt_tokens: 1200,
            completion_tokens: 300,
            cached_prompt_tokens: 1024,
            cache_write_tokens: 0,
            reasoning_tokens: 128,
            estimated: false,
        };
        let answer = format!(
            r#"{{"id":"resp_1","object":"response","status":"completed","error":null,"output":[],"usage":{usage}}}"#
        );
        let reported = Reported::read(answer.as_bytes()).unwrap();
        assert_eq!(reported.usage, Some(expected));
        assert!(!reported.error);
        let completed = format!(
            r#"{{"type":"response.completed","sequence_number":7,"response":{{"id":"resp_1","error":null,"output":[{{"type":"message"}}],"usage":{usage}}}}}"#
        );
        let reported = Reported::read(completed.as_bytes()).unwrap();
        assert_eq!(reported.usage, Some(expected));
        assert!(!reported.error);
        // Earlier events carry a response without usage.
        let created = r#"{"type":"response.created","response":{"id":"r","usage":null}}"#;
        assert_eq!(Reported::read(created.as_bytes()).unwrap().usage, None);
    }

    #[test]
    fn notices_an_error_object() {
        let reported =
            Reported::read(br#"{"error":{"message":"Provider returned error","code":502}}"#)
                .unwrap();
        assert!(reported.error);
        assert!(
            !Reported::read(br#"{"error":null,"choices":[]}"#)
                .unwrap()
                .error
        );
    }

    #[test]
    fn estimates_a_token_per_four_request_bytes_and_one_per_event() {
        let usage = TokenUsage::estimate(101, 7);
        assert_eq!(usage.prompt_tokens, 26);
        assert_eq!(usage.completion_tokens, 7);
        assert!(usage.estimated);
        let core: Usage = usage.into();
        assert_eq!(core.total_tokens(), 33);
        assert!(core.estimated);
    }
}
