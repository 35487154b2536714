//! Assembly: the [`App`] a configuration describes — its model groups and
//! deployments ([`deployment`]), the service stack, the key registry, the
//! ledger and shared state — and the background work it needs.

mod deployment;
mod lineage;

pub(crate) use lineage::Lineage;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use tollgate_balance::{Group, TokenCounter};
use tollgate_breaker::Breakers;
use tollgate_core::DeploymentLimits;
use tollgate_cost::CostLayer;
use tollgate_fallback::FallbackLayer;
use tollgate_limits::{DeploymentRateLimits, RateLimitLayer};
use tollgate_retry::RetryLayer;

use crate::after_write::AfterWriteSink;
use crate::config::{Config, DeploymentConfig};
use crate::deployment::{Deployment, Groups};
use crate::generation::Generation;
use crate::grace::GracePeriod;
use crate::http::App;
use crate::keys::{KeyBackend, Keys, RedisBackend};
use crate::learned::LearnedDeadlines;
use crate::ledger::{Ledger, LedgerConfig};
use crate::metrics::Metrics;
use crate::providers::ProviderHealth;
use crate::request_body::{BodyReader, DEFAULT_MAX_REQUEST_BYTES};
use crate::resilience;
use crate::shared::SharedState;
use crate::spend::GatewaySink;
use crate::teams::{TeamBackend, Teams};
use crate::upstream::UpstreamClient;

/// How often histogram samples are folded into their buckets. The exporter
/// keeps every sample until then: at 40,000 requests a second, five seconds
/// of them were 12 MiB of the peak under load (BENCHMARKS.md, "Memory under
/// the shared bench").
const METRICS_UPKEEP: Duration = Duration::from_secs(1);

/// Why a configuration could not become a gateway.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct BuildError {
    path: String,
    message: String,
}

