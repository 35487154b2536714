//! [`Gateway`]: the configured gateway as a request handler.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use serde_json::json;
use tokio::time::Instant;
use tollgate_core::extensions::Target;
use tollgate_core::{ErrorClass, Failure};

use crate::FastMap;
use crate::access_log::AccessLog;
use crate::balance::{Balancer, Pick, TokenCounter, Tried};
use crate::config::{Config, DeploymentConfig, ProviderKind, RoutingStrategy};
use crate::grace::GracePeriod;
use crate::keys::{KeyBackend, Keys, Principal, RedisBackend};
use crate::learned::{LearnedDeadlines, StreamTimings};
use crate::ledger::{Ledger, LedgerConfig};
use crate::log_writer::LogWriter;
use crate::metrics::Metrics;
use crate::mock::MockDeployment;
use crate::providers::ProviderHealth;
use crate::reload::{Generation, Lineage};
use crate::request_body::BodyReader;
use crate::request_id::{RequestIds, X_REQUEST_ID};
use crate::resilience;
use crate::response::GatewayBody;
use crate::shared::SharedState;
use crate::spend::GatewaySink;
use crate::stack::Stack;
use crate::upstream::{ClientConfig, Endpoint, Timeouts, UpstreamClient};
use arc_swap::ArcSwap;
use tollgate_breaker::{BreakerConfig, Breakers, State as BreakerState};
use tollgate_cost::CostLayer;
use tollgate_fallback::FallbackLayer;
use tollgate_limits::{DeploymentRateLimits, RateLimitLayer, Store, restore_spend};
use tollgate_openrouter::{OpenRouter, OpenRouterConfig, OpenRouterLayer};
use tollgate_retry::RetryLayer;
use tower::Layer;

/// Default request size limit when `general_settings.max_request_size_mb` is
/// not set.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 10 * 1024 * 1024;
/// Default deadline of one attempt (`timeout`, `request_timeout`); see
/// [`deadlines`](crate::deadlines) for the whole request's.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// Default deadline for the first token of a stream (`stream_timeout`), for
/// an interactive user.
pub const DEFAULT_STREAM_TIMEOUT: Duration = Duration::from_secs(15);
/// Default longest silence inside a stream (`tollgate.stream_idle_timeout`).
pub const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(15);

/// How often histogram samples are folded into their buckets.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

const OPENAI_API_BASE: &str = "https://api.openai.com/v1";

/// The gateway: routes, auth, and the model groups it serves. Cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    /// The running configuration; a reload swaps it whole (see
    /// [`reload`](crate::reload)), and each request keeps the one it began
    /// with.
    pub(crate) current: Arc<ArcSwap<App>>,
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

pub(crate) struct App {
    pub(crate) groups: Groups,
    /// Aliases and wildcard groups: how a client's model finds its group.
    pub(crate) routing: crate::routing::ModelRouting,
    models_body: Bytes,
    /// The master key and the virtual keys.
    pub(crate) keys: Keys,
    pub(crate) max_body: usize,
    /// Every secret of the config, redacted from upstream text before it
    /// reaches a client.
    pub(crate) secrets: tollgate_core::Secrets,
    /// Reads request bodies within their size, time and memory limits.
    pub(crate) body_reader: Arc<BodyReader>,
    /// The deadline of a whole request, retries and fallbacks included.
    pub(crate) request_deadline: Duration,
    pub(crate) stack: Stack,
    pub(crate) breakers: Breakers,
    /// Each deployment's learned stream deadlines.
    pub(crate) learned: LearnedDeadlines,
    /// What `/health/providers` reports.
    pub(crate) providers: ProviderHealth,
    /// What `GET /metrics` shows.
    pub(crate) metrics: Metrics,
    /// Where the rate limits count; `limits_shared` when that is Redis.
    limit_store: Arc<dyn Store>,
    limits_shared: bool,
    /// The spend ledger, when `tollgate.ledger_path` names one.
    pub(crate) ledger: Option<Arc<Ledger>>,
    request_ids: Arc<RequestIds>,
    draining: Arc<AtomicBool>,
    /// Ended by the server when its shutdown's grace period is over.
    pub(crate) grace: GracePeriod,
    /// Where access-log lines go as JSON without `tracing`'s formatter
    /// ([`Gateway::write_access_log_to`]).
    access_log_writer: Arc<OnceLock<LogWriter>>,
    /// The limits on client connections, for the server.
    pub(crate) connections: crate::connection::ConnectionSettings,
    /// What a reload carries over and compares.
    pub(crate) generation: Generation,
}

