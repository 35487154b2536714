//! The config loader against LiteLLM's `config.yaml` format: the shared samples, each
//! warning and error rule, secret redaction, and the check-config report.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use tollgate_gateway::config::{
    self, ConfigError, Decimal, KeySource, Loaded, MockFault, MockSettings, Provider,
    RoutingStrategy, Secret,
};

const MINIMAL: &str = include_str!("fixtures/litellm/minimal.yaml");
const REALISTIC: &str = include_str!("fixtures/litellm/realistic.yaml");

/// Values no output may ever contain.
const OPENROUTER_KEY: &str = "sk-or-v1-0123456789abcdef-OPENROUTER";
const OPENAI_KEY: &str = "sk-proj-OPENAI-abcdef0123456789";
const OPENAI_KEY_2: &str = "sk-proj-SECOND-abcdef0123456789";
const MASTER_KEY: &str = "sk-master-9f8e7d6c5b4a";
const REDIS_PASSWORD: &str = "redis-pass-0xDEADBEEF";
const DATABASE_URL: &str = "postgres://user:dbpass@db/litellm";
const SECRETS: [&str; 6] = [
    OPENROUTER_KEY,
    OPENAI_KEY,
    OPENAI_KEY_2,
    MASTER_KEY,
    REDIS_PASSWORD,
    "dbpass",
];

fn full_env() -> HashMap<String, String> {
    [
        ("OPENROUTER_API_KEY", OPENROUTER_KEY),
        ("OPENAI_API_KEY", OPENAI_KEY),
        ("OPENAI_API_KEY_2", OPENAI_KEY_2),
        ("LITELLM_MASTER_KEY", MASTER_KEY),
        ("REDIS_HOST", "redis.internal"),
        ("REDIS_PORT", "6379"),
        ("REDIS_PASSWORD", REDIS_PASSWORD),
        ("DATABASE_URL", DATABASE_URL),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn load_with(yaml: &str, env: &HashMap<String, String>) -> Result<Loaded, ConfigError> {
    config::load_str(yaml, &|var| env.get(var).cloned())
}

fn load(yaml: &str) -> Loaded {
    match load_with(yaml, &full_env()) {
        Ok(loaded) => loaded,
        Err(error) => panic!("config should load: {error}"),
    }
}

fn error(yaml: &str) -> ConfigError {
    error_with(yaml, &full_env())
}

fn error_with(yaml: &str, env: &HashMap<String, String>) -> ConfigError {
    match load_with(yaml, env) {
        Ok(loaded) => panic!("config should fail, loaded {:?}", loaded.config),
        Err(error) => {
            assert_no_secret(&error.to_string());
            assert_no_secret(&format!("{error:?}"));
            error
        }
    }
}

#[track_caller]
fn assert_invalid(error: &ConfigError, path: &str, needle: &str) {
    match error {
        ConfigError::Invalid { path: p, message } => {
            assert_eq!(p, path, "message: {message}");
            assert!(message.contains(needle), "{message:?} lacks {needle:?}");
        }
        other => panic!("expected Invalid at {path}, got {other}"),
    }
}

#[track_caller]
fn assert_no_secret(text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "leaked {secret:?} in {text}");
    }
}

fn warning_paths(loaded: &Loaded) -> Vec<&str> {
    loaded.warnings.iter().map(|w| w.path.as_str()).collect()
}

#[track_caller]
fn warning_for<'a>(loaded: &'a Loaded, path: &str) -> &'a str {
    match loaded.warnings.iter().find(|w| w.path == path) {
        Some(warning) => &warning.message,
        None => panic!("no warning for {path}; got {:?}", loaded.warnings),
    }
}

/// A one-model config with `extra` appended (sections at top level).
fn with(extra: &str) -> String {
    format!(
        "model_list:\n  - model_name: a\n    litellm_params:\n      model: openrouter/x/a:free\n      api_key: os.environ/OPENROUTER_API_KEY\n  - model_name: b\n    litellm_params:\n      model: openrouter/x/b:free\n      api_key: os.environ/OPENROUTER_API_KEY\n{extra}"
    )
}

/// A config with one deployment whose `litellm_params` get `params` (indented 6).
fn deployment(params: &str) -> String {
    format!("model_list:\n  - model_name: m\n    litellm_params:\n{params}")
}

// ---------------------------------------------------------------- shared samples

#[test]
fn minimal_sample_loads_without_warnings() {
    let loaded = load(MINIMAL);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let config = &loaded.config;
    assert_eq!(config.model_list.len(), 1);
    let d = &config.model_list[0];
    assert_eq!(d.id, "deepseek-chat/0");
    assert_eq!(d.model_name, "deepseek-chat");
    assert_eq!(d.provider, Provider::OpenRouter);
    assert_eq!(d.upstream_model, "deepseek/deepseek-chat:free");
    assert_eq!(d.api_key.as_ref().map(Secret::expose), Some(OPENROUTER_KEY));
    assert_eq!(
        d.api_key_source,
        KeySource::Env("OPENROUTER_API_KEY".into())
    );
    let master = config.general_settings.master_key.as_ref();
    assert_eq!(master.map(Secret::expose), Some(MASTER_KEY));
    assert_eq!(
        config.router_settings.routing_strategy,
        RoutingStrategy::SimpleShuffle
    );
}

