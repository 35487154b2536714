//! The typed config: what the rest of the gateway reads after loading.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::decimal::Decimal;
use super::mock::MockSettings;
use super::native::NativeParams;
use super::provider::Provider;
pub use super::secret::{KeySource, Secret};

/// A loaded, validated config: LiteLLM's four sections plus Tollgate's own.
#[derive(Debug, Clone)]
pub struct Config {
    /// `model_list`: every deployment, in file order.
    pub model_list: Vec<DeploymentConfig>,
    /// `router_settings`.
    pub router_settings: RouterSettings,
    /// `litellm_settings`.
    pub litellm_settings: LitellmSettings,
    /// `general_settings`.
    pub general_settings: GeneralSettings,
    /// `tollgate`: the one section LiteLLM does not have.
    pub tollgate: TollgateSettings,
    /// Every secret the file gave (upstream keys, `extra_headers` values,
    /// the master key, configured virtual keys, the Redis password), for
    /// the redaction of upstream text (see [`tollgate_core::Redactor`]).
    pub secrets: tollgate_core::Secrets,
    /// LiteLLM's model facts (prices, context windows, providers): the
    /// embedded snapshot, with `tollgate.model_prices_path` over it.
    pub model_prices: std::sync::Arc<crate::model_prices::ModelPrices>,
}

impl Config {
    /// The model groups (the `model_name`s clients ask for), in order of first
    /// appearance, each with its deployments in file order.
    pub fn groups(&self) -> impl Iterator<Item = (&str, Vec<&DeploymentConfig>)> + '_ {
        let mut names: Vec<&str> = Vec::new();
        for deployment in &self.model_list {
            if !names.contains(&deployment.model_name.as_str()) {
                names.push(&deployment.model_name);
            }
        }
        names.into_iter().map(move |name| (name, self.group(name)))
    }

    /// The deployments of one model group (empty if there is no such group).
    pub fn group(&self, model_name: &str) -> Vec<&DeploymentConfig> {
        self.model_list
            .iter()
            .filter(|deployment| deployment.model_name == model_name)
            .collect()
    }

    /// The deployment with this id.
    pub fn deployment(&self, id: &str) -> Option<&DeploymentConfig> {
        self.model_list
            .iter()
            .find(|deployment| deployment.id == id)
    }

    /// The fallbacks that apply: `router_settings.fallbacks` when it has any, else
    /// `litellm_settings.fallbacks` (LiteLLM reads both; the router's win).
    pub fn fallbacks(&self) -> &[(String, Vec<String>)] {
        pick(
            &self.router_settings.fallbacks,
            &self.litellm_settings.fallbacks,
        )
    }

    /// Like [`fallbacks`](Self::fallbacks), for context-window errors.
    pub fn context_window_fallbacks(&self) -> &[(String, Vec<String>)] {
        pick(
            &self.router_settings.context_window_fallbacks,
            &self.litellm_settings.context_window_fallbacks,
        )
    }

    /// Like [`fallbacks`](Self::fallbacks), for content-policy refusals.
    pub fn content_policy_fallbacks(&self) -> &[(String, Vec<String>)] {
        pick(
            &self.router_settings.content_policy_fallbacks,
            &self.litellm_settings.content_policy_fallbacks,
        )
    }

    /// Like [`fallbacks`](Self::fallbacks), for the groups tried when a group has no
    /// fallbacks of its own.
    pub fn default_fallbacks(&self) -> &[String] {
        pick(
            &self.router_settings.default_fallbacks,
            &self.litellm_settings.default_fallbacks,
        )
    }

    /// Retries per request: `router_settings.num_retries`, else
    /// `litellm_settings.num_retries`.
    pub fn num_retries(&self) -> Option<u32> {
        self.router_settings
            .num_retries
            .or(self.litellm_settings.num_retries)
    }

    /// One attempt's timeout: `router_settings.timeout`, else
    /// `litellm_settings.request_timeout`. A deployment's own `timeout` beats
    /// both. The whole request's deadline is `tollgate.request_deadline`.
    pub fn request_timeout(&self) -> Option<Duration> {
        self.router_settings
            .timeout
            .or(self.litellm_settings.request_timeout)
    }
}

