//! What the gateway says about its model groups: each group's mode (an
//! `embedding` group takes `/v1/embeddings` only, and no other group takes
//! it), OpenAI's Model object (`GET /v1/models/{id}`) and LiteLLM's
//! `GET /model/info`.
//!
//! Built once per config, from the deployments' `model_info` and LiteLLM's
//! snapshot of model facts ([`ModelPrices`](crate::model_prices::ModelPrices)),
//! priced by the same table the cost layer uses. Only public facts go in:
//! never a key, a header, or the credentials an `api_base` may carry (its
//! user info and query); the base itself only for the master key.

use std::sync::Arc;

use bytes::Bytes;
use http::{StatusCode, Uri};
use serde_json::{Map, Value, json};
use tollgate_core::{ErrorClass, Failure, Operation};
use tollgate_cost::{PriceMatch, PriceTable, TokenPrices};

use crate::FastMap;
use crate::config::{Config, DeploymentConfig};

/// LiteLLM's mode of embedding models.
const EMBEDDING: &str = "embedding";

/// Every model group's mode and public facts.
#[derive(Debug, Default)]
pub(crate) struct ModelCatalog {
    /// `created` of the Model objects: when the config was loaded.
    created: i64,
    /// Group names, in config order.
    order: Vec<Arc<str>>,
    groups: FastMap<Arc<str>, GroupInfo>,
}

#[derive(Debug, Default)]
struct GroupInfo {
    /// The first mode its deployments state (`model_info.mode`, else
    /// LiteLLM's snapshot); `None` when none does.
    mode: Option<Arc<str>>,
    /// Its deployments' `/model/info` entries, without `api_base`.
    deployments: Vec<Value>,
    /// Each deployment's public `api_base` (no user info, no query).
    bases: Vec<Option<String>>,
}

/// Who asks for the facts: what they may see.
#[derive(Clone, Copy)]
pub(crate) struct Viewer<'a> {
    /// Whether the viewer holds the master key (or the gateway has none):
    /// only then do `api_base`s show.
    pub(crate) admin: bool,
    /// Whether the viewer may use a model group.
    pub(crate) allows: &'a dyn Fn(&str) -> bool,
}

impl ModelCatalog {
    /// The catalog of `config`'s served deployments, priced by `prices`;
    /// Model objects say they were `created` then (Unix seconds).
    pub(crate) fn new(config: &Config, prices: &PriceTable, created: i64) -> Self {
        let mut catalog = ModelCatalog {
            created,
            ..ModelCatalog::default()
        };
        for deployment in &config.model_list {
            if crate::disabled::leave_out(config, deployment) {
                continue;
            }
            let name: Arc<str> = Arc::from(deployment.model_name.as_str());
            let group = catalog.groups.entry(name.clone()).or_insert_with(|| {
                catalog.order.push(name);
                GroupInfo::default()
            });
            let (entry, mode) = entry(config, prices, deployment);
            if group.mode.is_none() {
                group.mode = mode.map(Arc::from);
            }
            group.deployments.push(entry);
            group
                .bases
                .push(deployment.api_base.as_deref().and_then(public_base));
        }
        catalog
    }

    /// The mode of `group`, when a deployment states one.
    pub(crate) fn mode(&self, group: &str) -> Option<&str> {
        self.groups.get(group)?.mode.as_deref()
    }

    /// Refuses `operation` on a group whose mode cannot serve it: an
    /// embedding group takes embeddings only, and embeddings go to
    /// embedding groups only (a group with no stated mode takes anything).
    pub(crate) fn check(&self, group: &str, operation: Operation) -> Result<(), Failure> {
        let Some(mode) = self.mode(group) else {
            return Ok(());
        };
        let embeddings = operation == Operation::Embeddings;
        if (mode == EMBEDDING) == embeddings {
            return Ok(());
        }
        let group = tollgate_core::sanitize_message(group);
        let message = if embeddings {
            format!(
                "The model `{group}` is not an embedding model (its mode is {mode}): \
                 embeddings need a model group with model_info.mode: embedding."
            )
        } else {
            // Said without naming the route: chat's walk serves
            // /v1/messages and /v1/responses too.
            format!("The model `{group}` is an embedding model: it answers /v1/embeddings only.")
        };
        Err(Failure::new(ErrorClass::BadRequest, message)
            .with_param("model")
            .with_code("model_mode_mismatch"))
    }

    /// OpenAI's Model object for the model `id` a client names, served by
    /// `group` (the group `id` routes to: itself, an alias's or a
    /// wildcard's), when `viewer` may use that group; else OpenAI's 404,
    /// the same whether the model is unknown or only hidden.
    pub(crate) fn model(
        &self,
        id: &str,
        group: Option<&str>,
        viewer: Viewer<'_>,
    ) -> Result<Bytes, Failure> {
        match group {
            Some(group) if self.groups.contains_key(group) && (viewer.allows)(group) => {
                Ok(Bytes::from(
                    json!({
                        "id": id,
                        "object": "model",
                        "created": self.created,
                        "owned_by": "tollgate",
                    })
                    .to_string(),
                ))
            }
            _ => Err(Failure::new(
                ErrorClass::ModelNotFound,
                format!(
                    "The model `{}` does not exist or you do not have access to it.",
                    tollgate_core::sanitize_message(id)
                ),
            )
            .with_status(StatusCode::NOT_FOUND)
            .with_param("model")
            .with_code("model_not_found")),
        }
    }

