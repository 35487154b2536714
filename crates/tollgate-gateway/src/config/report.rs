//! The text `tollgate check-config FILE` prints: what the loader understood.

use std::fmt::Write as _;
use std::time::Duration;

use super::Loaded;
use super::mock::MockFault;
use super::model::{Config, ConfiguredKey, DeploymentConfig, KeySource, Secret};

/// Renders what was understood from a config: model groups with their deployments,
/// fallbacks, the settings that were set, then the warnings.
///
/// Keys and passwords appear only as their source (`env OPENROUTER_API_KEY`,
/// `config`, `none`), never as values.
pub fn render_report(loaded: &Loaded) -> String {
    let config = &loaded.config;
    let mut out = String::new();
    let groups: Vec<_> = config.groups().collect();
    // Writing to a String cannot fail; the results are ignored on purpose.
    let _ = writeln!(
        out,
        "Config OK: {} model group{}, {} deployment{}, {} warning{}",
        groups.len(),
        plural(groups.len()),
        config.model_list.len(),
        plural(config.model_list.len()),
        loaded.warnings.len(),
        plural(loaded.warnings.len()),
    );

    out.push_str("\nModel groups\n");
    for (name, deployments) in &groups {
        let _ = writeln!(out, "  {name}");
        for deployment in deployments {
            let _ = writeln!(out, "    - {}", deployment_line(deployment));
        }
    }

    let limited = config
        .model_list
        .iter()
        .filter(|d| d.rpm.is_some() || d.tpm.is_some())
        .count();
    if limited > 0 {
        let counted = if config.router_settings.redis_host.is_some() {
            "counted in Redis, one limit for every replica"
        } else {
            "counted by each replica on its own (no router_settings.redis_host)"
        };
        let _ = writeln!(
            out,
            "\nDeployment limits\n  rpm/tpm of {limited} deployment{} enforced: {counted}",
            plural(limited)
        );
    }

    let fallbacks = [
        ("fallbacks", config.fallbacks()),
        (
            "context_window_fallbacks",
            config.context_window_fallbacks(),
        ),
        (
            "content_policy_fallbacks",
            config.content_policy_fallbacks(),
        ),
    ];
    if fallbacks.iter().any(|(_, list)| !list.is_empty()) || !config.default_fallbacks().is_empty()
    {
        out.push_str("\nFallbacks\n");
        for (kind, list) in fallbacks {
            for (group, targets) in list {
                let _ = writeln!(out, "  {kind}: {group} -> {}", targets.join(" -> "));
            }
        }
        if !config.default_fallbacks().is_empty() {
            let _ = writeln!(
                out,
                "  default_fallbacks: {}",
                config.default_fallbacks().join(" -> ")
            );
        }
    }

    out.push_str("\nSettings\n");
    for (key, value) in settings(config) {
        let _ = writeln!(out, "  {key}: {value}");
    }

    if !config.tollgate.mock.is_empty() {
        out.push_str("\nMock deployments\n");
        for (id, mock) in &config.tollgate.mock {
            let fault = match mock.fault {
                None => "none".to_owned(),
                Some(MockFault::ErrorStatus { status }) => format!("error_status {status}"),
                Some(
                    fault @ (MockFault::StreamError { after_chunks }
                    | MockFault::Stall { after_chunks }
                    | MockFault::Cut { after_chunks }),
                ) => {
                    format!("{} after {after_chunks} chunks", fault.kind())
                }
            };
            let _ = writeln!(
                out,
                "  {id}: latency {}ms, chunk delay {}ms, fault {fault}, every {} request(s)",
                mock.latency_ms, mock.chunk_delay_ms, mock.fail_every
            );
        }
    }

    if !config.tollgate.keys.is_empty() {
        out.push_str("\nVirtual keys\n");
        for key in &config.tollgate.keys {
            let _ = writeln!(out, "  {}", key_line(key));
        }
    }

    if !loaded.warnings.is_empty() {
        let _ = writeln!(out, "\nWarnings ({})", loaded.warnings.len());
        for warning in &loaded.warnings {
            let _ = writeln!(out, "  {warning}");
        }
    }
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn deployment_line(deployment: &DeploymentConfig) -> String {
    let mut line = format!(
        "{}: {} {}",
        deployment.id, deployment.provider, deployment.upstream_model
    );
    if let Some(base) = &deployment.api_base {
        let _ = write!(line, ", api_base {base}");
    }
    let _ = write!(line, ", key {}", deployment.api_key_source);
    let optional = [
        ("timeout", deployment.timeout.map(seconds)),
        ("stream_timeout", deployment.stream_timeout.map(seconds)),
        ("cooldown_time", deployment.cooldown_time.map(seconds)),
        ("rpm", deployment.rpm.map(|n| n.to_string())),
        ("tpm", deployment.tpm.map(|n| n.to_string())),
        ("weight", deployment.weight.map(|n| n.to_string())),
        ("order", deployment.order.map(|n| n.to_string())),
        ("max_tokens", deployment.max_tokens.map(|n| n.to_string())),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            let _ = write!(line, ", {key} {value}");
        }
    }
    for key in super::model::ModelCosts::KEYS {
        if let Some(price) = deployment.costs.get(key) {
            let _ = write!(line, ", {key} ${price}");
        }
    }
    if deployment.mock_response.is_some() {
        line.push_str(", mock_response set");
    }
    if let Some(reason) = &deployment.disabled {
        let _ = write!(line, ", DISABLED ({reason})");
    }
    if !deployment.extra_headers.is_empty() {
        let names: Vec<&str> = deployment
            .extra_headers
            .iter()
            .map(|(name, _)| name.as_str())
            .collect();
        let _ = write!(line, ", extra_headers {}", names.join(" "));
    }
    line
}

