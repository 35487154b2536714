//! `tollgate check-config`: what it prints, and when it fails.

use std::path::PathBuf;
use std::process::Command;

fn write_config(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tollgate-check-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn check_config(path: &PathBuf, env: &[(&str, &str)]) -> (bool, String) {
    check_config_with(path, &[], env)
}

/// `check-config FILE ARGS…` with `env` as the only environment.
fn check_config_with(path: &PathBuf, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tollgate"));
    command.arg("check-config").arg(path).args(args).env_clear();
    // Under cargo-llvm-cov the binary is instrumented: its profile goes where
    // the run's others go (not into the crate's directory), and counts.
    if let Some(profile) = std::env::var_os("LLVM_PROFILE_FILE") {
        command.env("LLVM_PROFILE_FILE", profile);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().expect("the binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn reports_groups_and_an_unknown_key_with_its_path() {
    let path = write_config(
        "unknown-key.yaml",
        "model_list:\n  - model_name: demo\n    litellm_params:\n      model: mock/demo-model\n      temprature: 0.2\nrouter_settings:\n  num_retries: 2\n",
    );
    let (ok, text) = check_config(&path, &[]);
    assert!(ok, "{text}");
    assert!(text.contains("demo"), "{text}");
    assert!(
        text.contains("model_list[0].litellm_params.temprature"),
        "{text}"
    );
}

#[test]
fn fails_naming_a_missing_environment_variable_without_values() {
    let path = write_config(
        "missing-env.yaml",
        "model_list:\n  - model_name: or\n    litellm_params:\n      model: openrouter/deepseek/deepseek-chat:free\n      api_key: os.environ/TOLLGATE_TEST_MISSING_KEY\ngeneral_settings:\n  master_key: os.environ/TOLLGATE_TEST_MASTER\n",
    );
    let (ok, text) = check_config(&path, &[("TOLLGATE_TEST_MASTER", "sk-shown-nowhere-123")]);
    assert!(!ok, "{text}");
    assert!(text.contains("TOLLGATE_TEST_MISSING_KEY"), "{text}");
    assert!(!text.contains("sk-shown-nowhere-123"), "{text}");
}

#[test]
fn deployment_limits_are_reported_as_enforced() {
    let path = write_config(
        "deployment-limits.yaml",
        "model_list:\n  - model_name: demo\n    litellm_params:\n      model: mock/demo-model\n      rpm: 10\n",
    );
    let (ok, text) = check_config(&path, &[]);
    assert!(ok, "{text}");
    assert!(!text.contains("Not applied yet"), "{text}");
    assert!(text.contains("rpm 10"), "{text}");
    assert!(
        text.contains("rpm/tpm of 1 deployment enforced: counted by each replica on its own"),
        "{text}"
    );
    let path = write_config(
        "deployment-limits-redis.yaml",
        "model_list:\n  - model_name: demo\n    litellm_params:\n      model: mock/demo-model\n      tpm: 1000\nrouter_settings:\n  redis_host: 127.0.0.1\ntollgate:\n  redis_timeout: 0.2\n",
    );
    let (ok, text) = check_config(&path, &[]);
    assert!(ok, "{text}");
    assert!(text.contains("tollgate.redis_timeout: 0.2s"), "{text}");
    assert!(
        text.contains("enforced: counted in Redis, one limit for every replica"),
        "{text}"
    );
}

#[test]
fn the_shipped_examples_check_clean() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let (ok, text) = check_config(&root.join("examples/demo.yaml"), &[]);
    assert!(ok, "{text}");
    let (ok, text) = check_config(
        &root.join("examples/openrouter-free.yaml"),
        &[
            ("OPENROUTER_API_KEY", "sk-or-v1-not-a-real-key"),
            ("TOLLGATE_MASTER_KEY", "sk-master-not-real"),
        ],
    );
    assert!(ok, "{text}");
    assert!(!text.contains("sk-or-v1-not-a-real-key"), "{text}");
    // Every setting of the example is applied: nothing is called out.
    assert!(!text.contains("Not applied yet"), "{text}");
}

/// `check-config [--strict]` on `text`, with only `OPENAI_API_KEY` set.
fn strict_check(strict: bool, name: &str, text: &str) -> (bool, String) {
    let args: &[&str] = if strict { &["--strict"] } else { &[] };
    check_config_with(
        &write_config(name, text),
        args,
        &[("OPENAI_API_KEY", "sk-check")],
    )
}

#[test]
fn check_config_reports_every_error_suggests_keys_and_strict_fails_on_warnings() {
    let broken = "model_list:
  - model_name: a
    litellm_params: { model: acme/x }
  - model_name: b
    litellm_params: { model: openai/gpt-4o, tpm: lots }
router_settings:
  routing_strategy: fastest
";
    let (ok, text) = strict_check(false, "broken.yaml", broken);
    assert!(!ok, "{text}");
    assert!(text.contains("3 errors"), "{text}");
    assert!(
        text.contains("model_list[0].litellm_params.model"),
        "{text}"
    );
    assert!(text.contains("model_list[1].litellm_params.tpm"), "{text}");
    assert!(text.contains("router_settings.routing_strategy"), "{text}");

    let typo = "model_list:
  - model_name: a
    litellm_params: { model: openai/gpt-4o, api_bse: http://x }
";
    let (ok, text) = strict_check(false, "typo.yaml", typo);
    assert!(ok, "{text}");
    assert!(text.contains("did you mean api_base?"), "{text}");
    let (ok, text) = strict_check(true, "typo.yaml", typo);
    assert!(!ok, "{text}");
    assert!(text.contains("--strict"), "{text}");

    // A deployment disabled for want of a key is a warning, so --strict
    // fails on it too.
    let no_key = "model_list:
  - model_name: a
    litellm_params: { model: openai/gpt-4o }
  - model_name: b
    litellm_params: { model: groq/llama3-8b-8192 }
";
    let (ok, text) = strict_check(false, "no-key.yaml", no_key);
    assert!(ok, "{text}");
    assert!(text.contains("DISABLED"), "{text}");
    assert!(text.contains("GROQ_API_KEY"), "{text}");
    let (ok, _) = strict_check(true, "no-key.yaml", no_key);
    assert!(!ok);
}