/// Every model group, by name; shared by the HTTP edge (unknown models) and
/// the deployment picker.
pub(crate) type Groups = Arc<FastMap<Arc<str>, Arc<Group>>>;

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self
            .deployments
            .iter()
            .map(|d| &*d.target.deployment_id)
            .collect();
        f.debug_struct("Group")
            .field("name", &self.name)
            .field("deployments", &ids)
            .field("strategy", &self.balancer.strategy())
            .finish_non_exhaustive()
    }
}

/// A model group: its deployments, and the balancer that chooses among
/// them.
pub(crate) struct Group {
    pub(crate) name: Arc<str>,
    deployments: Vec<Arc<Deployment>>,
    balancer: Arc<Balancer>,
}

impl Group {
    /// A group of `members` (at least one), in file order, balanced by
    /// `strategy`.
    fn new(
        name: Arc<str>,
        strategy: RoutingStrategy,
        members: Vec<(Arc<Deployment>, &DeploymentConfig)>,
        limits: DeploymentRateLimits,
        lineage: &Lineage<'_>,
        prices: &tollgate_cost::PriceTable,
    ) -> Self {
        let configs: Vec<&DeploymentConfig> = members.iter().map(|(_, c)| *c).collect();
        let mut balancer = Balancer::new(strategy, &configs, limits);
        if strategy == RoutingStrategy::CostBased {
            let costs = configs
                .iter()
                .map(|d| crate::pricing::unit_price(prices, d));
            balancer = balancer.with_costs(costs);
        }
        if let Some(before) = lineage.previous().and_then(|p| p.groups.get(&name)) {
            balancer.carry_over(&before.balancer, |id| lineage.kept(id));
        }
        Group {
            name,
            balancer: Arc::new(balancer),
            deployments: members.into_iter().map(|(d, _)| d).collect(),
        }
    }

    /// The deployment for this attempt (see [`Balancer::pick`]); a
    /// deployment is open when its breaker is (or out when it is known to
    /// be at its limit). Only a group of several deployments looks.
    pub(crate) fn pick(&self, breakers: &Breakers, tried: &Tried, tokens: u64) -> Pick {
        self.balancer.pick(tried, tokens, |index| {
            let deployment = &self.deployments[index];
            deployment.breaker_enabled
                && breakers
                    .snapshot(&deployment.target.deployment_id)
                    .is_some_and(|s| s.state == BreakerState::Open)
        })
    }

    /// Whether any deployment can take a request now: its breaker is off,
    /// closed, or lets a probe through (half open once the open time is over).
    pub(crate) fn available(&self, breakers: &Breakers) -> bool {
        self.deployments.iter().any(|d| {
            !d.breaker_enabled
                || breakers
                    .snapshot(&d.target.deployment_id)
                    .is_none_or(|s| s.state != BreakerState::Open)
        })
    }

    /// When the first of its open breakers lets a probe through.
    pub(crate) fn next_probe_in(&self, breakers: &Breakers) -> Option<Duration> {
        self.deployments
            .iter()
            .filter_map(|d| breakers.snapshot(&d.target.deployment_id))
            .filter_map(|s| s.next_probe_in())
            .min()
    }

    /// Its deployments, in file order.
    pub(crate) fn deployments(&self) -> &[Arc<Deployment>] {
        &self.deployments
    }

    /// Its deployments' ids, in file order.
    pub(crate) fn deployment_ids(&self) -> impl Iterator<Item = Arc<str>> + '_ {
        self.deployments
            .iter()
            .map(|d| d.target.deployment_id.clone())
    }

    /// The deployment at `index` (as [`pick`](Self::pick) gives).
    pub(crate) fn deployment(&self, index: usize) -> &Arc<Deployment> {
        &self.deployments[index]
    }

    pub(crate) fn balancer(&self) -> &Arc<Balancer> {
        &self.balancer
    }
}

pub(crate) struct Deployment {
    pub(crate) target: Target,
    /// Whether a circuit breaker guards it (`cooldown_time: 0` turns it off).
    pub(crate) breaker_enabled: bool,
    /// Its breaker's settings, registered when the gateway is built (or
    /// reloaded: see [`crate::reload::apply_breakers`]).
    breaker: Option<BreakerConfig>,
    pub(crate) provider: DeploymentProvider,
    /// Deadlines of a non-streaming request.
    pub(crate) timeouts: Timeouts,
    /// Deadlines of a streaming request, before any is learned.
    pub(crate) stream_timeouts: Timeouts,
    /// How its streams have gone: their learned deadlines.
    pub(crate) timings: Arc<StreamTimings>,
    /// Whether its streams get the learned deadlines
    /// (`tollgate.learn_stream_deadlines`) or only the cold ones.
    pub(crate) learn_stream_deadlines: bool,
}

