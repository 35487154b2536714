//! The chaos soak.
//!
//! Run with: `scripts/soak` (builds the gateway in release, raises the
//! open-files limit, runs ten minutes), or, with the gateway built,
//! `cargo run --release -p tollgate-bench --bin soak -- [--duration 600]`.
//!
//! Prints a row every 30 s while it runs, then the whole report (markdown,
//! also saved as `soak-report.md` in the work dir) and exits non-zero when
//! memory or descriptors grew or a ledger row is missing.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

use clap::Parser;
use tollgate_bench::soak::faults::{FAULT_NAMES, FaultMix};
use tollgate_bench::soak::report::{self, Columns};
use tollgate_bench::soak::{self, Options, Results};

/// Two gateway replicas, a Redis killed half-way, faults and bad clients.
#[derive(Debug, Parser)]
#[command(name = "soak")]
struct Cli {
    /// Seconds of load.
    #[arg(long, default_value_t = 600)]
    duration: u64,
    /// Seconds between two rows.
    #[arg(long, default_value_t = 30)]
    interval: u64,
    /// Seeds the upstream's faults.
    #[arg(long, default_value_t = 17)]
    seed: u64,
    /// Seconds into the run where the reference for flat RSS starts (the
    /// mean over the two minutes after it).
    #[arg(long, default_value_t = 60)]
    rss_reference: u64,
    /// Milliseconds each client waits between two requests.
    #[arg(long, default_value_t = 30)]
    pause_ms: u64,
    /// The gateway binary (default: `tollgate` beside this one).
    #[arg(long)]
    gateway: Option<PathBuf>,
    /// Where configs, ledgers, logs and the report go (default:
    /// `target/tollgate-soak`).
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("soak: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> Result<ExitCode, tollgate_bench::BoxError> {
    let exe = std::env::current_exe()?;
    let bin_dir = exe.parent().ok_or("the soak binary has no directory")?;
    if cfg!(debug_assertions) {
        eprintln!("soak: WARNING: a debug build; run scripts/soak for the release figures.");
    }
    let gateway = cli
        .gateway
        .clone()
        .unwrap_or_else(|| bin_dir.join("tollgate"));
    if !gateway.exists() {
        return Err(format!("{} is missing: run scripts/soak", gateway.display()).into());
    }
    let work_dir = cli
        .work_dir
        .clone()
        .unwrap_or_else(|| bin_dir.join("..").join("tollgate-soak"));
    let work_dir = std::path::absolute(&work_dir).unwrap_or(work_dir);
    let options = Options {
        duration: Duration::from_secs(cli.duration),
        interval: Duration::from_secs(cli.interval.max(1)),
        seed: cli.seed,
        mix: FaultMix::default(),
        clients: Options::default_clients(),
        pause: Duration::from_millis(cli.pause_ms),
        gateway,
        work_dir: work_dir.clone(),
    };
    let header = header(cli, &options);
    eprint!("{header}");
    let results = soak::run(&options)?;
    let (text, passed) = render(&header, &results, Duration::from_secs(cli.rss_reference));
    print!("{text}");
    std::fs::write(work_dir.join("soak-report.md"), &text)?;
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The report, and whether every check held.
fn render(header: &str, results: &Results, reference: Duration) -> (String, bool) {
    let mut out = format!("{header}\n{}\n", report::table(&results.samples));
    let total = results
        .samples
        .last()
        .map(|s| Columns::of(&s.outcomes))
        .unwrap_or_default();
    out.push_str(&format!(
        "Redis killed at {} s, restarted (empty) at {} s. Injected upstream faults: {}.\n\n",
        results.redis_down.0.as_secs(),
        results.redis_down.1.as_secs(),
        FAULT_NAMES
            .iter()
            .zip(results.faults)
            .map(|(name, n)| format!("{name} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    out.push_str(&format!(
        "{} client requests: {} ok, {} key-limited, {} errors, {} stream errors, {} client-side, \
         {} abandoned by design.\n\n",
        total.requests,
        total.ok,
        total.limited,
        total.errors,
        total.stream_errors,
        total.client,
        total.abandoned
    ));
    if let Some(last) = results.samples.last() {
        out.push_str(&report::classes(&last.outcomes));
        out.push('\n');
    }
    let mut passed = true;
    let mut check = |ok: bool, text: String| {
        passed &= ok;
        out.push_str(&format!("- {} {text}\n", if ok { "PASS" } else { "FAIL" }));
    };
    for (i, name) in ["A", "B"].iter().enumerate() {
        match report::rss_flat(&results.samples, i, reference) {
            Some((warm, last, ok)) => check(
                ok,
                format!(
                    "RSS flat, replica {name}: {:.1} MiB from {}:{:02} to {}:{:02}, {:.1} MiB over \
                     the last three rows (limit: +15% + 4 MiB); idle {:.1} MiB before, {:.1} MiB after",
                    warm as f64 / 1024.0,
                    reference.as_secs() / 60,
                    reference.as_secs() % 60,
                    (reference.as_secs() + 120) / 60,
                    (reference.as_secs() + 120) % 60,
                    last as f64 / 1024.0,
                    results.idle[i].rss_kib as f64 / 1024.0,
                    results.after[i].rss_kib as f64 / 1024.0,
                ),
            ),
            None => check(
                false,
                format!("RSS flat, replica {name}: run too short to tell"),
            ),
        }
        match report::fds_flat(&results.samples, i) {
            Some((first, second, ok)) => check(
                ok,
                format!(
                    "fds flat, replica {name}: at most {first} in the first half, {second} in the \
                     second (limit: +20% + 10); {} idle before, {} after",
                    results.idle[i].fds, results.after[i].fds
                ),
            ),
            None => check(
                false,
                format!("fds flat, replica {name}: run too short to tell"),
            ),
        }
    }
    let ledger = results.ledger;
    check(
        ledger.holds(),
        format!(
            "no lost ledger row: {} + {} rows (replicas A + B) for {} upstream attempts",
            ledger.rows[0], ledger.rows[1], ledger.upstream
        ),
    );
    out.push_str(&format!(
        "\nShared-state fallbacks (Redis unreachable): A `{}`, B `{}`. Exits on SIGTERM: {}.\n",
        results
            .shared_state_fallbacks
            .first()
            .map_or("?", String::as_str),
        results
            .shared_state_fallbacks
            .get(1)
            .map_or("?", String::as_str),
        results.exits.join(", ")
    ));
    (out, passed)
}

/// The command, the machine and the commit.
fn header(cli: &Cli, options: &Options) -> String {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map_or("?", |l| l.trim_start_matches([' ', '\t', ':']));
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let clients: Vec<String> = options
        .clients
        .iter()
        .map(|(kind, n)| format!("{n} {}", kind.name()))
        .collect();
    format!(
        "# Soak: {} s, seed {}, commit {commit}\n\n{cpus} × {cpu}, {mem_gib:.0} GiB; load average \
         at the start {}\nPer replica: {} clients, {} ms between requests.\n",
        cli.duration,
        cli.seed,
        read("/proc/loadavg").trim(),
        clients.join(", "),
        cli.pause_ms
    )
}
