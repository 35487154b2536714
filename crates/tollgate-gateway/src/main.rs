//! `tollgate`: the reference gateway binary.
//!
//! ```text
//! tollgate --config config.yaml [--host 0.0.0.0] [--port 4000] [--log-format json|text] [--threads N]
//! tollgate check-config config.yaml [--strict] [--online] [--host 0.0.0.0]
//! tollgate healthcheck [127.0.0.1:4000]
//! tollgate config-reference > docs/CONFIG.md
//! ```
//!
//! `SIGHUP` reloads the config file (see [`tollgate_gateway::reload`]);
//! `SIGTERM` and `SIGINT` shut down gracefully.

use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use tollgate_gateway::log_format::{AccessLogFormat, JsonLines};
use tollgate_gateway::log_writer::{LogGuard, LogWriter, log_writer};
use tollgate_gateway::reload::ConfigFile;
use tollgate_gateway::{
    DEFAULT_GRACE_PERIOD, DEFAULT_LEDGER_FILE, Gateway, bind, config, healthcheck,
    open_access_warning, serve_per_core,
};
use tracing_subscriber::EnvFilter;

/// jemalloc, with a background thread that gives freed memory back to
/// the system within seconds: glibc's malloc kept a flood of connections'
/// peak for good, and more with each flood (BENCHMARKS.md, "Memory after
/// connection floods"). The binary's choice; the library leaves it to its
/// embedder. Its options are built in: `.cargo/config.toml`.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// An OpenAI-compatible LLM gateway configured with LiteLLM's config.yaml.
#[derive(Debug, Parser)]
#[command(name = "tollgate", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The LiteLLM-format config file.
    #[arg(long, env = "TOLLGATE_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on (`check-config` warns for it too).
    #[arg(long, default_value = "0.0.0.0", global = true)]
    host: IpAddr,
    /// Port to listen on (0 picks a free one and logs it).
    #[arg(long, default_value_t = 4000)]
    port: u16,
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Serving threads, each with its own runtime and upstream connections,
    /// each accepted connection going to the one serving the fewest
    /// (default: one per core the process may use).
    #[arg(long, env = "TOLLGATE_THREADS", alias = "num_workers", value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: Option<u16>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a config file: print the model groups, deployments and warnings;
    /// exit non-zero on errors.
    CheckConfig {
        /// The config file to check.
        file: PathBuf,
        /// Fail on warnings too (an unknown key, a disabled deployment, …).
        #[arg(long)]
        strict: bool,
        /// Also ask the upstreams: OpenRouter's model list, for slugs it
        /// does not have (each is a warning).
        #[arg(long)]
        online: bool,
    },
    /// Print the reference of every config key (docs/CONFIG.md), from the
    /// loader's own key table.
    ConfigReference,
    /// Probe a running gateway's `GET /health`: exit 0 on a 200 (the
    /// container image's HEALTHCHECK; the image has no curl).
    Healthcheck {
        /// The gateway's address.
        #[arg(default_value = "127.0.0.1:4000")]
        addr: SocketAddr,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::CheckConfig {
            file,
            strict,
            online,
        }) => check_config(&file, cli.host, strict, online),
        Some(Command::ConfigReference) => {
            print!("{}", config::reference_markdown());
            ExitCode::SUCCESS
        }
        Some(Command::Healthcheck { addr }) => {
            match healthcheck::probe(addr, "/health", Duration::from_secs(2)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("unhealthy: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        None => {
            let Some(path) = cli.config.clone() else {
                eprintln!("error: --config FILE is required (or run `tollgate check-config FILE`)");
                return ExitCode::from(2);
            };
            let (_flush_logs_at_exit, access_log) = match init_logging(cli.log_format) {
                Ok(logging) => logging,
                Err(error) => {
                    eprintln!("error: cannot start the log writer: {error}");
                    return ExitCode::FAILURE;
                }
            };
            // One runtime per serving thread (see `serve_per_core`): this
            // one accepts, serves as the first and runs the background work.
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    eprintln!("error: cannot start the runtime: {error}");
                    return ExitCode::FAILURE;
                }
            };
            let threads = cli.threads.map(usize::from).unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
            });
            runtime.block_on(run(
                path,
                SocketAddr::new(cli.host, cli.port),
                threads,
                access_log,
            ))
        }
    }
}

