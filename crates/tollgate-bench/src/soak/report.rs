//! What the soak saw: a row every interval, the outcome classes of the whole
//! run, and the verdicts (flat memory, flat descriptors, no lost ledger
//! row).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// One replica's process, sampled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessSample {
    /// Resident memory, KiB.
    pub rss_kib: u64,
    /// Open file descriptors.
    pub fds: u64,
}

/// Everything sampled at one moment.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Time since the load started.
    pub at: Duration,
    /// Outcomes so far, by class (see `clients::Tally`).
    pub outcomes: BTreeMap<String, u64>,
    /// The replicas, in order.
    pub replicas: Vec<ProcessSample>,
    /// Requests the upstream has seen so far.
    pub upstream_requests: u64,
    /// Whether Redis answered `PING`.
    pub redis_up: bool,
}

/// The columns outcomes are grouped into.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Columns {
    /// Every outcome.
    pub requests: u64,
    /// Complete answers (a stream ending in `[DONE]`).
    pub ok: u64,
    /// 429s of the rate-limited key: its limit at work, not a failure.
    pub limited: u64,
    /// Error answers of the gateway (an HTTP error status) to clients that
    /// behaved.
    pub errors: u64,
    /// Streams that ended with an error event or without `[DONE]`.
    pub stream_errors: u64,
    /// Failures the client saw below HTTP: a reset, a timeout.
    pub client: u64,
    /// Stalling and slow-body clients: abandoned by design.
    pub abandoned: u64,
}

impl Columns {
    /// Groups outcome classes.
    pub fn of(outcomes: &BTreeMap<String, u64>) -> Columns {
        let mut c = Columns::default();
        for (class, &n) in outcomes {
            c.requests += n;
            let column = if class.ends_with(" ok") {
                &mut c.ok
            } else if class.contains(" client ") {
                &mut c.client
            } else if class.starts_with("limited 429") {
                &mut c.limited
            } else if class.starts_with("staller ") || class.starts_with("slow-body ") {
                &mut c.abandoned
            } else if class.contains("stream error") || class.contains("without [DONE]") {
                &mut c.stream_errors
            } else {
                &mut c.errors
            };
            *column += n;
        }
        c
    }

    fn minus(self, before: Columns) -> Columns {
        Columns {
            requests: self.requests - before.requests,
            ok: self.ok - before.ok,
            limited: self.limited - before.limited,
            errors: self.errors - before.errors,
            stream_errors: self.stream_errors - before.stream_errors,
            client: self.client - before.client,
            abandoned: self.abandoned - before.abandoned,
        }
    }
}

/// The ledger check: rows written against attempts the upstream saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LedgerCheck {
    /// Rows in each replica's ledger.
    pub rows: [u64; 2],
    /// Requests the upstream saw.
    pub upstream: u64,
}

impl LedgerCheck {
    /// Whether every attempt has its row, and no row is extra.
    pub fn holds(&self) -> bool {
        self.rows.iter().sum::<u64>() == self.upstream
    }
}

/// Flat memory: the mean RSS of the last three samples is at most 15% +
/// 4 MiB over the mean of the samples in the two minutes from `reference`
/// on (by default from 1:00: pools, connections and allocator arenas are
/// filled by then). Returns the two means, in KiB, and the verdict.
///
/// The ledger's page cache (8 MiB) fills as the ledger file grows, which at
/// the soak's load takes about 23 minutes: a longer run with a later
/// `reference` judges the process after it (RELIABILITY.md).
pub fn rss_flat(
    samples: &[Sample],
    replica: usize,
    reference: Duration,
) -> Option<(u64, u64, bool)> {
    let window = reference..=reference + Duration::from_secs(120);
    let warm: Vec<u64> = samples
        .iter()
        .filter(|s| window.contains(&s.at))
        .map(|s| s.replicas[replica].rss_kib)
        .collect();
    let last: Vec<u64> = samples
        .iter()
        .rev()
        .take(3)
        .map(|s| s.replicas[replica].rss_kib)
        .collect();
    if warm.is_empty() || last.len() < 3 {
        return None;
    }
    let warm = warm.iter().sum::<u64>() / warm.len() as u64;
    let last = last.iter().sum::<u64>() / last.len() as u64;
    Some((warm, last, last <= warm + warm * 15 / 100 + 4096))
}

