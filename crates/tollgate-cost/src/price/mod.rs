//! [`PriceTable`]: what each model and deployment charges.

mod openrouter;
mod prices;

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

pub use prices::TokenPrices;

/// The built-in prices (see the crate docs for their source and date).
const BUILTIN: &str = include_str!("builtin.json");

/// Per-token prices by model name and by deployment.
///
/// Layers of prices, the first that knows a call wins:
///
/// 1. **per deployment** ([`with_deployment`](Self::with_deployment)): the
///    gateway's `model_info` prices, keyed by the `Target` extension's
///    deployment id;
/// 2. **per model** ([`with_model`](Self::with_model)): explicit overrides;
/// 3. a model id ending in **`:free`** (OpenRouter's free variants) costs
///    nothing;
/// 4. **price lists**: OpenRouter's `/api/v1/models`
///    ([`with_openrouter_models`](Self::with_openrouter_models)) over the
///    [built-in](Self::builtin) prices.
///
/// A model nothing knows has no price: its cost is
/// [`Charge::Unknown`](crate::Charge::Unknown), never a silent $0.
///
/// Model names are matched without regard to ASCII case and tolerant of
/// provider prefixes and suffixes: `openrouter/openai/gpt-4o-mini` tries
/// itself, then `openai/gpt-4o-mini`, then `gpt-4o-mini`; at each step a
/// dated snapshot (`gpt-4o-2024-08-06`, `claude-sonnet-4-5-20250929`) and an
/// OpenRouter variant other than `:free` (`:nitro`, `:floor`) also try their
/// base name.
///
/// ```
/// use tollgate_cost::{PriceMatch, PriceTable, TokenPrices, Usd};
///
/// let table = PriceTable::builtin()
///     .with_model("my-finetune", TokenPrices::new(Usd::from_picos(1_000_000), Usd::from_picos(2_000_000)));
/// assert!(matches!(table.model("openrouter/openai/gpt-4o-mini"), Some(PriceMatch::Listed(_))));
/// assert!(matches!(table.model("my-finetune"), Some(PriceMatch::Listed(_))));
/// assert_eq!(table.model("deepseek/deepseek-chat:free"), Some(PriceMatch::Free));
/// assert_eq!(table.model("acme/unheard-of"), None);
/// ```
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    /// From price lists: the built-in data, OpenRouter's list over it.
    listed: HashMap<Box<str>, TokenPrices>,
    /// [`with_model`](Self::with_model).
    overrides: HashMap<Box<str>, TokenPrices>,
    /// [`with_deployment`](Self::with_deployment), by exact id.
    deployments: HashMap<Box<str>, TokenPrices>,
}

/// How a [`PriceTable`] prices a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriceMatch<'a> {
    /// At these prices.
    Listed(&'a TokenPrices),
    /// Nothing: a `:free` model.
    Free,
}

impl PriceTable {
    /// A table that knows no prices.
    pub fn empty() -> PriceTable {
        PriceTable::default()
    }

    /// The built-in prices of common models: OpenAI (gpt-4o, gpt-4o-mini,
    /// the gpt-4.1 and gpt-5 families, o1, o3, o3-mini, o4-mini,
    /// gpt-3.5-turbo), Anthropic (Claude Opus, Sonnet and Haiku 4.x, 3.7
    /// Sonnet, 3.5 Haiku), Google (Gemini 2.0 and 2.5 Flash, Flash-Lite,
    /// Pro), Llama on Groq, Mistral and DeepSeek. See the crate docs for
    /// their source and date: check them before relying on them.
    pub fn builtin() -> PriceTable {
        #[derive(Deserialize)]
        struct Builtin {
            models: BTreeMap<String, Entry>,
        }
        #[derive(Deserialize)]
        struct Entry {
            #[serde(flatten)]
            prices: TokenPrices,
            #[serde(default)]
            aliases: Vec<String>,
        }
        // The data is part of the crate and a unit test reads it: it parses.
        let builtin: Builtin = match serde_json::from_str(BUILTIN) {
            Ok(builtin) => builtin,
            Err(error) => {
                tracing::warn!(%error, "cost: the built-in price list does not parse");
                return PriceTable::empty();
            }
        };
        let mut table = PriceTable::empty();
        for (name, entry) in builtin.models {
            for alias in entry.aliases {
                table.listed.insert(key(&alias), entry.prices);
            }
            table.listed.insert(key(&name), entry.prices);
        }
        table
    }