fn pick<'a, T>(first: &'a [T], second: &'a [T]) -> &'a [T] {
    if first.is_empty() { second } else { first }
}

/// One entry of `model_list`: a concrete upstream model that serves a model group.
#[derive(Debug, Clone)]
pub struct DeploymentConfig {
    /// `model_info.id`, else `"{model_name}/{k}"` with `k` the index of this
    /// deployment within its model group, from 0. Unique across the config.
    pub id: String,
    /// The model group clients ask for.
    pub model_name: String,
    /// Position in `model_list`, for messages that point back at the file.
    pub index: usize,
    /// Which provider serves it, from the prefix of `litellm_params.model` (or
    /// `litellm_params.custom_llm_provider`).
    pub provider: Provider,
    /// `litellm_params.model` without the provider prefix:
    /// `openrouter/deepseek/deepseek-chat:free` → `deepseek/deepseek-chat:free`.
    pub upstream_model: String,
    /// `litellm_params.api_base`; `None` means the provider's default.
    pub api_base: Option<String>,
    /// `litellm_params.api_key`, or the provider's conventional variable
    /// (`OPENROUTER_API_KEY`, `OPENAI_API_KEY`) when the key is not given, as LiteLLM does.
    pub api_key: Option<Secret>,
    /// Where `api_key` came from, for reports that must not show it.
    pub api_key_source: KeySource,
    /// `litellm_params.timeout`: the whole request.
    pub timeout: Option<Duration>,
    /// `litellm_params.stream_timeout`: until the first byte of a streamed answer.
    pub stream_timeout: Option<Duration>,
    /// `cooldown_time`: this deployment's own `router_settings.cooldown_time`
    /// (how long its circuit breaker stays open; 0 turns its breaker off).
    pub cooldown_time: Option<Duration>,
    /// `litellm_params.rpm`: requests per minute this deployment may take.
    pub rpm: Option<u64>,
    /// `litellm_params.tpm`: tokens per minute this deployment may take.
    pub tpm: Option<u64>,
    /// `litellm_params.weight`: share of traffic under simple-shuffle.
    pub weight: Option<f64>,
    /// `litellm_params.order`: priority within the group, 1 first.
    pub order: Option<u32>,
    /// `model_info.mode`: what the model does (`chat`, `completion`,
    /// `embedding`, …; LiteLLM's values). An `embedding` group takes
    /// `/v1/embeddings` only, and no other group takes it; `None` when the
    /// config does not say (LiteLLM's snapshot may).
    pub mode: Option<String>,
    /// `model_info.base_model`: the model whose prices and facts the
    /// deployment takes (`azure/gpt-4o` for an Azure deployment named
    /// `my-deployment`), as LiteLLM prices Azure; `None`: its own model.
    pub base_model: Option<String>,
    /// `model_info.max_tokens`: the context window, for context-window fallbacks.
    pub max_tokens: Option<u64>,
    /// `model_info.supports_assistant_prefill`: whether the model continues an
    /// assistant message given as the last message (LiteLLM's model info key);
    /// `None` when the config does not say.
    pub supports_assistant_prefill: Option<bool>,
    /// `model_info.supports_reasoning`: the model thinks before it answers,
    /// so its streams get longer cold deadlines.
    pub supports_reasoning: Option<bool>,
    /// `litellm_params.mock_response`: answer with this text instead of calling out.
    pub mock_response: Option<String>,
    /// `litellm_params.extra_headers`, sent upstream with every request. Values are
    /// treated as secrets because they often carry tokens.
    pub extra_headers: Vec<(String, Secret)>,
    /// Prices from `model_info` (or `litellm_params`, LiteLLM's custom pricing).
    pub costs: ModelCosts,
    /// The parameters of a native provider (`api_version`, `aws_*`, `vertex_*`).
    pub native: NativeParams,
    /// Why the deployment does not take traffic (its key variable is unset, its
    /// provider's translation is not wired yet, …); `None` when it does. A
    /// disabled deployment is reported by `check-config`, `/health/providers`
    /// and the log, and the gateway starts as long as one deployment is usable.
    pub disabled: Option<String>,
}