/// A config key by its alias and settings; the key itself appears only as
/// its source (`key env TEAM_A_KEY`, `key config`, `key_hash`).
fn key_line(key: &ConfiguredKey) -> String {
    let mut line = format!("{}: ", key.key_alias);
    match &key.key {
        Some(secret) => {
            let _ = write!(line, "key {}", secret.source());
        }
        None => line.push_str("key_hash"),
    }
    if key.models.is_empty() {
        line.push_str(", models all");
    } else {
        let _ = write!(line, ", models {}", key.models.join(" "));
    }
    let optional = [
        ("rpm_limit", key.rpm_limit.map(|n| n.to_string())),
        ("tpm_limit", key.tpm_limit.map(|n| n.to_string())),
        (
            "max_parallel_requests",
            key.max_parallel_requests.map(|n| n.to_string()),
        ),
        (
            "max_budget",
            key.max_budget.as_ref().map(|d| format!("${d}")),
        ),
        (
            "budget_duration",
            key.budget_duration.map(crate::config::duration::format),
        ),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            let _ = write!(line, ", {name} {value}");
        }
    }
    line
}

/// Every setting that was given, as `(key path, value)`.
fn settings(config: &Config) -> Vec<(String, String)> {
    let router = &config.router_settings;
    let litellm = &config.litellm_settings;
    let general = &config.general_settings;
    let tollgate = &config.tollgate;
    let mut rows = vec![(
        "router_settings.routing_strategy".to_owned(),
        router.routing_strategy.to_string(),
    )];
    let mut add = |key: &str, value: Option<String>| {
        if let Some(value) = value {
            rows.push((key.to_owned(), value));
        }
    };
    add(
        "router_settings.num_retries",
        router.num_retries.map(|n| n.to_string()),
    );
    for key in super::model::RetryPolicy::KEYS {
        let path = format!("router_settings.retry_policy.{key}");
        add(&path, router.retry_policy.get(key).map(|n| n.to_string()));
    }
    add(
        "router_settings.retry_after",
        router.retry_after.map(seconds),
    );
    add(
        "router_settings.allowed_fails",
        router.allowed_fails.map(|n| n.to_string()),
    );
    add(
        "router_settings.cooldown_time",
        router.cooldown_time.map(seconds),
    );
    add("router_settings.timeout", router.timeout.map(seconds));
    add(
        "router_settings.max_fallbacks",
        router.max_fallbacks.map(|n| n.to_string()),
    );
    add("router_settings.redis_host", router.redis_host.clone());
    add(
        "router_settings.redis_port",
        router.redis_port.map(|n| n.to_string()),
    );
    add(
        "router_settings.redis_password",
        router.redis_password.as_ref().map(secret),
    );
    add(
        "litellm_settings.num_retries",
        litellm.num_retries.map(|n| n.to_string()),
    );
    add(
        "litellm_settings.request_timeout",
        litellm.request_timeout.map(seconds),
    );
    add(
        "litellm_settings.drop_params",
        litellm.drop_params.map(|b| b.to_string()),
    );
    add(
        "general_settings.master_key",
        general.master_key.as_ref().map(secret),
    );
    add(
        "general_settings.max_request_size_mb",
        general.max_request_size_mb.map(|n| n.to_string()),
    );
    add(
        "tollgate.connect_timeout",
        tollgate.connect_timeout.map(seconds),
    );
    add(
        "tollgate.stream_idle_timeout",
        tollgate.stream_idle_timeout.map(seconds),
    );
    add(
        "tollgate.stream_head_timeout",
        tollgate.stream_head_timeout.map(seconds),
    );
    add(
        "tollgate.request_deadline",
        tollgate.request_deadline.map(seconds),
    );
    add(
        "tollgate.shutdown_grace_period",
        tollgate.shutdown_grace_period.map(seconds),
    );
    add(
        "tollgate.request_body_timeout",
        tollgate.request_body_timeout.map(seconds),
    );
    add(
        "tollgate.request_body_idle_timeout",
        tollgate.request_body_idle_timeout.map(seconds),
    );
    add(
        "tollgate.request_body_memory_mb",
        tollgate.request_body_memory_mb.map(|n| n.to_string()),
    );
    add(
        "tollgate.max_connections",
        tollgate.max_connections.map(|n| n.to_string()),
    );
    add(
        "tollgate.connection_idle_timeout",
        tollgate.connection_idle_timeout.map(seconds),
    );
    add(
        "tollgate.header_read_timeout",
        tollgate.header_read_timeout.map(seconds),
    );
    add(
        "tollgate.http2_keepalive_interval",
        tollgate.http2_keepalive_interval.map(seconds),
    );
    add(
        "tollgate.http2_keepalive_timeout",
        tollgate.http2_keepalive_timeout.map(seconds),
    );
    add(
        "tollgate.ledger_path",
        tollgate
            .ledger_path
            .as_ref()
            .map(|p| p.display().to_string()),
    );
    add(
        "tollgate.ledger_flush_interval",
        tollgate.ledger_flush_interval.map(seconds),
    );
    add(
        "tollgate.redis_timeout",
        tollgate.redis_timeout.map(seconds),
    );
    add(
        "tollgate.learn_stream_deadlines",
        tollgate.learn_stream_deadlines.map(|b| b.to_string()),
    );
    add(
        "tollgate.hedge_streams",
        (!tollgate.hedge_streams.is_empty()).then(|| tollgate.hedge_streams.join(", ")),
    );
    rows
}

fn seconds(duration: Duration) -> String {
    format!("{}s", duration.as_secs_f64())
}

fn secret(secret: &Secret) -> String {
    match secret.source() {
        KeySource::Env(var) => format!("set (env {var})"),
        KeySource::Inline => "set (config)".to_owned(),
        KeySource::None => "none".to_owned(),
    }
}
