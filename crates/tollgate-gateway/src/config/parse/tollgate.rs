//! `tollgate`: the settings LiteLLM has no key for, including mock deployments' faults.

use super::Cx;
use crate::config::error::{ConfigError, index_path, key_path};
use crate::config::keys::Section;
use crate::config::mock::{MockFault, MockSettings};
use crate::config::model::{ConfiguredKey, DeploymentConfig, TollgateSettings};
use crate::config::provider::Provider;
use crate::config::yaml::Node;

pub(super) fn tollgate(
    cx: &mut Cx<'_>,
    node: &Node,
    deployments: &[DeploymentConfig],
) -> Result<TollgateSettings, ConfigError> {
    const PATH: &str = "tollgate";
    let mut out = TollgateSettings::default();
    for (key, value) in cx.entries(node, PATH)? {
        let path = key_path(PATH, key);
        match key {
            "connect_timeout" => out.connect_timeout = cx.duration(value, &path, true)?,
            // Read before the model list (bare names resolve through it).
            "model_prices_path" => out.model_prices_path = cx.string(value, &path)?.map(Into::into),
            "stream_idle_timeout" => out.stream_idle_timeout = cx.duration(value, &path, true)?,
            "stream_head_timeout" => out.stream_head_timeout = cx.duration(value, &path, true)?,
            "request_deadline" => out.request_deadline = cx.duration(value, &path, true)?,
            "shutdown_grace_period" => {
                out.shutdown_grace_period = cx.duration(value, &path, false)?;
            }
            "request_body_timeout" => {
                out.request_body_timeout = cx.duration(value, &path, true)?;
            }
            "request_body_idle_timeout" => {
                out.request_body_idle_timeout = cx.duration(value, &path, true)?;
            }
            "request_body_memory_mb" => {
                let size = cx.number(value, &path, "a number of megabytes")?;
                if size.is_some_and(|size| size <= 0.0) {
                    return Err(ConfigError::invalid(&path, "must be more than 0"));
                }
                out.request_body_memory_mb = size;
            }
            "max_connections" => {
                out.max_connections = match cx.u32(value, &path)? {
                    Some(0) => {
                        return Err(ConfigError::invalid(
                            &path,
                            "must be at least 1 (it caps the client connections served at once)",
                        ));
                    }
                    max => max.map(|max| usize::try_from(max).unwrap_or(usize::MAX)),
                }
            }
            "connection_idle_timeout" => {
                out.connection_idle_timeout = cx.duration(value, &path, true)?;
            }
            "header_read_timeout" => out.header_read_timeout = cx.duration(value, &path, true)?,
            "http2_keepalive_interval" => {
                out.http2_keepalive_interval = cx.duration(value, &path, false)?;
            }
            "http2_keepalive_timeout" => {
                out.http2_keepalive_timeout = cx.duration(value, &path, true)?;
            }
            "ledger_path" => {
                out.ledger_path = cx.string(value, &path)?.map(std::path::PathBuf::from);
            }
            "ledger_flush_interval" => {
                out.ledger_flush_interval = cx.duration(value, &path, false)?;
            }
            "redis_timeout" => out.redis_timeout = cx.duration(value, &path, true)?,
            "learn_stream_deadlines" => out.learn_stream_deadlines = cx.bool(value, &path)?,
            "hedge_streams" => out.hedge_streams = cx.groups(value, &path, false)?,
            "mock" => {
                for (id, settings) in cx.entries(value, &path)? {
                    let mock_path = key_path(&path, id);
                    match deployments.iter().find(|deployment| deployment.id == id) {
                        Some(deployment) if deployment.provider == Provider::Mock => {}
                        Some(deployment) => {
                            return Err(ConfigError::invalid(
                                &mock_path,
                                format!(
                                    "deployment {id:?} uses the {} provider; \
                                     mock settings apply to mock/ deployments only",
                                    deployment.provider
                                ),
                            ));
                        }
                        None => {
                            let ids: Vec<&str> = deployments
                                .iter()
                                .filter(|deployment| deployment.provider == Provider::Mock)
                                .map(|deployment| deployment.id.as_str())
                                .collect();
                            return Err(ConfigError::invalid(
                                &mock_path,
                                format!(
                                    "no deployment with id {id:?}; mock deployments: {}",
                                    if ids.is_empty() {
                                        "none".to_owned()
                                    } else {
                                        ids.join(", ")
                                    }
                                ),
                            ));
                        }
                    }
                    let settings = mock_settings(cx, settings, &mock_path)?;
                    out.mock.insert(id.to_owned(), settings);
                }
            }
            "keys" => {
                for (i, entry) in cx.items(value, &path)?.iter().enumerate() {
                    let entry_path = index_path(&path, i);
                    let configured = configured_key(cx, entry, &entry_path)?;
                    if let Some(first) = out
                        .keys
                        .iter()
                        .position(|other| other.key_alias == configured.key_alias)
                    {
                        return Err(ConfigError::invalid(
                            &key_path(&entry_path, "key_alias"),
                            format!(
                                "{:?} is already the alias of {}",
                                configured.key_alias,
                                index_path(&path, first)
                            ),
                        ));
                    }
                    out.keys.push(configured);
                }
            }
            _ => cx.warn_key(Section::Tollgate, key, &path),
        }
    }
    Ok(out)
}