#[test]
fn realistic_sample_loads_with_the_expected_warnings() {
    let loaded = load(REALISTIC);
    let mut paths = warning_paths(&loaded);
    paths.sort_unstable();
    assert_eq!(
        paths,
        [
            "general_settings.alerting",
            "general_settings.alerting_threshold",
            "general_settings.background_health_checks",
            "general_settings.database_url",
            "litellm_settings.callbacks",
        ]
    );
    for warning in &loaded.warnings {
        assert_eq!(warning.message, "LiteLLM setting that Tollgate ignores");
    }
    assert_eq!(
        loaded
            .warnings
            .iter()
            .find(|w| w.path == "general_settings.database_url")
            .map(ToString::to_string),
        Some("general_settings.database_url: LiteLLM setting that Tollgate ignores".to_owned())
    );

    let config = &loaded.config;
    let groups: Vec<(&str, Vec<&str>)> = config
        .groups()
        .map(|(name, ds)| (name, ds.iter().map(|d| d.id.as_str()).collect()))
        .collect();
    assert_eq!(
        groups,
        [
            ("deepseek-chat", vec!["or-deepseek-free"]),
            ("glm-4.5-air", vec!["glm-4.5-air/0"]),
            ("mistral-7b", vec!["mistral-7b/0"]),
            ("llama-3.2", vec!["llama-3.2/0"]),
            ("gpt-4o-mini", vec!["gpt-4o-mini/0", "gpt-4o-mini/1"]),
        ]
    );

    let primary = config.deployment("or-deepseek-free").expect("primary");
    assert_eq!(primary.timeout, Some(Duration::from_secs(60)));
    assert_eq!(primary.stream_timeout, Some(Duration::from_secs(15)));
    assert_eq!(primary.rpm, Some(20));
    assert_eq!(primary.max_tokens, Some(8000));
    assert_eq!(primary.costs.input_cost_per_token, Some(Decimal::zero()));
    assert_eq!(primary.costs.output_cost_per_token, Some(Decimal::zero()));
    assert_eq!(
        config
            .deployment("glm-4.5-air/0")
            .and_then(|d| d.max_tokens),
        Some(4096)
    );

    let paid: Vec<_> = config.group("gpt-4o-mini");
    assert_eq!(paid[0].provider, Provider::OpenAi);
    assert_eq!(paid[0].upstream_model, "gpt-4o-mini");
    assert_eq!(paid[0].weight, Some(2.0));
    assert_eq!(paid[1].weight, Some(1.0));
    assert_eq!(paid[0].api_base, None);
    assert_eq!(
        paid[1].api_base.as_deref(),
        Some("https://my-proxy.example.internal/v1")
    );
    assert_eq!(
        paid[1].api_key_source,
        KeySource::Env("OPENAI_API_KEY_2".into())
    );
    assert_eq!(
        paid[1].api_key.as_ref().map(Secret::expose),
        Some(OPENAI_KEY_2)
    );

    let router = &config.router_settings;
    assert_eq!(router.routing_strategy, RoutingStrategy::SimpleShuffle);
    assert_eq!(router.num_retries, Some(3));
    assert_eq!(router.retry_after, Some(Duration::from_secs(1)));
    assert_eq!(router.allowed_fails, Some(3));
    assert_eq!(router.cooldown_time, Some(Duration::from_secs(300)));
    assert_eq!(
        router.fallbacks,
        [(
            "deepseek-chat".to_owned(),
            vec![
                "glm-4.5-air".to_owned(),
                "mistral-7b".to_owned(),
                "llama-3.2".to_owned()
            ]
        )]
    );
    assert_eq!(
        router.context_window_fallbacks,
        [("llama-3.2".to_owned(), vec!["gpt-4o-mini".to_owned()])]
    );
    assert_eq!(router.retry_policy.authentication_error, Some(0));
    assert_eq!(router.retry_policy.bad_request_error, Some(0));
    assert_eq!(router.retry_policy.rate_limit_error, Some(2));
    assert_eq!(router.retry_policy.timeout_error, None);
    assert_eq!(router.redis_host.as_deref(), Some("redis.internal"));
    assert_eq!(router.redis_port, Some(6379));
    assert_eq!(
        router.redis_password.as_ref().map(Secret::expose),
        Some(REDIS_PASSWORD)
    );

    let litellm = &config.litellm_settings;
    assert_eq!(litellm.drop_params, Some(true));
    assert_eq!(litellm.request_timeout, Some(Duration::from_secs(60)));
    assert_eq!(config.fallbacks(), router.fallbacks.as_slice());
    assert_eq!(config.num_retries(), Some(3));

    assert_no_secret(&format!("{config:?}"));
    assert_no_secret(&format!("{loaded:?}"));
}

#[test]
fn realistic_sample_without_openrouter_key_disables_those_deployments_naming_the_variable() {
    let mut env = full_env();
    env.remove("OPENROUTER_API_KEY");
    // LiteLLM starts with such a file and fails on the first call; Tollgate
    // starts the deployments disabled and says why, up front.
    let loaded = load_with(REALISTIC, &env).expect("loads, with deployments disabled");
    let first = &loaded.config.model_list[0];
    assert_eq!(
        first.disabled.as_deref(),
        Some("api_key: environment variable OPENROUTER_API_KEY is not set")
    );
    assert_eq!(
        warning_for(&loaded, "model_list[0]"),
        "deployment disabled: api_key: environment variable OPENROUTER_API_KEY is not set"
    );
    // The OpenAI deployments, whose key is set, take traffic.
    assert!(
        loaded
            .config
            .group("gpt-4o-mini")
            .iter()
            .all(|d| d.disabled.is_none())
    );
}

#[test]
fn variables_under_ignored_keys_need_not_be_set() {
    let mut env = full_env();
    env.remove("DATABASE_URL");
    assert!(load_with(REALISTIC, &env).is_ok());
}

