//! The end-to-end load harness: how much the gateway adds over the network
//! path it sits on.
//!
//! ```sh
//! crates/tollgate-bench/run.sh           # builds (release), then the full run: ~4 minutes
//! crates/tollgate-bench/run.sh --quick   # ~1.5 minutes: one round of 1 s windows
//! ```
//!
//! The `loadtest` binary starts three processes on loopback — a fixed-body
//! OpenAI-style [upstream](upstream::serve) (itself, re-invoked), the
//! [floor proxy](floor::serve) (`floor-proxy`: hyper forwarding with no
//! features, the least a Rust proxy costs) and the `tollgate` gateway with
//! its default stack and info-level access logs to a file — then drives the
//! same closed-loop [loads](load::run) at each of them in turn: 1, 16, 64
//! and 256 connections, whole JSON answers and SSE streams. It prints, per
//! target, requests per second, latency quantiles, the latency added over
//! going direct, the throughput ratio to the floor, the target process's
//! CPU time per request and peak RSS, and for streams the added time to
//! first byte and per event; then how many slow streams each target
//! [holds](load::hold) at once without a stall, the failover path (a
//! primary that refuses connections, its breaker open), allocations per
//! request (valgrind DHAT, [`allocs`]), and the issue's
//! [targets](report::verdicts), each met or not.
//!
//! Every process is its own, so `/proc` gives each one's CPU time and
//! memory ([`proc`]). Only loopback addresses are ever used; every run is
//! bounded in time and the children are killed when the harness ends.
//!
//! # Example
//!
//! The pieces work in process too: the fixed upstream, and a bounded load
//! against it.
//!
//! ```
//! use std::time::Duration;
//! use tollgate_bench::load::{self, LoadSpec, Mode, Stop};
//! use tollgate_bench::upstream::{self, UpstreamConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tollgate_bench::BoxError> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! tokio::spawn(upstream::serve(listener, UpstreamConfig::default()));
//!
//! let spec = LoadSpec {
//!     addr,
//!     body: tollgate_bench::harness::body(Mode::Complete, "bench"),
//!     mode: Mode::Complete,
//!     connections: 2,
//!     stop: Stop::Requests(20),
//!     request_timeout: Duration::from_secs(10),
//! };
//! let report = load::run(&spec, None).await?;
//! assert_eq!(report.completed, 20);
//! println!("{:.0} req/s, p50 {:?}", report.rate(), report.latency.quantile(0.5));
//! # Ok(())
//! # }
//! ```
//!
//! # When not to use it
//!
//! For the cost of one layer, its criterion bench over a no-op service
//! (`cargo bench -p tollgate-retry`, `-p tollgate-breaker`) is far more
//! precise: this harness shares two cores between the load generator, the
//! upstream and the proxy, so its absolute figures move from run to run and
//! only ratios measured in one run mean much. Nor is it a soak test: each
//! load lasts seconds; the [`soak`] (the `soak` binary, `scripts/soak`) runs
//! for minutes, with faults.

pub mod allocs;
pub mod child;
pub mod floor;
pub mod harness;
mod histogram;
pub mod load;
pub mod proc;
pub mod report;
pub mod soak;
pub mod upstream;

pub use histogram::Histogram;

/// The error type of the harness: anything, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