/// One entry of `tollgate.keys`: a virtual key defined in the file.
fn configured_key(cx: &mut Cx<'_>, node: &Node, path: &str) -> Result<ConfiguredKey, ConfigError> {
    if !matches!(node, Node::Map(_)) {
        return Err(ConfigError::invalid(
            path,
            format!(
                "expected a mapping such as `{{ key: os.environ/TEAM_KEY, key_alias: team }}`, found {}",
                node.kind()
            ),
        ));
    }
    let mut out = ConfiguredKey::default();
    let mut alias = None;
    for (key, value) in cx.entries(node, path)? {
        let key_path = key_path(path, key);
        match key {
            "key" => out.key = cx.secret(value, &key_path)?,
            "key_hash" => {
                if let Some(text) = cx.text(value, &key_path)? {
                    let hash = crate::key_format::from_hex(text.value.trim()).ok_or_else(|| {
                        ConfigError::invalid(
                            &key_path,
                            format!(
                                "expected the SHA-256 of the key as 64 hex digits, found {}",
                                text.shown()
                            ),
                        )
                    })?;
                    out.key_hash = Some(hash);
                }
            }
            "key_alias" => {
                if let Some(text) = cx.string(value, &key_path)? {
                    crate::key_format::check_alias(&text)
                        .map_err(|why| ConfigError::invalid(&key_path, why))?;
                    alias = Some(text);
                }
            }
            "models" => out.models = cx.groups(value, &key_path, true)?,
            "rpm_limit" => out.rpm_limit = cx.u32(value, &key_path)?,
            "tpm_limit" => out.tpm_limit = cx.u64(value, &key_path)?,
            "max_parallel_requests" => out.max_parallel_requests = cx.u32(value, &key_path)?,
            "max_budget" => out.max_budget = cx.budget(value, &key_path)?,
            "budget_duration" => {
                if let Some(text) = cx.text(value, &key_path)? {
                    let duration =
                        crate::config::duration::parse(&text.value).map_err(|error| {
                            ConfigError::invalid(
                                &key_path,
                                format!("{error}, found {}", text.shown()),
                            )
                        })?;
                    out.budget_duration = Some(duration);
                }
            }
            _ => cx.warn_key(Section::Key, key, &key_path),
        }
    }
    match (&out.key, &out.key_hash) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::invalid(path, "give key or key_hash, not both"));
        }
        (None, None) => {
            return Err(ConfigError::invalid(
                &key_path(path, "key"),
                "missing: the key (e.g. os.environ/TEAM_KEY), or its SHA-256 as key_hash",
            ));
        }
        (Some(secret), None) if secret.expose().is_empty() => {
            return Err(ConfigError::invalid(
                &key_path(path, "key"),
                "must not be empty",
            ));
        }
        _ => {}
    }
    out.key_alias = alias.ok_or_else(|| {
        ConfigError::invalid(
            &key_path(path, "key_alias"),
            "missing: a name for the key in logs, metrics and the ledger",
        )
    })?;
    Ok(out)
}

