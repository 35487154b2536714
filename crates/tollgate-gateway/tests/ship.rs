//! What the shipped artefacts promise: the warning for an open gateway on
//! the network, the container's health probe, and docs that match the code.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::binary::GatewayProcess;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tollgate(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tollgate"));
    command.args(args).env_clear();
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

fn write_config(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tollgate-ship-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

const OPEN: &str =
    "model_list:\n  - model_name: demo\n    litellm_params:\n      model: mock/demo-model\n";

#[test]
fn check_config_warns_of_an_open_gateway_on_the_default_address() {
    let path = write_config("open.yaml", OPEN);
    let file = path.to_str().unwrap();
    let (ok, text) = tollgate(&["check-config", file], &[]);
    assert!(ok, "{text}");
    assert!(
        text.contains("NO MASTER KEY: listening on 0.0.0.0"),
        "{text}"
    );

    let (ok, text) = tollgate(&["check-config", file, "--host", "::"], &[]);
    assert!(ok, "{text}");
    assert!(text.contains("NO MASTER KEY: listening on ::"), "{text}");

    let (ok, text) = tollgate(&["check-config", file, "--host", "127.0.0.1"], &[]);
    assert!(ok, "{text}");
    assert!(!text.contains("NO MASTER KEY"), "{text}");
}

#[test]
fn a_master_key_or_a_virtual_key_closes_the_gateway_and_silences_the_warning() {
    let with_master = write_config(
        "master.yaml",
        &format!("{OPEN}general_settings:\n  master_key: os.environ/MASTER\n"),
    );
    let (ok, text) = tollgate(
        &["check-config", with_master.to_str().unwrap()],
        &[("MASTER", "sk-master-not-real")],
    );
    assert!(ok, "{text}");
    assert!(!text.contains("NO MASTER KEY"), "{text}");

    let with_key = write_config(
        "virtual-key.yaml",
        &format!(
            "{OPEN}tollgate:\n  keys:\n    - key: sk-team-a-not-real\n      key_alias: team-a\n"
        ),
    );
    let (ok, text) = tollgate(&["check-config", with_key.to_str().unwrap()], &[]);
    assert!(ok, "{text}");
    assert!(!text.contains("NO MASTER KEY"), "{text}");
}

#[tokio::test]
async fn healthcheck_succeeds_on_a_serving_gateway_and_fails_without_one() {
    let dir = std::env::temp_dir().join(format!("tollgate-ship-hc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let gateway = GatewayProcess::start(&root().join("examples/demo.yaml"), &dir, &[]);
    let addr = gateway.url("").trim_start_matches("http://").to_owned();
    let (ok, text) = tollgate(&["healthcheck", &addr], &[]);
    assert!(ok, "{text}");

    // A port nobody listens on: freed right after the OS picked it.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = free.local_addr().unwrap().to_string();
    drop(free);
    let (ok, text) = tollgate(&["healthcheck", &closed], &[]);
    assert!(!ok, "{text}");
    assert!(text.contains("unhealthy"), "{text}");
}

#[test]
fn config_reference_is_current() {
    let path = root().join("docs/CONFIG.md");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let (ok, generated) = tollgate(&["config-reference"], &[]);
    assert!(ok, "{generated}");
    assert!(
        committed == generated,
        "docs/CONFIG.md is stale: run `cargo run -p tollgate-gateway -- config-reference > docs/CONFIG.md`"
    );
}

/// The alert names of a Prometheus rules file (`- alert: Name` lines).
fn alert_names(rules: &Path) -> Vec<String> {
    std::fs::read_to_string(rules)
        .unwrap()
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- alert:"))
        .map(|name| name.trim().to_owned())
        .collect()
}

#[test]
fn every_alert_has_a_runbook_section_and_every_section_an_alert() {
    let alerts = alert_names(&root().join("deploy/prometheus/alerts.yml"));
    assert!(!alerts.is_empty());
    let runbook = std::fs::read_to_string(root().join("docs/RUNBOOK.md")).unwrap();
    let sections: Vec<&str> = runbook
        .lines()
        .filter_map(|line| line.strip_prefix("## "))
        .filter_map(|title| title.strip_prefix("Alert: "))
        .collect();
    let mut expected = alerts.clone();
    expected.sort();
    let mut found: Vec<String> = sections.iter().map(|s| (*s).to_owned()).collect();
    found.sort();
    assert_eq!(
        found, expected,
        "docs/RUNBOOK.md's `## Alert: <name>` sections"
    );
}

#[test]
fn the_container_and_kubernetes_configs_check_clean() {
    let (ok, text) = tollgate(
        &[
            "check-config",
            root()
                .join("deploy/compose/tollgate.yaml")
                .to_str()
                .unwrap(),
        ],
        &[],
    );
    assert!(ok, "{text}");
    assert!(!text.contains("unknown key"), "{text}");
    // The cluster's config asks for a key: no warning on 0.0.0.0.
    let (ok, text) = tollgate(
        &[
            "check-config",
            root()
                .join("deploy/kubernetes/base/config.yaml")
                .to_str()
                .unwrap(),
        ],
        &[("TOLLGATE_MASTER_KEY", "sk-cluster-not-real")],
    );
    assert!(ok, "{text}");
    assert!(!text.contains("unknown key"), "{text}");
    assert!(!text.contains("NO MASTER KEY"), "{text}");
    assert!(!text.contains("sk-cluster-not-real"), "{text}");
}

/// `check-config` reads a config; it must not create (or migrate) the
/// ledger the config names, which may be a production volume.
#[test]
fn check_config_leaves_the_ledger_it_names_alone() {
    let dir = std::env::temp_dir().join(format!("tollgate-ship-ledger-{}", std::process::id()));
    let ledger = dir.join("volume").join("ledger.sqlite3");
    let path = write_config(
        "ledger.yaml",
        &format!(
            "{OPEN}tollgate:\n  ledger_path: {}\n",
            ledger.to_str().unwrap()
        ),
    );
    let (ok, text) = tollgate(&["check-config", path.to_str().unwrap()], &[]);
    assert!(ok, "{text}");
    assert!(!dir.join("volume").exists(), "check-config made {ledger:?}");
}
