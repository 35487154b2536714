//! Assembly: the [`App`] a configuration describes — its model groups and
//! deployments ([`deployment`]), the service stack, the key registry, the
//! ledger and shared state — and the background work it needs.

mod deployment;

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use tollgate_balance::{DeploymentLimits, Group, TokenCounter};
use tollgate_breaker::Breakers;
use tollgate_cost::CostLayer;
use tollgate_fallback::FallbackLayer;
use tollgate_limits::{DeploymentRateLimits, RateLimitLayer};
use tollgate_retry::RetryLayer;

use crate::after_write::AfterWriteSink;
use crate::config::{Config, DeploymentConfig};
use crate::deployment::{Deployment, Groups};
use crate::grace::GracePeriod;
use crate::http::App;
use crate::keys::{KeyBackend, Keys, RedisBackend};
use crate::learned::LearnedDeadlines;
use crate::ledger::{Ledger, LedgerConfig};
use crate::metrics::Metrics;
use crate::providers::ProviderHealth;
use crate::request_body::{BodyReader, DEFAULT_MAX_REQUEST_BYTES};
use crate::request_id::RequestIds;
use crate::resilience;
use crate::shared::SharedState;
use crate::spend::GatewaySink;
use crate::upstream::UpstreamClient;

/// How often histogram samples are folded into their buckets.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

/// Why a configuration could not become a gateway.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct BuildError {
    path: String,
    message: String,
}

/// Builds what serves the requests of `config`, calling upstreams with
/// `client`; starts its background work when a runtime is running.
pub(crate) fn build(config: &Config, client: UpstreamClient) -> Result<App, BuildError> {
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
    let breakers = Breakers::new(breaker_defaults).map_err(|e| BuildError {
        path: String::from("router_settings"),
        message: e.to_string(),
    })?;
    let learned = LearnedDeadlines::new(
        config.model_list.iter().map(|d| {
            let cold = crate::deadlines::attempt_timeouts(config, d).1;
            (Arc::from(d.id.as_str()), cold)
        }),
        None,
    )
    .applied(config.tollgate.learn_stream_deadlines != Some(false));
    let mut groups: HashMap<Arc<str>, Vec<(Arc<Deployment>, &DeploymentConfig)>> = HashMap::new();
    let mut order: Vec<Arc<str>> = Vec::new();
    for (index, deployment) in config.model_list.iter().enumerate() {
        let built = deployment::build(config, index, deployment, &breakers, &learned, &client)?;
        let name = built.target.model_group.clone();
        groups
            .entry(name.clone())
            .or_insert_with(|| {
                order.push(name);
                Vec::new()
            })
            .push((Arc::new(built), deployment));
    }
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let models: Vec<_> = order
            .iter()
            .map(|name| json!({"id": &**name, "object": "model", "created": created, "owned_by": "tollgate"}))
            .collect();
    let models_body = Bytes::from(json!({"object": "list", "data": models}).to_string());
    let max_body = config
        .general_settings
        .max_request_size_mb
        .map_or(DEFAULT_MAX_REQUEST_BYTES, |mb| {
            (mb * 1024.0 * 1024.0) as usize
        });
    let strategy = deployment::balance_strategy(config.router_settings.routing_strategy);
    // Deployments a breaker guards, for sharing them between replicas.
    let guarded: Vec<Arc<str>> = order
        .iter()
        .flat_map(|name| &groups[name])
        .filter(|(d, _)| d.breaker_enabled)
        .map(|(d, _)| d.target.deployment_id.clone())
        .collect();
    let ledger = open_ledger(config)?;
    let metrics = Metrics::new();
    let gauges = learned.clone();
    metrics.watch_gauges(Box::new(move |text| gauges.render_metrics(text)));
    let body_reader =
        BodyReader::from_config(&config.tollgate, max_body, &metrics).map_err(|message| {
            BuildError {
                path: String::from("tollgate.request_body_memory_mb"),
                message,
            }
        })?;
    metrics.register_topology(
        &order
            .iter()
            .map(|name| {
                let ids = groups[name]
                    .iter()
                    .map(|(d, _)| d.target.deployment_id.clone())
                    .collect();
                (name.clone(), ids)
            })
            .collect::<Vec<_>>(),
    );
    let providers = ProviderHealth::new(
        order
            .iter()
            .flat_map(|name| &groups[name])
            .map(|(d, _)| {
                let t = &d.target;
                (
                    t.deployment_id.clone(),
                    t.model_group.clone(),
                    d.provider.kind(),
                )
            })
            .collect(),
    );
    // Shared state (Redis) needs a runtime; a gateway built outside one
    // (a config check) has no traffic to share.
    let runtime = tokio::runtime::Handle::try_current().ok();
    let shared = match &runtime {
        Some(_) => SharedState::from_config(config, &metrics).map_err(|error| BuildError {
            path: String::from("router_settings.redis_host"),
            message: error.to_string(),
        })?,
        None => None,
    };
    let limit_store = crate::limits::store(shared.as_ref(), config.tollgate.redis_timeout);
    let limits = RateLimitLayer::new(limit_store.clone());
    let deployment_limits: Arc<dyn DeploymentLimits> = Arc::new(crate::limits::BalancerLimits(
        DeploymentRateLimits::new(limit_store.clone()),
    ));
    let groups: Groups = Arc::new(
        groups
            .into_iter()
            .map(|(name, members)| {
                let members = members.into_iter().map(deployment::group_member).collect();
                let group = Group::new(name.clone(), strategy, members, deployment_limits.clone());
                (name, Arc::new(group))
            })
            .collect(),
    );
    let grace = GracePeriod::default();
    let cost = CostLayer::new(
        Arc::new(crate::pricing::price_table(config)),
        AfterWriteSink(GatewaySink {
            metrics: metrics.clone(),
            providers: providers.clone(),
            ledger: ledger.as_ref().map(|l| l.handle()),
            grace: grace.clone(),
            deployment_tokens: TokenCounter::new(
                deployment_limits,
                groups.values().map(|group| &**group.balancer()),
            ),
        }),
    );
    let keys = open_keys(config, shared.as_ref())?;
    let hedges = crate::hedge::plans(config).map_err(|message| BuildError {
        path: String::from("tollgate.hedge_streams"),
        message,
    })?;
    // Background work needs a runtime; a gateway built outside one (a
    // config check) has no traffic to watch.
    if let Some(runtime) = &runtime {
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
        request_ids: RequestIds::default(),
        draining: AtomicBool::new(false),
        grace,
        access_log_writer: OnceLock::new(),
    })
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