pub(crate) struct OpenRouterDeployment {
    pub(crate) service: OpenRouter<UpstreamClient>,
    /// The deployment's `extra_headers`.
    pub(crate) headers: http::HeaderMap,
}

pub(crate) enum DeploymentProvider {
    /// A plain OpenAI-compatible upstream.
    Http(Arc<Endpoint>),
    /// OpenRouter, through its normalizer.
    OpenRouter(Box<OpenRouterDeployment>),
    Mock(MockDeployment),
    /// A deployment that cannot take traffic (see
    /// [`DeploymentConfig::disabled`]): it fails at once, as unavailable, so
    /// the cascade moves on.
    Disabled(Arc<str>),
}

/// Why a configuration could not become a gateway.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct BuildError {
    path: String,
    message: String,
}

impl BuildError {
    pub(crate) fn new(path: String, message: String) -> Self {
        BuildError { path, message }
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

    /// Whether the gateway asks clients for no key: no master key, and no
    /// virtual key configured or stored. See
    /// [`open_access_warning`](crate::open_access_warning).
    pub fn is_open(&self) -> bool {
        self.app().keys.is_open()
    }

    /// The running configuration.
    pub(crate) fn app(&self) -> Arc<App> {
        self.current.load_full()
    }

    /// Builds the gateway over a given upstream client — one whose
    /// connections are in memory, for tests and benchmarks
    /// ([`UpstreamClient::in_memory`]).
    pub fn with_client(config: &Config, client: UpstreamClient) -> Result<Self, BuildError> {
        let app = Self::build_app(config, client, None)?;
        crate::reload::apply_breakers(&app.breakers, None, &app.generation)?;
        app.metrics
            .register_topology(&crate::reload::topology(&app.groups));
        app.metrics.watch_learned(app.learned.clone());
        Ok(Gateway {
            current: Arc::new(ArcSwap::from_pointee(app)),
        })
    }

    /// The configuration `config` describes, as a gateway serves it. A reload
    /// builds it after the running one, `previous`: what the process owns is
    /// taken from it (see [`crate::reload`]), no background work is started, and
    /// nothing shared is touched until the reload commits.
    pub(crate) fn build_app(
        config: &Config,
        client: UpstreamClient,
        previous: Option<&App>,
    ) -> Result<App, BuildError> {
        let invalid = |e: resilience::ResilienceError| BuildError {
            path: String::from("router_settings"),
            message: e.to_string(),
        };
        let retry =
            RetryLayer::new(resilience::retry_config(config).map_err(invalid)?).map_err(|e| {
                BuildError {
                    path: String::from("router_settings"),
                    message: e.to_string(),
                }
            })?;
        let fallback = FallbackLayer::new(resilience::fallback_config(config).map_err(invalid)?)
            .map_err(|e| BuildError {
                path: String::from("router_settings"),
                message: e.to_string(),
            })?;
        let breaker_defaults = resilience::breaker_config(config)
            .map_err(invalid)?
            .unwrap_or_default();
        let breakers = match previous {
            // One registry for the process: a reload registers and removes
            // deployments in it when it commits.
            Some(previous) => breaker_defaults
                .validate()
                .map(|()| previous.breakers.clone()),
            None => Breakers::new(breaker_defaults),
        }
        .map_err(|e| BuildError {
            path: String::from("router_settings"),
            message: e.to_string(),
        })?;
        let mut generation =
            Generation::new(config, client.clone(), previous.map(|p| &p.generation));
        // What a kept deployment's streams taught carries over a reload.
        let learned = {
            let lineage = Lineage::new(previous, &generation.identities);
            LearnedDeadlines::carrying(
                config.model_list.iter().map(|d| {
                    let cold = crate::deadlines::attempt_timeouts(config, d).1;
                    (Arc::from(d.id.as_str()), cold)
                }),
                previous.map(|p| &p.learned),
                |id| lineage.kept(id),
            )
            .applied(config.tollgate.learn_stream_deadlines != Some(false))
        };
        let mut groups: HashMap<Arc<str>, Vec<(Arc<Deployment>, &DeploymentConfig)>> =
            HashMap::new();
        let mut order: Vec<Arc<str>> = Vec::new();
        if config.model_list.iter().all(|d| d.disabled.is_some()) {
            return Err(BuildError {
                path: String::from("model_list"),
                message: String::from(
                    "no deployment can take traffic (each one is disabled; check-config says why)",
                ),
            });
        }
        for (index, deployment) in config.model_list.iter().enumerate() {
            if crate::disabled::leave_out(config, deployment) {
                continue;
            }
            let built = build_deployment(config, index, deployment, &learned, &client)?;
            let name = built.target.model_group.clone();
            groups
                .entry(name.clone())
                .or_insert_with(|| {
                    order.push(name);
                    Vec::new()
                })
                .push((Arc::new(built), deployment));
        }
        let created = tollgate_core::time::unix_ms(std::time::SystemTime::now()).div_euclid(1000);
        let models: Vec<_> = order
            .iter()
            .map(|name| json!({"id": &**name, "object": "model", "created": created, "owned_by": "tollgate"}))
            .collect();
        let models_body = Bytes::from(json!({"object": "list", "data": models}).to_string());
        let max_body = previous.map_or_else(
            || {
                config
                    .general_settings
                    .max_request_size_mb
                    .map_or(DEFAULT_MAX_REQUEST_BYTES, |mb| {
                        (mb * 1024.0 * 1024.0) as usize
                    })
            },
            |previous| previous.max_body,
        );
        let strategy = config.router_settings.routing_strategy;
        // Deployments a breaker guards, for sharing them between replicas.
        let guarded: Vec<Arc<str>> = order
            .iter()
            .flat_map(|name| &groups[name])
            .filter(|(d, _)| d.breaker_enabled)
            .map(|(d, _)| d.target.deployment_id.clone())
            .collect();
        let (ledger, metrics, body_reader) = match previous {
            Some(previous) => (
                previous.ledger.clone(),
                previous.metrics.clone(),
                previous.body_reader.clone(),
            ),
            None => {
                let metrics = Metrics::new();
                let body_reader = BodyReader::from_config(&config.tollgate, max_body, &metrics)
                    .map_err(|message| BuildError {
                        path: String::from("tollgate.request_body_memory_mb"),
                        message,
                    })?;
                (open_ledger(config)?, metrics, Arc::new(body_reader))
            }
        };
        generation.breakers = order
            .iter()
            .flat_map(|name| &groups[name])
            .filter_map(|(d, _)| Some((d.target.deployment_id.clone(), d.breaker.clone()?)))
            .collect();
        let lineage = Lineage::new(previous, &generation.identities);
        let providers = ProviderHealth::new(
            crate::disabled::listed(config),
            lineage.previous().map(|p| &p.providers),
            |id| lineage.kept(id),
        );
        // Shared state (Redis) needs a runtime; a gateway built outside one
        // (a config check) has no traffic to share.
        let runtime = tokio::runtime::Handle::try_current().ok();
        let shared = match (previous, &runtime) {
            (Some(previous), _) => previous.generation.shared.clone(),
            (None, Some(_)) => {
                SharedState::from_config(config, &metrics).map_err(|error| BuildError {
                    path: String::from("router_settings.redis_host"),
                    message: error.to_string(),
                })?
            }
            (None, None) => None,
        };
        let limit_store = match previous {
            Some(previous) => previous.limit_store.clone(),
            None => crate::limits::store(shared.as_ref(), config.tollgate.redis_timeout),
        };
        let limits = RateLimitLayer::new(limit_store.clone());
        let deployment_limits = DeploymentRateLimits::new(limit_store.clone());
        let prices = Arc::new(crate::pricing::price_table(config));
        let groups: Groups = Arc::new(
            groups
                .into_iter()
                .map(|(name, members)| {
                    let group = Group::new(
                        name.clone(),
                        strategy,
                        members,
                        deployment_limits.clone(),
                        &lineage,
                        &prices,
                    );
                    (name, Arc::new(group))
                })
                .collect(),
        );
        let grace = previous.map_or_else(GracePeriod::default, |p| p.grace.clone());
        let cost = CostLayer::new(
            prices,
            GatewaySink {
                metrics: metrics.clone(),
                providers: providers.clone(),
                ledger: ledger.as_ref().map(|l| l.handle()),
                grace: grace.clone(),
                deployment_tokens: TokenCounter::new(
                    deployment_limits,
                    groups.values().map(|group| &**group.balancer()),
                ),
            },
        );
        let keys = match previous {
            Some(previous) => previous.keys.clone(),
            None => open_keys(config, shared.as_ref())?,
        };
        generation.shared = shared.clone();
        let hedges = crate::hedge::plans(config).map_err(|message| BuildError {
            path: String::from("tollgate.hedge_streams"),
            message,
        })?;
        // Background work needs a runtime; a gateway built outside one (a
        // config check) has no traffic to watch. A reload's runs on.
        if let (Some(runtime), None) = (&runtime, previous) {
            crate::disabled::log(config);
            crate::limits::log_deployment_limits(config, shared.is_some());
            metrics.spawn_upkeep(runtime, METRICS_UPKEEP);
            metrics.spawn_breaker_watch(runtime, &breakers);
            // Generated keys: Redis's changes, and putting back what it lost.
            keys.spawn_sync(runtime);
            if let Some(shared) = &shared {
                crate::shared::spawn_breaker_sync(runtime, shared, &breakers, guarded);
            }
        }
        Ok(App {
            stack: crate::stack::build(
                client,
                fallback,
                retry,
                breakers.clone(),
                groups.clone(),
                cost,
                limits,
                (hedges, metrics.clone()),
            ),
            groups,
            routing: crate::routing::ModelRouting::new(config),
            models_body,
            keys,
            max_body,
            secrets: config.secrets.clone(),
            body_reader,
            request_deadline: crate::deadlines::request_deadline(config),
            breakers,
            learned,
            providers,
            metrics,
            limit_store,
            limits_shared: shared.is_some(),
            ledger,
            request_ids: previous.map_or_else(Arc::default, |p| p.request_ids.clone()),
            draining: previous.map_or_else(Arc::default, |p| p.draining.clone()),
            grace,
            access_log_writer: previous.map_or_else(Arc::default, |p| p.access_log_writer.clone()),
            connections: previous.map_or_else(
                || crate::connection::ConnectionSettings::from_config(&config.tollgate),
                |p| p.connections,
            ),
            generation,
        })
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
        let now = unix_ms();
        for key in app.keys.with_budgets() {
            let Some(budget) = crate::chat::key_limits(&key).max_budget else {
                continue;
            };
            let name = key.name();
            let since = budget.window_at(now).start_unix_ms();
            match ledger.billed_since(&name, since).await {
                Ok(0) => {}
                Ok(spent) => {
                    let spent = u64::try_from(spent).unwrap_or(u64::MAX);
                    restore_spend(&*app.limit_store, &name, &budget, now, spent).await;
                    tracing::info!(key = %name, spent_picos = spent, "budget spend restored from the ledger");
                }
                Err(error) => {
                    tracing::error!(key = %name, %error, "budget spend could not be read from the ledger");
                }
            }
        }
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

    /// Writes each request's access-log line as JSON straight to `writer`
    /// — the line `--log-format json` gives, without `tracing`'s event
    /// formatting, which cost more per request than everything else the
    /// line needs. Lines are still written only while `tracing` has
    /// `tollgate::access` enabled at INFO (`RUST_LOG`). Without it, the line
    /// is a `tracing` event, formatted by whatever subscriber is set. The
    /// first writer set stays.
    pub fn write_access_log_to(&self, writer: LogWriter) {
        let _ = self.app().access_log_writer.set(writer);
    }

    /// Handles one request.
    pub async fn handle<B>(&self, request: Request<B>) -> Response<GatewayBody>
    where
        B: http_body::Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let start = Instant::now();
        // This request's configuration, to its end: a reload swaps in
        // another for the requests after it.
        let app = self.app();
        let app = &*app;
        let request_id = app.request_ids.for_request(request.headers());
        let route = route_of(request.method(), request.uri().path());
        let mut log = AccessLog::new(request_id.clone(), route.name(), start);
        log.metrics = Some((app.metrics.clone(), route.metrics_label()));
        log.direct = app.access_log_writer.get().cloned();
        log.grace = Some(app.grace.clone());
        if let Err(failure) = crate::door::check_head(&request) {
            log.class = Some(failure.class());
            return finish(failure.to_response(), &request_id, log);
        }
        let principal = match route {
            // Liveness and readiness: for probes, without a key.
            Route::Health | Route::Readiness => Ok(Principal::Open),
            _ => app.keys.authenticate(request.headers(), unix_ms()).await,
        };
        let response = match principal {
            Err(failure) => {
                log.class = Some(failure.class());
                failure.to_response()
            }
            // Everything but completions and the model list is for the
            // master key alone.
            Ok(Principal::Virtual(_)) if route.is_admin() => {
                let failure = Failure::new(
                    ErrorClass::Auth,
                    "This endpoint needs the master key; virtual keys may only make completions \
                     and list models.",
                )
                .with_status(StatusCode::FORBIDDEN)
                .with_code("master_key_required");
                log.class = Some(failure.class());
                failure.to_response()
            }
            Ok(principal) => match route {
                Route::ChatCompletions => {
                    let chat = crate::chat::handle(app, request, principal, &mut log);
                    match app.grace.run(chat).await {
                        Some(response) => response,
                        None => {
                            log.shutdown = true;
                            crate::grace::shutdown_failure().to_response()
                        }
                    }
                }
                Route::Keys => keys_admin(app, request, &mut log).await,
                Route::ConfigReload => {
                    let (response, class) = crate::reload::respond(self);
                    log.class = class;
                    response
                }
                Route::Models => json_response(StatusCode::OK, app.models_body.clone()),
                Route::Health => json_response(
                    StatusCode::OK,
                    Bytes::from_static(br#"{"status":"healthy"}"#),
                ),
                Route::Readiness => readiness(app),
                Route::CircuitBreakers => circuit_breakers(app),
                Route::Metrics => metrics_response(app),
                Route::SpendLogs | Route::SpendSummary => {
                    spend(app, route, request.uri().query()).await
                }
                Route::Providers => json_response(
                    StatusCode::OK,
                    Bytes::from(
                        app.providers
                            .report(&app.breakers, &app.learned)
                            .to_string(),
                    ),
                ),
                Route::MethodNotAllowed => {
                    let failure = Failure::new(
                        ErrorClass::BadRequest,
                        format!("method {} is not allowed here", request.method()),
                    )
                    .with_status(StatusCode::METHOD_NOT_ALLOWED);
                    log.class = Some(failure.class());
                    failure.to_response()
                }
                Route::NotFound => {
                    let failure = Failure::new(
                        ErrorClass::BadRequest,
                        format!(
                            "Unknown request URL: {} {}",
                            request.method(),
                            request.uri().path()
                        ),
                    )
                    .with_status(StatusCode::NOT_FOUND)
                    .with_code("unknown_url");
                    log.class = Some(failure.class());
                    failure.to_response()
                }
            },
        };
        finish(response, &request_id, log)
    }
}

/// The response with its request id, carrying the request's access-log
/// entry.
fn finish(
    mut response: Response<GatewayBody>,
    request_id: &str,
    mut log: AccessLog,
) -> Response<GatewayBody> {
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(X_REQUEST_ID), value);
    }
    log.status = response.status().as_u16();
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, body.with_log(log))
}