#[test]
fn load_reads_a_file() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/litellm");
    let loaded = config::load(&dir.join("mock-demo.yaml")).expect("mock demo loads");
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let config = &loaded.config;
    assert_eq!(config.model_list[0].id, "mock-primary");
    assert_eq!(config.model_list[1].id, "demo-backup/0");
    assert_eq!(
        config.model_list[1].mock_response.as_deref(),
        Some("Hello from the backup.")
    );
    assert_eq!(config.model_list[0].api_key_source, KeySource::None);
    assert_eq!(
        config.model_list[0]
            .costs
            .output_cost_per_token
            .as_ref()
            .map(Decimal::as_str),
        Some("0.00000052")
    );
    assert_eq!(
        config.tollgate.stream_idle_timeout,
        Some(Duration::from_millis(2500))
    );

    match config::load(&dir.join("no-such-file.yaml")) {
        Err(ConfigError::Io { path, .. }) => assert!(path.ends_with("no-such-file.yaml")),
        other => panic!("expected Io error, got {other:?}"),
    }
}

// ---------------------------------------------------------------- environment

#[test]
fn both_reference_spellings_resolve_at_any_depth() {
    let yaml = with(
        "router_settings:\n  redis_host: env/REDIS_HOST\n  redis_port: os.environ/REDIS_PORT\n  num_retries: env/RETRIES\n  default_fallbacks: [env/FALLBACK]\n  fallbacks:\n    - a: [os.environ/FALLBACK]\n",
    );
    let mut env = full_env();
    env.insert("RETRIES".into(), "4".into());
    env.insert("FALLBACK".into(), "b".into());
    let loaded = load_with(&yaml, &env).expect("loads");
    let router = &loaded.config.router_settings;
    assert_eq!(router.redis_host.as_deref(), Some("redis.internal"));
    assert_eq!(router.redis_port, Some(6379));
    assert_eq!(router.num_retries, Some(4));
    assert_eq!(router.default_fallbacks, ["b"]);
    assert_eq!(router.fallbacks, [("a".to_owned(), vec!["b".to_owned()])]);
}

#[test]
fn missing_variable_deep_in_a_list_names_its_path() {
    let yaml = with("router_settings:\n  fallbacks:\n    - a: [b, os.environ/NOPE]\n");
    match error(&yaml) {
        ConfigError::MissingEnv { var, path } => {
            assert_eq!(var, "NOPE");
            assert_eq!(path, "router_settings.fallbacks[0].a[1]");
        }
        other => panic!("expected MissingEnv, got {other}"),
    }
}

#[test]
fn a_variable_that_is_not_a_number_is_named_not_printed() {
    let yaml = with("router_settings:\n  redis_port: os.environ/REDIS_PASSWORD\n");
    let error = error(&yaml);
    assert_invalid(&error, "router_settings.redis_port", "REDIS_PASSWORD");
    assert!(!error.to_string().contains(REDIS_PASSWORD));
}

/// A model read from the environment that the loader cannot place (the
/// config fuzz target found a key reaching this message): the error names
/// the variable, with or without something that looks like a prefix.
#[test]
fn a_model_from_the_environment_is_named_not_printed() {
    for (var, value) in [
        ("MODEL_A", "sk-model-secret-77aa"),
        ("MODEL_B", "sk-bad/secret-88bb"),
    ] {
        let mut env = full_env();
        env.insert(var.to_owned(), value.to_owned());
        let yaml = format!(
            "model_list:\n  - model_name: m\n    litellm_params:\n      model: os.environ/{var}\n"
        );
        let error = error_with(&yaml, &env);
        assert_invalid(&error, "model_list[0].litellm_params.model", var);
        assert!(!format!("{error} {error:?}").contains(value), "{error}");
    }
}

#[test]
fn environment_variables_section_feeds_references() {
    let yaml = with(
        "environment_variables:\n  MY_RETRIES: \"5\"\nrouter_settings:\n  num_retries: os.environ/MY_RETRIES\n",
    );
    assert_eq!(load(&yaml).config.router_settings.num_retries, Some(5));
}

#[test]
fn provider_default_variable_is_used_when_no_key_is_given() {
    let yaml = deployment("      model: openrouter/x/y\n");
    let loaded = load(&yaml);
    let d = &loaded.config.model_list[0];
    assert_eq!(
        d.api_key_source,
        KeySource::Env("OPENROUTER_API_KEY".into())
    );
    assert_eq!(d.api_key.as_ref().map(Secret::expose), Some(OPENROUTER_KEY));
    assert!(loaded.warnings.is_empty());

    let loaded = load_with(&yaml, &HashMap::new()).expect("loads without a key");
    let d = &loaded.config.model_list[0];
    assert_eq!(d.api_key_source, KeySource::None);
    assert!(
        d.disabled
            .as_deref()
            .unwrap()
            .contains("OPENROUTER_API_KEY"),
        "{:?}",
        d.disabled
    );
    assert!(warning_for(&loaded, "model_list[0]").contains("OPENROUTER_API_KEY"));
}

// ---------------------------------------------------------------- key warnings

#[test]
fn unknown_keys_warn_with_their_full_path() {
    let yaml =
        with("router_settings:\n  num_retires: 3\ntollgate:\n  conect_timeout: 5\nmystery: 1\n")
            .replace(
                "model: openrouter/x/b:free",
                "model: openrouter/x/b:free\n      foo: bar",
            );
    let loaded = load(&yaml);
    assert_eq!(
        warning_for(&loaded, "model_list[1].litellm_params.foo"),
        "unknown key, ignored"
    );
    // A near miss names the key it likely meant.
    assert_eq!(
        warning_for(&loaded, "router_settings.num_retires"),
        "unknown key, ignored; did you mean num_retries?"
    );
    assert_eq!(
        warning_for(&loaded, "tollgate.conect_timeout"),
        "unknown key, ignored; did you mean connect_timeout?"
    );
    assert_eq!(warning_for(&loaded, "mystery"), "unknown key, ignored");
}

