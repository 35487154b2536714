//! How long an attempt and a whole request may take.
//!
//! LiteLLM's `timeout` and `stream_timeout` bound **one attempt**, as LiteLLM
//! users read them; a separate deadline bounds the whole request, retries and
//! fallbacks together, so a silent first attempt leaves time for the next
//! target instead of spending all of it.
//!
//! | deadline | setting | default |
//! |---|---|---|
//! | one attempt, whole | `timeout` (deployment, router), `litellm_settings.request_timeout` | 600 s |
//! | a stream's response head | `tollgate.stream_head_timeout` (never above the first-token limit) | 10 s; 30 s for a reasoning model |
//! | a stream's first token | `stream_timeout` (deployment) | 15 s; 120 s for a reasoning model |
//! | silence between two chunks | `tollgate.stream_idle_timeout` | 15 s; 60 s for a reasoning model |
//! | the whole request | `tollgate.request_deadline`, shortened by the client's `x-tollgate-timeout` | the sum of the attempts' budgets (below), at most 600 s or one attempt's timeout if longer |
//!
//! The stream defaults are chosen for an interactive user, who gives up
//! long before a provider would; a reasoning model (`model_info.
//! supports_reasoning: true`) thinks before it answers and gets longer ones.
//!
//! The default request deadline is one attempt's timeout (the longest of any
//! deployment) times the attempts a request may make: `1 + num_retries` in
//! each of `1 + n` groups, `n` the longest fallback list (at most
//! `max_fallbacks`).

use std::time::Duration;

use http::HeaderMap;
use tollgate_core::{ErrorClass, Failure};

use crate::config::{Config, DeploymentConfig};

/// The deadlines of one upstream exchange. `None` means no deadline of that
/// kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// From sending the request to receiving the response headers.
    pub first_byte: Option<Duration>,
    /// The longest silence between two body frames.
    pub stream_idle: Option<Duration>,
    /// For a stream, from sending the request to its first `data:` event
    /// (`stream_timeout`): keep-alive comments do not count.
    pub first_token: Option<Duration>,
    /// From sending the request to the end of the response body.
    pub total: Option<Duration>,
}

/// Default deadline of one attempt (`timeout`, `request_timeout`); the
/// whole request's, retries and fallbacks included, is set apart (see the
/// module's docs).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// Default deadline for the first token of a stream (`stream_timeout`), for
/// an interactive user.
pub const DEFAULT_STREAM_TIMEOUT: Duration = Duration::from_secs(15);
/// Default longest silence inside a stream (`tollgate.stream_idle_timeout`).
pub const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(15);