/// The wall clock, for key expiry.
fn unix_ms() -> i64 {
    tollgate_core::time::unix_ms(std::time::SystemTime::now())
}

/// The key registry: generated keys in Redis when replicas share one (with
/// a copy in the ledger's file for Redis outages), else in the ledger's
/// file, else in memory.
fn open_keys(config: &Config, shared: Option<&SharedState>) -> Result<Keys, BuildError> {
    let ledger = config.tollgate.ledger_path.clone();
    let backend = match (shared, ledger) {
        (Some(shared), ledger) => {
            let mut backend = RedisBackend::new(shared.connection.clone(), crate::shared::PREFIX)
                .on_fallback(shared.on_fallback.clone());
            if let Some(path) = ledger {
                backend = backend.mirror(path);
            }
            KeyBackend::Redis(backend)
        }
        (None, Some(path)) => KeyBackend::Sqlite(path),
        (None, None) => KeyBackend::Memory,
    };
    let master = config
        .general_settings
        .master_key
        .as_ref()
        .map(|key| key.expose().to_owned());
    Keys::new(master, &config.tollgate.keys, backend).map_err(|error| BuildError {
        path: String::from("tollgate.keys"),
        message: error.to_string(),
    })
}

/// `POST /key/generate`, `GET /key/info`, `POST /key/delete`.
async fn keys_admin<B>(app: &App, request: Request<B>, log: &mut AccessLog) -> Response<GatewayBody>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if app.keys.is_open() {
        let failure = Failure::new(
            ErrorClass::BadRequest,
            "Virtual keys need a master key: set general_settings.master_key.",
        )
        .with_status(StatusCode::FORBIDDEN)
        .with_code("master_key_required");
        log.class = Some(failure.class());
        return failure.to_response();
    }
    let (method, uri) = (request.method().clone(), request.uri().clone());
    let body = match crate::chat::read_request(app, request).await {
        Ok(body) => body,
        Err(failure) => {
            log.class = Some(failure.class());
            return failure.to_response();
        }
    };
    let answer = crate::keys::admin::handle(
        &app.keys,
        &method,
        uri.path(),
        uri.query(),
        &body,
        unix_ms(),
    )
    .await;
    match answer {
        Some(response) => response.map(GatewayBody::full),
        None => Failure::new(ErrorClass::Internal, "no such key endpoint").to_response(),
    }
}