#[test]
fn litellm_keys_tollgate_ignores_warn() {
    let yaml = with(
        "general_settings:\n  database_url: os.environ/DATABASE_URL\n  alerting: [slack]\nlitellm_settings:\n  callbacks: [prometheus]\n  success_callback: [langfuse]\nrouter_settings:\n  enable_pre_call_checks: true\n",
    );
    let loaded = load(&yaml);
    for path in [
        "general_settings.database_url",
        "general_settings.alerting",
        "litellm_settings.callbacks",
        "litellm_settings.success_callback",
        "router_settings.enable_pre_call_checks",
    ] {
        assert_eq!(
            warning_for(&loaded, path),
            "LiteLLM setting that Tollgate ignores"
        );
    }
}

#[test]
fn misplaced_keys_warn_where_they_belong() {
    let yaml = format!(
        "{}general_settings:\n  num_retries: 3\nrouter_settings:\n  master_key: sk-x\n  connect_timeout: 5\nmaster_key: sk-y\n",
        deployment(
            "      model: openai/gpt-4o\n      id: my-id\n    api_key: os.environ/OPENAI_API_KEY\n"
        )
    );
    let loaded = load(&yaml);
    assert_eq!(
        warning_for(&loaded, "general_settings.num_retries"),
        "misplaced key, ignored here: it belongs under router_settings or litellm_settings"
    );
    assert!(
        warning_for(&loaded, "router_settings.master_key")
            .ends_with("belongs under general_settings")
    );
    assert!(
        warning_for(&loaded, "router_settings.connect_timeout").ends_with("belongs under tollgate")
    );
    assert!(warning_for(&loaded, "master_key").ends_with("belongs under general_settings"));
    assert!(
        warning_for(&loaded, "model_list[0].litellm_params.id")
            .ends_with("belongs under model_info")
    );
    assert!(
        warning_for(&loaded, "model_list[0].api_key").ends_with("belongs under litellm_params")
    );
    // Misplaced keys are not applied.
    assert!(loaded.config.general_settings.master_key.is_none());
    assert_eq!(loaded.config.model_list[0].id, "m/0");
    assert_no_secret(&format!("{:?}", loaded.warnings));
}

#[test]
fn unknown_retry_policy_entries_warn() {
    let yaml = with(
        "router_settings:\n  retry_policy:\n    TimeoutErrorRetries: 4\n    NotFoundErrorRetries: 1\n",
    );
    let loaded = load(&yaml);
    assert_eq!(
        loaded.config.router_settings.retry_policy.timeout_error,
        Some(4)
    );
    assert!(
        warning_for(&loaded, "router_settings.retry_policy.NotFoundErrorRetries")
            .contains("unknown retry policy entry")
    );
}

#[test]
fn duplicate_keys_keep_the_last_value_with_a_warning() {
    let yaml = with("router_settings:\n  num_retries: 1\n  num_retries: 2\n");
    let loaded = load(&yaml);
    assert_eq!(loaded.config.router_settings.num_retries, Some(2));
    assert!(warning_for(&loaded, "router_settings.num_retries").contains("duplicate key"));
}

#[test]
fn inline_secrets_load_with_a_warning() {
    let yaml = deployment(&format!(
        "      model: openai/gpt-4o\n      api_key: {OPENAI_KEY}\n"
    ));
    let loaded = load(&yaml);
    let d = &loaded.config.model_list[0];
    assert_eq!(d.api_key_source, KeySource::Inline);
    assert_eq!(d.api_key.as_ref().map(Secret::expose), Some(OPENAI_KEY));
    assert!(warning_for(&loaded, "model_list[0].litellm_params.api_key").contains("inline"));
    assert_no_secret(&format!("{:?}", loaded.config));
    assert_no_secret(&config::render_report(&loaded));
}

// ---------------------------------------------------------------- invalid values

#[test]
fn model_list_must_exist_and_not_be_empty() {
    assert_invalid(&error(""), "model_list", "missing");
    assert_invalid(&error("general_settings: {}\n"), "model_list", "missing");
    assert_invalid(&error("model_list: []\n"), "model_list", "empty");
    assert_invalid(&error("model_list: 3\n"), "model_list", "expected a list");
}

#[test]
fn model_list_entries_need_a_name_and_a_model() {
    let missing_name = "model_list:\n  - litellm_params: { model: openai/gpt-4o }\n";
    assert_invalid(&error(missing_name), "model_list[0].model_name", "missing");
    let missing_model = "model_list:\n  - model_name: m\n    litellm_params: { api_key: os.environ/OPENAI_API_KEY }\n";
    assert_invalid(
        &error(missing_model),
        "model_list[0].litellm_params.model",
        "missing",
    );
    let no_params = "model_list:\n  - model_name: m\n";
    assert_invalid(
        &error(no_params),
        "model_list[0].litellm_params.model",
        "missing",
    );
    assert_invalid(
        &error("model_list:\n  - just-a-string\n"),
        "model_list[0]",
        "expected a mapping",
    );
}

#[test]
fn provider_prefixes() {
    let cases = [
        ("openai/gpt-4o-mini", Provider::OpenAi, "gpt-4o-mini"),
        (
            "openrouter/deepseek/deepseek-chat:free",
            Provider::OpenRouter,
            "deepseek/deepseek-chat:free",
        ),
        (
            "openrouter/meta-llama/llama-3.2-3b-instruct:free",
            Provider::OpenRouter,
            "meta-llama/llama-3.2-3b-instruct:free",
        ),
        ("mock/anything", Provider::Mock, "anything"),
    ];
    for (model, provider, upstream) in cases {
        let loaded = load(&deployment(&format!("      model: {model}\n")));
        assert_eq!(loaded.config.model_list[0].provider, provider, "{model}");
        assert_eq!(
            loaded.config.model_list[0].upstream_model, upstream,
            "{model}"
        );
    }
    let custom = load(&deployment(
        "      model: deepseek/deepseek-chat\n      custom_llm_provider: openrouter\n",
    ));
    assert_eq!(custom.config.model_list[0].provider, Provider::OpenRouter);
    assert_eq!(
        custom.config.model_list[0].upstream_model,
        "deepseek/deepseek-chat"
    );

    for model in ["acme/claude-3", "no-such-model-anywhere", "openai/"] {
        let error = error(&deployment(&format!("      model: {model}\n")));
        assert_invalid(&error, "model_list[0].litellm_params.model", "");
        if model != "openai/" {
            let message = error.to_string();
            assert!(message.contains("openai/, openrouter/, mock/"), "{message}");
            assert!(message.contains("groq/"), "{message}");
        }
    }
}

