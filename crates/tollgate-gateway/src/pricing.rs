//! The price table the cost layer uses: the built-in prices, LiteLLM's
//! snapshot for the models they do not list, and each deployment's
//! `model_info` prices over both.

use tollgate_cost::{PriceMatch, PriceTable, TokenPrices, Usd};

use crate::config::{Config, Decimal, DeploymentConfig};

/// The built-in table, with a deployment entry for every deployment whose
/// `model_info` names a price or whose model only LiteLLM's snapshot
/// ([`Config::model_prices`]) prices. A deployment's prices replace the
/// listed ones of its upstream model field by field; a field neither gives is
/// 0 (LiteLLM's reading of a partial price). A model nothing prices stays
/// unpriced, so the cost layer flags it rather than bill it as free.
pub(crate) fn price_table(config: &Config) -> PriceTable {
    let builtin = PriceTable::builtin();
    let overrides: Vec<(String, TokenPrices)> = config
        .model_list
        .iter()
        .filter_map(|deployment| {
            // LiteLLM's own price for this provider's model (Vertex AI's
            // `vertex_ai/gemini-2.0-flash`) is more specific than the
            // built-in table's price of the bare name (AI Studio's).
            let qualified = provider_prices(config, deployment);
            let model = priced_model(deployment);
            let listed = match (qualified, builtin.model(model)) {
                (Some(prices), _) => Some(prices),
                (None, Some(PriceMatch::Listed(prices))) => Some(*prices),
                (None, Some(PriceMatch::Free)) => Some(TokenPrices::FREE),
                (None, None) => snapshot_prices(config, deployment),
            };
            if deployment.costs.is_empty() {
                // Only what the built-in table does not already price under
                // the deployment's own model.
                let from_snapshot = qualified.is_some()
                    || deployment.base_model.is_some()
                    || builtin.model(model).is_none();
                return listed
                    .filter(|_| from_snapshot)
                    .map(|prices| (deployment.id.clone(), prices));
            }
            let base = listed.unwrap_or(TokenPrices::FREE);
            Some((deployment.id.clone(), configured(deployment, base)))
        })
        .collect();
    overrides.into_iter().fold(builtin, |table, (id, prices)| {
        table.with_deployment(id, prices)
    })
}

/// The model a deployment is priced as: `model_info.base_model` without
/// its provider prefix (LiteLLM writes `azure/gpt-4o`), else its own.
fn priced_model(deployment: &DeploymentConfig) -> &str {
    match &deployment.base_model {
        Some(base) => base
            .strip_prefix(deployment.provider.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
            .unwrap_or(base),
        None => &deployment.upstream_model,
    }
}

/// The snapshot's prices of a deployment's model under its provider's
/// name only (`vertex_ai/gemini-2.0-flash`).
fn provider_prices(config: &Config, deployment: &DeploymentConfig) -> Option<TokenPrices> {
    if deployment.is_wildcard() {
        return None;
    }
    let key = format!(
        "{}/{}",
        deployment.provider.as_str(),
        priced_model(deployment)
    );
    config.model_prices.get(&key)?.prices()
}

/// The snapshot's prices of a deployment's model (`groq/llama3-8b-8192`,
/// else `llama3-8b-8192`); wildcard deployments are priced per request, by
/// the model asked for.
fn snapshot_prices(config: &Config, deployment: &DeploymentConfig) -> Option<TokenPrices> {
    if deployment.is_wildcard() {
        return None;
    }
    config
        .model_prices
        .for_deployment(deployment.provider.as_str(), priced_model(deployment))?
        .prices()
}

/// The most a deployment's model writes in one answer, from the snapshot of
/// LiteLLM's model facts: the `max_tokens` a native provider that requires
/// one (Anthropic) gets when the client sent none, as LiteLLM sends it.
pub(crate) fn max_output_tokens(config: &Config, deployment: &DeploymentConfig) -> Option<u64> {
    config
        .model_prices
        .for_deployment(deployment.provider.as_str(), priced_model(deployment))?
        .max_output_tokens
}

/// What a deployment charges for one prompt token and one completion token,
/// in dollars, for `cost-based-routing`; a deployment nothing prices ranks
/// after every priced one (LiteLLM's reading of an unknown cost).
pub(crate) fn unit_price(table: &PriceTable, deployment: &DeploymentConfig) -> f64 {
    match table.price_for(Some(&deployment.id), Some(&deployment.upstream_model), None) {
        Some(PriceMatch::Listed(prices)) => {
            prices.input.as_f64_dollars() + prices.output.as_f64_dollars()
        }
        Some(PriceMatch::Free) => 0.0,
        None => f64::INFINITY,
    }
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
    fn models_the_builtin_table_lacks_are_priced_from_the_snapshot() {
        let table = table(
            "model_list:\n  - model_name: g\n    litellm_params:\n      model: groq/openai/gpt-oss-20b\n    model_info:\n      id: d1\n  - model_name: u\n    litellm_params:\n      model: groq/no-such-model\n    model_info:\n      id: d2\n",
        );
        let facts = crate::model_prices::ModelPrices::snapshot();
        let expected = facts
            .get("groq/openai/gpt-oss-20b")
            .unwrap()
            .prices()
            .unwrap();
        assert_eq!(table.deployment("d1"), Some(&expected));
        // Unknown everywhere: no price, so the cost layer flags it.
        assert!(table.deployment("d2").is_none());
        assert!(table.model("no-such-model").is_none());
    }

    #[test]
    fn unit_prices_rank_unknown_models_last() {
        let yaml = "model_list:\n  - model_name: g\n    litellm_params:\n      model: openai/gpt-4o-mini\n  - model_name: g\n    litellm_params:\n      model: openai/gpt-4o\n  - model_name: g\n    litellm_params:\n      model: openai/unheard-of\n";
        let config = crate::config::load_str(yaml, &|_| Some("k".to_owned()))
            .unwrap()
            .config;
        let table = price_table(&config);
        let [mini, full, unknown] = [0, 1, 2].map(|i| unit_price(&table, &config.model_list[i]));
        assert!(mini < full, "{mini} {full}");
        assert!(unknown.is_infinite());
    }

    #[test]
    fn deployments_without_prices_use_the_builtin_table() {
        let table = table(
            "model_list:\n  - model_name: g\n    litellm_params:\n      model: openai/gpt-4o-mini\n      api_key: k\n    model_info:\n      id: d1\n",
        );
        assert!(table.deployment("d1").is_none());
        assert!(table.model("gpt-4o-mini").is_some());
    }

    #[test]
    fn an_azure_deployment_is_priced_as_its_base_model() {
        // LiteLLM's way to price an Azure deployment named after itself.
        let yaml = |base: &str| {
            format!(
                "model_list:\n  - model_name: g\n    litellm_params:\n      model: azure/my-deployment\n      api_base: https://x.openai.azure.com\n      api_key: k\n    model_info:\n      id: d1\n{base}"
            )
        };
        let unpriced = table(&yaml(""));
        assert!(unpriced.deployment("d1").is_none());
        for base in ["azure/gpt-4o", "gpt-4o"] {
            let priced = table(&yaml(&format!("      base_model: {base}\n")));
            let prices = priced.deployment("d1").expect("priced as gpt-4o");
            assert_eq!(prices.input, Usd::from_picos(2_500_000), "{base}");
            assert_eq!(prices.output, Usd::from_picos(10_000_000), "{base}");
        }
    }
}