fn check_config(file: &std::path::Path, host: IpAddr, strict: bool, online: bool) -> ExitCode {
    match config::load(file) {
        Ok(loaded) => {
            print!("{}", config::render_report(&loaded));
            // Checking a config must not create or migrate the ledger file it
            // names: that may be a production volume, and a file migrated by
            // a newer binary is refused by the one still serving from it.
            let mut checked = loaded.config.clone();
            checked.tollgate.ledger_path = None;
            match Gateway::new(&checked) {
                Ok(gateway) => {
                    let open = open_access_warning(host, gateway.is_open());
                    if let Some(warning) = &open {
                        println!("\nWARNING: {warning}");
                    }
                    let mut warnings = loaded.warnings.len() + usize::from(open.is_some());
                    if online {
                        warnings += check_online(&loaded.config);
                    }
                    if strict && warnings > 0 {
                        eprintln!("error: {warnings} warning(s), and --strict makes them errors");
                        return ExitCode::FAILURE;
                    }
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("error: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `check-config --online`: prints each OpenRouter slug OpenRouter does not
/// list, and returns how many warnings that makes.
fn check_online(config: &config::Config) -> usize {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            println!("\nWARNING: online checks skipped: {error}");
            return 1;
        }
    };
    let client = tollgate_gateway::upstream::UpstreamClient::new(Gateway::client_config(config));
    match runtime.block_on(tollgate_gateway::openrouter_models::unknown_slugs(
        config, &client,
    )) {
        Ok(unknown) => {
            for (deployment, slug) in &unknown {
                println!("\nWARNING: {deployment}: OpenRouter does not list the model {slug:?}");
            }
            if unknown.is_empty() {
                println!("\nOnline: every OpenRouter slug is listed by OpenRouter");
            }
            unknown.len()
        }
        Err(error) => {
            println!("\nWARNING: OpenRouter's model list: {error}");
            1
        }
    }
}

/// Serves the config at `path` on `addr`; access-log lines go to
/// `access_log` when it is set (JSON logs).
async fn run(
    path: PathBuf,
    addr: SocketAddr,
    threads: usize,
    access_log: Option<(LogWriter, AccessLogFormat)>,
) -> ExitCode {
    // The binary always keeps a spend ledger: spend must survive restarts.
    let file = ConfigFile::new(path).default_ledger(DEFAULT_LEDGER_FILE);
    let loaded = match file.load() {
        Ok(loaded) => loaded,
        Err(error) => {
            tracing::error!(%error, "invalid config");
            return ExitCode::FAILURE;
        }
    };
    for warning in &loaded.warnings {
        tracing::warn!(key = %warning.path, "{}", warning.message);
    }
    if let Some(ledger) = &loaded.config.tollgate.ledger_path {
        tracing::info!(path = %ledger.display(), "spend ledger");
    }
    let gateway = match Gateway::new(&loaded.config) {
        Ok(gateway) => gateway,
        Err(error) => {
            tracing::error!(%error, "invalid config");
            return ExitCode::FAILURE;
        }
    };
    if let Some((writer, format)) = access_log {
        gateway.write_access_log_to(writer, format);
    }
    gateway.reload_from(file);
    // Before the listening line: a SIGHUP from then on reloads.
    #[cfg(unix)]
    match tollgate_gateway::reload::reload_on_hangup(gateway.clone()) {
        Ok(reloads) => drop(tokio::spawn(reloads)),
        Err(error) => {
            tracing::warn!(%error, "cannot take SIGHUP: reload with POST /config/reload");
        }
    }
    gateway.restore_budgets().await;
    gateway.watch_openrouter_models(&loaded.config);
    let (listener, local) = match bind(addr).await {
        Ok(bound) => bound,
        Err(error) => {
            tracing::error!(%addr, %error, "cannot listen");
            return ExitCode::FAILURE;
        }
    };
    if let Some(warning) = open_access_warning(local.ip(), gateway.is_open()) {
        // Three lines so it stands out among the startup lines.
        tracing::warn!("{}", "!".repeat(72));
        tracing::warn!("{warning}");
        tracing::warn!("{}", "!".repeat(72));
    }
    let groups: Vec<&str> = loaded.config.groups().map(|(name, _)| name).collect();
    tracing::info!(addr = %local, model_groups = ?groups, "tollgate listening on http://{local}");
    let grace = loaded
        .config
        .tollgate
        .shutdown_grace_period
        .unwrap_or(DEFAULT_GRACE_PERIOD);
    serve_per_core(listener, threads, gateway, shutdown_signal(), grace).await;
    ExitCode::SUCCESS
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}

/// Logs go to stderr through a background writer (see
/// [`tollgate_gateway::log_writer`]); the guard flushes it at exit. The
/// writer is also returned, with the line format, for the gateway to write
/// its access-log lines to directly — but for coloured text on a terminal,
/// left to `tracing-subscriber`.
fn init_logging(
    format: LogFormat,
) -> std::io::Result<(LogGuard, Option<(LogWriter, AccessLogFormat)>)> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = log_writer(std::io::stderr())?;
    let access_log = writer.clone();
    let ansi = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi);
    match format {
        LogFormat::Json => {
            builder.event_format(JsonLines).init();
            Ok((guard, Some((access_log, AccessLogFormat::Json))))
        }
        LogFormat::Text => {
            builder.init();
            Ok((
                guard,
                (!ansi).then_some((access_log, AccessLogFormat::Text)),
            ))
        }
    }
}