#[test]
fn wrong_types_and_ranges_name_the_key() {
    let p = "model_list[0].litellm_params";
    let cases = [
        (
            "      model: openai/x\n      rpm: lots\n",
            format!("{p}.rpm"),
            "expected a whole number, found \"lots\"",
        ),
        (
            "      model: openai/x\n      rpm: -5\n",
            format!("{p}.rpm"),
            "must not be negative",
        ),
        (
            "      model: openai/x\n      tpm: [1]\n",
            format!("{p}.tpm"),
            "found a list",
        ),
        (
            "      model: openai/x\n      timeout: -1\n",
            format!("{p}.timeout"),
            "must not be negative",
        ),
        (
            "      model: openai/x\n      timeout: 0\n",
            format!("{p}.timeout"),
            "more than 0",
        ),
        (
            "      model: openai/x\n      timeout: 60s\n",
            format!("{p}.timeout"),
            "a number of seconds",
        ),
        (
            "      model: openai/x\n      weight: -1\n",
            format!("{p}.weight"),
            "must not be negative",
        ),
        (
            "      model: openai/x\n      order: 1.5\n",
            format!("{p}.order"),
            "whole number",
        ),
        (
            "      model: openai/x\n      api_base: not a url\n",
            format!("{p}.api_base"),
            "http",
        ),
        (
            "      model: openai/x\n      input_cost_per_token: -0.1\n",
            format!("{p}.input_cost_per_token"),
            "negative",
        ),
        (
            "      model: openai/x\n    model_info: { output_cost_per_token: cheap }\n",
            "model_list[0].model_info.output_cost_per_token".to_owned(),
            "decimal",
        ),
    ];
    for (params, path, needle) in cases {
        assert_invalid(&error(&deployment(params)), &path, needle);
    }

    let sections = [
        (
            "router_settings:\n  routing_strategy: round-robin\n",
            "router_settings.routing_strategy",
            "simple-shuffle, least-busy, latency-based-routing, usage-based-routing, usage-based-routing-v2",
        ),
        (
            "router_settings:\n  redis_port: 70000\n",
            "router_settings.redis_port",
            "at most 65535",
        ),
        (
            "router_settings:\n  cooldown_time: -3\n",
            "router_settings.cooldown_time",
            "negative",
        ),
        (
            "router_settings:\n  num_retries: three\n",
            "router_settings.num_retries",
            "whole number",
        ),
        (
            "router_settings: [1]\n",
            "router_settings",
            "expected a mapping",
        ),
        (
            "litellm_settings:\n  drop_params: maybe\n",
            "litellm_settings.drop_params",
            "true or false",
        ),
        (
            "litellm_settings:\n  request_timeout: 0\n",
            "litellm_settings.request_timeout",
            "more than 0",
        ),
        (
            "general_settings:\n  max_request_size_mb: 0\n",
            "general_settings.max_request_size_mb",
            "more than 0",
        ),
        (
            "tollgate:\n  connect_timeout: -1\n",
            "tollgate.connect_timeout",
            "negative",
        ),
        (
            "tollgate:\n  max_connections: 0\n",
            "tollgate.max_connections",
            "at least 1",
        ),
        (
            "tollgate:\n  max_connections: many\n",
            "tollgate.max_connections",
            "whole number",
        ),
        (
            "tollgate:\n  header_read_timeout: 0\n",
            "tollgate.header_read_timeout",
            "more than 0",
        ),
        (
            "tollgate:\n  connection_idle_timeout: -5\n",
            "tollgate.connection_idle_timeout",
            "negative",
        ),
        (
            "tollgate:\n  http2_keepalive_timeout: 0\n",
            "tollgate.http2_keepalive_timeout",
            "more than 0",
        ),
    ];
    for (extra, path, needle) in sections {
        assert_invalid(&error(&with(extra)), path, needle);
    }
}

#[test]
fn routing_strategies_parse() {
    for strategy in RoutingStrategy::ALL {
        let yaml = with(&format!(
            "router_settings:\n  routing_strategy: {strategy}\n"
        ));
        assert_eq!(
            load(&yaml).config.router_settings.routing_strategy,
            strategy
        );
    }
}