impl DeploymentConfig {
    /// Whether this is a wildcard deployment (`model_name: "*"`, `openai/*`):
    /// it serves every model its pattern matches, forwarding the client's name.
    pub fn is_wildcard(&self) -> bool {
        self.model_name.contains('*')
    }
}

/// What the `*` of `pattern` (one `*` at most) matches in `name`, if `name`
/// matches it.
pub fn wildcard_match<'a>(pattern: &str, name: &'a str) -> Option<&'a str> {
    let (head, tail) = pattern.split_once('*')?;
    let rest = name.strip_prefix(head)?;
    let captured = rest.strip_suffix(tail)?;
    (!captured.is_empty()).then_some(captured)
}

/// Per-token prices in dollars, exact. `None` means "not configured", which is not
/// the same as free.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelCosts {
    /// `input_cost_per_token`.
    pub input_cost_per_token: Option<Decimal>,
    /// `output_cost_per_token`.
    pub output_cost_per_token: Option<Decimal>,
    /// `cache_read_input_token_cost`.
    pub cache_read_input_token_cost: Option<Decimal>,
    /// `cache_creation_input_token_cost`.
    pub cache_creation_input_token_cost: Option<Decimal>,
    /// `output_cost_per_reasoning_token`.
    pub output_cost_per_reasoning_token: Option<Decimal>,
}

impl ModelCosts {
    /// The config keys, in the order of the fields.
    pub const KEYS: [&'static str; 5] = [
        "input_cost_per_token",
        "output_cost_per_token",
        "cache_read_input_token_cost",
        "cache_creation_input_token_cost",
        "output_cost_per_reasoning_token",
    ];

    /// The price under a config key, if that key is one of [`Self::KEYS`].
    pub fn get(&self, key: &str) -> Option<&Decimal> {
        self.slot_ref(key)?.as_ref()
    }

    /// Whether no price is configured at all.
    pub fn is_empty(&self) -> bool {
        Self::KEYS.iter().all(|key| self.get(key).is_none())
    }

    fn slot_ref(&self, key: &str) -> Option<&Option<Decimal>> {
        Some(match key {
            "input_cost_per_token" => &self.input_cost_per_token,
            "output_cost_per_token" => &self.output_cost_per_token,
            "cache_read_input_token_cost" => &self.cache_read_input_token_cost,
            "cache_creation_input_token_cost" => &self.cache_creation_input_token_cost,
            "output_cost_per_reasoning_token" => &self.output_cost_per_reasoning_token,
            _ => return None,
        })
    }

    pub(crate) fn slot_mut(&mut self, key: &str) -> Option<&mut Option<Decimal>> {
        Some(match key {
            "input_cost_per_token" => &mut self.input_cost_per_token,
            "output_cost_per_token" => &mut self.output_cost_per_token,
            "cache_read_input_token_cost" => &mut self.cache_read_input_token_cost,
            "cache_creation_input_token_cost" => &mut self.cache_creation_input_token_cost,
            "output_cost_per_reasoning_token" => &mut self.output_cost_per_reasoning_token,
            _ => return None,
        })
    }
}

/// How the balancer picks a deployment within a group (`router_settings.routing_strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RoutingStrategy {
    /// `simple-shuffle`: random, weighted by `weight` (or rpm/tpm). LiteLLM's default.
    #[default]
    SimpleShuffle,
    /// `least-busy`: fewest requests in flight.
    LeastBusy,
    /// `latency-based-routing`: lowest recent latency.
    LatencyBased,
    /// `usage-based-routing`: lowest tpm/rpm use.
    UsageBased,
    /// `usage-based-routing-v2`: LiteLLM's Redis-backed variant of usage-based routing.
    UsageBasedV2,
    /// `cost-based-routing`: cheapest deployment first.
    CostBased,
}

