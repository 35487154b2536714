//! Which keys Tollgate reads, which LiteLLM keys it knowingly ignores, and the
//! warning for every other key.
//!
//! A LiteLLM user's file must load as it is, so no key is ever an error here: a key is
//! either used, a LiteLLM setting Tollgate does not act on (yet), a known key in the
//! wrong place, or unknown (usually a typo, which is why it is worth a warning).

use super::error::Warning;
use super::native::NativeParams;

/// A mapping whose keys the loader knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    Root,
    Deployment,
    LitellmParams,
    ModelInfo,
    RouterSettings,
    LitellmSettings,
    GeneralSettings,
    Tollgate,
    Mock,
    MockFault,
    Key,
}

/// Sections of the file's top level; a key misplaced among them is looked up here first.
const TOP: [Section; 5] = [
    Section::Root,
    Section::RouterSettings,
    Section::LitellmSettings,
    Section::GeneralSettings,
    Section::Tollgate,
];

/// Sections of one `model_list` entry.
const DEPLOYMENT: [Section; 3] = [
    Section::Deployment,
    Section::LitellmParams,
    Section::ModelInfo,
];

const COSTS: [&str; 5] = [
    "input_cost_per_token",
    "output_cost_per_token",
    "cache_read_input_token_cost",
    "cache_creation_input_token_cost",
    "output_cost_per_reasoning_token",
];

/// The `litellm_params` keys Tollgate reads: the deployment's own, the
/// native providers' ([`NativeParams::KEYS`], listed once, where they are
/// read) and LiteLLM's "custom pricing" ([`COSTS`], which it puts here too).
const LITELLM_PARAMS: [&str; 15 + NativeParams::KEYS.len() + COSTS.len()] = concat(&[
    &[
        "model",
        "api_base",
        "api_key",
        "custom_llm_provider",
        "timeout",
        "stream_timeout",
        "cooldown_time",
        "rpm",
        "tpm",
        "weight",
        "order",
        "mock_response",
        "extra_headers",
    ],
    &NativeParams::KEYS,
    // LiteLLM's spellings of the Vertex AI project and location.
    &["vertex_ai_project", "vertex_ai_location"],
    &COSTS,
]);