/// Opens the spend ledger `tollgate.ledger_path` names, if any.
fn open_ledger(config: &Config) -> Result<Option<Arc<Ledger>>, BuildError> {
    let Some(path) = &config.tollgate.ledger_path else {
        return Ok(None);
    };
    let mut ledger_config = LedgerConfig::new(path);
    if let Some(interval) = config.tollgate.ledger_flush_interval {
        ledger_config.flush_interval = interval;
    }
    Ledger::open(ledger_config)
        .map(|ledger| Some(Arc::new(ledger)))
        .map_err(|error| BuildError {
            path: String::from("tollgate.ledger_path"),
            message: error.to_string(),
        })
}

/// `GET /spend/logs` and `GET /spend/summary`.
async fn spend(app: &App, route: Route, query: Option<&str>) -> Response<GatewayBody> {
    let Some(ledger) = &app.ledger else {
        return Failure::new(
            ErrorClass::BadRequest,
            "this gateway keeps no spend ledger (set tollgate.ledger_path)",
        )
        .with_status(StatusCode::NOT_FOUND)
        .to_response();
    };
    let response = if route == Route::SpendLogs {
        crate::ledger::http::spend_logs(ledger, query).await
    } else {
        crate::ledger::http::spend_summary(ledger, query).await
    };
    response.map(GatewayBody::full)
}