/// Default deadline for a stream's response head.
pub const DEFAULT_STREAM_HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// A reasoning model's default deadline for a stream's response head.
pub const REASONING_STREAM_HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// A reasoning model's default deadline for a stream's first token.
pub const REASONING_STREAM_TIMEOUT: Duration = Duration::from_secs(120);
/// A reasoning model's default longest silence inside a stream.
pub const REASONING_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The most the default request deadline grows to (unless one attempt's
/// timeout is longer).
pub const REQUEST_DEADLINE_CAP: Duration = Duration::from_secs(600);
/// The header a client shortens its request's deadline with, in seconds.
pub const CLIENT_DEADLINE_HEADER: &str = "x-tollgate-timeout";

/// The longest silence inside a non-streaming answer's body, unless
/// `tollgate.stream_idle_timeout` says otherwise: its head came when the
/// whole answer was ready, so the body follows at once.
const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// One attempt's timeout on `deployment`.
fn attempt_timeout(config: &Config, deployment: &DeploymentConfig) -> Duration {
    deployment
        .timeout
        .or(config.request_timeout())
        .unwrap_or(DEFAULT_TIMEOUT)
}

/// The deadlines of one attempt on `deployment`: for a plain request, and
/// for a stream.
pub(crate) fn attempt_timeouts(
    config: &Config,
    deployment: &DeploymentConfig,
) -> (Timeouts, Timeouts) {
    let total = attempt_timeout(config, deployment);
    let idle_setting = config.tollgate.stream_idle_timeout;
    // A non-streaming answer's headers come when the whole answer is ready,
    // so only the attempt's timeout applies to them.
    let plain = Timeouts {
        first_byte: Some(total),
        stream_idle: Some(idle_setting.unwrap_or(BODY_IDLE_TIMEOUT)),
        first_token: None,
        total: Some(total),
    };
    let reasoning = deployment.supports_reasoning == Some(true);
    let (head, first_token, idle) = if reasoning {
        (
            REASONING_STREAM_HEAD_TIMEOUT,
            REASONING_STREAM_TIMEOUT,
            REASONING_STREAM_IDLE_TIMEOUT,
        )
    } else {
        (
            DEFAULT_STREAM_HEAD_TIMEOUT,
            DEFAULT_STREAM_TIMEOUT,
            DEFAULT_STREAM_IDLE_TIMEOUT,
        )
    };
    // A stream must start answering — headers, then its first `data:` event
    // — long before the provider would give up.
    let first_token = deployment.stream_timeout.unwrap_or(first_token).min(total);
    let head = config
        .tollgate
        .stream_head_timeout
        .unwrap_or(head)
        .min(first_token);
    let stream = Timeouts {
        first_byte: Some(head),
        stream_idle: Some(idle_setting.unwrap_or(idle)),
        first_token: Some(first_token),
        total: Some(total),
    };
    (plain, stream)
}

/// The deadline of a whole request: `tollgate.request_deadline`, else the
/// sum of the budgets of the attempts it may make, capped.
pub(crate) fn request_deadline(config: &Config) -> Duration {
    if let Some(deadline) = config.tollgate.request_deadline {
        return deadline;
    }
    let attempt = config
        .model_list
        .iter()
        .map(|deployment| attempt_timeout(config, deployment))
        .max()
        .unwrap_or(DEFAULT_TIMEOUT);
    let per_group = config
        .num_retries()
        .unwrap_or(tollgate_retry::RetryConfig::default().num_retries)
        .saturating_add(1);
    let max_fallbacks = config
        .router_settings
        .max_fallbacks
        .unwrap_or(tollgate_fallback::FallbackConfig::default().max_fallbacks);
    let longest = [
        config.fallbacks(),
        config.context_window_fallbacks(),
        config.content_policy_fallbacks(),
    ]
    .iter()
    .flat_map(|lists| lists.iter().map(|(_, to)| to.len()))
    .chain([config.default_fallbacks().len()])
    .max()
    .unwrap_or(0);
    let groups = u32::try_from(longest.min(max_fallbacks as usize))
        .unwrap_or(u32::MAX)
        .saturating_add(1);
    attempt
        .saturating_mul(per_group)
        .saturating_mul(groups)
        .min(REQUEST_DEADLINE_CAP.max(attempt))
}

/// The deadline a client asks for with `x-tollgate-timeout: <seconds>`, if
/// it does; it may only shorten the gateway's own.
pub(crate) fn client_deadline(headers: &HeaderMap) -> Result<Option<Duration>, Failure> {
    let Some(value) = headers.get(CLIENT_DEADLINE_HEADER) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|text| text.trim().parse::<f64>().ok())
        .filter(|seconds| *seconds > 0.0)
        .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
        .map(Some)
        .ok_or_else(|| {
            Failure::new(
                ErrorClass::BadRequest,
                "x-tollgate-timeout must be a positive number of seconds",
            )
            .with_param(CLIENT_DEADLINE_HEADER)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> Config {
        crate::config::load_str(yaml, &|_| None).unwrap().config
    }

    const GROUPS: &str = "model_list:\n  - model_name: a\n    litellm_params:\n      model: mock/a\n  - model_name: b\n    litellm_params:\n      model: mock/b\n";

    #[test]
    fn the_request_deadline_covers_every_attempt_it_may_make() {
        let litellm = config(&format!(
            "{GROUPS}router_settings:\n  num_retries: 2\n  timeout: 30\n  fallbacks:\n    - a: [\"b\"]\n"
        ));
        // 3 attempts in each of 2 groups.
        assert_eq!(request_deadline(&litellm), Duration::from_secs(180));
        // No timeout: one attempt's default is already the cap.
        assert_eq!(request_deadline(&config(GROUPS)), REQUEST_DEADLINE_CAP);
        let set = config(&format!(
            "{GROUPS}router_settings:\n  timeout: 30\ntollgate:\n  request_deadline: 45\n"
        ));
        assert_eq!(request_deadline(&set), Duration::from_secs(45));
        let long = config(&format!("{GROUPS}router_settings:\n  timeout: 900\n"));
        assert_eq!(request_deadline(&long), Duration::from_secs(900));
    }

    #[test]
    fn streams_get_interactive_cold_deadlines_and_reasoning_models_longer_ones() {
        let yaml = "model_list:\n  - model_name: a\n    litellm_params:\n      model: mock/a\n  - model_name: r\n    litellm_params:\n      model: mock/r\n    model_info:\n      supports_reasoning: true\n  - model_name: s\n    litellm_params:\n      model: mock/s\n      stream_timeout: 40\n      timeout: 30\n";
        let config = config(yaml);
        let [plain, reasoning, set] =
            [0, 1, 2].map(|i| attempt_timeouts(&config, &config.model_list[i]).1);
        let secs = Duration::from_secs;
        assert_eq!(plain.first_byte, Some(secs(10)));
        assert_eq!(plain.first_token, Some(secs(15)));
        assert_eq!(plain.stream_idle, Some(secs(15)));
        assert_eq!(reasoning.first_byte, Some(secs(30)));
        assert_eq!(reasoning.first_token, Some(secs(120)));
        assert_eq!(reasoning.stream_idle, Some(secs(60)));
        // `stream_timeout` is the first-token limit, within the attempt's.
        assert_eq!(set.first_token, Some(secs(30)));
        assert_eq!(set.total, Some(secs(30)));
    }

    #[test]
    fn the_client_deadline_header_is_a_positive_number_of_seconds() {
        let mut headers = HeaderMap::new();
        assert_eq!(client_deadline(&headers).unwrap(), None);
        headers.insert(CLIENT_DEADLINE_HEADER, "2.5".parse().unwrap());
        assert_eq!(
            client_deadline(&headers).unwrap(),
            Some(Duration::from_millis(2500))
        );
        for bad in ["0", "-1", "soon", "inf", "NaN"] {
            headers.insert(CLIENT_DEADLINE_HEADER, bad.parse().unwrap());
            let failure = client_deadline(&headers).unwrap_err();
            assert_eq!(failure.class(), ErrorClass::BadRequest, "{bad}");
        }
    }
}