/// `parts` one after the other, at compile time (`N` must be their total
/// length: a wrong `N` fails the build).
const fn concat<const N: usize>(parts: &[&[&'static str]]) -> [&'static str; N] {
    let mut out = [""; N];
    let (mut part, mut at) = (0, 0);
    while part < parts.len() {
        let mut i = 0;
        while i < parts[part].len() {
            out[at] = parts[part][i];
            (i, at) = (i + 1, at + 1);
        }
        part += 1;
    }
    assert!(at == N, "N must be the total length of the parts");
    out
}

impl Section {
    /// How a warning names the section a key belongs to.
    fn name(self) -> &'static str {
        match self {
            Section::Root => "the top level",
            Section::Deployment => "a model_list entry",
            Section::LitellmParams => "litellm_params",
            Section::ModelInfo => "model_info",
            Section::RouterSettings => "router_settings",
            Section::LitellmSettings => "litellm_settings",
            Section::GeneralSettings => "general_settings",
            Section::Tollgate => "tollgate",
            Section::Mock => "tollgate.mock.<deployment id>",
            Section::MockFault => "a mock fault",
            Section::Key => "a tollgate.keys entry",
        }
    }

    /// Keys Tollgate reads in this section.
    pub(crate) fn used(self) -> &'static [&'static str] {
        match self {
            Section::Root => &[
                "model_list",
                "router_settings",
                "litellm_settings",
                "general_settings",
                "tollgate",
                "environment_variables",
            ],
            Section::Deployment => &["model_name", "litellm_params", "model_info"],
            Section::LitellmParams => &LITELLM_PARAMS,
            Section::ModelInfo => &[
                "id",
                "mode",
                "base_model",
                "max_tokens",
                "supports_assistant_prefill",
                "supports_reasoning",
                COSTS[0],
                COSTS[1],
                COSTS[2],
                COSTS[3],
                COSTS[4],
            ],
            Section::RouterSettings => &[
                "routing_strategy",
                "num_retries",
                "retry_policy",
                "retry_after",
                "allowed_fails",
                "cooldown_time",
                "fallbacks",
                "context_window_fallbacks",
                "content_policy_fallbacks",
                "default_fallbacks",
                "timeout",
                "max_fallbacks",
                "model_group_alias",
                "redis_host",
                "redis_port",
                "redis_password",
            ],
            Section::LitellmSettings => &[
                "num_retries",
                "request_timeout",
                "fallbacks",
                "context_window_fallbacks",
                "content_policy_fallbacks",
                "default_fallbacks",
                "drop_params",
                "allowed_fails",
                "cooldown_time",
                "max_end_user_budget",
            ],
            Section::GeneralSettings => &["master_key", "max_request_size_mb"],
            Section::Tollgate => &[
                "connect_timeout",
                "stream_idle_timeout",
                "stream_head_timeout",
                "request_deadline",
                "shutdown_grace_period",
                "request_body_timeout",
                "request_body_idle_timeout",
                "request_body_memory_mb",
                "max_connections",
                "connection_idle_timeout",
                "header_read_timeout",
                "http2_keepalive_interval",
                "http2_keepalive_timeout",
                "ledger_path",
                "ledger_flush_interval",
                "redis_timeout",
                "learn_stream_deadlines",
                "hedge_streams",
                "model_prices_path",
                "mock",
                "keys",
            ],
            Section::Mock => &["latency_ms", "chunk_delay_ms", "fault", "fail_every"],
            Section::MockFault => &["kind", "status", "after_chunks"],
            Section::Key => &[
                "key",
                "key_hash",
                "key_alias",
                "models",
                "rpm_limit",
                "tpm_limit",
                "max_parallel_requests",
                "max_budget",
                "budget_duration",
            ],
        }
    }

    /// Keys LiteLLM reads in this section that Tollgate does not act on.
    pub(crate) fn ignored(self) -> &'static [&'static str] {
        match self {
            Section::Root => &[
                "include",
                "callback_settings",
                "guardrails",
                "credential_list",
                "mcp_servers",
                "mcp_aliases",
                "vector_store_registry",
                "files_settings",
                "finetune_settings",
                "assistant_settings",
                "search_tools",
                "prompts",
                "pass_through_endpoints",
            ],
            Section::Deployment => &[],
            Section::LitellmParams => &[
                "organization",
                "region_name",
                "aws_profile_name",
                "aws_role_name",
                "aws_session_name",
                "watsonx_region_name",
                "max_retries",
                "num_retries",
                "tags",
                "base_model",
                "input_cost_per_second",
                "output_cost_per_second",
                "litellm_credential_name",
                "drop_params",
                "additional_drop_params",
                "max_parallel_requests",
                "cooldown_time",
                "configurable_clientside_auth_params",
                "merge_reasoning_content_in_choices",
                "use_in_pass_through",
                "use_litellm_proxy",
                "headers",
                "stream",
                "temperature",
                "max_tokens",
                "max_completion_tokens",
                "top_p",
                "seed",
                "stop",
                "response_format",
                "tool_choice",
                "reasoning_effort",
                "auto_router_config",
                "litellm_trace_id",
            ],
            Section::ModelInfo => &[
                "max_input_tokens",
                "max_output_tokens",
                "description",
                "team_id",
                "team_public_model_name",
                "db_model",
                "access_groups",
                "access_via_team_ids",
                "direct_access",
                "tier",
                "health_check_model",
                "health_check_timeout",
                "litellm_provider",
                "input_cost_per_second",
                "output_cost_per_second",
                "input_cost_per_token_above_128k_tokens",
                "output_cost_per_token_above_128k_tokens",
                "input_cost_per_token_above_200k_tokens",
                "output_cost_per_token_above_200k_tokens",
                "supports_vision",
                "supports_function_calling",
                "supports_parallel_function_calling",
                "supports_tool_choice",
                "supports_response_schema",
                "supports_prompt_caching",
                "supports_system_messages",
                "supports_audio_input",
                "supports_audio_output",
                "supports_pdf_input",
                "supports_web_search",
                "use_in_pass_through",
                "created_at",
                "created_by",
                "updated_at",
                "updated_by",
            ],
            Section::RouterSettings => &[
                "routing_strategy_args",
                "model_group_retry_policy",
                "allowed_fails_policy",
                "enable_pre_call_checks",
                "optional_pre_call_checks",
                "redis_url",
                "cache_responses",
                "cache_kwargs",
                "caching_groups",
                "client_ttl",
                "polling_interval",
                "provider_budget_config",
                "enable_tag_filtering",
                "tag_filtering_match_any",
                "disable_cooldowns",
                "default_litellm_params",
                "default_max_parallel_requests",
                "default_priority",
                "stream_timeout",
                "set_verbose",
                "debug_level",
                "alerting_config",
                "assistants_config",
                "router_general_settings",
                "enable_health_check_routing",
            ],
            Section::LitellmSettings => &[
                "callbacks",
                "success_callback",
                "failure_callback",
                "service_callback",
                "input_callback",
                "logging_callback_settings",
                "cache",
                "cache_params",
                "set_verbose",
                "json_logs",
                "turn_off_message_logging",
                "redact_messages_in_exceptions",
                "redact_user_api_key_info",
                "max_budget",
                "budget_duration",
                "default_team_settings",
                "default_internal_user_params",
                "default_key_generate_params",
                "upperbound_key_generate_params",
                "key_generation_settings",
                "telemetry",
                "modify_params",
                "enable_preview_features",
                "ssl_verify",
                "force_ipv4",
                "disable_end_user_cost_tracking",
                "enable_json_schema_validation",
                "return_response_headers",
                "public_model_groups",
                "global_disable_no_log_param",
                "add_function_to_prompt",
                "model_alias_map",
                "forward_traceparent_to_llm_provider",
                "mcp_aliases",
                "enable_azure_ad_token_refresh",
                "drop_params_list",
            ],
            Section::GeneralSettings => &[
                "database_url",
                "database_connection_pool_limit",
                "database_connection_timeout",
                "allow_requests_on_db_unavailable",
                "store_model_in_db",
                "store_prompts_in_spend_logs",
                "disable_spend_logs",
                "disable_error_logs",
                "maximum_spend_logs_retention_period",
                "maximum_spend_logs_retention_interval",
                "alerting",
                "alerting_threshold",
                "alert_types",
                "alert_to_webhook_url",
                "alerting_args",
                "spend_report_frequency",
                "background_health_checks",
                "health_check_interval",
                "health_check_details",
                "disable_master_key_return",
                "custom_auth",
                "custom_auth_settings",
                "custom_key_generate",
                "max_parallel_requests",
                "global_max_parallel_requests",
                "infer_model_from_keys",
                "enforce_user_param",
                "proxy_batch_write_at",
                "max_response_size_mb",
                "public_routes",
                "admin_only_routes",
                "allowed_routes",
                "allowed_ips",
                "ui_access_mode",
                "disable_reset_budget",
                "use_redis_transaction_buffer",
                "otel",
                "proxy_budget_rescheduler_min_time",
                "proxy_budget_rescheduler_max_time",
                "key_management_system",
                "key_management_settings",
                "use_client_credentials_pass_through_routes",
                "pass_through_endpoints",
                "enable_jwt_auth",
                "litellm_jwtauth",
                "forward_openai_org_id",
                "forward_client_headers_to_llm_api",
                "user_header_name",
                "disable_retry_on_max_parallel_request_limit_error",
                "allow_user_auth",
                "enable_oauth2_auth",
                "service_account_settings",
                "reject_clientside_metadata_tags",
                "mcp_aliases",
            ],
            Section::Tollgate | Section::Mock | Section::MockFault | Section::Key => &[],
        }
    }

    /// The sections a misplaced key of this section is looked for in, nearest first.
    fn neighbours(self) -> (&'static [Section], &'static [Section]) {
        match self {
            Section::Deployment | Section::LitellmParams | Section::ModelInfo => {
                (&DEPLOYMENT, &TOP)
            }
            Section::Mock | Section::MockFault | Section::Key => (&[], &[]),
            _ => (&TOP, &DEPLOYMENT),
        }
    }
}

