//! Tests of `harness.rs`.

use super::*;

#[test]
fn bodies_carry_the_upstream_markers() {
    let stream = body(Mode::Stream, SLOW_MODEL);
    assert!(crate::upstream::contains(&stream, b"\"stream\":true"));
    assert!(crate::upstream::contains(
        &stream,
        br#""model":"bench-slow""#
    ));
    let json = body(Mode::Complete, MODEL);
    assert!(!crate::upstream::contains(&json, b"\"stream\""));
    serde_json::from_slice::<serde_json::Value>(&stream).unwrap();
    serde_json::from_slice::<serde_json::Value>(&json).unwrap();
}

#[test]
fn the_failover_config_has_both_paths() {
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let yaml = gateway_config(addr, Some("http://127.0.0.1:1"));
    let refused = yaml.find(REFUSED_DEPLOYMENT).unwrap();
    let healthy = yaml.find("bench-upstream").unwrap();
    assert!(refused < healthy, "the dead deployment comes first");
    assert!(yaml.contains("api_base: http://127.0.0.1:9/v1"));
    assert!(yaml.contains("    - bench-down: [\"bench-fallback\"]\n"));
    let plain = gateway_config(addr, None);
    assert!(!plain.contains(REFUSED_DEPLOYMENT));
    assert!(!plain.contains(DOWN_MODEL));
    assert!(!plain.contains("fallbacks"));
}
