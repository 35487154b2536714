//! The chaos soak: two gateway replicas sharing a Redis, minutes of mixed
//! faults and misbehaving clients, Redis killed and restarted half-way, and
//! a check at the end that memory and descriptors stayed flat and that the
//! spend ledgers hold a row for every attempt the upstream saw.
//!
//! ```sh
//! scripts/soak                 # builds (release), then ten minutes
//! scripts/soak --duration 120  # a shorter run
//! ```
//!
//! Pieces, all on loopback: an in-process [fault upstream](faults) that
//! counts every request; a `redis-server` child; two `tollgate` children
//! (release build) with the same config but their own ledger files; and
//! the [clients] — JSON, streams, a rate-limited key, slow
//! readers, stallers, slow request bodies — split over both replicas. Every
//! loop is bounded in count and in time; the children are killed when the
//! soak ends, however it ends. The last full run is in RELIABILITY.md.

pub mod clients;
pub mod faults;
pub mod report;

use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, HOST};
use http::{HeaderValue, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tollgate_testkit::RedisServer;

use self::clients::{Ctx, Kind, Tally};
use self::faults::{FaultMix, UpstreamStats};
use self::report::{LedgerCheck, ProcessSample, Sample};
use crate::BoxError;
use crate::child::Process;

/// The master key of the soak's replicas (a throwaway, on loopback).
const MASTER_KEY: &str = "sk-soak-master";
/// The virtual key without limits.
const OPEN_KEY: &str = "sk-soak-open-key";
/// The virtual key held to 120 requests a minute.
const LIMITED_KEY: &str = "sk-soak-limited-key";

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long the load runs.
    pub duration: Duration,
    /// Time between two rows of the table.
    pub interval: Duration,
    /// Seeds the upstream's faults.
    pub seed: u64,
    /// The upstream's fault rates.
    pub mix: FaultMix,
    /// Clients of each kind, per replica.
    pub clients: Vec<(Kind, usize)>,
    /// Pause between two requests of a client.
    pub pause: Duration,
    /// The gateway binary.
    pub gateway: PathBuf,
    /// Where configs, ledgers and logs go.
    pub work_dir: PathBuf,
}

impl Options {
    /// The default mix of clients, per replica.
    pub fn default_clients() -> Vec<(Kind, usize)> {
        vec![
            (Kind::Json, 3),
            (Kind::Stream, 3),
            (Kind::Limited, 1),
            (Kind::SlowReader, 2),
            (Kind::Staller, 1),
            (Kind::SlowBody, 1),
        ]
    }
}

/// What the soak measured.
#[derive(Debug, Clone, Default)]
pub struct Results {
    /// Each replica idle, before the load.
    pub idle: Vec<ProcessSample>,
    /// A sample every interval.
    pub samples: Vec<Sample>,
    /// Each replica idle again, after the load drained.
    pub after: Vec<ProcessSample>,
    /// Rows against attempts.
    pub ledger: LedgerCheck,
    /// Injected faults, in `faults::FAULT_NAMES` order.
    pub faults: [u64; 5],
    /// `tollgate_shared_state_fallbacks_total` of each replica at the end.
    pub shared_state_fallbacks: Vec<String>,
    /// When Redis was killed and started again, since the load's start.
    pub redis_down: (Duration, Duration),
    /// How each replica exited on SIGTERM.
    pub exits: Vec<String>,
}

