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

use std::sync::{Arc, PoisonError};

use bytes::Bytes;
use http::StatusCode;
use serde_json::json;
use tollgate_core::{ErrorClass, Failure};

use crate::app::Gateway;
use crate::build::{BuildError, apply_breakers, topology};
use crate::config::{Config, ConfigError};
pub use crate::generation::ConfigFile;
use crate::generation::{ReloadControl, RestartOnly};
use crate::http::App;
use crate::response::GatewayBody;

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
        self.serialized(|control| match control.file.get() {
            None => Err(ReloadError::NoConfigFile),
            Some(file) => file.load().map_err(ReloadError::from).and_then(|loaded| {
                for warning in &loaded.warnings {
                    tracing::warn!(key = %warning.path, "{}", warning.message);
                }
                self.swap(&loaded.config)
            }),
        })
    }

    /// Serves `config` from now on, if it builds (see
    /// [`reload`](Self::reload), which reads it from the file).
    pub fn reload_config(&self, config: &Config) -> Result<Reloaded, ReloadError> {
        self.serialized(|_| self.swap(config))
    }

    /// Runs `attempt` holding [`ReloadControl::serial`] (one reload at a
    /// time), then logs and counts its outcome.
    fn serialized(
        &self,
        attempt: impl FnOnce(&ReloadControl) -> Result<Reloaded, ReloadError>,
    ) -> Result<Reloaded, ReloadError> {
        let app = self.app();
        let control = app.generation.control.clone();
        let _serial = control
            .serial
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        settle(&app, attempt(&control))
    }

    /// Builds `config` after the running configuration and swaps it in.
    fn swap(&self, config: &Config) -> Result<Reloaded, ReloadError> {
        let old = self.app();
        let client = old.generation.client.clone();
        let next = crate::build::build(config, client, Some(&old))?;
        apply_breakers(&next.breakers, Some(&old.generation), &next.generation);
        next.metrics.register_topology(&topology(&next.groups));
        crate::build::watch_learned(&next);
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

impl Gateway {
    /// `POST /config/reload`: 200 with what changed, or the reason nothing
    /// did in the OpenAI error shape.
    pub(crate) fn reload_response(&self) -> (http::Response<GatewayBody>, Option<ErrorClass>) {
        match self.reload() {
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
                let response =
                    crate::http::json_response(StatusCode::OK, Bytes::from(body.to_string()));
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
                        format!(
                            "the config was not reloaded (the running one keeps serving): {error}"
                        ),
                    )
                    .with_status(StatusCode::UNPROCESSABLE_ENTITY)
                    .with_code("invalid_config"),
                };
                (failure.to_response(), Some(failure.class()))
            }
        }
    }
}