impl RoutingStrategy {
    /// Every strategy, in the order messages list them.
    pub const ALL: [RoutingStrategy; 6] = [
        RoutingStrategy::SimpleShuffle,
        RoutingStrategy::LeastBusy,
        RoutingStrategy::LatencyBased,
        RoutingStrategy::UsageBased,
        RoutingStrategy::UsageBasedV2,
        RoutingStrategy::CostBased,
    ];

    /// LiteLLM's name for it.
    pub const fn as_str(self) -> &'static str {
        match self {
            RoutingStrategy::SimpleShuffle => "simple-shuffle",
            RoutingStrategy::LeastBusy => "least-busy",
            RoutingStrategy::LatencyBased => "latency-based-routing",
            RoutingStrategy::UsageBased => "usage-based-routing",
            RoutingStrategy::UsageBasedV2 => "usage-based-routing-v2",
            RoutingStrategy::CostBased => "cost-based-routing",
        }
    }

    /// Parses LiteLLM's name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|strategy| strategy.as_str() == name)
    }
}

impl fmt::Display for RoutingStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Retries per kind of error (`router_settings.retry_policy`), overriding
/// `num_retries` for that kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryPolicy {
    /// `AuthenticationErrorRetries`.
    pub authentication_error: Option<u32>,
    /// `TimeoutErrorRetries`.
    pub timeout_error: Option<u32>,
    /// `RateLimitErrorRetries`.
    pub rate_limit_error: Option<u32>,
    /// `ContentPolicyViolationErrorRetries`.
    pub content_policy_violation_error: Option<u32>,
    /// `InternalServerErrorRetries`.
    pub internal_server_error: Option<u32>,
    /// `BadRequestErrorRetries`.
    pub bad_request_error: Option<u32>,
}

impl RetryPolicy {
    /// LiteLLM's key names, in the order of the fields.
    pub const KEYS: [&'static str; 6] = [
        "AuthenticationErrorRetries",
        "TimeoutErrorRetries",
        "RateLimitErrorRetries",
        "ContentPolicyViolationErrorRetries",
        "InternalServerErrorRetries",
        "BadRequestErrorRetries",
    ];

    /// The retries under LiteLLM's key name.
    pub fn get(&self, key: &str) -> Option<u32> {
        match key {
            "AuthenticationErrorRetries" => self.authentication_error,
            "TimeoutErrorRetries" => self.timeout_error,
            "RateLimitErrorRetries" => self.rate_limit_error,
            "ContentPolicyViolationErrorRetries" => self.content_policy_violation_error,
            "InternalServerErrorRetries" => self.internal_server_error,
            "BadRequestErrorRetries" => self.bad_request_error,
            _ => None,
        }
    }

    pub(crate) fn slot_mut(&mut self, key: &str) -> Option<&mut Option<u32>> {
        Some(match key {
            "AuthenticationErrorRetries" => &mut self.authentication_error,
            "TimeoutErrorRetries" => &mut self.timeout_error,
            "RateLimitErrorRetries" => &mut self.rate_limit_error,
            "ContentPolicyViolationErrorRetries" => &mut self.content_policy_violation_error,
            "InternalServerErrorRetries" => &mut self.internal_server_error,
            "BadRequestErrorRetries" => &mut self.bad_request_error,
            _ => return None,
        })
    }

    /// Whether no kind has its own count.
    pub fn is_empty(&self) -> bool {
        Self::KEYS.iter().all(|key| self.get(key).is_none())
    }
}