/// Runs the soak. Progress goes to stderr, a row per interval.
///
/// # Errors
///
/// When a process does not start or a replica does not answer a first
/// request.
pub fn run(options: &Options) -> Result<Results, BoxError> {
    std::fs::create_dir_all(&options.work_dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(soak(options))
}

async fn soak(options: &Options) -> Result<Results, BoxError> {
    let listener = crate::upstream::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    let upstream = listener.local_addr()?;
    let stats = Arc::new(UpstreamStats::default());
    let upstream_task = tokio::spawn(faults::serve(
        listener,
        options.mix,
        options.seed,
        stats.clone(),
    ));
    let mut redis = RedisServer::start().await;

    let mut replicas = Vec::new();
    for name in ["replica-a", "replica-b"] {
        replicas.push(start_replica(options, name, upstream, redis.port())?);
    }
    let addrs: Vec<SocketAddr> = replicas.iter().map(|(_, addr)| *addr).collect();
    let pids: Vec<u32> = replicas.iter().map(|(p, _)| p.pid()).collect();
    for &addr in &addrs {
        let status = get(addr, "/health", MASTER_KEY).await?.0;
        if status != 200 {
            return Err(format!("{addr}: /health answered {status}").into());
        }
    }
    eprintln!(
        "upstream {upstream}, redis :{}, replicas {addrs:?} (pids {pids:?}); work dir {}",
        redis.port(),
        options.work_dir.display()
    );
    let mut results = Results {
        idle: pids.iter().map(|&pid| sample_process(pid)).collect(),
        ..Results::default()
    };

    let tally = Arc::new(Tally::default());
    let start = Instant::now();
    let end = start + options.duration;
    let mut contexts = Vec::new();
    let mut tasks = JoinSet::new();
    for &addr in &addrs {
        for &(kind, count) in &options.clients {
            for _ in 0..count {
                let key = if kind == Kind::Limited {
                    LIMITED_KEY
                } else {
                    OPEN_KEY
                };
                let ctx = Arc::new(Ctx {
                    gateway: addr,
                    key: key.to_owned(),
                    end,
                    stop: Default::default(),
                    tally: tally.clone(),
                    pause: options.pause,
                });
                contexts.push(ctx.clone());
                tasks.spawn(clients::run(kind, ctx, 10_000_000));
            }
        }
    }

    // Redis goes down at 40% of the run and comes back at 50%; a row every
    // interval. The plan is finite, so is the loop.
    let kill_at = options.duration * 2 / 5;
    let restart_at = options.duration / 2;
    results.redis_down = (kill_at, restart_at);
    let mut plan = vec![(kill_at, Step::KillRedis), (restart_at, Step::RestartRedis)];
    let interval = options.interval.max(Duration::from_secs(1));
    let mut at = interval;
    while at <= options.duration {
        plan.push((at, Step::Sample));
        at += interval;
    }
    plan.sort_by_key(|&(at, step)| (at, step != Step::Sample));
    eprintln!("{}", report::table(&[]).trim_end());
    for (at, step) in plan {
        tokio::time::sleep_until(start + at).await;
        match step {
            Step::KillRedis => {
                redis.kill();
                eprintln!("-- Redis killed at {}s", at.as_secs());
            }
            Step::RestartRedis => {
                redis.restart().await;
                eprintln!("-- Redis restarted (empty) at {}s", at.as_secs());
            }
            Step::Sample => {
                let sample = Sample {
                    at,
                    outcomes: tally.snapshot(),
                    replicas: pids.iter().map(|&pid| sample_process(pid)).collect(),
                    upstream_requests: stats.requests(),
                    redis_up: redis.ping(),
                };
                results.samples.push(sample);
                // The table's last row: this window's outcomes.
                let table = report::table(&results.samples);
                eprintln!("{}", table.lines().last().unwrap_or_default());
            }
        }
    }

    // The load stops: no request starts now; those in flight have their
    // own deadlines (at most 60 s).
    for ctx in &contexts {
        ctx.stop.store(true, Ordering::Relaxed);
    }
    let drained = tokio::time::timeout(Duration::from_secs(90), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        eprintln!("-- clients still running after 90 s: aborted");
        tasks.abort_all();
    }
    results.ledger = ledger_check(&addrs, &stats).await?;
    results.after = pids.iter().map(|&pid| sample_process(pid)).collect();
    if let Some(last) = results.samples.last_mut() {
        // The table's last row counts every outcome, late ones included.
        last.outcomes = tally.snapshot();
    }
    results.faults = stats.faults();
    for &addr in &addrs {
        let (_, metrics) = get(addr, "/metrics", MASTER_KEY).await?;
        let line = String::from_utf8_lossy(&metrics)
            .lines()
            .find(|l| l.starts_with("tollgate_shared_state_fallbacks_total"))
            .map_or_else(|| String::from("(absent)"), str::to_owned);
        results.shared_state_fallbacks.push(line);
    }
    for (mut process, _) in replicas {
        let status = process.terminate(Duration::from_secs(30))?;
        results.exits.push(status.to_string());
    }
    upstream_task.abort();
    drop(redis);
    Ok(results)
}

/// What the soak does at a point of its plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Sample,
    KillRedis,
    RestartRedis,
}

