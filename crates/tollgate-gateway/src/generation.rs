//! What one configuration keeps for the next reload ([`Generation`]): the
//! pieces the process owns, its deployments' identities, and the settings
//! that need a restart ([`RestartOnly`]). See [`reload`](crate::reload).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use tollgate_breaker::BreakerConfig;
use tollgate_core::Valid;

use crate::FastMap;
use crate::config::{self, Config, ConfigError, DeploymentConfig, Loaded, Provider, Secret};
use crate::shared::SharedState;
use crate::upstream::UpstreamClient;

/// The config file a gateway was started from, read again at each reload.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    path: PathBuf,
    default_ledger: Option<PathBuf>,
}

impl ConfigFile {
    /// The config at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ConfigFile {
            path: path.into(),
            default_ledger: None,
        }
    }

    /// The spend ledger to keep when the file names none (the binary always
    /// keeps one), so that a reload does not read its absence as a change.
    pub fn default_ledger(mut self, path: impl Into<PathBuf>) -> Self {
        self.default_ledger = Some(path.into());
        self
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads and checks the file, environment references resolved now.
    pub fn load(&self) -> Result<Loaded, ConfigError> {
        let mut loaded = config::load(&self.path)?;
        if let Some(ledger) = &self.default_ledger {
            loaded
                .config
                .tollgate
                .ledger_path
                .get_or_insert_with(|| ledger.clone());
        }
        Ok(loaded)
    }
}

/// What one configuration keeps for the next reload: the pieces the process
/// owns, and what identifies its deployments.
pub(crate) struct Generation {
    /// The upstream connection pool.
    pub(crate) client: UpstreamClient,
    /// Redis, when replicas share state.
    pub(crate) shared: Option<SharedState>,
    /// Each deployment's identity, by id.
    pub(crate) identities: FastMap<Arc<str>, Identity>,
    /// The breaker settings of each deployment a breaker guards, by id.
    pub(crate) breakers: FastMap<Arc<str>, Valid<BreakerConfig>>,
    /// The restart-only settings in effect: the ones the process started
    /// with.
    pub(crate) in_effect: Arc<RestartOnly>,
    pub(crate) control: Arc<ReloadControl>,
}

/// Shared by every generation of one gateway.
#[derive(Debug, Default)]
pub(crate) struct ReloadControl {
    /// Serialises reloads: two at once would each build on the same old
    /// configuration and the second would drop the first's state.
    pub(crate) serial: Mutex<()>,
    pub(crate) file: OnceLock<ConfigFile>,
}

/// What makes a deployment the same one across a reload, besides its id:
/// the upstream it calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    model_group: String,
    provider: Provider,
    upstream_model: String,
    api_base: Option<String>,
}

impl Identity {
    pub(crate) fn of(deployment: &DeploymentConfig) -> Self {
        Identity {
            model_group: deployment.model_name.clone(),
            provider: deployment.provider,
            upstream_model: deployment.upstream_model.clone(),
            api_base: deployment.api_base.clone(),
        }
    }
}

/// The settings read once, at start: their fingerprints (never their
/// values, some are secrets), by key.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct RestartOnly(Vec<(&'static str, u64)>);

impl RestartOnly {
    /// Every key whose change needs a restart, for the docs.
    pub(crate) const KEYS: [&'static str; 19] = [
        "general_settings.master_key",
        "general_settings.max_request_size_mb",
        "router_settings.redis_host",
        "router_settings.redis_port",
        "router_settings.redis_password",
        "tollgate.keys",
        "tollgate.connect_timeout",
        "tollgate.shutdown_grace_period",
        "tollgate.request_body_timeout",
        "tollgate.request_body_idle_timeout",
        "tollgate.request_body_memory_mb",
        "tollgate.max_connections",
        "tollgate.connection_idle_timeout",
        "tollgate.header_read_timeout",
        "tollgate.http2_keepalive_interval",
        "tollgate.http2_keepalive_timeout",
        "tollgate.ledger_path",
        "tollgate.ledger_flush_interval",
        "tollgate.redis_timeout",
    ];