/// `router_settings`.
#[derive(Debug, Clone, Default)]
pub struct RouterSettings {
    /// `routing_strategy`, `simple-shuffle` when absent.
    pub routing_strategy: RoutingStrategy,
    /// `num_retries`.
    pub num_retries: Option<u32>,
    /// `retry_policy`.
    pub retry_policy: RetryPolicy,
    /// `retry_after`: the least time to wait before a retry.
    pub retry_after: Option<Duration>,
    /// `allowed_fails`: failures within a minute before a deployment cools down.
    pub allowed_fails: Option<u32>,
    /// `cooldown_time`: how long a failing deployment is left out.
    pub cooldown_time: Option<Duration>,
    /// `fallbacks`: model group → groups to try next, in order.
    pub fallbacks: Vec<(String, Vec<String>)>,
    /// `context_window_fallbacks`.
    pub context_window_fallbacks: Vec<(String, Vec<String>)>,
    /// `content_policy_fallbacks`.
    pub content_policy_fallbacks: Vec<(String, Vec<String>)>,
    /// `default_fallbacks`: tried for any group without fallbacks of its own.
    pub default_fallbacks: Vec<String>,
    /// `timeout`: the whole request, for deployments without their own.
    pub timeout: Option<Duration>,
    /// `model_group_alias`: another name clients may use for a model group
    /// (alias → group; LiteLLM's `{model: group, hidden: true}` form too).
    pub model_group_alias: Vec<(String, String)>,
    /// `max_fallbacks`: the most fallback groups one request may try.
    pub max_fallbacks: Option<u32>,
    /// `redis_host`.
    pub redis_host: Option<String>,
    /// `redis_port`.
    pub redis_port: Option<u16>,
    /// `redis_password`.
    pub redis_password: Option<Secret>,
}

/// `litellm_settings`: the subset Tollgate uses.
#[derive(Debug, Clone, Default)]
pub struct LitellmSettings {
    /// `num_retries`.
    pub num_retries: Option<u32>,
    /// `request_timeout`.
    pub request_timeout: Option<Duration>,
    /// `fallbacks` (LiteLLM accepts them here as well as in `router_settings`).
    pub fallbacks: Vec<(String, Vec<String>)>,
    /// `context_window_fallbacks`.
    pub context_window_fallbacks: Vec<(String, Vec<String>)>,
    /// `content_policy_fallbacks`.
    pub content_policy_fallbacks: Vec<(String, Vec<String>)>,
    /// `default_fallbacks`.
    pub default_fallbacks: Vec<String>,
    /// `drop_params`: drop request parameters the provider does not support.
    pub drop_params: Option<bool>,
    /// `allowed_fails`: as `router_settings.allowed_fails`, which wins.
    pub allowed_fails: Option<u32>,
    /// `cooldown_time`: as `router_settings.cooldown_time`, which wins.
    pub cooldown_time: Option<Duration>,
    /// `max_end_user_budget`: dollars each end user (a request's `user`)
    /// may spend in their lifetime, unless registered with their own.
    pub max_end_user_budget: Option<Decimal>,
}

/// `general_settings`: the subset Tollgate uses.
#[derive(Debug, Clone, Default)]
pub struct GeneralSettings {
    /// `master_key`: the bearer token clients must send.
    pub master_key: Option<Secret>,
    /// `max_request_size_mb`: request bodies above this are refused; always > 0.
    pub max_request_size_mb: Option<f64>,
}