#[test]
fn fallbacks_must_name_existing_groups() {
    let cases = [
        (
            "router_settings:\n  fallbacks:\n    - a: [c]\n",
            "router_settings.fallbacks[0].a[0]",
        ),
        (
            "router_settings:\n  fallbacks:\n    - c: [a]\n",
            "router_settings.fallbacks[0].c",
        ),
        (
            "litellm_settings:\n  fallbacks:\n    - a: [b]\n    - b: [zz]\n",
            "litellm_settings.fallbacks[1].b[0]",
        ),
        (
            "router_settings:\n  context_window_fallbacks:\n    - a: [nope]\n",
            "router_settings.context_window_fallbacks[0].a[0]",
        ),
        (
            "router_settings:\n  content_policy_fallbacks:\n    - a: [nope]\n",
            "router_settings.content_policy_fallbacks[0].a[0]",
        ),
        (
            "router_settings:\n  default_fallbacks: [a, nope]\n",
            "router_settings.default_fallbacks[1]",
        ),
    ];
    for (extra, path) in cases {
        assert_invalid(&error(&with(extra)), path, "no model group named");
    }
    assert_invalid(
        &error(&with("router_settings:\n  fallbacks:\n    - a: [a]\n")),
        "router_settings.fallbacks[0].a[0]",
        "itself",
    );
    assert_invalid(
        &error(&with("router_settings:\n  fallbacks: [a, b]\n")),
        "router_settings.fallbacks[0]",
        "expected a mapping",
    );
    // Group names with dots are quoted in paths.
    let dotted = "model_list:\n  - model_name: llama-3.2\n    litellm_params: { model: mock/x }\nrouter_settings:\n  fallbacks:\n    - llama-3.2: [gone]\n";
    assert_invalid(
        &error(dotted),
        "router_settings.fallbacks[0][\"llama-3.2\"][0]",
        "gone",
    );
    // The wildcard source and a plain mapping are accepted.
    let loaded = load(&with(
        "litellm_settings:\n  fallbacks: { \"*\": [a], b: [a] }\n",
    ));
    assert_eq!(loaded.config.fallbacks().len(), 2);
    assert_eq!(loaded.config.fallbacks()[0].0, "*");
}

// ---------------------------------------------------------------- ids

#[test]
fn ids_come_from_model_info_or_group_position() {
    let yaml = "model_list:\n  - model_name: g\n    litellm_params: { model: mock/a }\n  - model_name: h\n    litellm_params: { model: mock/b }\n  - model_name: g\n    litellm_params: { model: mock/c }\n    model_info: { id: custom }\n  - model_name: g\n    litellm_params: { model: mock/d }\n";
    let ids: Vec<String> = load(yaml)
        .config
        .model_list
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids, ["g/0", "h/0", "custom", "g/2"]);
}

#[test]
fn duplicate_ids_are_invalid() {
    let explicit = "model_list:\n  - model_name: g\n    litellm_params: { model: mock/a }\n    model_info: { id: same }\n  - model_name: h\n    litellm_params: { model: mock/b }\n    model_info: { id: same }\n";
    assert_invalid(
        &error(explicit),
        "model_list[1].model_info.id",
        "duplicate deployment id \"same\"",
    );
    let clash = "model_list:\n  - model_name: x\n    litellm_params: { model: mock/a }\n    model_info: { id: g/0 }\n  - model_name: g\n    litellm_params: { model: mock/b }\n";
    assert_invalid(&error(clash), "model_list[1]", "model_list[0]");
}

// ---------------------------------------------------------------- durations and money

#[test]
fn durations_are_seconds_as_ints_floats_or_text() {
    let yaml =
        deployment("      model: openai/x\n      timeout: 1.5\n      stream_timeout: \"30\"\n");
    let d = &load(&yaml).config.model_list[0];
    assert_eq!(d.timeout, Some(Duration::from_millis(1500)));
    assert_eq!(d.stream_timeout, Some(Duration::from_secs(30)));

    let yaml = with(
        "router_settings:\n  cooldown_time: 0\n  retry_after: 0.25\n  timeout: os.environ/T\ntollgate:\n  shutdown_grace_period: 0\n",
    );
    let mut env = full_env();
    env.insert("T".into(), "45".into());
    let loaded = load_with(&yaml, &env).expect("loads");
    let router = &loaded.config.router_settings;
    assert_eq!(router.cooldown_time, Some(Duration::ZERO));
    assert_eq!(router.retry_after, Some(Duration::from_millis(250)));
    assert_eq!(router.timeout, Some(Duration::from_secs(45)));
    assert_eq!(
        loaded.config.request_timeout(),
        Some(Duration::from_secs(45))
    );
    assert_eq!(
        loaded.config.tollgate.shutdown_grace_period,
        Some(Duration::ZERO)
    );
}

#[test]
fn prices_keep_exact_decimals() {
    let yaml = deployment(
        "      model: openai/x\n    model_info:\n      input_cost_per_token: 0.00000013\n      output_cost_per_token: 1.3e-7\n      cache_read_input_token_cost: 0.0000001234567890123456789\n      cache_creation_input_token_cost: 2\n      output_cost_per_reasoning_token: \"0.000000600\"\n",
    );
    let costs = &load(&yaml).config.model_list[0].costs;
    let text = |d: &Option<Decimal>| d.as_ref().map(|d| d.as_str().to_owned());
    assert_eq!(
        text(&costs.input_cost_per_token).as_deref(),
        Some("0.00000013")
    );
    assert_eq!(costs.output_cost_per_token, costs.input_cost_per_token);
    assert_eq!(
        text(&costs.cache_read_input_token_cost).as_deref(),
        Some("0.0000001234567890123456789")
    );
    assert_eq!(
        text(&costs.cache_creation_input_token_cost).as_deref(),
        Some("2")
    );
    assert_eq!(
        text(&costs.output_cost_per_reasoning_token).as_deref(),
        Some("0.0000006")
    );
    assert_eq!(
        costs
            .input_cost_per_token
            .as_ref()
            .and_then(|d| d.to_units(12)),
        Some(130_000)
    );
}

#[test]
fn prices_in_litellm_params_are_custom_pricing() {
    let yaml = deployment(
        "      model: openai/x\n      input_cost_per_token: 0.000001\n      output_cost_per_token: 0.000002\n    model_info:\n      output_cost_per_token: 0.000003\n",
    );
    let loaded = load(&yaml);
    let costs = &loaded.config.model_list[0].costs;
    assert_eq!(
        costs.input_cost_per_token.as_ref().map(Decimal::as_str),
        Some("0.000001")
    );
    assert_eq!(
        costs.output_cost_per_token.as_ref().map(Decimal::as_str),
        Some("0.000003")
    );
    assert!(
        warning_for(
            &loaded,
            "model_list[0].litellm_params.output_cost_per_token"
        )
        .contains("model_info")
    );
}

