//! The price table the cost layer uses: the built-in prices, with each
//! deployment's `model_info` prices over them.

use tollgate_cost::{PriceMatch, PriceTable, TokenPrices, Usd};

use crate::config::{Config, Decimal, DeploymentConfig};

/// The built-in table, with a deployment entry for every deployment whose
/// `model_info` names a price. A deployment's prices replace the built-in
/// ones of its upstream model field by field; a field neither gives is 0
/// (LiteLLM's reading of a partial price).
pub(crate) fn price_table(config: &Config) -> PriceTable {
    let builtin = PriceTable::builtin();
    let overrides: Vec<(String, TokenPrices)> = config
        .model_list
        .iter()
        .filter(|deployment| !deployment.costs.is_empty())
        .map(|deployment| {
            let base = match builtin.model(&deployment.upstream_model) {
                Some(PriceMatch::Listed(prices)) => *prices,
                Some(PriceMatch::Free) | None => TokenPrices::FREE,
            };
            (deployment.id.clone(), configured(deployment, base))
        })
        .collect();
    overrides.into_iter().fold(builtin, |table, (id, prices)| {
        table.with_deployment(id, prices)
    })
}

fn configured(deployment: &DeploymentConfig, base: TokenPrices) -> TokenPrices {
    let costs = &deployment.costs;
    let usd = |price: &Option<Decimal>| price.as_ref().and_then(to_usd);
    TokenPrices {
        input: usd(&costs.input_cost_per_token).unwrap_or(base.input),
        output: usd(&costs.output_cost_per_token).unwrap_or(base.output),
        cache_read: usd(&costs.cache_read_input_token_cost).or(base.cache_read),
        cache_write: usd(&costs.cache_creation_input_token_cost).or(base.cache_write),
        reasoning: usd(&costs.output_cost_per_reasoning_token).or(base.reasoning),
    }
}

/// A configured price as exact money (the loader already refused what is
/// not a non-negative decimal; prices finer than a pico-dollar are rounded).
fn to_usd(price: &Decimal) -> Option<Usd> {
    Usd::parse(price.as_str()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(yaml: &str) -> PriceTable {
        let loaded = crate::config::load_str(yaml, &|_| Some("k".to_owned())).unwrap();
        price_table(&loaded.config)
    }

    #[test]
    fn model_info_prices_win_field_by_field() {
        let table = table(
            "model_list:\n  - model_name: g\n    litellm_params:\n      model: openai/gpt-4o-mini\n      api_key: k\n    model_info:\n      id: d1\n      input_cost_per_token: 0.000001\n",
        );
        let prices = table.deployment("d1").unwrap();
        assert_eq!(prices.input, Usd::from_picos(1_000_000));
        // The output price is gpt-4o-mini's built-in one.
        let builtin = PriceTable::builtin();
        let PriceMatch::Listed(builtin) = builtin.model("gpt-4o-mini").unwrap() else {
            panic!("gpt-4o-mini is listed");
        };
        assert_eq!(prices.output, builtin.output);
    }

    #[test]
    fn deployments_without_prices_use_the_builtin_table() {
        let table = table(
            "model_list:\n  - model_name: g\n    litellm_params:\n      model: openai/gpt-4o-mini\n      api_key: k\n    model_info:\n      id: d1\n",
        );
        assert!(table.deployment("d1").is_none());
        assert!(table.model("gpt-4o-mini").is_some());
    }
}
