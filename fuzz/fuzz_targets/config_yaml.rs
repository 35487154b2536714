//! The config loader: LiteLLM `config.yaml` text → a validated `Config`.
//!
//! Checked, besides "no panic, no stack overflow": the loader's promise that
//! no error or warning holds the value of an environment variable (they
//! name the variable). Every `os.environ/VAR` resolves (except `UNSET`),
//! some to a secret that must then appear in none of them. (A loaded
//! config's report and `Debug` may show a model name read from the
//! environment; keys there are `Secret`s, which the loader's tests cover.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_gateway::config;

const SECRET: &str = "sk-fuzzsecret-5f0c2a";

/// Secrets, numbers and booleans, so that references also reach typed
/// fields (a timeout, a flag) and their errors.
fn env(var: &str) -> Option<String> {
    if var == "UNSET" {
        return None;
    }
    Some(
        match var.len() % 4 {
            0 => "30",
            1 => "true",
            2 => "0.5",
            _ => SECRET,
        }
        .to_owned(),
    )
}

fuzz_target!(|input: &[u8]| {
    let Ok(yaml) = std::str::from_utf8(input) else {
        return;
    };
    let result = config::load_str(yaml, &env);
    if yaml.contains(SECRET) {
        return;
    }
    let shown = match &result {
        Ok(loaded) => {
            // Rendering must not panic either.
            let _ = config::render_report(loaded);
            loaded
                .warnings
                .iter()
                .map(|warning| format!("{warning}\n{warning:?}"))
                .collect::<Vec<_>>()
                .join("\n")
        }
        Err(error) => format!("{error}\n{error:?}"),
    };
    assert!(
        !shown.contains(SECRET),
        "a value from the environment is shown: {shown}"
    );
});