// ---------------------------------------------------------------- tollgate section

const MOCKS: &str = "model_list:\n  - model_name: demo\n    litellm_params: { model: mock/a }\n    model_info: { id: mock-primary }\n  - model_name: demo\n    litellm_params: { model: mock/b }\n  - model_name: real\n    litellm_params: { model: openai/gpt-4o }\n";

#[test]
fn connection_settings_parse_without_warnings() {
    let yaml = format!(
        "{MOCKS}tollgate:\n  max_connections: 2000\n  connection_idle_timeout: 90\n  header_read_timeout: 12.5\n  http2_keepalive_interval: 0\n  http2_keepalive_timeout: 4\n"
    );
    let loaded = load(&yaml);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let tollgate = &loaded.config.tollgate;
    assert_eq!(tollgate.max_connections, Some(2000));
    assert_eq!(
        tollgate.connection_idle_timeout,
        Some(Duration::from_secs(90))
    );
    assert_eq!(
        tollgate.header_read_timeout,
        Some(Duration::from_millis(12_500))
    );
    assert_eq!(tollgate.http2_keepalive_interval, Some(Duration::ZERO));
    assert_eq!(
        tollgate.http2_keepalive_timeout,
        Some(Duration::from_secs(4))
    );
}

#[test]
fn mock_settings_parse_every_fault() {
    let yaml = format!(
        "{MOCKS}tollgate:\n  connect_timeout: 5\n  mock:\n    mock-primary:\n      latency_ms: 20\n      fault: {{ kind: error_status, status: 503 }}\n      fail_every: 3\n    demo/1:\n      chunk_delay_ms: 15\n      fault: {{ kind: stall, after_chunks: 2 }}\n"
    );
    let loaded = load(&yaml);
    let tollgate = &loaded.config.tollgate;
    assert_eq!(tollgate.connect_timeout, Some(Duration::from_secs(5)));
    assert_eq!(
        tollgate.mock["mock-primary"],
        MockSettings {
            latency_ms: 20,
            chunk_delay_ms: 0,
            fault: Some(MockFault::ErrorStatus { status: 503 }),
            fail_every: 3
        }
    );
    assert_eq!(
        tollgate.mock["demo/1"],
        MockSettings {
            latency_ms: 0,
            chunk_delay_ms: 15,
            fault: Some(MockFault::Stall { after_chunks: 2 }),
            fail_every: 1
        }
    );

    for (fault, expected) in [
        (
            "{ kind: stream_error, after_chunks: 4 }",
            MockFault::StreamError { after_chunks: 4 },
        ),
        ("{ kind: cut }", MockFault::Cut { after_chunks: 0 }),
        (
            "{ kind: stall, after_chunks: 1 }",
            MockFault::Stall { after_chunks: 1 },
        ),
    ] {
        let yaml = format!("{MOCKS}tollgate:\n  mock:\n    mock-primary: {{ fault: {fault} }}\n");
        assert_eq!(
            load(&yaml).config.tollgate.mock["mock-primary"].fault,
            Some(expected)
        );
    }
}

#[test]
fn mock_settings_are_validated() {
    let cases = [
        (
            "nope: {}",
            "tollgate.mock.nope",
            "no deployment with id \"nope\"; mock deployments: mock-primary, demo/1",
        ),
        (
            "real/0: {}",
            "tollgate.mock.real/0",
            "mock/ deployments only",
        ),
        (
            "mock-primary: { fail_every: 0 }",
            "tollgate.mock.mock-primary.fail_every",
            "at least 1",
        ),
        (
            "mock-primary: { fault: { kind: explode } }",
            "tollgate.mock.mock-primary.fault.kind",
            "error_status, stream_error, stall, cut",
        ),
        (
            "mock-primary: { fault: { status: 500 } }",
            "tollgate.mock.mock-primary.fault.kind",
            "missing",
        ),
        (
            "mock-primary: { fault: { kind: error_status } }",
            "tollgate.mock.mock-primary.fault.status",
            "missing",
        ),
        (
            "mock-primary: { fault: { kind: error_status, status: 200 } }",
            "tollgate.mock.mock-primary.fault.status",
            "400 to 599",
        ),
        (
            "mock-primary: { latency_ms: -1 }",
            "tollgate.mock.mock-primary.latency_ms",
            "negative",
        ),
    ];
    for (entry, path, needle) in cases {
        let yaml = format!("{MOCKS}tollgate:\n  mock:\n    {entry}\n");
        assert_invalid(&error(&yaml), path, needle);
    }
    let yaml = format!(
        "{MOCKS}tollgate:\n  mock:\n    mock-primary: {{ fault: {{ kind: cut, status: 500 }}, jitter: 1 }}\n"
    );
    let loaded = load(&yaml);
    assert!(
        warning_for(&loaded, "tollgate.mock.mock-primary.fault.status")
            .contains("not used by kind cut")
    );
    assert_eq!(
        warning_for(&loaded, "tollgate.mock.mock-primary.jitter"),
        "unknown key, ignored"
    );
}

// ---------------------------------------------------------------- YAML features

#[test]
fn yaml_errors_give_a_line() {
    match error("model_list:\n  - model_name: [unclosed\n") {
        ConfigError::Yaml { line, .. } => assert!(line >= 2),
        other => panic!("expected Yaml error, got {other}"),
    }
    assert!(matches!(
        error("a: 1\n---\nb: 2\n"),
        ConfigError::Yaml { .. }
    ));
    assert_invalid(&error("- 1\n- 2\n"), "(top level)", "expected a mapping");
}