    /// A table of the prices in an OpenRouter `/api/v1/models` response
    /// (and nothing else).
    ///
    /// Each `data[]` entry gives `id` and `pricing.prompt`, `completion`,
    /// `input_cache_read`, `input_cache_write` and `internal_reasoning`,
    /// decimal strings of USD per token. An entry without a prompt or
    /// completion price, or with a negative one (`"-1"`: the price depends
    /// on the routed model, as for `openrouter/auto`), is skipped. An
    /// optional price of `"0"` means "not priced apart" (a reasoning token
    /// costs a completion token), not "free".
    ///
    /// # Errors
    ///
    /// When the body is not a JSON object with a `data` array.
    pub fn from_openrouter_models(json: &[u8]) -> Result<PriceTable, PriceListError> {
        PriceTable::empty().with_openrouter_models(json)
    }

    /// This table with the prices of an OpenRouter `/api/v1/models` response
    /// (read as [`from_openrouter_models`](Self::from_openrouter_models)
    /// does) over its listed prices — under its
    /// [model](Self::with_model) and [deployment](Self::with_deployment)
    /// overrides, which still win.
    ///
    /// # Errors
    ///
    /// When the body is not a JSON object with a `data` array.
    pub fn with_openrouter_models(mut self, json: &[u8]) -> Result<PriceTable, PriceListError> {
        for (id, prices) in openrouter::read_models(json)? {
            self.listed.insert(key(&id), prices);
        }
        Ok(self)
    }

    /// With `prices` for the model `name` (and, through the prefix rules,
    /// for `provider/name`), over every price list.
    pub fn with_model(mut self, name: impl AsRef<str>, prices: TokenPrices) -> PriceTable {
        self.overrides.insert(key(name.as_ref()), prices);
        self
    }

    /// With `prices` for the deployment `id` (the `Target` extension's
    /// `deployment_id`, LiteLLM's `model_info.id`), over everything else.
    pub fn with_deployment(mut self, id: impl AsRef<str>, prices: TokenPrices) -> PriceTable {
        self.deployments.insert(id.as_ref().into(), prices);
        self
    }

    /// The prices of a deployment, when it has its own.
    pub fn deployment(&self, id: &str) -> Option<&TokenPrices> {
        self.deployments.get(id)
    }

    /// How the model `name` is priced, or `None` when nothing knows it.
    pub fn model(&self, name: &str) -> Option<PriceMatch<'_>> {
        let lower;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = name.to_ascii_lowercase();
            lower.as_str()
        } else {
            name
        };
        if let Some(prices) = find(&self.overrides, name) {
            return Some(PriceMatch::Listed(prices));
        }
        if name.ends_with(":free") {
            return Some(PriceMatch::Free);
        }
        find(&self.listed, name).map(PriceMatch::Listed)
    }

    /// How one call is priced: by its deployment's prices, else by the model
    /// name sent upstream, else by the model the client asked for.
    pub fn price_for(
        &self,
        deployment: Option<&str>,
        upstream_model: Option<&str>,
        request_model: Option<&str>,
    ) -> Option<PriceMatch<'_>> {
        deployment
            .and_then(|id| self.deployment(id))
            .map(PriceMatch::Listed)
            .or_else(|| upstream_model.and_then(|m| self.model(m)))
            .or_else(|| request_model.and_then(|m| self.model(m)))
    }

    /// How many models the price lists name (overrides not counted).
    pub fn len(&self) -> usize {
        self.listed.len()
    }

    /// Whether the price lists name no model.
    pub fn is_empty(&self) -> bool {
        self.listed.is_empty()
    }
}

