//! [`Gateway`]: the configured gateway as a request handler, and its
//! lifecycle. Built by [`build`](crate::build), served by [`http`](crate::http).

use std::sync::Arc;

use arc_swap::ArcSwap;
use std::sync::atomic::Ordering;

use http::{Request, Response};

use crate::build::BuildError;
use crate::config::Config;
use crate::connection::ConnectionSettings;
use crate::http::{App, unix_ms};
use crate::log_format::AccessLogFormat;
use crate::log_writer::LogWriter;
use crate::response::GatewayBody;
use crate::upstream::{ClientConfig, UpstreamClient};

/// The gateway: routes, auth, and the model groups it serves. Cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    /// The running configuration; a reload swaps it whole (see
    /// [`reload`](crate::reload)), and each request keeps the one it began
    /// with.
    pub(crate) current: Arc<ArcSwap<App>>,
    /// The limits on client connections, for the server.
    pub(crate) connections: ConnectionSettings,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let app = self.app();
        let mut groups: Vec<&str> = app.groups.keys().map(|k| &**k).collect();
        groups.sort_unstable();
        f.debug_struct("Gateway")
            .field("model_groups", &groups)
            .field("max_body", &app.max_body)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Builds the gateway a configuration describes.
    pub fn new(config: &Config) -> Result<Self, BuildError> {
        Self::with_client(config, UpstreamClient::new(Self::client_config(config)))
    }

    /// The upstream client's connection settings a configuration asks for.
    pub fn client_config(config: &Config) -> ClientConfig {
        ClientConfig {
            connect_timeout: config
                .tollgate
                .connect_timeout
                .unwrap_or(ClientConfig::default().connect_timeout),
            ..ClientConfig::default()
        }
    }

    /// Whether the gateway asks clients for no key: no master key, and no
    /// virtual key configured or stored. See
    /// [`open_access_warning`](crate::open_access_warning).
    pub fn is_open(&self) -> bool {
        self.app().keys.is_open()
    }

    /// Builds the gateway over a given upstream client — one whose
    /// connections are in memory, for tests and benchmarks
    /// ([`UpstreamClient::in_memory`]).
    pub fn with_client(config: &Config, client: UpstreamClient) -> Result<Self, BuildError> {
        let app = crate::build::build(config, client, None)?;
        crate::build::apply_breakers(&app.breakers, None, &app.generation);
        app.metrics
            .register_topology(&crate::build::topology(&app.groups));
        crate::build::watch_learned(&app);
        Ok(Gateway {
            current: Arc::new(ArcSwap::from_pointee(app)),
            connections: ConnectionSettings::from_config(&config.tollgate),
        })
    }

    /// Lists OpenRouter's models now and every hour, and reports the
    /// configured slugs it does not list (log, `/health/providers`); see
    /// [`openrouter_models`](crate::openrouter_models). Needs a runtime. The
    /// binary calls it at start; a gateway built for tests makes no such
    /// request unless asked.
    pub fn watch_openrouter_models(&self, config: &Config) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            crate::openrouter_models::spawn(
                &runtime,
                config,
                UpstreamClient::new(Self::client_config(config)),
                self.app().providers.unknown_slugs.clone(),
            );
        }
    }

    /// The running configuration.
    pub(crate) fn app(&self) -> Arc<App> {
        self.current.load_full()
    }

    /// Writes every cost record taken so far to the spend ledger (if the
    /// gateway keeps one) and returns once they are on disk.
    pub async fn flush_spend(&self) {
        if let Some(ledger) = self.app().ledger.clone() {
            let flushed = tokio::task::spawn_blocking(move || ledger.flush()).await;
            if let Ok(Err(error)) = flushed {
                tracing::error!(%error, "the spend ledger could not be flushed");
            }
        }
    }

    /// Ends the gateway's background work once it has stopped serving: the
    /// spend ledger writes what it holds and closes.
    pub async fn close(&self) {
        if let Some(ledger) = self.app().ledger.clone() {
            let closed = tokio::task::spawn_blocking(move || ledger.shutdown()).await;
            match closed {
                Ok(Ok(())) => tracing::info!("spend ledger flushed and closed"),
                Ok(Err(error)) => {
                    tracing::error!(%error, "the spend ledger could not be closed cleanly")
                }
                Err(_) => tracing::error!("the spend ledger's shutdown panicked"),
            }
        }
    }

    /// Brings back what each key with a budget has spent in its current
    /// window, from the spend ledger — when the limits count in this
    /// process's memory, a restart would otherwise give every key its whole
    /// budget back. (With Redis the spend outlives the process.) Call it
    /// before serving.
    pub async fn restore_budgets(&self) {
        let app = self.app();
        let Some(ledger) = app.ledger.as_ref().filter(|_| !app.limits_shared) else {
            return;
        };
        crate::limits::restore_budgets(&app.keys, ledger, &*app.limit_store, unix_ms()).await;
        crate::limits::restore_team_budgets(&app.teams, ledger, &*app.limit_store, unix_ms()).await;
        app.end_users
            .restore_budgets(ledger, &*app.limit_store, unix_ms())
            .await;
    }

    /// Marks the gateway as shutting down: readiness fails from now on, so a
    /// load balancer stops sending new requests.
    pub fn start_draining(&self) {
        self.app().draining.store(true, Ordering::Relaxed);
    }

    /// Ends the shutdown's grace period: what is still running is cut now —
    /// a request not yet answered gets a 503, a stream its `shutdown` error
    /// event — and recorded as `shutdown` (see [`crate::grace`]).
    pub(crate) fn end_grace_period(&self) {
        self.app().grace.end();
    }

    /// Writes each request's access-log line straight to `writer`, as the
    /// line `format` names — what `--log-format json`, or the default text
    /// format without colours, gives — without `tracing`'s event
    /// formatting, which cost more per request than everything else the
    /// line needs. Lines are still written only while `tracing` has
    /// `tollgate::access` enabled at INFO (`RUST_LOG`). Without it, the line
    /// is a `tracing` event, formatted by whatever subscriber is set. The
    /// first writer set stays.
    pub fn write_access_log_to(&self, writer: LogWriter, format: AccessLogFormat) {
        let _ = self.app().access_log_writer.set((writer, format));
    }

    /// Handles one request.
    ///
    /// The handler's future itself, without an `async fn` around it: each
    /// level of futures is one more copy of the whole per request.
    pub fn handle<B>(&self, request: Request<B>) -> impl Future<Output = Response<GatewayBody>>
    where
        B: http_body::Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        // This request's configuration, to its end: a reload swaps in
        // another for the requests after it.
        crate::http::handle(self.app(), request, || self.reload_response())
    }
}
