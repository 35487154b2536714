//! Acceptance: unchanged LiteLLM configs — every provider prefix LiteLLM's
//! docs show, bare model names, wildcards, aliases, `20_000` — load and
//! build a gateway (`check-config`'s own checks of these are in
//! `check_config.rs`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tollgate_gateway::Gateway;
use tollgate_gateway::config::{self, Loaded, Provider, ProviderKind};

const CONFIGS: [&str; 4] = [
    "openai-compatible.yaml",
    "native.yaml",
    "bare-names-and-fallbacks.yaml",
    "wildcards-and-aliases.yaml",
];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/litellm-configs")
        .join(name)
}

/// Every variable the fixtures name, set.
fn env() -> HashMap<String, String> {
    [
        "GROQ_API_KEY",
        "MISTRAL_API_KEY",
        "DEEPSEEK_API_KEY",
        "TOGETHERAI_API_KEY",
        "FIREWORKS_AI_API_KEY",
        "XAI_API_KEY",
        "PERPLEXITYAI_API_KEY",
        "CEREBRAS_API_KEY",
        "DEEPINFRA_API_KEY",
        "HF_TOKEN",
        "NVIDIA_NIM_API_KEY",
        "COHERE_API_KEY",
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "GEMINI_API_KEY",
        "AZURE_API_KEY",
        "AZURE_AI_API_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION_NAME",
    ]
    .into_iter()
    .map(|var| (var.to_owned(), format!("secret-{var}")))
    .chain([(
        "AZURE_API_BASE".to_owned(),
        "https://my-resource.openai.azure.com".to_owned(),
    )])
    .collect()
}

fn load(name: &str) -> Loaded {
    let env = env();
    let text = std::fs::read_to_string(fixture(name)).unwrap();
    config::load_str(&text, &|var| env.get(var).cloned())
        .unwrap_or_else(|error| panic!("{name} does not load: {error}"))
}

#[test]
fn every_fixture_loads_and_builds_a_gateway() {
    for name in CONFIGS {
        let loaded = load(name);
        if let Err(error) = Gateway::new(&loaded.config) {
            panic!("{name}: {error}");
        }
        for warning in &loaded.warnings {
            // Only native deployments not wired yet, or Vertex ones without
            // a readable key file (the docs' placeholder path, or none: the
            // docs rely on gcloud's credentials), start disabled; nothing
            // else warns.
            assert!(
                warning.message.contains("not wired")
                    || warning.message.contains("vertex_credentials"),
                "{name}: unexpected warning {warning}"
            );
        }
    }
}

#[test]
fn openai_compatible_prefixes_resolve_with_their_key_variables() {
    let loaded = load("openai-compatible.yaml");
    let provider = |group: &str| {
        let d = loaded.config.group(group)[0];
        assert!(d.disabled.is_none(), "{group}: {:?}", d.disabled);
        (
            d.provider,
            d.upstream_model.as_str(),
            d.api_key_source.to_string(),
        )
    };
    assert_eq!(
        provider("groq-llama3"),
        (Provider::Groq, "llama3-8b-8192", "env GROQ_API_KEY".into())
    );
    assert_eq!(
        provider("together-llama").0,
        Provider::TogetherAi,
        "together_ai/"
    );
    assert_eq!(
        provider("llama3"),
        (Provider::Ollama, "llama3", "none".into())
    );
    assert_eq!(provider("command-r").0, Provider::Cohere);
    assert_eq!(
        provider("my-server"),
        (Provider::OpenAi, "my-model", "env OPENAI_API_KEY".into())
    );
    assert_eq!(
        provider("hf-llama").1,
        "together/deepseek-ai/DeepSeek-R1",
        "the model after the prefix is the provider's"
    );
    for (group, deployments) in loaded.config.groups() {
        assert_eq!(
            deployments[0].provider.kind(),
            ProviderKind::OpenAiCompatible,
            "{group}"
        );
    }
}