    /// LiteLLM's `/model/info` answer: one entry per deployment of each
    /// group `viewer` may see, in config order.
    pub(crate) fn info(&self, viewer: Viewer<'_>) -> Bytes {
        let data: Vec<Value> = self
            .order
            .iter()
            .filter(|name| (viewer.allows)(name))
            .flat_map(|name| {
                let group = &self.groups[name];
                group
                    .deployments
                    .iter()
                    .zip(&group.bases)
                    .map(|(entry, base)| {
                        let mut entry = entry.clone();
                        if let (true, Some(base)) = (viewer.admin, base) {
                            entry["litellm_params"]["api_base"] = Value::String(base.clone());
                        }
                        entry
                    })
            })
            .collect();
        Bytes::from(json!({ "data": data }).to_string())
    }
}

/// One deployment's `/model/info` entry (LiteLLM's shape: `model_name`,
/// `litellm_params` with the public parameters, `model_info` with the
/// facts), and its mode.
fn entry(
    config: &Config,
    prices: &PriceTable,
    deployment: &DeploymentConfig,
) -> (Value, Option<String>) {
    let facts = config
        .model_prices
        .for_deployment(deployment.provider.as_str(), &deployment.upstream_model);
    let mode = deployment
        .mode
        .clone()
        .or_else(|| facts.map(|f| f.mode().to_owned()));
    let mut params = Map::new();
    params.insert(
        "model".into(),
        json!(format!(
            "{}/{}",
            deployment.provider.as_str(),
            deployment.upstream_model
        )),
    );
    let seconds = |d: Option<std::time::Duration>| d.map(|d| d.as_secs_f64());
    for (key, value) in [
        ("rpm", json!(deployment.rpm)),
        ("tpm", json!(deployment.tpm)),
        ("timeout", json!(seconds(deployment.timeout))),
        ("stream_timeout", json!(seconds(deployment.stream_timeout))),
        ("order", json!(deployment.order)),
        ("weight", json!(deployment.weight)),
    ] {
        if !value.is_null() {
            params.insert(key.into(), value);
        }
    }
    let priced =
        match prices.price_for(Some(&deployment.id), Some(&deployment.upstream_model), None) {
            Some(PriceMatch::Listed(prices)) => Some(*prices),
            Some(PriceMatch::Free) => Some(TokenPrices::FREE),
            None => None,
        };
    let dollars =
        |f: fn(&TokenPrices) -> tollgate_cost::Usd| priced.as_ref().map(|p| f(p).as_f64_dollars());
    let mut info = Map::new();
    info.insert("id".into(), json!(deployment.id));
    info.insert("mode".into(), json!(mode));
    info.insert(
        "litellm_provider".into(),
        json!(facts.map_or(deployment.provider.as_str(), |f| { &*f.litellm_provider })),
    );
    info.insert(
        "max_input_tokens".into(),
        json!(
            deployment
                .max_tokens
                .or(facts.and_then(|f| f.max_input_tokens))
        ),
    );
    info.insert(
        "max_output_tokens".into(),
        json!(facts.and_then(|f| f.max_output_tokens)),
    );
    info.insert("input_cost_per_token".into(), json!(dollars(|p| p.input)));
    info.insert("output_cost_per_token".into(), json!(dollars(|p| p.output)));
    for flag in facts.map(|f| &*f.supports).unwrap_or_default() {
        info.insert(format!("supports_{flag}"), Value::Bool(true));
    }
    for (flag, value) in [
        (
            "supports_assistant_prefill",
            deployment.supports_assistant_prefill,
        ),
        ("supports_reasoning", deployment.supports_reasoning),
    ] {
        if let Some(value) = value {
            info.insert(flag.into(), Value::Bool(value));
        }
    }
    let entry = json!({
        "model_name": deployment.model_name,
        "litellm_params": params,
        "model_info": info,
    });
    (entry, mode)
}