fn mock_settings(cx: &mut Cx<'_>, node: &Node, path: &str) -> Result<MockSettings, ConfigError> {
    let mut out = MockSettings::default();
    for (key, value) in cx.entries(node, path)? {
        let key_path = key_path(path, key);
        match key {
            "latency_ms" => out.latency_ms = cx.u64(value, &key_path)?.unwrap_or(0),
            "chunk_delay_ms" => out.chunk_delay_ms = cx.u64(value, &key_path)?.unwrap_or(0),
            "fault" => out.fault = mock_fault(cx, value, &key_path)?,
            "fail_every" => {
                out.fail_every = match cx.u32(value, &key_path)? {
                    Some(0) => {
                        return Err(ConfigError::invalid(
                            &key_path,
                            "must be at least 1 (1 injects the fault on every request)",
                        ));
                    }
                    every => every.unwrap_or(1),
                }
            }
            _ => cx.warn_key(Section::Mock, key, &key_path),
        }
    }
    Ok(out)
}

fn mock_fault(cx: &mut Cx<'_>, node: &Node, path: &str) -> Result<Option<MockFault>, ConfigError> {
    if matches!(node, Node::Null) {
        return Ok(None);
    }
    let (mut kind, mut status, mut after_chunks) = (None, None, None);
    for (key, value) in cx.entries(node, path)? {
        let key_path = key_path(path, key);
        match key {
            "kind" => kind = cx.text(value, &key_path)?,
            "status" => status = Some((cx.whole(value, &key_path, 999)?, key_path)),
            "after_chunks" => after_chunks = Some((cx.u32(value, &key_path)?, key_path)),
            _ => cx.warn_key(Section::MockFault, key, &key_path),
        }
    }
    let kind_path = key_path(path, "kind");
    let kinds = MockFault::KINDS.join(", ");
    let Some(kind) = kind else {
        return Err(ConfigError::invalid(
            &kind_path,
            format!("missing: one of {kinds}"),
        ));
    };
    let after = after_chunks.as_ref().and_then(|(n, _)| *n).unwrap_or(0);
    let fault = match kind.value.trim() {
        "error_status" => {
            let status = match &status {
                Some((Some(status), status_path)) => {
                    if !(400..=599).contains(status) {
                        return Err(ConfigError::invalid(
                            status_path,
                            "must be an HTTP error status from 400 to 599",
                        ));
                    }
                    // In range, so it fits.
                    u16::try_from(*status).unwrap_or(500)
                }
                _ => {
                    return Err(ConfigError::invalid(
                        &key_path(path, "status"),
                        "missing: the HTTP status to answer with, e.g. 503",
                    ));
                }
            };
            if let Some((_, after_path)) = &after_chunks {
                cx.warn(after_path, "not used by kind error_status, ignored");
            }
            MockFault::ErrorStatus { status }
        }
        other => {
            let fault = match other {
                "stream_error" => MockFault::StreamError {
                    after_chunks: after,
                },
                "stall" => MockFault::Stall {
                    after_chunks: after,
                },
                "cut" => MockFault::Cut {
                    after_chunks: after,
                },
                _ => {
                    return Err(ConfigError::invalid(
                        &kind_path,
                        format!(
                            "unknown fault kind {}; expected one of {kinds}",
                            kind.shown()
                        ),
                    ));
                }
            };
            if let Some((_, status_path)) = &status {
                cx.warn(status_path, format!("not used by kind {other}, ignored"));
            }
            fault
        }
    };
    Ok(Some(fault))
}
