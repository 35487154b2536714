//! Loads the gateway's config: LiteLLM's proxy `config.yaml`, so a team on LiteLLM can
//! switch with the file it already has, plus one Tollgate-only section, `tollgate:`.
//!
//! ```yaml
//! model_list:
//!   - model_name: deepseek-chat                      # the group clients ask for
//!     litellm_params:
//!       model: openrouter/deepseek/deepseek-chat:free
//!       api_key: os.environ/OPENROUTER_API_KEY       # or env/OPENROUTER_API_KEY
//!     model_info: { id: or-deepseek, input_cost_per_token: 0 }
//! router_settings: { num_retries: 2, fallbacks: [{ deepseek-chat: [demo] }] }
//! tollgate:
//!   connect_timeout: 5
//!   mock:
//!     demo/0: { latency_ms: 20, fault: { kind: error_status, status: 503 }, fail_every: 3 }
//! ```
//!
//! Loading is strict about values and lenient about keys, because a LiteLLM file
//! must load as it is:
//!
//! - an unknown key, a LiteLLM setting Tollgate ignores, or a known key in the wrong
//!   section is a [`Warning`] naming the key's path;
//! - a value of the wrong type or out of range, a fallback to a group that does not
//!   exist, or a model without a supported provider prefix is a [`ConfigError`]
//!   naming the path;
//! - `os.environ/VAR` and `env/VAR` are resolved wherever a value goes, numbers
//!   included; an unset variable is [`ConfigError::MissingEnv`]. References under keys
//!   Tollgate ignores are not resolved, so they need not be set.
//!
//! No error, warning, report or `Debug` output ever contains a secret: keys are
//! [`Secret`]s, and values read from the environment are named by their variable.
//!
//! # Example
//! ```
//! use tollgate_gateway::config::{self, KeySource, Provider};
//!
//! let yaml = "
//! model_list:
//!   - model_name: fast
//!     litellm_params: { model: openrouter/deepseek/deepseek-chat:free, api_key: os.environ/KEY }
//! general_settings: { database_url: postgres://db }
//! ";
//! let env = |var: &str| (var == "KEY").then(|| "sk-or-v1-secret".to_owned());
//! let loaded = config::load_str(yaml, &env).unwrap();
//! let deployment = &loaded.config.model_list[0];
//! assert_eq!(deployment.id, "fast/0");
//! assert_eq!(deployment.provider, Provider::OpenRouter);
//! assert_eq!(deployment.upstream_model, "deepseek/deepseek-chat:free");
//! assert_eq!(deployment.api_key_source, KeySource::Env("KEY".into()));
//! assert_eq!(
//!     loaded.warnings[0].to_string(),
//!     "general_settings.database_url: LiteLLM setting that Tollgate ignores"
//! );
//! assert!(!format!("{:?}", loaded.config).contains("sk-or-v1-secret"));
//! ```

mod decimal;
pub(crate) mod duration;
mod env;
mod error;
mod keys;
mod mock;
mod model;
mod native;
mod parse;
mod provider;
mod reference;
mod report;
mod secret;
mod yaml;

use std::path::Path;

pub use decimal::{Decimal, DecimalError};
pub use error::{ConfigError, Warning};
pub use mock::{MockFault, MockSettings};
pub use model::{
    Config, ConfiguredKey, DeploymentConfig, GeneralSettings, KeySource, LitellmSettings,
    ModelCosts, RetryPolicy, RouterSettings, RoutingStrategy, Secret, TollgateSettings,
    wildcard_match,
};
pub use native::NativeParams;
pub use provider::{Provider, ProviderKind};
pub use reference::reference_markdown;
pub use report::render_report;

/// A config that loaded, with what the operator should know about it.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The typed, validated config.
    pub config: Config,
    /// Keys that were ignored or misplaced, secrets written inline, and the like.
    pub warnings: Vec<Warning>,
}

/// Reads the file at `path`, resolves environment references from the process
/// environment, and validates it.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_owned(),
        source,
    })?;
    load_str(&text, &|var| std::env::var(var).ok())
}

/// Loads a config from YAML text, looking environment variables up with `env`
/// (injected so tests need no process environment).
pub fn load_str(yaml: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Loaded, ConfigError> {
    let tree = yaml::parse(yaml)?;
    let (config, warnings) = parse::config(&tree, env)?;
    Ok(Loaded { config, warnings })
}