#[test]
fn native_providers_parse_their_params_and_those_not_wired_start_disabled() {
    let loaded = load("native.yaml");
    let d = |group: &str| loaded.config.group(group)[0];
    assert_eq!(d("azure-gpt-4o").provider, Provider::Azure);
    assert_eq!(
        d("azure-gpt-4o").native.api_version.as_deref(),
        Some("2024-07-01-preview")
    );
    let bedrock = &d("bedrock-claude").native;
    assert_eq!(
        bedrock.aws_region_name.as_deref(),
        Some("secret-AWS_REGION_NAME")
    );
    assert_eq!(
        bedrock.aws_secret_access_key.as_ref().map(|s| s.expose()),
        Some("secret-AWS_SECRET_ACCESS_KEY")
    );
    assert_eq!(
        d("vertex-gemini").native.vertex_project.as_deref(),
        Some("project-id")
    );
    // LiteLLM's `vertex_ai_*` spellings of the same params.
    assert_eq!(
        d("vertex-claude").native.vertex_location.as_deref(),
        Some("us-east5")
    );
    assert_eq!(
        d("vertex-claude").native.vertex_project.as_deref(),
        Some("my-test-project")
    );
    for (group, deployments) in loaded.config.groups() {
        let d = deployments[0];
        if group.starts_with("vertex-") {
            // Served by its translation, once its key file exists.
            let reason = d.disabled.as_deref().unwrap_or_default();
            assert!(reason.contains("vertex_credentials"), "{reason}");
        } else if d.provider.is_wired() {
            // Anthropic and Azure are served by their translations.
            assert_eq!(d.disabled, None, "{group}");
        } else {
            let reason = d.disabled.as_deref().unwrap_or_default();
            assert!(reason.contains("not wired"), "{group}: {reason}");
        }
    }
    // Secrets stay out of Debug.
    let debug = format!("{:?}", loaded.config);
    assert!(!debug.contains("secret-AWS_SECRET_ACCESS_KEY"), "{debug}");
    // Missing native params are named.
    let env = env();
    let yaml = "model_list:\n  - model_name: b\n    litellm_params:\n      model: bedrock/anthropic.claude-v2\n  - model_name: m\n    litellm_params:\n      model: mock/m\n";
    let loaded = config::load_str(yaml, &|var| {
        (!var.starts_with("AWS_"))
            .then(|| env.get(var).cloned())
            .flatten()
    })
    .unwrap();
    let reason = loaded.config.model_list[0].disabled.clone().unwrap();
    assert!(
        reason.contains("aws_region_name, aws_access_key_id, aws_secret_access_key"),
        "{reason}"
    );
}

#[test]
fn bare_names_underscored_numbers_and_litellm_settings_resolve() {
    let loaded = load("bare-names-and-fallbacks.yaml");
    let d = |group: &str| loaded.config.group(group)[0];
    assert_eq!(d("gpt-4o").provider, Provider::OpenAi);
    assert_eq!(d("gpt-4o").tpm, Some(20_000));
    assert_eq!(d("gpt-4o").rpm, Some(1_000));
    assert_eq!(d("claude-3-opus").provider, Provider::Anthropic);
    assert_eq!(d("claude-3-opus").upstream_model, "claude-3-opus-20240229");
    assert_eq!(
        d("gpt-3.5-turbo").api_key_source.to_string(),
        "env OPENAI_API_KEY"
    );
    assert_eq!(
        loaded.config.fallbacks(),
        [(
            "gpt-4o".to_owned(),
            vec!["claude-3-opus".to_owned(), "gpt-3.5-turbo".to_owned()]
        )]
    );
    assert_eq!(loaded.config.router_settings.allowed_fails, Some(3));
    assert_eq!(
        loaded.config.router_settings.cooldown_time,
        Some(std::time::Duration::from_secs(30))
    );
}

#[test]
fn wildcards_and_aliases_resolve() {
    let loaded = load("wildcards-and-aliases.yaml");
    let star = loaded.config.group("*")[0];
    assert_eq!(
        (star.provider, star.upstream_model.as_str()),
        (Provider::OpenAi, "*")
    );
    let anthropic = loaded.config.group("anthropic/*")[0];
    assert_eq!(anthropic.provider, Provider::Anthropic);
    assert!(anthropic.is_wildcard());
    assert_eq!(
        loaded.config.router_settings.model_group_alias,
        [
            ("gpt-4".to_owned(), "gpt-4o-mini".to_owned()),
            ("gpt-4-hidden".to_owned(), "gpt-4o-mini".to_owned()),
        ]
    );
}
