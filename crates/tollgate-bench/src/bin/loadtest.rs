//! The end-to-end load harness.
//!
//! Run with: `crates/tollgate-bench/run.sh [--quick]` (builds, raises the
//! open-files limit, runs), or `cargo run --release -p tollgate-bench --bin loadtest -- [--quick]`
//! (builds the gateway and the floor proxy itself when run through cargo).
//!
//! Starts the upstream (this binary, `--serve-upstream`), the floor proxy
//! and the gateway on loopback, drives every load, prints the table and the
//! issue's targets, met or not. The printed results are also saved in the
//! work dir (`target/tollgate-bench/` by default).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use clap::Parser;
use tollgate_bench::harness::{self, Options};
use tollgate_bench::load::Mode;
use tollgate_bench::report;
use tollgate_bench::upstream::{self, UpstreamConfig};

/// Tollgate against a floor proxy and the upstream itself, on loopback.
#[derive(Debug, Parser)]
#[command(name = "loadtest")]
struct Cli {
    /// One round of 1 s windows, shorter slow streams, fewer requests under
    /// valgrind: about 1.5 minutes instead of 4.
    #[arg(long)]
    quick: bool,
    /// Seconds measured per load and round (2.5; 1 with --quick).
    #[arg(long)]
    measure: Option<f64>,
    /// Seconds of warm-up before each measured window (0.5).
    #[arg(long)]
    warm_up: Option<f64>,
    /// Rounds of each load, the targets' order reversed every other round
    /// (2; 1 with --quick).
    #[arg(long)]
    rounds: Option<usize>,
    /// Concurrencies of the load matrix, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 16, 64, 256])]
    connections: Vec<usize>,
    /// Modes of the load matrix: json, stream, or both.
    #[arg(long, value_delimiter = ',', default_values = ["json", "stream"], value_parser = ["json", "stream"])]
    modes: Vec<String>,
    /// Concurrencies of the failover comparison, comma-separated (the flag
    /// alone skips it).
    #[arg(long, value_delimiter = ',', num_args = 0.., default_values_t = [16, 64])]
    failover_connections: Vec<usize>,
    /// Slow streams held open at once (0 skips the test).
    #[arg(long, default_value_t = 1024)]
    streams: usize,
    /// Skip counting allocations under valgrind.
    #[arg(long)]
    no_allocs: bool,
    /// Do not build the gateway and the floor proxy first.
    #[arg(long)]
    no_build: bool,
    /// Keep the gateways' access logs and the DHAT profiles (hundreds of MB).
    #[arg(long)]
    keep_logs: bool,
    /// The gateway binary (default: `tollgate` next to this one).
    #[arg(long)]
    gateway: Option<PathBuf>,
    /// The floor proxy binary (default: `floor-proxy` next to this one).
    #[arg(long)]
    floor: Option<PathBuf>,
    /// Where configs, logs and results go (default: `target/tollgate-bench`).
    #[arg(long)]
    work_dir: Option<PathBuf>,

    /// Serve as the fixed upstream instead (the harness starts itself so).
    #[arg(long, hide = true)]
    serve_upstream: bool,
    #[arg(long, hide = true, default_value_t = 16)]
    stream_parts: usize,
    #[arg(long, hide = true)]
    slow_parts: Option<usize>,
    #[arg(long, hide = true, default_value_t = 100)]
    slow_interval_ms: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let upstream = UpstreamConfig {
        stream_parts: cli.stream_parts,
        slow_parts: cli.slow_parts.unwrap_or(if cli.quick { 16 } else { 26 }),
        slow_interval: Duration::from_millis(cli.slow_interval_ms),
    };
    if cli.serve_upstream {
        return serve_upstream(upstream);
    }
    match run(&cli, upstream) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("loadtest: {error}");
            ExitCode::FAILURE
        }
    }
}

fn serve_upstream(config: UpstreamConfig) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("loadtest upstream: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listener = match upstream::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))) {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!("loadtest upstream: {error}");
                return ExitCode::FAILURE;
            }
        };
        match listener.local_addr() {
            Ok(addr) => println!("listening on http://{addr}"),
            Err(error) => {
                eprintln!("loadtest upstream: {error}");
                return ExitCode::FAILURE;
            }
        }
        // Until the harness kills it.
        upstream::serve(listener, config).await;
        ExitCode::SUCCESS
    })
}

