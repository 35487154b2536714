//! Config reload without a restart: on `SIGHUP` ([`reload_on_hangup`]) or
//! `POST /config/reload` (master key; Tollgate's own endpoint, LiteLLM has
//! none), the config file is read and checked first. A config that does not
//! load or build changes nothing: the running one keeps serving, and the
//! error is logged and counted (`tollgate_config_reloads_total{result}`). A
//! valid one replaces the running one at once (an `ArcSwap`): a request
//! takes the configuration of the moment it arrives and keeps it to its
//! end, so requests and streams in flight finish on the old one.
//!
//! # What carries over
//!
//! What the process owns lives on: the metrics, the spend ledger, the key
//! registry, the rate limits' counters, Redis, the upstream connection
//! pool, the request-body memory budget, the client connections. What a
//! deployment has learned — its circuit breaker, the balancer's latency
//! and in-flight counts, its `/health/providers` counts — carries over when
//! the deployment is *kept*: same `model_info.id`, model group, provider,
//! upstream model and `api_base` (`Identity`). A key or a timeout
//! changed leaves it kept (rotating a key does not forget that the upstream
//! is down); a new `api_base` makes it a new deployment, whose state starts
//! fresh. A kept deployment whose breaker settings changed gets a fresh
//! breaker with the new settings. State keyed by a deployment asks
//! `Lineage::kept` and takes its old value from `Lineage::previous`.
//!
//! # What needs a restart
//!
//! The settings `RestartOnly` lists (listen address and port are command
//! line flags, read once): the connection limits, the request-body limits,
//! the ledger, Redis, the master key and the configured virtual keys, the
//! upstream connect timeout, the shutdown grace period. A reload that
//! changes one of them still applies everything else, keeps the running
//! value, and logs a warning naming the key (never its value).
//!
//! Environment references (`os.environ/VAR`) are resolved again at each
//! reload, from the process's environment — which is the one it started
//! with: to rotate an upstream key without a restart, change it in the
//! file (for instance a config mounted from a Kubernetes Secret).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use bytes::Bytes;
use http::StatusCode;
use serde_json::json;
use tollgate_breaker::{BreakerConfig, Breakers};
use tollgate_core::{ErrorClass, Failure};

use crate::FastMap;
use crate::app::{App, BuildError, Gateway, Groups};
use crate::config::{self, Config, ConfigError, DeploymentConfig, Loaded, Provider, Secret};
use crate::response::GatewayBody;
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

