//! The soak's pieces on loopback, without a gateway: the fault upstream
//! injects what it is told and counts every request; the clients read what
//! they are sent and file the right outcomes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tollgate_bench::soak::clients::{self, Ctx, Kind, Tally};
use tollgate_bench::soak::faults::{self, FaultMix, UpstreamStats};

async fn fault_upstream(mix: FaultMix) -> (SocketAddr, Arc<UpstreamStats>) {
    let listener = tollgate_bench::upstream::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = Arc::new(UpstreamStats::default());
    tokio::spawn(faults::serve(listener, mix, 1, stats.clone()));
    (addr, stats)
}

fn ctx(addr: SocketAddr, tally: &Arc<Tally>) -> Arc<Ctx> {
    Arc::new(Ctx {
        gateway: addr,
        key: String::from("sk-test"),
        end: Instant::now() + Duration::from_secs(60),
        stop: Default::default(),
        tally: tally.clone(),
        pause: Duration::ZERO,
    })
}

/// Every request gets `fault` (a slow first token is only a pause, not
/// tested here: it would be a test that waits on the wall clock).
fn only(fault: &str) -> FaultMix {
    let rate = |name: &str| if name == fault { 1000 } else { 0 };
    FaultMix {
        status: rate("status"),
        reset: rate("reset"),
        cut: rate("cut"),
        slow_first_token: 0,
    }
}

async fn outcomes(kind: Kind, mix: FaultMix, requests: u64) -> (Vec<(String, u64)>, [u64; 5]) {
    let (addr, stats) = fault_upstream(mix).await;
    let tally = Arc::new(Tally::default());
    clients::run(kind, ctx(addr, &tally), requests).await;
    assert_eq!(
        stats.requests(),
        requests,
        "the upstream counts every request"
    );
    (tally.snapshot().into_iter().collect(), stats.faults())
}

#[tokio::test]
async fn without_faults_every_answer_is_whole() {
    let none = FaultMix {
        status: 0,
        reset: 0,
        cut: 0,
        slow_first_token: 0,
    };
    let (json, faults) = outcomes(Kind::Json, none, 5).await;
    assert_eq!(json, [("json ok".to_owned(), 5)]);
    assert_eq!(faults, [5, 0, 0, 0, 0]);
    let (stream, _) = outcomes(Kind::Stream, none, 5).await;
    assert_eq!(stream, [("stream ok".to_owned(), 5)]);
    // A 220 KB stream through a 4 KiB receive buffer, read slowly.
    let (slow, _) = outcomes(Kind::SlowReader, none, 1).await;
    assert_eq!(slow, [("slow-reader ok".to_owned(), 1)]);
}

#[tokio::test]
async fn each_fault_is_what_the_client_sees() {
    let (status, faults) = outcomes(Kind::Json, only("status"), 6).await;
    assert_eq!(faults[1], 6);
    assert_eq!(status.iter().map(|(_, n)| n).sum::<u64>(), 6);
    assert!(
        status
            .iter()
            .all(|(class, _)| ["json 500", "json 502", "json 503"]
                .iter()
                .any(|s| class.starts_with(s))),
        "{status:?}"
    );
    let (reset, _) = outcomes(Kind::Json, only("reset"), 3).await;
    assert_eq!(reset, [("json client reset".to_owned(), 3)]);
    let (cut, _) = outcomes(Kind::Stream, only("cut"), 3).await;
    assert_eq!(cut, [("stream client body cut".to_owned(), 3)]);
}