/// `GET /metrics`: the Prometheus text exposition, with the ledger's
/// counters brought up to date first.
fn metrics_response(app: &App) -> Response<GatewayBody> {
    if let Some(ledger) = &app.ledger {
        let stats = ledger.stats();
        app.metrics.ledger_totals(stats.rows_written, stats.dropped);
    }
    let mut response = Response::new(GatewayBody::full(app.metrics.render()));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

fn circuit_breakers(app: &App) -> Response<GatewayBody> {
    let body = json!({ "circuit_breakers": app.breakers.snapshots() });
    json_response(StatusCode::OK, Bytes::from(body.to_string()))
}

fn readiness(app: &App) -> Response<GatewayBody> {
    if app.draining.load(Ordering::Relaxed) {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            Bytes::from_static(br#"{"status":"draining"}"#),
        )
    } else {
        let body = json!({"status": "ready", "model_groups": app.groups.len()});
        json_response(StatusCode::OK, Bytes::from(body.to_string()))
    }
}

pub(crate) fn json_response(status: StatusCode, body: Bytes) -> Response<GatewayBody> {
    let mut response = Response::new(GatewayBody::full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    ChatCompletions,
    Models,
    Health,
    Readiness,
    CircuitBreakers,
    Providers,
    Keys,
    Metrics,
    SpendLogs,
    SpendSummary,
    ConfigReload,
    MethodNotAllowed,
    NotFound,
}

impl Route {
    /// Endpoints for the master key only.
    fn is_admin(self) -> bool {
        !matches!(
            self,
            Route::ChatCompletions
                | Route::Models
                | Route::Health
                | Route::Readiness
                | Route::MethodNotAllowed
                | Route::NotFound
        )
    }

    /// The `route` label of the request metrics.
    fn metrics_label(self) -> &'static str {
        match self {
            Route::ChatCompletions => crate::metrics::ROUTE_CHAT,
            other => other.name(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Route::ChatCompletions => "chat_completions",
            Route::Models => "models",
            Route::Health => "health",
            Route::Readiness => "readiness",
            Route::CircuitBreakers => "circuit_breakers",
            Route::Providers => "providers",
            Route::Keys => "keys",
            Route::Metrics => "metrics",
            Route::SpendLogs => "spend_logs",
            Route::SpendSummary => "spend_summary",
            Route::ConfigReload => "config_reload",
            Route::MethodNotAllowed | Route::NotFound => "other",
        }
    }
}

fn route_of(method: &Method, path: &str) -> Route {
    let (route, allowed) = match path {
        "/v1/chat/completions" | "/chat/completions" => (Route::ChatCompletions, Method::POST),
        "/v1/models" | "/models" => (Route::Models, Method::GET),
        "/health" | "/health/liveliness" | "/health/liveness" => (Route::Health, Method::GET),
        "/health/readiness" => (Route::Readiness, Method::GET),
        "/health/circuit-breakers" => (Route::CircuitBreakers, Method::GET),
        "/health/providers" => (Route::Providers, Method::GET),
        "/metrics" => (Route::Metrics, Method::GET),
        // The key endpoints check their own methods.
        "/key/generate" | "/key/info" | "/key/delete" => return Route::Keys,
        "/spend/logs" => (Route::SpendLogs, Method::GET),
        "/spend/summary" => (Route::SpendSummary, Method::GET),
        "/config/reload" => (Route::ConfigReload, Method::POST),
        _ => return Route::NotFound,
    };
    if *method == allowed || (allowed == Method::GET && *method == Method::HEAD) {
        route
    } else {
        Route::MethodNotAllowed
    }
}

/// The deployment's `extra_headers`, each value marked sensitive (they
/// often carry credentials).
fn extra_headers(
    deployment: &DeploymentConfig,
    path: &dyn Fn(&str) -> String,
) -> Result<http::HeaderMap, BuildError> {
    let mut headers = http::HeaderMap::new();
    for (name, value) in &deployment.extra_headers {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| BuildError {
            path: path("extra_headers"),
            message: format!("{name:?} is not a valid header name"),
        })?;
        let mut value = HeaderValue::from_str(value.expose()).map_err(|_| BuildError {
            path: path("extra_headers"),
            message: format!("the value of {name} cannot go in a header"),
        })?;
        value.set_sensitive(true);
        headers.append(name, value);
    }
    Ok(headers)
}

fn build_deployment(
    config: &Config,
    index: usize,
    deployment: &DeploymentConfig,
    learned: &LearnedDeadlines,
    client: &UpstreamClient,
) -> Result<Deployment, BuildError> {
    let breaker =
        resilience::deployment_breaker_config(config, deployment).map_err(|e| BuildError {
            path: format!("model_list[{index}]"),
            message: e.to_string(),
        })?;
    let breaker_enabled = breaker.is_some();
    if let Some(breaker) = &breaker {
        breaker.validate().map_err(|e| BuildError {
            path: format!("model_list[{index}].litellm_params.cooldown_time"),
            message: e.to_string(),
        })?;
    }
    let path = |field: &str| format!("model_list[{index}].litellm_params.{field}");
    let target = Target {
        model_group: Arc::from(deployment.model_name.as_str()),
        deployment_id: Arc::from(deployment.id.as_str()),
        upstream_model: Arc::from(deployment.upstream_model.as_str()),
    };
    let (timeouts, stream_timeouts) = crate::deadlines::attempt_timeouts(config, deployment);
    let kind = match &deployment.disabled {
        Some(_) => None,
        None => Some(deployment.provider.kind()),
    };
    let provider = match kind {
        None | Some(ProviderKind::Native) => DeploymentProvider::Disabled(Arc::from(
            deployment.disabled.as_deref().unwrap_or("not available"),
        )),
        Some(ProviderKind::Mock) => DeploymentProvider::Mock(MockDeployment::new(
            &deployment.upstream_model,
            deployment.mock_response.as_deref(),
            config
                .tollgate
                .mock
                .get(&deployment.id)
                .cloned()
                .unwrap_or_default(),
        )),
        Some(ProviderKind::OpenRouter) => {
            let mut or = OpenRouterConfig::new().x_title("Tollgate");
            if let Some(base) = &deployment.api_base {
                or = or.api_base(base.clone());
            }
            if let Some(key) = &deployment.api_key {
                or = or.api_key(key.expose());
            }
            let layer = OpenRouterLayer::new(or).map_err(|e| BuildError {
                path: path("api_base"),
                message: e.to_string(),
            })?;
            DeploymentProvider::OpenRouter(Box::new(OpenRouterDeployment {
                service: layer.layer(client.clone()),
                headers: extra_headers(deployment, &path)?,
            }))
        }
        Some(ProviderKind::OpenAiCompatible) => {
            let base = deployment
                .provider
                .endpoint_base(deployment.api_base.as_deref())
                .unwrap_or_else(|| OPENAI_API_BASE.to_owned());
            let mut endpoint = Endpoint::new(&base).map_err(|e| BuildError {
                path: path("api_base"),
                message: e.to_string(),
            })?;
            if let Some(key) = &deployment.api_key {
                endpoint = endpoint.with_bearer(key.expose()).map_err(|_| BuildError {
                    path: path("api_key"),
                    message: "the key contains characters that cannot go in a header".into(),
                })?;
            }
            for (name, value) in &extra_headers(deployment, &path)? {
                endpoint = endpoint.with_header(name.clone(), value.clone());
            }
            DeploymentProvider::Http(Arc::new(endpoint))
        }
    };
    Ok(Deployment {
        target,
        breaker_enabled,
        breaker,
        provider,
        timeouts,
        stream_timeouts,
        timings: learned.get(&deployment.id).cloned().unwrap_or_default(),
        learn_stream_deadlines: config.tollgate.learn_stream_deadlines != Some(false),
    })
}
