//! The whole run: start the processes, drive every load, collect the results.

use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

use crate::BoxError;
use crate::allocs;
use crate::child::Process;
use crate::load::{self, HoldSpec, LoadSpec, Mode, Stop, Window};
use crate::proc;
use crate::report::{
    AllocRow, DIRECT, FLOOR, FailoverRow, GATEWAY, HoldRow, ProcessRow, Results, Row,
};
use crate::upstream::{SLOW_MODEL, UpstreamConfig};

#[path = "harness_allocs.rs"]
mod allocs_run;

use allocs_run::{count_allocations, has_valgrind};

/// The model group every load asks for.
pub const MODEL: &str = "bench";

/// The id of the deployment that refuses connections, in the failover
/// config.
pub const REFUSED_DEPLOYMENT: &str = "bench-refused";

/// The environment variable the gateway reads its (fake) upstream key from,
/// as a production config would.
const KEY_VAR: &str = "TOLLGATE_BENCH_KEY";

/// The model group of the cascade's dead primary, in the failover config.
pub const DOWN_MODEL: &str = "bench-down";

/// Its only deployment, which refuses connections.
pub const DOWN_DEPLOYMENT: &str = "bench-down-refused";

/// The group the cascade falls back to from [`DOWN_MODEL`].
pub const FALLBACK_MODEL: &str = "bench-fallback";

/// How long a child has to start listening (valgrind is slow to start).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Load before each measured window.
    pub warm_up: Duration,
    /// Each measured window.
    pub measure: Duration,
    /// Rounds of every load: each round runs the targets in turn, in the
    /// reverse order of the round before (direct, floor, gateway, then
    /// gateway, floor, direct), so a machine slowly getting busier or
    /// quieter biases none of them; a row adds up its rounds.
    pub rounds: usize,
    /// The concurrencies of the load matrix.
    pub connections: Vec<usize>,
    /// The modes of the load matrix.
    pub modes: Vec<Mode>,
    /// The concurrencies of the failover comparison.
    pub failover_connections: Vec<usize>,
    /// Slow streams held open at once.
    pub streams: usize,
    /// The upstream's replies.
    pub upstream: UpstreamConfig,
    /// Requests of the two valgrind runs whose difference counts
    /// allocations; `None` skips counting.
    pub allocs: Option<(u64, u64)>,
    /// The harness's own binary, started with `--serve-upstream` as the
    /// upstream.
    pub harness: PathBuf,
    /// The floor proxy binary.
    pub floor: PathBuf,
    /// The gateway binary.
    pub gateway: PathBuf,
    /// Where configs, logs and allocation profiles go.
    pub work_dir: PathBuf,
}

/// A target of the load: a process listening on loopback.
#[derive(Debug, Clone)]
struct Target {
    name: String,
    addr: SocketAddr,
    pid: u32,
    /// The model group its requests ask for.
    model: &'static str,
}

