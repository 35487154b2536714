//! Reading OpenRouter's `/api/v1/models` price list.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{PriceListError, TokenPrices};
use tollgate_core::Usd;

#[derive(Deserialize)]
struct Models<'a> {
    #[serde(borrow)]
    data: Vec<Model<'a>>,
}

#[derive(Deserialize)]
struct Model<'a> {
    id: String,
    #[serde(borrow, default)]
    pricing: Option<Pricing<'a>>,
}

#[derive(Deserialize)]
struct Pricing<'a> {
    #[serde(borrow, default)]
    prompt: Option<&'a RawValue>,
    #[serde(borrow, default)]
    completion: Option<&'a RawValue>,
    #[serde(borrow, default)]
    input_cache_read: Option<&'a RawValue>,
    #[serde(borrow, default)]
    input_cache_write: Option<&'a RawValue>,
    #[serde(borrow, default)]
    internal_reasoning: Option<&'a RawValue>,
}

/// The priced models of a `/api/v1/models` response.
pub(super) fn read_models(json: &[u8]) -> Result<Vec<(String, TokenPrices)>, PriceListError> {
    let models: Models<'_> = serde_json::from_slice(json).map_err(PriceListError::new)?;
    let mut priced = Vec::with_capacity(models.data.len());
    for model in models.data {
        let Some(pricing) = model.pricing else {
            tracing::debug!(model = %model.id, "cost: OpenRouter lists no pricing; skipped");
            continue;
        };
        let (Some(Ok(input)), Some(Ok(output))) =
            (pricing.prompt.map(amount), pricing.completion.map(amount))
        else {
            tracing::debug!(model = %model.id, "cost: OpenRouter's price is variable or unreadable; skipped");
            continue;
        };
        // An optional price of 0 means "not priced apart".
        let optional = |raw: Option<&RawValue>| {
            raw.map(amount)
                .and_then(Result::ok)
                .filter(|usd| !usd.is_zero())
        };
        let prices = TokenPrices {
            input,
            output,
            cache_read: optional(pricing.input_cache_read),
            cache_write: optional(pricing.input_cache_write),
            reasoning: optional(pricing.internal_reasoning),
        };
        priced.push((model.id, prices));
    }
    Ok(priced)
}

/// An amount written as a decimal string (or a bare number).
fn amount(raw: &RawValue) -> Result<Usd, ()> {
    let text = raw.get();
    let text = match serde_json::from_str::<&str>(text) {
        Ok(inner) => inner,
        Err(_) => text,
    };
    Usd::parse(text.trim()).map_err(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::price::{PriceMatch, PriceTable};

    const EXCERPT: &[u8] = include_bytes!("../../tests/fixtures/openrouter/models_excerpt.json");

    #[test]
    fn reads_the_models_excerpt() {
        let table = PriceTable::from_openrouter_models(EXCERPT).unwrap();
        // openrouter/auto ("-1") is skipped; five models remain.
        assert_eq!(table.len(), 5);
        assert_eq!(table.model("openrouter/auto"), None);
        assert_eq!(
            table.model("z-ai/glm-4.5-air"),
            Some(PriceMatch::Listed(&TokenPrices {
                input: Usd::from_picos(130_000),
                output: Usd::from_picos(850_000),
                cache_read: Some(Usd::from_picos(25_000)),
                cache_write: None,
                // "internal_reasoning": "0": billed as completion tokens.
                reasoning: None,
            }))
        );
        assert_eq!(table.model("z-ai/glm-4.5-air:free"), Some(PriceMatch::Free));
    }

    #[test]
    fn refuses_what_is_not_a_models_list() {
        assert!(PriceTable::from_openrouter_models(b"{}").is_err());
        assert!(PriceTable::from_openrouter_models(b"not json").is_err());
        let odd = br#"{"data":[{"id":"a"},{"id":"b","pricing":{"prompt":"x","completion":"1"}},
            {"id":"c","pricing":{"prompt":0.000001,"completion":"0.000002"}}]}"#;
        let table = PriceTable::from_openrouter_models(odd).unwrap();
        assert_eq!(table.len(), 1);
        assert!(table.model("c").is_some());
    }
}