/// A model name as the table keys it.
fn key(name: &str) -> Box<str> {
    name.trim().to_ascii_lowercase().into_boxed_str()
}

/// Finds `name` in `map` by the prefix, variant and date rules.
fn find<'a>(map: &'a HashMap<Box<str>, TokenPrices>, name: &str) -> Option<&'a TokenPrices> {
    if map.is_empty() {
        return None;
    }
    let mut rest = name;
    loop {
        let base = strip_variant(rest);
        let found = map
            .get(rest)
            .or_else(|| base.and_then(|b| map.get(b)))
            .or_else(|| strip_date(base.unwrap_or(rest)).and_then(|b| map.get(b)));
        if found.is_some() {
            return found;
        }
        match rest.split_once('/') {
            Some((_, tail)) if !tail.is_empty() => rest = tail,
            _ => return None,
        }
    }
}

/// `name` without an OpenRouter variant suffix (`:nitro`), except `:free`.
fn strip_variant(name: &str) -> Option<&str> {
    let (base, variant) = name.rsplit_once(':')?;
    (variant != "free" && !base.is_empty()).then_some(base)
}

/// `name` without a snapshot date: `-2024-08-06`, `-20241022`,
/// `@20241022`.
fn strip_date(name: &str) -> Option<&str> {
    let bytes = name.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    let len = bytes.len();
    if len > 11 {
        let tail = &bytes[len - 11..];
        if tail[0] == b'-'
            && tail[5] == b'-'
            && tail[8] == b'-'
            && digits(&tail[1..5])
            && digits(&tail[6..8])
            && digits(&tail[9..11])
        {
            return Some(&name[..len - 11]);
        }
    }
    if len > 9 {
        let tail = &bytes[len - 9..];
        if (tail[0] == b'-' || tail[0] == b'@') && digits(&tail[1..]) {
            return Some(&name[..len - 9]);
        }
    }
    None
}

/// Why a price list could not be read.
#[derive(Debug, thiserror::Error)]
#[error("the price list could not be read: {source}")]
pub struct PriceListError {
    #[source]
    source: serde_json::Error,
}