/// What a successful reload changed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reloaded {
    /// Deployments whose learned state carried over.
    pub kept: usize,
    /// Deployments new to the config (or whose upstream changed).
    pub added: usize,
    /// Deployments the config no longer has (or whose upstream changed).
    pub removed: usize,
    /// Settings changed in the file that keep their running value until a
    /// restart (see the [module](crate::reload)).
    pub restart_required: Vec<&'static str>,
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The gateway knows no file to read ([`Gateway::reload_from`]).
    #[error("this gateway was not started from a config file")]
    NoConfigFile,
    /// The file does not load.
    #[error(transparent)]
    Load(#[from] ConfigError),
    /// The config loads but does not build.
    #[error(transparent)]
    Build(#[from] BuildError),
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
    pub(crate) breakers: FastMap<Arc<str>, BreakerConfig>,
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
    serial: Mutex<()>,
    file: OnceLock<ConfigFile>,
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

/// The configuration a new one is built after, if any: which deployments it
/// keeps.
pub(crate) struct Lineage<'a> {
    previous: Option<&'a App>,
    identities: &'a FastMap<Arc<str>, Identity>,
}

impl<'a> Lineage<'a> {
    pub(crate) fn new(
        previous: Option<&'a App>,
        identities: &'a FastMap<Arc<str>, Identity>,
    ) -> Self {
        Lineage {
            previous,
            identities,
        }
    }

    /// The running configuration, when this build is a reload.
    pub(crate) fn previous(&self) -> Option<&'a App> {
        self.previous
    }

    /// Whether deployment `id` is the same one in both configurations, so
    /// that its learned state carries over.
    pub(crate) fn kept(&self, id: &str) -> bool {
        self.previous.is_some_and(|previous| {
            let before = previous.generation.identities.get(id);
            before.is_some() && before == self.identities.get(id)
        })
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

/// Brings the breaker registry to `next`'s deployments: a new deployment,
/// or a kept one whose breaker settings changed, gets a fresh breaker; a
/// kept one with the same settings keeps its breaker as it is (open stays
/// open); one gone is forgotten.
pub(crate) fn apply_breakers(
    breakers: &Breakers,
    before: Option<&Generation>,
    next: &Generation,
) -> Result<(), BuildError> {
    for (id, settings) in &next.breakers {
        let unchanged = before.is_some_and(|before| {
            before.identities.get(id) == next.identities.get(id)
                && before.breakers.get(id) == Some(settings)
        });
        if !unchanged {
            breakers
                .register_with(id, settings.clone())
                .map_err(|error| BuildError::new(format!("model_list[{id}]"), error.to_string()))?;
        }
    }
    if let Some(before) = before {
        for id in before.breakers.keys() {
            if !next.breakers.contains_key(id) {
                breakers.remove(id);
            }
        }
    }
    Ok(())
}

/// Each model group's deployment ids, for the metrics' zero series.
pub(crate) fn topology(groups: &Groups) -> Vec<(Arc<str>, Vec<Arc<str>>)> {
    groups
        .iter()
        .map(|(name, group)| (name.clone(), group.deployment_ids().collect()))
        .collect()
}

impl Gateway {
    /// Names the file [`reload`](Self::reload), `SIGHUP` and
    /// `POST /config/reload` read. The first file set stays.
    pub fn reload_from(&self, file: ConfigFile) {
        let _ = self.app().generation.control.file.set(file);
    }

    /// Reads the config file again and, if it is valid, serves it from now
    /// on (see the [module](crate::reload) for what carries over). An
    /// invalid file changes nothing. Either way the outcome is logged and
    /// counted.
    pub fn reload(&self) -> Result<Reloaded, ReloadError> {
        let app = self.app();
        let control = app.generation.control.clone();
        let _serial = control
            .serial
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let outcome = match control.file.get() {
            None => Err(ReloadError::NoConfigFile),
            Some(file) => file.load().map_err(ReloadError::from).and_then(|loaded| {
                for warning in &loaded.warnings {
                    tracing::warn!(key = %warning.path, "{}", warning.message);
                }
                self.swap(&loaded.config)
            }),
        };
        settle(&app, outcome)
    }

    /// Serves `config` from now on, if it builds (see
    /// [`reload`](Self::reload), which reads it from the file).
    pub fn reload_config(&self, config: &Config) -> Result<Reloaded, ReloadError> {
        let app = self.app();
        let control = app.generation.control.clone();
        let _serial = control
            .serial
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        settle(&app, self.swap(config))
    }

    /// Builds `config` after the running configuration and swaps it in.
    fn swap(&self, config: &Config) -> Result<Reloaded, ReloadError> {
        let old = self.app();
        let client = old.generation.client.clone();
        let next = Gateway::build_app(config, client, Some(&old))?;
        apply_breakers(&next.breakers, Some(&old.generation), &next.generation)?;
        next.metrics.register_topology(&topology(&next.groups));
        next.metrics.watch_learned(next.learned.clone());
        if let Some(shared) = &next.generation.shared {
            shared.watch_breakers(next.generation.breakers.keys().cloned().collect());
        }
        let restart_required = old
            .generation
            .in_effect
            .changed_in(&RestartOnly::of(config));
        let (before, after) = (&old.generation, &next.generation);
        let kept = after
            .identities
            .iter()
            .filter(|(id, identity)| before.identities.get(*id) == Some(*identity))
            .count();
        let reloaded = Reloaded {
            kept,
            added: after.identities.len() - kept,
            removed: before.identities.len() - kept,
            restart_required,
        };
        self.current.store(Arc::new(next));
        Ok(reloaded)
    }
}

/// Logs and counts a reload's outcome.
fn settle(app: &App, outcome: Result<Reloaded, ReloadError>) -> Result<Reloaded, ReloadError> {
    match &outcome {
        Ok(reloaded) => {
            for key in &reloaded.restart_required {
                tracing::warn!(
                    key,
                    "config reloaded, but this setting changed and needs a restart: \
                     the running value stays until then"
                );
            }
            tracing::info!(
                kept = reloaded.kept,
                added = reloaded.added,
                removed = reloaded.removed,
                "config reloaded"
            );
            app.metrics.config_reload(true);
        }
        Err(error) => {
            tracing::error!(%error, "config reload failed: the running config keeps serving");
            app.metrics.config_reload(false);
        }
    }
    outcome
}

/// Takes `SIGHUP` from now on (its default would end the process) and
/// returns the task that reloads the config at each one, for as long as the
/// gateway runs. Needs a tokio runtime.
#[cfg(unix)]
pub fn reload_on_hangup(
    gateway: Gateway,
) -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup())?;
    Ok(async move {
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP received: reloading the config");
            // The outcome is logged and counted by `reload`.
            let _ = gateway.reload();
        }
    })
}

/// `POST /config/reload`: 200 with what changed, or the reason nothing did
/// in the OpenAI error shape.
pub(crate) fn respond(gateway: &Gateway) -> (http::Response<GatewayBody>, Option<ErrorClass>) {
    match gateway.reload() {
        Ok(reloaded) => {
            let body = json!({
                "status": "reloaded",
                "deployments": {
                    "kept": reloaded.kept,
                    "added": reloaded.added,
                    "removed": reloaded.removed,
                },
                "restart_required": reloaded.restart_required,
            });
            let response = crate::app::json_response(StatusCode::OK, Bytes::from(body.to_string()));
            (response, None)
        }
        Err(error) => {
            let failure = match error {
                ReloadError::NoConfigFile => {
                    Failure::new(ErrorClass::BadRequest, error.to_string())
                        .with_status(StatusCode::NOT_FOUND)
                        .with_code("no_config_file")
                }
                error => Failure::new(
                    ErrorClass::BadRequest,
                    format!("the config was not reloaded (the running one keeps serving): {error}"),
                )
                .with_status(StatusCode::UNPROCESSABLE_ENTITY)
                .with_code("invalid_config"),
            };
            (failure.to_response(), Some(failure.class()))
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