fn run(cli: &Cli, upstream: UpstreamConfig) -> Result<ExitCode, tollgate_bench::BoxError> {
    let exe = std::env::current_exe()?;
    let bin_dir = exe.parent().ok_or("the harness binary has no directory")?;
    if cfg!(debug_assertions) {
        eprintln!(
            "loadtest: WARNING: a debug build; its figures mean nothing. Use --release or run.sh."
        );
    }
    if !cli.no_build {
        build()?;
    }
    let secs = |value: Option<f64>, full: f64, quick: f64| {
        Duration::from_secs_f64(
            value
                .unwrap_or(if cli.quick { quick } else { full })
                .max(0.0),
        )
    };
    let mut streams = cli.streams;
    // The gateway holds two sockets per stream (client and upstream side).
    if let Some(limit) = tollgate_bench::proc::open_files_limit() {
        let most = usize::try_from(limit.saturating_sub(256) / 2).unwrap_or(usize::MAX);
        if streams > most {
            eprintln!(
                "loadtest: the open-files limit is {limit}: holding {most} streams, not {streams}. \
                 Raise it with `ulimit -n 8192` (run.sh does)."
            );
            streams = most;
        }
    }
    let work_dir = cli
        .work_dir
        .clone()
        .unwrap_or_else(|| bin_dir.join("..").join("tollgate-bench"));
    // Absolute: each gateway runs in a directory of its own below it.
    let work_dir = std::path::absolute(&work_dir).unwrap_or(work_dir);
    let options = Options {
        warm_up: secs(cli.warm_up, 0.5, 0.5),
        measure: secs(cli.measure, 2.5, 1.0),
        rounds: cli.rounds.unwrap_or(if cli.quick { 1 } else { 2 }),
        connections: cli.connections.clone(),
        modes: cli
            .modes
            .iter()
            .map(|m| {
                if m == "json" {
                    Mode::Complete
                } else {
                    Mode::Stream
                }
            })
            .collect(),
        failover_connections: cli.failover_connections.clone(),
        streams,
        upstream,
        allocs: (!cli.no_allocs).then_some(if cli.quick { (50, 250) } else { (200, 1200) }),
        harness: exe.clone(),
        floor: cli
            .floor
            .clone()
            .unwrap_or_else(|| bin_dir.join("floor-proxy")),
        gateway: cli
            .gateway
            .clone()
            .unwrap_or_else(|| bin_dir.join("tollgate")),
        work_dir: work_dir.clone(),
    };
    for binary in [&options.floor, &options.gateway] {
        if !binary.exists() {
            return Err(format!(
                "{} is missing: run crates/tollgate-bench/run.sh, or build it first",
                binary.display()
            )
            .into());
        }
    }
    let header = header(&options);
    eprint!("{header}");
    let results = harness::run(&options)?;
    let verdicts = report::verdicts(&results);
    let text = format!(
        "{header}\n{}{}",
        report::render(&results),
        report::render_verdicts(&verdicts)
    );
    print!("{text}");
    std::fs::write(work_dir.join("results.txt"), &text)?;
    if !cli.keep_logs {
        remove_bulky(&work_dir);
    }
    Ok(ExitCode::SUCCESS)
}

/// Builds the gateway and the floor proxy in this binary's profile.
fn build() -> Result<(), tollgate_bench::BoxError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "-p", "tollgate-gateway", "--bin", "tollgate"])
        .args(["-p", "tollgate-bench", "--bin", "floor-proxy"]);
    if !cfg!(debug_assertions) {
        command.arg("--release");
    }
    eprintln!("loadtest: {command:?}");
    let status = command.status()?;
    if !status.success() {
        return Err(format!("the build failed ({status})").into());
    }
    Ok(())
}

/// The access logs and DHAT profiles: large, and summed up in results.txt
/// and allocs-*.txt already.
fn remove_bulky(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".log") || (name.starts_with("dhat-") && name.ends_with(".json")) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// What the run is and where: the machine, the commit, the settings.
fn header(options: &Options) -> String {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map_or("?", |l| l.trim_start_matches([' ', '\t', ':']));
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = read("/proc/meminfo");
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let os = read("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|l| l.trim_matches('"').to_owned())
        .unwrap_or_default();
    let kernel = read("/proc/sys/kernel/osrelease");
    let load = read("/proc/loadavg");
    let output = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|| String::from("?"))
    };
    let commit = output("git", &["describe", "--always", "--dirty"]);
    let rustc = output("rustc", &["--version"]);
    format!(
        "tollgate-bench loadtest — commit {commit}, {rustc}, {}\n\
         machine: {cpus} CPUs ({cpu}), {mem_gib:.0} GiB, {os}, Linux {}; load average at start {}\n\
         each load: {} round(s) of {:.1} s warm-up and {:.1} s measured; upstream: fixed JSON answer, or {} SSE events \
         each in its own write; gateway: the `tollgate` binary with the default stack of \
         this commit, info-level JSON access log to a file\n",
        if cfg!(debug_assertions) {
            "DEBUG build"
        } else {
            "release build"
        },
        kernel.trim(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        options.rounds,
        options.warm_up.as_secs_f64(),
        options.measure.as_secs_f64(),
        options.upstream.stream_events(),
    )
}