/// The warning for a key of `section` that the walk did not read, at `path`.
pub(crate) fn warning(section: Section, key: &str, path: &str) -> Warning {
    if section.ignored().contains(&key) {
        return Warning::new(path, "LiteLLM setting that Tollgate ignores");
    }
    let (near, far) = section.neighbours();
    for group in [near, far] {
        let homes: Vec<&str> = group
            .iter()
            .filter(|other| **other != section && other.used().contains(&key))
            .map(|other| other.name())
            .collect();
        if !homes.is_empty() {
            return Warning::new(
                path,
                format!(
                    "misplaced key, ignored here: it belongs under {}",
                    homes.join(" or ")
                ),
            );
        }
    }
    for group in [near, far] {
        if let Some(home) = group
            .iter()
            .find(|other| **other != section && other.ignored().contains(&key))
        {
            return Warning::new(
                path,
                format!(
                    "misplaced key, ignored: LiteLLM reads it under {}, and Tollgate ignores it",
                    home.name()
                ),
            );
        }
    }
    match suggestion(section, key) {
        Some(meant) => Warning::new(path, format!("unknown key, ignored; did you mean {meant}?")),
        None => Warning::new(path, "unknown key, ignored"),
    }
}

/// The key of `section` (read or ignored) a misspelled `key` most likely
/// meant: the nearest by edit distance, when it is near enough to be a typo
/// (`api_bse` → `api_base`, `temprature` → `temperature`).
fn suggestion(section: Section, key: &str) -> Option<&'static str> {
    let budget = (key.chars().count() / 4).clamp(1, 3);
    section
        .used()
        .iter()
        .chain(section.ignored())
        .map(|known| (edit_distance(key, known), *known))
        .filter(|(distance, _)| *distance <= budget)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, known)| known)
}

/// Levenshtein distance, over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb))
                .min(above + 1)
                .min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misspelled_keys_get_the_key_they_meant() {
        assert_eq!(
            suggestion(Section::LitellmParams, "api_bse"),
            Some("api_base")
        );
        assert_eq!(
            suggestion(Section::RouterSettings, "num_retires"),
            Some("num_retries")
        );
        assert_eq!(suggestion(Section::LitellmParams, "zzzzzz"), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