#[test]
fn anchors_and_merge_keys_work_as_in_pyyaml() {
    let yaml = "x-defaults: &defaults\n  api_key: os.environ/OPENROUTER_API_KEY\n  timeout: 30\nmodel_list:\n  - model_name: a\n    litellm_params:\n      <<: *defaults\n      model: openrouter/x/a\n      timeout: 10\n";
    let loaded = load(yaml);
    let d = &loaded.config.model_list[0];
    assert_eq!(d.timeout, Some(Duration::from_secs(10)));
    assert_eq!(
        d.api_key_source,
        KeySource::Env("OPENROUTER_API_KEY".into())
    );
    assert_eq!(warning_paths(&loaded), ["x-defaults"]);
}

#[test]
fn alias_bombs_are_refused() {
    let mut yaml = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let prev = i - 1;
        yaml.push_str(&format!("a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"));
    }
    assert!(matches!(error(&yaml), ConfigError::Yaml { .. }));
}

// ---------------------------------------------------------------- redaction and report

#[test]
fn secrets_never_print() {
    let secret = Secret::new(OPENAI_KEY);
    assert_eq!(format!("{secret}"), "<redacted>");
    assert_eq!(format!("{secret:?}"), "<redacted>");
    assert_eq!(secret.expose(), OPENAI_KEY);

    // Every error path that touches a secret names it without showing it.
    let yaml = deployment(&format!("      model: openai/x\n      rpm: {OPENAI_KEY}\n"));
    let message = error(&yaml).to_string();
    assert!(message.contains("a 31-character value"), "{message}");
    let yaml = with("general_settings:\n  max_request_size_mb: os.environ/LITELLM_MASTER_KEY\n");
    error(&yaml);
    let yaml = deployment(
        "      model: openai/x\n      extra_headers:\n        Authorization: os.environ/OPENAI_API_KEY\n        X-Title: Tollgate\n",
    );
    let loaded = load(&yaml);
    let headers = &loaded.config.model_list[0].extra_headers;
    assert_eq!(headers[0].0, "Authorization");
    assert_eq!(headers[0].1.expose(), OPENAI_KEY);
    assert_eq!(headers[1].1.expose(), "Tollgate");
    assert_no_secret(&format!("{:?}", loaded.config));
    assert_no_secret(&config::render_report(&loaded));
}

#[test]
fn report_shows_what_was_understood_and_no_key() {
    let loaded = load(REALISTIC);
    let report = config::render_report(&loaded);
    assert_no_secret(&report);
    for needle in [
        "Config OK: 5 model groups, 6 deployments, 5 warnings",
        "  deepseek-chat\n    - or-deepseek-free: openrouter deepseek/deepseek-chat:free, key env OPENROUTER_API_KEY, timeout 60s, stream_timeout 15s, rpm 20, max_tokens 8000, input_cost_per_token $0, output_cost_per_token $0",
        "  gpt-4o-mini\n    - gpt-4o-mini/0: openai gpt-4o-mini, key env OPENAI_API_KEY, weight 2\n    - gpt-4o-mini/1: openai gpt-4o-mini, api_base https://my-proxy.example.internal/v1, key env OPENAI_API_KEY_2, weight 1",
        "fallbacks: deepseek-chat -> glm-4.5-air -> mistral-7b -> llama-3.2",
        "context_window_fallbacks: llama-3.2 -> gpt-4o-mini",
        "router_settings.routing_strategy: simple-shuffle",
        "router_settings.retry_policy.RateLimitErrorRetries: 2",
        "router_settings.redis_port: 6379",
        "router_settings.redis_password: set (env REDIS_PASSWORD)",
        "general_settings.master_key: set (env LITELLM_MASTER_KEY)",
        "litellm_settings.drop_params: true",
        "Warnings (5)\n",
        "  general_settings.database_url: LiteLLM setting that Tollgate ignores",
        "  litellm_settings.callbacks: LiteLLM setting that Tollgate ignores",
    ] {
        assert!(
            report.contains(needle),
            "report lacks {needle:?}:\n{report}"
        );
    }

    let inline = load(&deployment(&format!(
        "      model: openai/x\n      api_key: {OPENAI_KEY}\n"
    )));
    assert!(config::render_report(&inline).contains("m/0: openai x, key config"));
    let mock = load(&format!(
        "{MOCKS}tollgate:\n  mock:\n    mock-primary: {{ fault: {{ kind: cut, after_chunks: 2 }} }}\n"
    ));
    let report = config::render_report(&mock);
    assert!(
        report.contains("mock-primary: mock a, key none"),
        "{report}"
    );
    assert!(report.contains("mock-primary: latency 0ms, chunk delay 0ms, fault cut after 2 chunks, every 1 request(s)"), "{report}");
}

#[test]
fn prefill_support_and_per_deployment_cooldown_are_read() {
    let loaded = load(
        "model_list:\n  - model_name: a\n    litellm_params:\n      model: mock/a\n      cooldown_time: 0\n    model_info:\n      supports_assistant_prefill: false\n  - model_name: b\n    litellm_params:\n      model: mock/b\n",
    );
    let a = &loaded.config.model_list[0];
    assert_eq!(a.supports_assistant_prefill, Some(false));
    assert_eq!(a.cooldown_time, Some(std::time::Duration::ZERO));
    let b = &loaded.config.model_list[1];
    assert_eq!(b.supports_assistant_prefill, None);
    assert_eq!(b.cooldown_time, None);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let error = error(
        "model_list:\n  - model_name: a\n    litellm_params:\n      model: mock/a\n    model_info:\n      supports_assistant_prefill: maybe\n",
    );
    assert_eq!(
        error.path(),
        Some("model_list[0].model_info.supports_assistant_prefill")
    );
}