/// Flat descriptors: the most open in the second half of the run is at
/// most 20% + 10 over the most in the first half (connections come and go
/// with the load; a leak grows without bound).
pub fn fds_flat(samples: &[Sample], replica: usize) -> Option<(u64, u64, bool)> {
    let half = samples.last()?.at / 2;
    let max = |second: bool| {
        samples
            .iter()
            .filter(|s| (s.at > half) == second)
            .map(|s| s.replicas[replica].fds)
            .max()
    };
    let (first, second) = (max(false)?, max(true)?);
    Some((first, second, second <= first + first / 5 + 10))
}

/// The table, one row per sample: the window's outcomes, then the state at
/// its end.
pub fn table(samples: &[Sample]) -> String {
    let mut out = String::from(
        "| t | requests | ok | key 429 | errors | stream errors | client-side | abandoned | \
         upstream | RSS A / B (MiB) | fds A / B | Redis |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:--|\n",
    );
    let mut before = Columns::default();
    let mut upstream_before = 0;
    for sample in samples {
        let now = Columns::of(&sample.outcomes);
        let d = now.minus(before);
        let mib = |kib: u64| kib as f64 / 1024.0;
        let replica = |i: usize| sample.replicas.get(i).copied().unwrap_or_default();
        let _ = writeln!(
            out,
            "| {}:{:02} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} / {:.1} | {} / {} | {} |",
            sample.at.as_secs() / 60,
            sample.at.as_secs() % 60,
            d.requests,
            d.ok,
            d.limited,
            d.errors,
            d.stream_errors,
            d.client,
            d.abandoned,
            sample.upstream_requests - upstream_before,
            mib(replica(0).rss_kib),
            mib(replica(1).rss_kib),
            replica(0).fds,
            replica(1).fds,
            if sample.redis_up { "up" } else { "**down**" },
        );
        before = now;
        upstream_before = sample.upstream_requests;
    }
    out
}

/// Every outcome class of the run, most frequent first.
pub fn classes(outcomes: &BTreeMap<String, u64>) -> String {
    let mut rows: Vec<(&String, &u64)> = outcomes.iter().collect();
    rows.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let mut out = String::from("| client, outcome | count |\n|---|---:|\n");
    for (class, n) in rows {
        let _ = writeln!(out, "| {class} | {n} |");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(secs: u64, rss: u64, fds: u64) -> Sample {
        Sample {
            at: Duration::from_secs(secs),
            replicas: vec![ProcessSample { rss_kib: rss, fds }; 2],
            ..Sample::default()
        }
    }

    #[test]
    fn outcomes_fall_into_their_columns() {
        let outcomes: BTreeMap<String, u64> = [
            ("json ok", 5),
            ("stream ok", 4),
            ("limited 429 rate_limit_exceeded", 3),
            ("json 502 upstream_unavailable", 2),
            ("stream stream error stream_interrupted", 1),
            ("json client timeout", 1),
            ("staller left after stalling", 2),
            ("slow-body no answer in 20 s (left)", 1),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let c = Columns::of(&outcomes);
        assert_eq!(
            c,
            Columns {
                requests: 19,
                ok: 9,
                limited: 3,
                errors: 2,
                stream_errors: 1,
                client: 1,
                abandoned: 3,
            }
        );
    }

    #[test]
    fn growing_memory_is_not_flat() {
        let steady: Vec<Sample> = (1..=20).map(|i| sample(i * 30, 20_000, 50)).collect();
        let minute = Duration::from_secs(60);
        assert!(rss_flat(&steady, 0, minute).unwrap().2);
        assert!(fds_flat(&steady, 1).unwrap().2);
        let leaking: Vec<Sample> = (1..=20)
            .map(|i| sample(i * 30, 20_000 + i * 2_000, 50 + i * 10))
            .collect();
        assert!(!rss_flat(&leaking, 0, minute).unwrap().2);
        // A cache that fills for 5 minutes, then stays: not flat judged from
        // the first minute, flat judged after it filled.
        let filling: Vec<Sample> = (1..=20)
            .map(|i| sample(i * 30, 20_000 + i.min(10) * 2_000, 50))
            .collect();
        assert!(!rss_flat(&filling, 0, minute).unwrap().2);
        assert!(rss_flat(&filling, 0, 5 * minute).unwrap().2);
        assert!(!fds_flat(&leaking, 0).unwrap().2);
    }

    #[test]
    fn the_ledger_check_counts_both_replicas() {
        let check = LedgerCheck {
            rows: [10, 5],
            upstream: 15,
        };
        assert!(check.holds());
        assert!(
            !LedgerCheck {
                upstream: 16,
                ..check
            }
            .holds()
        );
    }
}
