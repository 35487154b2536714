//! Tests of `report.rs`.

use super::*;

fn row(target: &str, mode: Mode, connections: usize, rate: u64, p50_us: u64) -> Row {
    let mut report = LoadReport {
        completed: rate,
        elapsed: Duration::from_secs(1),
        ..LoadReport::default()
    };
    for _ in 0..rate {
        report.latency.record(Duration::from_micros(p50_us));
        report.first_byte.record(Duration::from_micros(p50_us / 2));
    }
    Row {
        target: target.into(),
        mode,
        connections,
        report,
        cpu: Some(Duration::from_millis(100)),
        peak_kib: Some(30 * 1024),
    }
}

#[test]
fn targets_compare_gateway_floor_and_direct() {
    let mut results = Results::default();
    for mode in [Mode::Complete, Mode::Stream] {
        results.rows.push(row(DIRECT, mode, 1, 1000, 50));
        results.rows.push(row(FLOOR, mode, 1, 900, 100));
        results.rows.push(row(GATEWAY, mode, 1, 800, 140));
        results.rows.push(row(FLOOR, mode, 16, 1000, 100));
        results.rows.push(row(GATEWAY, mode, 16, 900, 100));
        results.rows.push(row(FLOOR, mode, 64, 1000, 100));
        results.rows.push(row(GATEWAY, mode, 64, 800, 100));
    }
    results.processes.push(ProcessRow {
        name: GATEWAY.into(),
        idle_kib: 10 * 1024,
    });
    results.failover.push(FailoverRow {
        plain: row("plain", Mode::Complete, 16, 1000, 100),
        in_group: row("in-group", Mode::Complete, 16, 700, 100),
        cascade: row("cascade", Mode::Complete, 16, 900, 100),
    });
    let verdicts = verdicts(&results);
    let met = |prefix: &str| {
        verdicts
            .iter()
            .find(|v| v.target.starts_with(prefix))
            .unwrap()
            .met
    };
    assert_eq!(met("gateway ≥ 0.85 × the floor's req/s at 16"), Some(true));
    assert_eq!(met("gateway ≥ 0.85 × the floor's req/s at 64"), Some(false));
    // Gateway +90 µs, floor +50 µs: 40 over the floor.
    assert_eq!(met("added p50"), Some(false));
    // Time to first byte: +45 vs +25: 20 over the floor.
    assert_eq!(met("streams: added time"), Some(true));
    assert_eq!(met("at least 1,024"), None);
    assert_eq!(met("failover path (cascade)"), Some(true));
    assert_eq!(met("failover path (inside the group)"), Some(false));
    assert_eq!(met("gateway idle RSS"), Some(true));
    assert_eq!(met("gateway RSS ≤ 64 MB"), None);
    assert_eq!(met("allocations"), None);

    let table = render(&results);
    assert_eq!(table.lines().filter(|l| l.starts_with("json")).count(), 7);
    assert!(render_verdicts(&verdicts).contains("[NOT MET] added p50"));
}