impl PriceListError {
    pub(crate) fn new(source: serde_json::Error) -> Self {
        PriceListError { source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_core::Usd;

    fn prices(input: u64, output: u64) -> TokenPrices {
        TokenPrices::new(Usd::from_picos(input), Usd::from_picos(output))
    }

    #[test]
    fn the_builtin_list_parses_and_names_the_common_families() {
        let table = PriceTable::builtin();
        assert!(table.len() > 30, "{}", table.len());
        for name in [
            "gpt-4o",
            "gpt-4o-mini",
            "gpt-4.1",
            "gpt-4.1-mini",
            "gpt-4.1-nano",
            "o3",
            "o4-mini",
            "gpt-3.5-turbo",
            "claude-sonnet-4-5",
            "claude-haiku-4-5",
            "claude-opus-4-1",
            "gemini-2.5-flash",
            "gemini-2.5-pro",
            "gemini-2.0-flash",
            "llama-3.3-70b-versatile",
            "mistral-large-latest",
            "deepseek-chat",
        ] {
            match table.model(name) {
                Some(PriceMatch::Listed(p)) => {
                    assert!(!p.input.is_zero() && p.output >= p.input, "{name}: {p:?}")
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        // Spot check: gpt-4o-mini is $0.15 / $0.60 per million tokens.
        assert_eq!(
            table.model("gpt-4o-mini"),
            Some(PriceMatch::Listed(
                &prices(150_000, 600_000).with_cache_read(Usd::from_picos(75_000))
            ))
        );
    }

    #[test]
    fn names_match_through_prefixes_dates_variants_and_case() {
        let table = PriceTable::empty().with_model("gpt-4o-mini", prices(1, 2));
        let expected = Some(PriceMatch::Listed(&prices(1, 2)));
        for name in [
            "gpt-4o-mini",
            "GPT-4o-Mini",
            "openai/gpt-4o-mini",
            "openrouter/openai/gpt-4o-mini",
            "gpt-4o-mini-2024-07-18",
            "openai/gpt-4o-mini-2024-07-18",
            "openai/gpt-4o-mini:nitro",
            "azure/gpt-4o-mini@20240718",
        ] {
            assert_eq!(table.model(name), expected, "{name}");
        }
        for name in ["gpt-4o", "gpt-4o-mini-2", "mini", "openai/", ""] {
            assert_eq!(table.model(name), None, "{name}");
        }
        let claude = PriceTable::builtin();
        assert_eq!(
            claude.model("anthropic/claude-sonnet-4-5-20250929"),
            claude.model("claude-sonnet-4-5")
        );
        assert_eq!(
            claude.model("anthropic/claude-sonnet-4.5"),
            claude.model("claude-sonnet-4-5")
        );
    }

    #[test]
    fn free_models_cost_nothing_unless_overridden() {
        let table = PriceTable::builtin();
        assert_eq!(
            table.model("openrouter/deepseek/deepseek-chat:free"),
            Some(PriceMatch::Free)
        );
        assert_eq!(table.model("anything/at-all:free"), Some(PriceMatch::Free));
        let table = table.with_model("deepseek/deepseek-chat:free", prices(7, 7));
        assert_eq!(
            table.model("deepseek/deepseek-chat:free"),
            Some(PriceMatch::Listed(&prices(7, 7)))
        );
        // A paid override of the base model does not price its free twin.
        let table = PriceTable::empty().with_model("x/model", prices(1, 1));
        assert_eq!(table.model("x/model:free"), Some(PriceMatch::Free));
    }

    #[test]
    fn deployments_win_then_the_upstream_model_then_the_request_model() {
        let table = PriceTable::empty()
            .with_model("upstream", prices(2, 2))
            .with_model("asked", prices(3, 3))
            .with_deployment("dep-1", prices(1, 1));
        let input = |found: Option<PriceMatch<'_>>| match found {
            Some(PriceMatch::Listed(p)) => Some(p.input.picos()),
            _ => None,
        };
        assert_eq!(
            input(table.price_for(Some("dep-1"), Some("upstream"), Some("asked"))),
            Some(1)
        );
        assert_eq!(
            input(table.price_for(Some("dep-2"), Some("upstream"), Some("asked"))),
            Some(2)
        );
        assert_eq!(
            input(table.price_for(None, Some("unknown"), Some("asked"))),
            Some(3)
        );
        assert_eq!(table.price_for(None, Some("unknown"), None), None);
        // Deployment ids are exact.
        assert_eq!(table.deployment("DEP-1"), None);
    }

    #[test]
    fn overrides_win_over_price_lists() {
        let json = br#"{"data":[{"id":"openai/gpt-4o","pricing":{"prompt":"0.000005","completion":"0.00002"}}]}"#;
        let table = PriceTable::builtin()
            .with_model("gpt-4o", prices(9, 9))
            .with_openrouter_models(json)
            .unwrap();
        assert_eq!(
            table.model("openai/gpt-4o"),
            Some(PriceMatch::Listed(&prices(9, 9)))
        );
        // Without the override, OpenRouter's entry is found before the
        // built-in one under the stripped name.
        let table = PriceTable::builtin().with_openrouter_models(json).unwrap();
        assert_eq!(
            table.model("openai/gpt-4o"),
            Some(PriceMatch::Listed(&prices(5_000_000, 20_000_000)))
        );
    }

    #[test]
    fn dates_are_only_stripped_when_they_look_like_dates() {
        assert_eq!(strip_date("gpt-4o-2024-08-06"), Some("gpt-4o"));
        assert_eq!(
            strip_date("claude-3-5-haiku-20241022"),
            Some("claude-3-5-haiku")
        );
        assert_eq!(strip_date("gemini@20240101"), Some("gemini"));
        assert_eq!(strip_date("gpt-4o-mini"), None);
        assert_eq!(strip_date("-20241022"), None);
        assert_eq!(strip_date("mistral-large-2411"), None);
    }
}
