//! The config loader's `tollgate.keys`: virtual keys defined in the file,
//! by key (a secret, usually from the environment) or by its SHA-256.

use std::collections::HashMap;
use std::time::Duration;

use tollgate_gateway::config::{self, ConfigError, Decimal, KeySource, Loaded};

const TEAM_A_KEY: &str = "sk-team-a-0123456789abcdef";
const INLINE_KEY: &str = "sk-inline-fedcba9876543210";
/// SHA-256 of `sk-team-b-secret`.
const TEAM_B_HASH: &str = "2bdc7365a94e6334f5bb9e337d946d9b7ff12ab097e76094dfd73ba5036253e1";

const MODELS: &str = "model_list:\n  - model_name: demo\n    litellm_params: { model: mock/demo, mock_response: hi }\n  - model_name: fast\n    litellm_params: { model: mock/fast, mock_response: hi }\n";

fn env() -> HashMap<String, String> {
    [("TEAM_A_KEY", TEAM_A_KEY), ("EMPTY_KEY", "")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn load_result(keys: &str) -> Result<Loaded, ConfigError> {
    let yaml = format!("{MODELS}tollgate:\n  keys:\n{keys}");
    let env = env();
    config::load_str(&yaml, &|var| env.get(var).cloned())
}

#[track_caller]
fn load(keys: &str) -> Loaded {
    match load_result(keys) {
        Ok(loaded) => {
            assert_no_key(&format!("{:?}", loaded.config));
            assert_no_key(&config::render_report(&loaded));
            loaded
        }
        Err(error) => panic!("config should load: {error}"),
    }
}

#[track_caller]
fn invalid(keys: &str, path: &str, needle: &str) {
    match load_result(keys) {
        Ok(loaded) => panic!("config should fail, loaded {:?}", loaded.config),
        Err(error) => {
            assert_no_key(&error.to_string());
            match &error {
                ConfigError::Invalid { path: p, message } => {
                    assert_eq!(p, path, "message: {message}");
                    assert!(message.contains(needle), "{message:?} lacks {needle:?}");
                }
                other => panic!("expected Invalid at {path}, got {other}"),
            }
        }
    }
}

#[track_caller]
fn assert_no_key(text: &str) {
    for key in [TEAM_A_KEY, INLINE_KEY] {
        assert!(!text.contains(key), "leaked {key:?} in {text}");
    }
}

#[test]
fn keys_load_with_every_setting() {
    let loaded = load(&format!(
        "    - key: os.environ/TEAM_A_KEY\n      key_alias: team-a\n      models: [demo]\n      rpm_limit: 60\n      tpm_limit: 100000\n      max_parallel_requests: 4\n      max_budget: 25.00\n      budget_duration: 30d\n    - key_hash: {TEAM_B_HASH}\n      key_alias: team-b\n"
    ));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let keys = &loaded.config.tollgate.keys;
    assert_eq!(keys.len(), 2);

    let a = &keys[0];
    let secret = a.key.as_ref().unwrap();
    assert_eq!(secret.expose(), TEAM_A_KEY);
    assert_eq!(secret.source(), &KeySource::Env("TEAM_A_KEY".into()));
    assert_eq!(a.key_hash, None);
    assert_eq!(a.key_alias, "team-a");
    assert_eq!(a.models, ["demo"]);
    assert_eq!(a.rpm_limit, Some(60));
    assert_eq!(a.tpm_limit, Some(100_000));
    assert_eq!(a.max_parallel_requests, Some(4));
    assert_eq!(a.max_budget, Some(Decimal::parse("25").unwrap()));
    assert_eq!(a.budget_duration, Some(Duration::from_secs(30 * 86_400)));

    let b = &keys[1];
    assert!(b.key.is_none());
    let hash = b.key_hash.unwrap();
    assert_eq!(hash[0], 0x2b);
    assert_eq!(hash[31], 0xe1);
    assert_eq!(b.key_alias, "team-b");
    assert!(b.models.is_empty());
    assert_eq!(b.rpm_limit, None);
    assert_eq!(b.max_budget, None);
}

#[test]
fn the_report_lists_keys_by_alias_only() {
    let loaded = load(&format!(
        "    - key: os.environ/TEAM_A_KEY\n      key_alias: team-a\n      models: [demo, fast]\n      rpm_limit: 60\n      max_budget: 25.5\n      budget_duration: 1mo\n    - key_hash: {TEAM_B_HASH}\n      key_alias: team-b\n"
    ));
    let report = config::render_report(&loaded);
    assert!(report.contains("\nVirtual keys\n"), "{report}");
    assert!(
        report.contains(
            "  team-a: key env TEAM_A_KEY, models demo fast, rpm_limit 60, max_budget $25.5, budget_duration 30d\n"
        ),
        "{report}"
    );
    assert!(
        report.contains("  team-b: key_hash, models all\n"),
        "{report}"
    );
    assert!(!report.contains(TEAM_B_HASH), "{report}");
}

#[test]
fn an_inline_key_loads_with_a_warning_and_never_shows() {
    let loaded = load(&format!(
        "    - {{ key: {INLINE_KEY}, key_alias: inline }}\n"
    ));
    let warning = loaded
        .warnings
        .iter()
        .find(|w| w.path == "tollgate.keys[0].key")
        .expect("a warning for the inline key");
    assert!(warning.message.contains("prefer os.environ/VAR"));
    assert!(config::render_report(&loaded).contains("  inline: key config, models all"));
}

#[test]
fn unknown_fields_in_a_key_are_warnings() {
    let loaded =
        load("    - { key: os.environ/TEAM_A_KEY, key_alias: team-a, team_id: x, rpm: 5 }\n");
    let paths: Vec<&str> = loaded.warnings.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(paths, ["tollgate.keys[0].team_id", "tollgate.keys[0].rpm"]);
    assert!(
        loaded
            .warnings
            .iter()
            .all(|w| w.message == "unknown key, ignored")
    );
}

#[test]
fn invalid_keys_are_errors_naming_the_path() {
    let a = "key: os.environ/TEAM_A_KEY, key_alias: team-a";
    let cases = [
        (
            format!("    - {{ {a}, rpm_limit: sixty }}\n"),
            "tollgate.keys[0].rpm_limit",
            "whole number",
        ),
        (
            format!("    - {{ {a}, rpm_limit: 4294967296 }}\n"),
            "tollgate.keys[0].rpm_limit",
            "at most 4294967295",
        ),
        (
            format!("    - {{ {a}, tpm_limit: -1 }}\n"),
            "tollgate.keys[0].tpm_limit",
            "negative",
        ),
        (
            format!("    - {{ {a}, max_parallel_requests: 1.5 }}\n"),
            "tollgate.keys[0].max_parallel_requests",
            "whole number",
        ),
        (
            format!("    - {{ {a}, max_budget: lots }}\n"),
            "tollgate.keys[0].max_budget",
            "decimal number",
        ),
        (
            format!("    - {{ {a}, max_budget: 0.0000000000001 }}\n"),
            "tollgate.keys[0].max_budget",
            "at most 12 decimals",
        ),
        (
            format!("    - {{ {a}, budget_duration: 30x }}\n"),
            "tollgate.keys[0].budget_duration",
            "\"30d\"",
        ),
        (
            format!("    - {{ {a}, budget_duration: 0d }}\n"),
            "tollgate.keys[0].budget_duration",
            "more than 0",
        ),
        (
            format!("    - {{ {a}, models: [nope] }}\n"),
            "tollgate.keys[0].models[0]",
            "no model group named \"nope\"",
        ),
        (
            format!("    - {{ {a}, models: demo }}\n"),
            "tollgate.keys[0].models",
            "expected a list",
        ),
        (
            "    - { key_alias: team-a }\n".to_owned(),
            "tollgate.keys[0].key",
            "missing",
        ),
        (
            format!("    - {{ {a}, key_hash: {TEAM_B_HASH} }}\n"),
            "tollgate.keys[0]",
            "not both",
        ),
        (
            "    - { key_hash: abc123, key_alias: b }\n".to_owned(),
            "tollgate.keys[0].key_hash",
            "64 hex digits",
        ),
        (
            "    - { key: os.environ/TEAM_A_KEY }\n".to_owned(),
            "tollgate.keys[0].key_alias",
            "missing",
        ),
        (
            "    - { key: os.environ/TEAM_A_KEY, key_alias: sk-team }\n".to_owned(),
            "tollgate.keys[0].key_alias",
            "look like a key",
        ),
        (
            "    - { key: os.environ/EMPTY_KEY, key_alias: empty }\n".to_owned(),
            "tollgate.keys[0].key",
            "empty",
        ),
        (
            format!("    - {{ {a} }}\n    - {{ key_hash: {TEAM_B_HASH}, key_alias: team-a }}\n"),
            "tollgate.keys[1].key_alias",
            "already the alias of tollgate.keys[0]",
        ),
        (
            "    - just-a-string\n".to_owned(),
            "tollgate.keys[0]",
            "expected a mapping",
        ),
    ];
    for (keys, path, needle) in cases {
        invalid(&keys, path, needle);
    }
}

#[test]
fn an_unset_variable_names_the_key_path() {
    match load_result("    - { key: os.environ/NOT_SET, key_alias: x }\n") {
        Err(ConfigError::MissingEnv { var, path }) => {
            assert_eq!(var, "NOT_SET");
            assert_eq!(path, "tollgate.keys[0].key");
        }
        other => panic!("expected MissingEnv, got {other:?}"),
    }
}

#[test]
fn keys_may_name_every_model_with_a_star() {
    let loaded = load("    - { key: os.environ/TEAM_A_KEY, key_alias: all, models: ['*'] }\n");
    assert_eq!(loaded.config.tollgate.keys[0].models, ["*"]);
}