/// Waits until both ledgers have written every row (their writers commit
/// at least every second; three equal readings a second apart), then
/// compares them with the upstream's count.
async fn ledger_check(
    addrs: &[SocketAddr],
    stats: &UpstreamStats,
) -> Result<LedgerCheck, BoxError> {
    let mut last = None;
    let mut same = 0;
    // At most 60 readings, a second apart.
    for _ in 0..60 {
        let mut rows = [0u64; 2];
        for (i, &addr) in addrs.iter().enumerate().take(2) {
            rows[i] = ledger_rows(addr).await?;
        }
        let check = LedgerCheck {
            rows,
            upstream: stats.requests(),
        };
        if last == Some(check) {
            same += 1;
            if same >= 3 {
                return Ok(check);
            }
        } else {
            same = 0;
        }
        last = Some(check);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    last.ok_or_else(|| "no ledger reading".into())
}

/// The rows of a replica's ledger: `attempts` summed over
/// `/spend/summary?group_by=day`.
async fn ledger_rows(addr: SocketAddr) -> Result<u64, BoxError> {
    let (status, body) = get(addr, "/spend/summary?group_by=day", MASTER_KEY).await?;
    if status != 200 {
        return Err(format!("{addr}: /spend/summary answered {status}").into());
    }
    let json: serde_json::Value = serde_json::from_slice(&body)?;
    Ok(json["data"]
        .as_array()
        .map(|days| days.iter().filter_map(|d| d["attempts"].as_u64()).sum())
        .unwrap_or(0))
}

/// `GET path` with the master key, on a connection of its own.
async fn get(addr: SocketAddr, path: &str, key: &str) -> Result<(u16, Bytes), BoxError> {
    let exchange = async {
        let tcp = TcpStream::connect(addr).await?;
        let (mut send, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(connection);
        let mut request = Request::get(path).body(Empty::<Bytes>::new())?;
        request
            .headers_mut()
            .insert(HOST, HeaderValue::from_static("127.0.0.1"));
        request.headers_mut().insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {key}"))?,
        );
        let response = send.send_request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok::<_, BoxError>((status, body))
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| format!("{addr}{path}: no answer in 10 s"))?
}

/// RSS and open descriptors of a process (zeros once it is gone).
fn sample_process(pid: u32) -> ProcessSample {
    ProcessSample {
        rss_kib: crate::proc::memory(pid).map_or(0, |m| m.rss_kib),
        fds: std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64),
    }
}

/// The replicas' config: the group `soak` (two deployments at the
/// upstream) and `soak-big` (large streams), retries and breakers as in
/// production, Redis, the two virtual keys, and this replica's ledger.
pub fn gateway_config(upstream: SocketAddr, redis_port: u16, ledger: &Path) -> String {
    let deployment = |group: &str, id: &str| {
        format!(
            "  - model_name: {group}\n    litellm_params:\n      model: openai/{group}\n      \
             api_base: http://{upstream}/v1\n      api_key: os.environ/SOAK_UPSTREAM_KEY\n      \
             stream_timeout: 2\n      timeout: 20\n    model_info:\n      id: {id}\n      \
             input_cost_per_token: 0.0000025\n      output_cost_per_token: 0.00001\n"
        )
    };
    let mut yaml = String::from("# Written by the tollgate-bench soak.\nmodel_list:\n");
    yaml.push_str(&deployment(clients::MODEL, "soak-a"));
    yaml.push_str(&deployment(clients::MODEL, "soak-b"));
    yaml.push_str(&deployment(faults::BIG_MODEL, "soak-big"));
    yaml.push_str(&format!(
        "router_settings:\n  num_retries: 2\n  allowed_fails: 3\n  cooldown_time: 5\n  \
         redis_host: 127.0.0.1\n  redis_port: {redis_port}\n\
         general_settings:\n  master_key: os.environ/SOAK_MASTER_KEY\n\
         tollgate:\n  shutdown_grace_period: 5\n  ledger_path: {}\n  keys:\n    \
         - key: os.environ/SOAK_OPEN_KEY\n      key_alias: soak-open\n    \
         - key: os.environ/SOAK_LIMITED_KEY\n      key_alias: soak-limited\n      \
         rpm_limit: 120\n      max_parallel_requests: 2\n",
        ledger.display()
    ));
    yaml
}

/// Starts one replica on a free loopback port, info logs (JSON) to a file.
fn start_replica(
    options: &Options,
    name: &str,
    upstream: SocketAddr,
    redis_port: u16,
) -> Result<(Process, SocketAddr), BoxError> {
    let dir = options.work_dir.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        gateway_config(upstream, redis_port, &dir.join("ledger.sqlite3")),
    )?;
    let port = StdTcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port();
    let mut command = Command::new(&options.gateway);
    command
        .arg("--config")
        .arg(&config)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--log-format", "json"])
        .env("RUST_LOG", "info")
        .env("SOAK_UPSTREAM_KEY", "sk-soak-upstream")
        .env("SOAK_MASTER_KEY", MASTER_KEY)
        .env("SOAK_OPEN_KEY", OPEN_KEY)
        .env("SOAK_LIMITED_KEY", LIMITED_KEY)
        .current_dir(&dir);
    let log = options.work_dir.join(format!("{name}.log"));
    let mut process = Process::spawn(name, &mut command, Some(&log))?;
    process.wait_logged("listening on", Duration::from_secs(30))?;
    Ok((process, SocketAddr::from((Ipv4Addr::LOCALHOST, port))))
}