    pub(crate) fn of(config: &Config) -> Self {
        let (general, router, own) = (
            &config.general_settings,
            &config.router_settings,
            &config.tollgate,
        );
        let secret = |s: &Option<Secret>| fingerprint(s.as_ref().map(Secret::expose));
        let keys: Vec<_> = own
            .keys
            .iter()
            .map(|k| (format!("{k:?}"), k.key.as_ref().map(Secret::expose)))
            .collect();
        let values: [u64; Self::KEYS.len()] = [
            secret(&general.master_key),
            fingerprint(general.max_request_size_mb),
            fingerprint(&router.redis_host),
            fingerprint(router.redis_port),
            secret(&router.redis_password),
            fingerprint(keys),
            fingerprint(own.connect_timeout),
            fingerprint(own.shutdown_grace_period),
            fingerprint(own.request_body_timeout),
            fingerprint(own.request_body_idle_timeout),
            fingerprint(own.request_body_memory_mb),
            fingerprint(own.max_connections),
            fingerprint(own.connection_idle_timeout),
            fingerprint(own.header_read_timeout),
            fingerprint(own.http2_keepalive_interval),
            fingerprint(own.http2_keepalive_timeout),
            fingerprint(&own.ledger_path),
            fingerprint(own.ledger_flush_interval),
            fingerprint(own.redis_timeout),
        ];
        RestartOnly(Self::KEYS.into_iter().zip(values).collect())
    }

    /// The keys whose value differs in `next`.
    pub(crate) fn changed_in(&self, next: &RestartOnly) -> Vec<&'static str> {
        self.0
            .iter()
            .zip(&next.0)
            .filter(|(a, b)| a.1 != b.1)
            .map(|(a, _)| a.0)
            .collect()
    }
}

/// A fingerprint of a value's `Debug` form, to see a change without keeping
/// the value.
fn fingerprint(value: impl std::fmt::Debug) -> u64 {
    let mut hasher = DefaultHasher::new();
    format!("{value:?}").hash(&mut hasher);
    hasher.finish()
}

impl Generation {
    /// The bookkeeping of `config`, built after `previous` if a reload;
    /// its breakers and Redis are filled in by the build.
    pub(crate) fn new(
        config: &Config,
        client: UpstreamClient,
        previous: Option<&Generation>,
    ) -> Self {
        Generation {
            client,
            shared: None,
            identities: config
                .model_list
                .iter()
                .map(|d| (Arc::from(d.id.as_str()), Identity::of(d)))
                .collect(),
            breakers: FastMap::default(),
            in_effect: previous.map_or_else(
                || Arc::new(RestartOnly::of(config)),
                |p| p.in_effect.clone(),
            ),
            control: previous.map_or_else(Arc::default, |p| p.control.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        let yaml = format!(
            "model_list:\n  - model_name: g\n    litellm_params:\n      model: mock/m\n{extra}"
        );
        crate::config::load_str(&yaml, &|_| None).unwrap().config
    }

    #[test]
    fn a_changed_secret_is_seen_without_keeping_it() {
        let before = RestartOnly::of(&config("general_settings:\n  master_key: sk-one\n"));
        let after =
            config("general_settings:\n  master_key: sk-two\ntollgate:\n  max_connections: 9\n");
        assert_eq!(
            before.changed_in(&RestartOnly::of(&after)),
            ["general_settings.master_key", "tollgate.max_connections"]
        );
        assert!(before.changed_in(&before).is_empty());
        assert!(!format!("{before:?}").contains("sk-one"));
    }

    #[test]
    fn the_readme_lists_every_setting_that_needs_a_restart() {
        let readme = include_str!("../../../README.md");
        let section = readme
            .split("**Needs a restart**")
            .nth(1)
            .and_then(|rest| rest.split("\n\n").next())
            .expect("the README's \"Needs a restart\" paragraph");
        for key in RestartOnly::KEYS {
            assert!(section.contains(&format!("`{key}`")), "README misses {key}");
        }
    }
}