/// Builds what serves the requests of `config`, calling upstreams with
/// `client`. A reload builds it after the running configuration,
/// `previous`: what the process owns is taken from it (see
/// [`reload`](crate::reload)), no background work is started, and nothing
/// shared is touched until the reload commits.
pub(crate) fn build(
    config: &Config,
    client: UpstreamClient,
    previous: Option<&App>,
) -> Result<App, BuildError> {
    let invalid = |e: resilience::ResilienceError| BuildError {
        path: String::from("router_settings"),
        message: e.to_string(),
    };
    let retry = RetryLayer::new(resilience::retry_config(config).map_err(invalid)?);
    let fallback = FallbackLayer::new(resilience::fallback_config(config).map_err(invalid)?);
    let breaker_defaults = resilience::breaker_config(config).map_err(invalid)?;
    let breakers = match (previous, breaker_defaults) {
        // One registry for the process: a reload registers and removes
        // deployments in it when it commits.
        (Some(previous), _) => previous.breakers.clone(),
        (None, Some(defaults)) => Breakers::new(defaults),
        (None, None) => Breakers::default(),
    };
    let mut generation = Generation::new(config, client.clone(), previous.map(|p| &p.generation));
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
    if config.model_list.iter().all(|d| d.disabled.is_some()) {
        return Err(BuildError {
            path: String::from("model_list"),
            message: String::from(
                "no deployment can take traffic (each one is disabled; check-config says why)",
            ),
        });
    }
    let mut groups: HashMap<Arc<str>, Vec<(Arc<Deployment>, &DeploymentConfig)>> = HashMap::new();
    let mut order: Vec<Arc<str>> = Vec::new();
    for (index, deployment) in config.model_list.iter().enumerate() {
        if crate::disabled::leave_out(config, deployment) {
            continue;
        }
        let built = deployment::build(config, index, deployment, &learned, &client)?;
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
    let strategy = deployment::balance_strategy(config.router_settings.routing_strategy);
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
    let deployment_limits: Arc<dyn DeploymentLimits> =
        Arc::new(DeploymentRateLimits::new(limit_store.clone()));
    let prices = Arc::new(crate::pricing::price_table(config));
    let catalog = crate::model_info::ModelCatalog::new(config, &prices, created);
    let groups: Groups = Arc::new(
        groups
            .into_iter()
            .map(|(name, members)| {
                let members = members
                    .into_iter()
                    .map(|member| deployment::group_member(&prices, member))
                    .collect();
                let mut group =
                    Group::new(name.clone(), strategy, members, deployment_limits.clone());
                if let Some(before) = lineage.previous().and_then(|p| p.groups.get(&name)) {
                    group.carry_over(before, |id| lineage.kept(id));
                }
                (name, Arc::new(group))
            })
            .collect(),
    );
    let grace = previous.map_or_else(GracePeriod::default, |p| p.grace.clone());
    let cost = CostLayer::new(
        prices,
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
    let keys = match previous {
        Some(previous) => previous.keys.clone(),
        None => open_keys(config, shared.as_ref())?,
    };
    let teams = match previous {
        Some(previous) => previous.teams.clone(),
        None => open_teams(config, shared.as_ref())?,
    };
    let end_users = match previous {
        Some(previous) => previous.end_users.clone(),
        None => open_end_users(config, shared.as_ref())?,
    };
    generation.shared = shared.clone();
    let hedges = crate::hedge::plans(config).map_err(|message| BuildError {
        path: String::from("tollgate.hedge_streams"),
        message,
    })?;
    // Background work needs a runtime; a gateway built outside one (a
    // config check) has no traffic to watch. A reload's runs on.
    if let (Some(runtime), None) = (&runtime, previous) {
        crate::limits::log_deployment_limits(config, shared.is_some());
        crate::disabled::log(config);
        metrics.spawn_upkeep(runtime, METRICS_UPKEEP);
        metrics.spawn_breaker_watch(runtime, &breakers);
        // Generated keys: Redis's changes, and putting back what it lost.
        keys.spawn_sync(runtime);
        teams.spawn_sync(runtime);
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
        catalog,
        keys,
        teams,
        end_users,
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
        routing: crate::routing::ModelRouting::new(config),
        generation,
    })
}

/// Shows `app`'s learned stream deadlines as the metrics' gauges.
pub(crate) fn watch_learned(app: &App) {
    let learned = app.learned.clone();
    app.metrics
        .watch_gauges(Box::new(move |text| learned.render_metrics(text)));
}

/// Brings the breaker registry to `next`'s deployments: a new deployment,
/// or a kept one whose breaker settings changed, gets a fresh breaker; a
/// kept one with the same settings keeps its breaker as it is (open stays
/// open); one gone is forgotten.
pub(crate) fn apply_breakers(breakers: &Breakers, before: Option<&Generation>, next: &Generation) {
    for (id, settings) in &next.breakers {
        let unchanged = before.is_some_and(|before| {
            before.identities.get(id) == next.identities.get(id)
                && before.breakers.get(id) == Some(settings)
        });
        if !unchanged {
            breakers.register_with(id, settings.clone());
        }
    }
    if let Some(before) = before {
        for id in before.breakers.keys() {
            if !next.breakers.contains_key(id) {
                breakers.remove(id);
            }
        }
    }
}

/// Each model group's deployment ids, for the metrics' zero series.
pub(crate) fn topology(groups: &Groups) -> Vec<(Arc<str>, Vec<Arc<str>>)> {
    groups
        .iter()
        .map(|(name, group)| {
            let ids = group
                .members()
                .map(|(target, _)| target.deployment_id.clone());
            (name.clone(), ids.collect())
        })
        .collect()
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

/// The team registry, stored where the keys are (see [`open_keys`]).
fn open_teams(config: &Config, shared: Option<&SharedState>) -> Result<Teams, BuildError> {
    let ledger = config.tollgate.ledger_path.clone();
    let backend = match shared {
        Some(shared) => TeamBackend::Redis {
            manager: shared.connection.clone(),
            prefix: crate::shared::PREFIX.to_owned(),
            mirror: ledger,
            op_timeout: crate::keys::store::redis::DEFAULT_OP_TIMEOUT,
            on_fallback: Some(shared.on_fallback.clone()),
        },
        None => match ledger {
            Some(path) => TeamBackend::Sqlite(path),
            None => TeamBackend::Memory,
        },
    };
    Teams::new(backend).map_err(|error| BuildError {
        path: String::from("tollgate.ledger_path"),
        message: error.to_string(),
    })
}

/// The end users: in the ledger's file, shared through Redis when replicas
/// share one; `litellm_settings.max_end_user_budget` for all.
fn open_end_users(
    config: &Config,
    shared: Option<&SharedState>,
) -> Result<crate::end_users::EndUsers, BuildError> {
    let default_budget = config
        .litellm_settings
        .max_end_user_budget
        .as_ref()
        .and_then(|budget| budget.to_units(12))
        .and_then(|picos| u64::try_from(picos).ok());
    crate::end_users::EndUsers::open(
        config.tollgate.ledger_path.as_deref(),
        shared,
        config
            .tollgate
            .redis_timeout
            .unwrap_or(crate::keys::store::redis::DEFAULT_OP_TIMEOUT),
        default_budget,
    )
    .map_err(|error| BuildError {
        path: String::from("tollgate.ledger_path"),
        message: format!("the end users could not be read: {error}"),
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
