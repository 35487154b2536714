//! [`TokenPrices`]: what one model charges per token.

use crate::usage::TokenUsage;
use tollgate_core::Usd;

/// Per-token prices of one model (or deployment).
///
/// The optional prices fall back to the main ones: cache reads and cache
/// writes to `input`, reasoning to `output`. Serde reads both these names
/// and LiteLLM's `model_info` names (`input_cost_per_token`,
/// `output_cost_per_token`, `cache_read_input_token_cost`,
/// `cache_creation_input_token_cost`, `output_cost_per_reasoning_token`),
/// amounts as decimal strings (or numbers, see [`Usd`]'s `Deserialize`).
///
/// ```
/// use tollgate_cost::{TokenPrices, TokenUsage, Usd};
///
/// // $3 / $15 per million tokens, cache reads at $0.30 per million.
/// let prices = TokenPrices::new(Usd::from_picos(3_000_000), Usd::from_picos(15_000_000))
///     .with_cache_read(Usd::from_picos(300_000));
/// let usage = TokenUsage {
///     prompt_tokens: 1_000,
///     cached_prompt_tokens: 800,
///     completion_tokens: 100,
///     ..TokenUsage::default()
/// };
/// // 200 × 3e-6 + 800 × 3e-7 + 100 × 1.5e-5 = 0.0006 + 0.00024 + 0.0015
/// assert_eq!(prices.cost(&usage).to_string(), "0.00234");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct TokenPrices {
    /// Per prompt token.
    #[serde(alias = "input_cost_per_token")]
    pub input: Usd,
    /// Per completion token.
    #[serde(alias = "output_cost_per_token")]
    pub output: Usd,
    /// Per prompt token read from the cache (default: `input`).
    #[serde(
        default,
        alias = "cache_read_input_token_cost",
        skip_serializing_if = "Option::is_none"
    )]
    pub cache_read: Option<Usd>,
    /// Per prompt token written to the cache (default: `input`).
    #[serde(
        default,
        alias = "cache_creation_input_token_cost",
        skip_serializing_if = "Option::is_none"
    )]
    pub cache_write: Option<Usd>,
    /// Per reasoning token (default: `output`).
    #[serde(
        default,
        alias = "output_cost_per_reasoning_token",
        skip_serializing_if = "Option::is_none"
    )]
    pub reasoning: Option<Usd>,
}

impl TokenPrices {
    /// Nothing for anything.
    pub const FREE: TokenPrices = TokenPrices::new(Usd::ZERO, Usd::ZERO);

    /// `input` per prompt token and `output` per completion token, with no
    /// separate cache or reasoning prices.
    pub const fn new(input: Usd, output: Usd) -> TokenPrices {
        TokenPrices {
            input,
            output,
            cache_read: None,
            cache_write: None,
            reasoning: None,
        }
    }

    /// With a price per prompt token read from the cache.
    pub const fn with_cache_read(mut self, price: Usd) -> TokenPrices {
        self.cache_read = Some(price);
        self
    }

    /// With a price per prompt token written to the cache.
    pub const fn with_cache_write(mut self, price: Usd) -> TokenPrices {
        self.cache_write = Some(price);
        self
    }

    /// With a price per reasoning token.
    pub const fn with_reasoning(mut self, price: Usd) -> TokenPrices {
        self.reasoning = Some(price);
        self
    }

    /// What `usage` costs: uncached prompt × `input` + cached prompt ×
    /// `cache_read` + cache writes × `cache_write` + (completion −
    /// reasoning) × `output` + reasoning × `reasoning`, each optional price
    /// falling back as the type says. Exact; saturates at [`Usd::MAX`].
    pub fn cost(&self, usage: &TokenUsage) -> Usd {
        let visible = usage
            .completion_tokens
            .saturating_sub(usage.reasoning_tokens);
        [
            self.input.saturating_mul(usage.uncached_prompt_tokens()),
            self.cache_read
                .unwrap_or(self.input)
                .saturating_mul(usage.cached_prompt_tokens),
            self.cache_write
                .unwrap_or(self.input)
                .saturating_mul(usage.cache_write_tokens),
            self.output.saturating_mul(visible),
            self.reasoning
                .unwrap_or(self.output)
                .saturating_mul(usage.reasoning_tokens),
        ]
        .into_iter()
        .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(text: &str) -> Usd {
        Usd::parse(text).unwrap()
    }

    #[test]
    fn each_kind_of_token_has_its_price() {
        let prices = TokenPrices::new(usd("3e-6"), usd("15e-6"))
            .with_cache_read(usd("0.3e-6"))
            .with_cache_write(usd("3.75e-6"))
            .with_reasoning(usd("10e-6"));
        let usage = TokenUsage {
            prompt_tokens: 2_000,
            cached_prompt_tokens: 1_500,
            cache_write_tokens: 200,
            completion_tokens: 500,
            reasoning_tokens: 300,
            estimated: false,
        };
        // 300 × 3,000,000 + 1,500 × 300,000 + 200 × 3,750,000
        //   + 200 × 15,000,000 + 300 × 10,000,000 picos
        // = 900,000,000 + 450,000,000 + 750,000,000 + 3,000,000,000 + 3,000,000,000
        assert_eq!(prices.cost(&usage).picos(), 8_100_000_000);
    }

    #[test]
    fn missing_prices_fall_back_to_input_and_output() {
        let prices = TokenPrices::new(usd("1e-6"), usd("2e-6"));
        let usage = TokenUsage {
            prompt_tokens: 100,
            cached_prompt_tokens: 40,
            cache_write_tokens: 10,
            completion_tokens: 30,
            reasoning_tokens: 20,
            estimated: false,
        };
        // 100 × 1,000,000 + 30 × 2,000,000
        assert_eq!(prices.cost(&usage).picos(), 160_000_000);
        assert_eq!(TokenPrices::FREE.cost(&usage), Usd::ZERO);
    }

    #[test]
    fn inconsistent_counts_never_underflow() {
        let prices = TokenPrices::new(usd("1e-6"), usd("2e-6")).with_cache_read(usd("0.5e-6"));
        // More cached than prompt, more reasoning than completion.
        let usage = TokenUsage {
            prompt_tokens: 10,
            cached_prompt_tokens: 20,
            completion_tokens: 5,
            reasoning_tokens: 8,
            ..TokenUsage::default()
        };
        // 0 uncached + 20 × 500,000 + 0 visible + 8 × 2,000,000
        assert_eq!(prices.cost(&usage).picos(), 26_000_000);
        let huge = TokenUsage {
            prompt_tokens: u64::MAX,
            ..TokenUsage::default()
        };
        assert_eq!(prices.cost(&huge), Usd::MAX);
    }

    #[test]
    fn reads_litellm_model_info_names() {
        let prices: TokenPrices = serde_json::from_str(
            r#"{"id":"dep-1","input_cost_per_token":"2.5e-6","output_cost_per_token":1e-5,
                "cache_read_input_token_cost":"1.25e-6","output_cost_per_reasoning_token":"1e-5"}"#,
        )
        .unwrap();
        assert_eq!(
            prices,
            TokenPrices::new(usd("0.0000025"), usd("0.00001"))
                .with_cache_read(usd("0.00000125"))
                .with_reasoning(usd("0.00001"))
        );
    }
}