/// The request bodies: compact JSON, as the upstream's markers expect.
pub fn body(mode: Mode, model: &str) -> Bytes {
    let messages = r#""messages":[{"role":"user","content":"Say hello."}]"#;
    Bytes::from(match mode {
        Mode::Complete => format!(r#"{{"model":"{model}",{messages}}}"#),
        Mode::Stream => format!(
            r#"{{"model":"{model}","stream":true,"stream_options":{{"include_usage":true}},{messages}}}"#
        ),
    })
}

/// The gateway's config: the model groups `bench` and `bench-slow`, each one
/// priced `openai/` deployment at the upstream, with the retry and breaker
/// settings of a production config. The binary keeps its spend ledger in
/// its working directory.
///
/// With `refused` (a URL where nothing listens), the two failover paths:
/// `bench` gets a first deployment there ([`REFUSED_DEPLOYMENT`]), for
/// failover inside a group; and the group [`DOWN_MODEL`], whose only
/// deployment is there, falls back to [`FALLBACK_MODEL`] at the upstream,
/// for the fallback cascade.
pub fn gateway_config(upstream: SocketAddr, refused: Option<&str>) -> String {
    let deployment = |group: &str, id: &str, base: &str| {
        format!(
            "  - model_name: {group}\n    litellm_params:\n      model: openai/{group}\n      \
             api_base: {base}/v1\n      api_key: os.environ/{KEY_VAR}\n    model_info:\n      id: {id}\n      \
             input_cost_per_token: 0.0000025\n      output_cost_per_token: 0.00001\n"
        )
    };
    let base = format!("http://{upstream}");
    let mut yaml = String::from(
        "# Written by tollgate-bench: the gateway under load, with its default stack.\nmodel_list:\n",
    );
    if let Some(refused) = refused {
        yaml.push_str(&deployment(MODEL, REFUSED_DEPLOYMENT, refused));
    }
    yaml.push_str(&deployment(MODEL, "bench-upstream", &base));
    yaml.push_str(&deployment(SLOW_MODEL, "bench-slow-upstream", &base));
    if let Some(refused) = refused {
        yaml.push_str(&deployment(DOWN_MODEL, DOWN_DEPLOYMENT, refused));
        yaml.push_str(&deployment(
            FALLBACK_MODEL,
            "bench-fallback-upstream",
            &base,
        ));
    }
    yaml.push_str("router_settings:\n  num_retries: 3\n  allowed_fails: 4\n  cooldown_time: 30\n");
    if refused.is_some() {
        yaml.push_str(&format!(
            "  fallbacks:\n    - {DOWN_MODEL}: [\"{FALLBACK_MODEL}\"]\n"
        ));
    }
    yaml
}

/// Runs everything `options` asks for and returns what was measured.
/// Progress goes to stderr.
///
/// # Errors
///
/// When a process does not start, a target does not answer a first request
/// correctly, or a connection cannot be opened.
pub fn run(options: &Options) -> Result<Results, BoxError> {
    std::fs::create_dir_all(&options.work_dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let ticks = proc::ticks_per_second();
    let mut results = Results::default();

    let mut upstream = Process::spawn(
        "upstream",
        Command::new(&options.harness).args(upstream_args(&options.upstream)),
        None,
    )?;
    let upstream_addr = upstream.wait_listening(START_TIMEOUT)?;
    let mut floor = Process::spawn(
        "floor",
        Command::new(&options.floor).args(["--upstream", &upstream_addr.to_string()]),
        None,
    )?;
    let floor_addr = floor.wait_listening(START_TIMEOUT)?;
    let config = options.work_dir.join("gateway.yaml");
    std::fs::write(&config, gateway_config(upstream_addr, None))?;
    let (gateway, gateway_addr) = start_gateway(options, &config, "gateway", None)?;
    eprintln!(
        "upstream {upstream_addr} (pid {}), floor {floor_addr} (pid {}), gateway {gateway_addr} (pid {}); work dir {}",
        upstream.pid(),
        floor.pid(),
        gateway.pid(),
        options.work_dir.display()
    );

    let targets = [
        Target {
            name: DIRECT.into(),
            addr: upstream_addr,
            pid: upstream.pid(),
            model: MODEL,
        },
        Target {
            name: FLOOR.into(),
            addr: floor_addr,
            pid: floor.pid(),
            model: MODEL,
        },
        Target {
            name: GATEWAY.into(),
            addr: gateway_addr,
            pid: gateway.pid(),
            model: MODEL,
        },
    ];
    for (name, pid) in [
        ("upstream", upstream.pid()),
        (FLOOR, floor.pid()),
        (GATEWAY, gateway.pid()),
    ] {
        results.processes.push(ProcessRow {
            name: name.into(),
            idle_kib: proc::memory(pid)?.rss_kib,
        });
    }
    for target in &targets {
        smoke(&runtime, target, options)?;
    }

    for &mode in &options.modes {
        for &connections in &options.connections {
            for round in 0..options.rounds.max(1) {
                for target in in_turn(&targets, round) {
                    eprintln!(
                        "{:<6} {connections:>4} connections, round {}: {}",
                        mode.name(),
                        round + 1,
                        target.name
                    );
                    let row = measure(&runtime, target, mode, connections, options, ticks)?;
                    results.add(row);
                }
            }
        }
    }

    let stall_after = options.upstream.slow_interval * 10;
    results.hold_note = format!(
        "{} streams opened at once, each {} events {} ms apart from the upstream; \
         a stall is a silence over {} ms (before the first event or between two)",
        options.streams,
        options.upstream.slow_events(),
        options.upstream.slow_interval.as_millis(),
        stall_after.as_millis()
    );
    let hold_targets = if options.streams > 0 {
        &targets[..]
    } else {
        &[]
    };
    for target in hold_targets {
        eprintln!("{} concurrent streams: {}", options.streams, target.name);
        let _ = proc::reset_peak(target.pid);
        let spec = HoldSpec {
            addr: target.addr,
            body: body(Mode::Stream, SLOW_MODEL),
            streams: options.streams,
            stall_after,
            timeout: options.upstream.slow_interval * options.upstream.slow_events() as u32
                + Duration::from_secs(20),
        };
        let report = runtime.block_on(load::hold(&spec))?;
        results.holds.push(HoldRow {
            target: target.name.clone(),
            report,
            peak_kib: proc::memory(target.pid).ok().map(|m| m.peak_kib),
        });
    }

    if !options.failover_connections.is_empty() {
        failover(&runtime, options, upstream_addr, ticks, &mut results)?;
    }

    match options.allocs {
        Some(_) if !has_valgrind() => {
            results.allocs_note =
                String::from("not measured: valgrind is not installed (apt-get install valgrind)");
        }
        Some((fewer, more)) => {
            drop(gateway);
            drop(floor);
            count_allocations(&runtime, options, upstream_addr, fewer, more, &mut results)?;
        }
        None => results.allocs_note = String::from("not measured (--no-allocs)"),
    }
    drop(upstream);
    Ok(results)
}

/// The targets in the order of `round`: forwards, then backwards.
fn in_turn<T>(targets: &[T], round: usize) -> Vec<&T> {
    if round.is_multiple_of(2) {
        targets.iter().collect()
    } else {
        targets.iter().rev().collect()
    }
}

fn upstream_args(config: &UpstreamConfig) -> Vec<String> {
    vec![
        String::from("--serve-upstream"),
        String::from("--stream-parts"),
        config.stream_parts.to_string(),
        String::from("--slow-parts"),
        config.slow_parts.to_string(),
        String::from("--slow-interval-ms"),
        config.slow_interval.as_millis().to_string(),
    ]
}

/// Starts the gateway binary on a free loopback port with `config`, info
/// logs (JSON lines, as production ships them) going to a file. With
/// `wrap`, the binary runs under that command (valgrind).
fn start_gateway(
    options: &Options,
    config: &Path,
    name: &str,
    wrap: Option<Vec<String>>,
) -> Result<(Process, SocketAddr), BoxError> {
    let port = free_port()?;
    let mut command = match &wrap {
        Some(wrap) => {
            let mut command = Command::new(&wrap[0]);
            command.args(&wrap[1..]).arg(&options.gateway);
            command
        }
        None => Command::new(&options.gateway),
    };
    command
        .arg("--config")
        .arg(config)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--log-format", "json"])
        .env("RUST_LOG", "info")
        .env(KEY_VAR, "sk-bench");
    // Each gateway in a fresh directory of its own, where its spend ledger
    // (the binary's default file) starts empty.
    let dir = options.work_dir.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    command.current_dir(&dir);
    let log = options.work_dir.join(format!("{name}.log"));
    let mut process = Process::spawn(name, &mut command, Some(&log))?;
    process.wait_logged("listening on", START_TIMEOUT)?;
    Ok((process, SocketAddr::from((Ipv4Addr::LOCALHOST, port))))
}

/// A loopback port nothing listens on (another process could take it before
/// the gateway binds it, which is unlikely on a bench machine).
fn free_port() -> Result<u16, BoxError> {
    Ok(StdTcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// One request of each mode must come back whole before any load.
fn smoke(runtime: &Runtime, target: &Target, options: &Options) -> Result<(), BoxError> {
    for mode in [Mode::Complete, Mode::Stream] {
        let spec = LoadSpec {
            addr: target.addr,
            body: body(mode, MODEL),
            mode,
            connections: 1,
            stop: Stop::Requests(1),
            request_timeout: Duration::from_secs(10),
        };
        let report = runtime.block_on(load::run(&spec, None))?;
        let expected = match mode {
            Mode::Complete => 0,
            Mode::Stream => options.upstream.stream_events() as u64,
        };
        if report.completed != 1 || report.events < expected {
            return Err(format!(
                "{}: a first {} request did not come back whole ({report:?}); see the logs in {}",
                target.name,
                mode.name(),
                options.work_dir.display()
            )
            .into());
        }
    }
    Ok(())
}

/// One timed load run against `target`, with its CPU time read at the edges
/// of the measured window and its peak RSS reset before.
fn measure(
    runtime: &Runtime,
    target: &Target,
    mode: Mode,
    connections: usize,
    options: &Options,
    ticks: u64,
) -> Result<Row, BoxError> {
    let _ = proc::reset_peak(target.pid);
    let spec = LoadSpec {
        addr: target.addr,
        body: body(mode, target.model),
        mode,
        connections,
        stop: Stop::Timed {
            warm_up: options.warm_up,
            measure: options.measure,
        },
        request_timeout: Duration::from_secs(10),
    };
    let pid = target.pid;
    let (report, cpu) = runtime.block_on(async move {
        let (tx, rx) = oneshot::channel::<Window>();
        let sampler = tokio::spawn(async move {
            let window = rx.await.ok()?;
            tokio::time::sleep_until(window.start).await;
            let before = proc::cpu_time(pid, ticks).ok()?;
            tokio::time::sleep_until(window.end).await;
            let after = proc::cpu_time(pid, ticks).ok()?;
            Some(after.saturating_sub(before))
        });
        let report = load::run(&spec, Some(tx)).await;
        let cpu = sampler.await.ok().flatten();
        report.map(|report| (report, cpu))
    })?;
    Ok(Row {
        target: target.name.clone(),
        mode,
        connections,
        report,
        cpu,
        peak_kib: proc::memory(pid).ok().map(|m| m.peak_kib),
    })
}

/// The failover paths: two fresh gateways, one whose `bench` group has only
/// the healthy deployment ("plain"), one with the failover config of
/// [`gateway_config`]; once the dead deployments' breakers are open, each
/// concurrency is measured on plain `bench`, on `bench` with its dead
/// first deployment (failover inside the group) and on `bench-down` (the
/// fallback cascade), in turns.
///
/// Both gateways are started for this comparison (not the gateway of the
/// load matrix): a process that has served a million requests and a
/// thousand streams has a grown heap and a long log file, and would lose to
/// a fresh one for reasons that have nothing to do with failover.
fn failover(
    runtime: &Runtime,
    options: &Options,
    upstream: SocketAddr,
    ticks: u64,
    results: &mut Results,
) -> Result<(), BoxError> {
    let plain_config = options.work_dir.join("gateway.yaml");
    let (plain_process, plain_addr) = start_gateway(options, &plain_config, "gateway-plain", None)?;
    let refused = tollgate_testkit::Upstream::refused_url();
    let config = options.work_dir.join("gateway-failover.yaml");
    std::fs::write(&config, gateway_config(upstream, Some(&refused)))?;
    let (process, addr) = start_gateway(options, &config, "gateway-failover", None)?;
    results.processes.push(ProcessRow {
        name: String::from("gateway-failover"),
        idle_kib: proc::memory(process.pid())?.rss_kib,
    });
    let paths = [
        Target {
            name: String::from("plain"),
            addr: plain_addr,
            pid: plain_process.pid(),
            model: MODEL,
        },
        Target {
            name: String::from("in-group"),
            addr,
            pid: process.pid(),
            model: MODEL,
        },
        Target {
            name: String::from("cascade"),
            addr,
            pid: process.pid(),
            model: DOWN_MODEL,
        },
    ];
    // Until the dead deployments' breakers open, their requests are refused
    // there and retried on the healthy deployment, or fall back.
    let mut warm_up = 0;
    let mut before = (None, None);
    while warm_up < 400 {
        for model in [MODEL, DOWN_MODEL] {
            let spec = LoadSpec {
                addr,
                body: body(Mode::Complete, model),
                mode: Mode::Complete,
                connections: 1,
                stop: Stop::Requests(10),
                request_timeout: Duration::from_secs(10),
            };
            let report = runtime.block_on(load::run(&spec, None))?;
            warm_up += report.completed + report.failed;
        }
        before = (
            runtime.block_on(breaker_state(addr, REFUSED_DEPLOYMENT))?,
            runtime.block_on(breaker_state(addr, DOWN_DEPLOYMENT))?,
        );
        if before.0.as_deref() == Some("open") && before.1.as_deref() == Some("open") {
            break;
        }
    }
    for &connections in &options.failover_connections {
        let mut rows: Vec<Row> = Vec::new();
        for round in 0..options.rounds.max(1) {
            for target in in_turn(&paths, round) {
                eprintln!(
                    "failover {connections:>4} connections, round {}: {}",
                    round + 1,
                    target.name
                );
                let row = measure(runtime, target, Mode::Complete, connections, options, ticks)?;
                match rows.iter_mut().find(|r| r.target == row.target) {
                    Some(existing) => existing.merge(&row),
                    None => rows.push(row),
                }
            }
        }
        let mut rows = rows.into_iter();
        if let (Some(plain), Some(in_group), Some(cascade)) =
            (rows.next(), rows.next(), rows.next())
        {
            results.failover.push(FailoverRow {
                plain,
                in_group,
                cascade,
            });
        }
    }
    let after = (
        runtime.block_on(breaker_state(addr, REFUSED_DEPLOYMENT))?,
        runtime.block_on(breaker_state(addr, DOWN_DEPLOYMENT))?,
    );
    let state = |s: &Option<String>| s.clone().unwrap_or_else(|| String::from("unknown"));
    results.failover_note = format!(
        "plain: model group `{MODEL}` = [bench-upstream] on its own fresh gateway. \
         in-group: `{MODEL}` = [{REFUSED_DEPLOYMENT} (api_base where nothing listens), bench-upstream]: \
         the balancer passes over the open breaker. cascade: `{DOWN_MODEL}` = [{DOWN_DEPLOYMENT} \
         (nothing listens)], fallbacks {DOWN_MODEL} → {FALLBACK_MODEL} = [bench-fallback-upstream]: \
         the open breaker fails fast and the cascade moves on. Retry 3, breaker opens after 5 failures \
         in a row, cooldown 30 s. Warmed with {warm_up} requests; breakers before the runs: {} / {}, \
         after: {} / {}. This is the steady state of a dead primary, not the retries that opened its breaker.",
        state(&before.0),
        state(&before.1),
        state(&after.0),
        state(&after.1),
    );
    Ok(())
}

/// The state of one breaker, from the gateway's `/health/circuit-breakers`.
async fn breaker_state(addr: SocketAddr, key: &str) -> Result<Option<String>, BoxError> {
    let (_, body) = load::get(addr, "/health/circuit-breakers").await?;
    let value: serde_json::Value = serde_json::from_slice(&body)?;
    Ok(value["circuit_breakers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|b| b["key"] == key)
        .and_then(|b| b["state"].as_str())
        .map(str::to_owned))
}

#[cfg(test)]
#[path = "harness_tests.rs"]
mod tests;