/// A base URL without what may be a credential: its user info and query
/// (`https://user:pw@host/v1?key=…` → `https://host/v1`).
fn public_base(base: &str) -> Option<String> {
    let uri: Uri = base.parse().ok()?;
    let scheme = uri.scheme_str()?;
    let host = uri.host()?;
    let port = uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
    let path = uri.path().trim_end_matches('/');
    Some(format!("{scheme}://{host}{port}{path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "model_list:
  - model_name: chat
    litellm_params:
      model: openai/gpt-4o-mini
      api_key: sk-secret-key-0123456789
      api_base: https://user:hunter2@llm.internal:8443/v1/?token=abc
      rpm: 60
    model_info:
      id: chat-1
  - model_name: embed
    litellm_params:
      model: openai/text-embedding-3-small
      api_key: sk-secret-key-0123456789
    model_info:
      id: embed-1
  - model_name: own-embed
    litellm_params:
      model: mock/e
    model_info:
      id: own-1
      mode: embedding
      input_cost_per_token: 0.0000001
  - model_name: open
    litellm_params:
      model: mock/anything
";

    fn catalog() -> ModelCatalog {
        let config = crate::config::load_str(CONFIG, &|_| None).unwrap().config;
        let prices = crate::pricing::price_table(&config);
        ModelCatalog::new(&config, &prices, 7)
    }

    fn everyone(_: &str) -> bool {
        true
    }

    #[test]
    fn modes_come_from_model_info_else_the_snapshot() {
        let catalog = catalog();
        assert_eq!(catalog.mode("chat"), Some("chat"));
        assert_eq!(catalog.mode("embed"), Some("embedding"));
        assert_eq!(catalog.mode("own-embed"), Some("embedding"));
        assert_eq!(catalog.mode("open"), None);
        assert!(catalog.check("embed", Operation::Embeddings).is_ok());
        assert!(catalog.check("open", Operation::Embeddings).is_ok());
        assert!(catalog.check("open", Operation::Completions).is_ok());
        let refused = catalog
            .check("embed", Operation::ChatCompletions)
            .unwrap_err();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
        assert!(
            refused.message().contains("/v1/embeddings"),
            "{}",
            refused.message()
        );
        let refused = catalog.check("chat", Operation::Embeddings).unwrap_err();
        assert!(refused.message().contains("not an embedding model"));
    }

    #[test]
    fn model_info_has_public_facts_and_no_credentials() {
        let catalog = catalog();
        let admin = Viewer {
            admin: true,
            allows: &everyone,
        };
        let text = String::from_utf8(catalog.info(admin).to_vec()).unwrap();
        for secret in ["sk-secret-key", "hunter2", "user:", "token=abc"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        let info: Value = serde_json::from_str(&text).unwrap();
        let data = info["data"].as_array().unwrap();
        assert_eq!(data.len(), 4);
        let chat = &data[0];
        assert_eq!(chat["model_name"], "chat");
        assert_eq!(chat["litellm_params"]["model"], "openai/gpt-4o-mini");
        assert_eq!(
            chat["litellm_params"]["api_base"],
            "https://llm.internal:8443/v1"
        );
        assert_eq!(chat["litellm_params"]["rpm"], 60);
        assert_eq!(chat["model_info"]["id"], "chat-1");
        assert_eq!(chat["model_info"]["litellm_provider"], "openai");
        assert_eq!(chat["model_info"]["supports_function_calling"], true);
        assert!(chat["model_info"]["max_input_tokens"].as_u64().unwrap() > 0);
        assert!(chat["model_info"]["input_cost_per_token"].as_f64().unwrap() > 0.0);
        let own = &data[2];
        assert_eq!(own["model_info"]["mode"], "embedding");
        assert_eq!(own["model_info"]["input_cost_per_token"], 1e-7);
        assert_eq!(own["model_info"]["output_cost_per_token"], 0.0);
        assert!(data[3]["model_info"]["input_cost_per_token"].is_null());
    }

    #[test]
    fn a_viewer_sees_only_its_groups_and_no_base() {
        let catalog = catalog();
        let only_embed = |group: &str| group == "embed";
        let viewer = Viewer {
            admin: false,
            allows: &only_embed,
        };
        let info: Value = serde_json::from_slice(&catalog.info(viewer)).unwrap();
        let data = info["data"].as_array().unwrap();
        assert_eq!(data.len(), 1);
        assert_eq!(data[0]["model_name"], "embed");
        assert!(data[0]["litellm_params"].get("api_base").is_none());
        let model = catalog.model("embed-alias", Some("embed"), viewer).unwrap();
        let model: Value = serde_json::from_slice(&model).unwrap();
        assert_eq!(model["id"], "embed-alias");
        assert_eq!(model["object"], "model");
        assert_eq!(model["created"], 7);
        let hidden = catalog.model("chat", Some("chat"), viewer).unwrap_err();
        assert_eq!(hidden.status(), StatusCode::NOT_FOUND);
        let unknown = catalog.model("nope", None, viewer).unwrap_err();
        assert_eq!(unknown.message(), hidden.message().replace("chat", "nope"));
    }

    #[test]
    fn a_base_loses_its_user_info_and_query() {
        assert_eq!(
            public_base("http://a:b@h:1/x?k=v").as_deref(),
            Some("http://h:1/x")
        );
        assert_eq!(public_base("https://h").as_deref(), Some("https://h"));
        assert_eq!(public_base("not a url"), None);
    }
}