/// `tollgate`: settings LiteLLM has no key for.
#[derive(Debug, Clone, Default)]
pub struct TollgateSettings {
    /// `connect_timeout`: TCP + TLS connect to an upstream.
    pub connect_timeout: Option<Duration>,
    /// `stream_idle_timeout`: the longest silence allowed between two chunks of a stream.
    pub stream_idle_timeout: Option<Duration>,
    /// `stream_head_timeout`: the longest a stream's response head may take.
    pub stream_head_timeout: Option<Duration>,
    /// `request_deadline`: the deadline of a whole request, retries and
    /// fallbacks included (default: derived from the attempts' timeouts).
    pub request_deadline: Option<Duration>,
    /// `shutdown_grace_period`: how long in-flight requests may finish on shutdown.
    pub shutdown_grace_period: Option<Duration>,
    /// `request_body_timeout`: the longest a client may take to send a whole
    /// request body.
    pub request_body_timeout: Option<Duration>,
    /// `request_body_idle_timeout`: the longest silence allowed inside a
    /// request body.
    pub request_body_idle_timeout: Option<Duration>,
    /// `request_body_memory_mb`: the memory request bodies still arriving may
    /// hold together, in MiB.
    pub request_body_memory_mb: Option<f64>,
    /// `max_connections`: client connections served at once (default from
    /// the open-file limit); a small reserve beyond it answers health checks.
    pub max_connections: Option<usize>,
    /// `connection_idle_timeout`: a client connection with no request in
    /// flight this long is closed (default 75 s).
    pub connection_idle_timeout: Option<Duration>,
    /// `header_read_timeout`: a request head (HTTP/1 headers, an HTTP/2
    /// header block) must arrive within this time of its first byte
    /// (default 30 s).
    pub header_read_timeout: Option<Duration>,
    /// `http2_keepalive_interval`: an HTTP/2 connection silent this long is
    /// pinged (default 30 s; 0 turns pings off).
    pub http2_keepalive_interval: Option<Duration>,
    /// `http2_keepalive_timeout`: an unanswered ping closes the connection
    /// after this long (default 10 s).
    pub http2_keepalive_timeout: Option<Duration>,
    /// `ledger_path`: the spend ledger's SQLite file. Without it a gateway
    /// built from the library keeps no ledger; the `tollgate` binary uses
    /// `tollgate-ledger.sqlite3` in its working directory.
    pub ledger_path: Option<std::path::PathBuf>,
    /// `ledger_flush_interval`: the longest a cost record waits before it is
    /// written to the ledger (what a `kill -9` can lose); default 1 s.
    pub ledger_flush_interval: Option<Duration>,
    /// `redis_timeout`: how long a rate-limit call to Redis (a key's or a
    /// deployment's limits, a budget) may take before the replica answers
    /// from its local state; default 0.05 s.
    pub redis_timeout: Option<Duration>,
    /// `learn_stream_deadlines`: shorten each deployment's stream deadlines
    /// to what its own streams have shown (default true; see the README's
    /// "Timeouts").
    pub learn_stream_deadlines: Option<bool>,
    /// `hedge_streams`: model groups whose streams are hedged — a stream
    /// with no first token by its deployment's learned p95 asks the
    /// group's first fallback in parallel and keeps whichever streams
    /// first (default: none).
    pub hedge_streams: Vec<String>,
    /// `model_prices_path`: a model price file (the snapshot's format, or
    /// LiteLLM's `model_prices_and_context_window.json`) whose entries go
    /// over the embedded snapshot of LiteLLM's.
    pub model_prices_path: Option<std::path::PathBuf>,
    /// `mock`: behaviour of `mock/` deployments, keyed by deployment id.
    pub mock: BTreeMap<String, MockSettings>,
    /// `keys`: virtual keys defined in the config file, in file order.
    pub keys: Vec<ConfiguredKey>,
}

/// A virtual key defined in the config file (an entry of `tollgate.keys`).
///
/// Exactly one of [`key`](Self::key) and [`key_hash`](Self::key_hash) is
/// set. Neither `Debug` nor the check-config report shows the key: it is a
/// [`Secret`], and reports name a key by its alias.
#[derive(Debug, Clone, Default)]
pub struct ConfiguredKey {
    /// `key`: the key's text, usually `os.environ/VAR`.
    pub key: Option<Secret>,
    /// `key_hash`: the SHA-256 of the key's text (64 hex digits in the
    /// file), so the file need not hold the key.
    pub key_hash: Option<[u8; 32]>,
    /// `key_alias`: the key's name in logs, metrics and the ledger
    /// (required).
    pub key_alias: String,
    /// `models`: model groups the key may use; empty means all.
    pub models: Vec<String>,
    /// `rpm_limit`: requests per minute.
    pub rpm_limit: Option<u32>,
    /// `tpm_limit`: tokens per minute.
    pub tpm_limit: Option<u64>,
    /// `max_parallel_requests`: requests in flight at once.
    pub max_parallel_requests: Option<u32>,
    /// `max_budget`: dollars per `budget_duration` (or in the key's
    /// lifetime), exact, at most 12 decimals.
    pub max_budget: Option<Decimal>,
    /// `budget_duration`: the budget window, in LiteLLM's format (`30d`).
    pub budget_duration: Option<Duration>,
}
