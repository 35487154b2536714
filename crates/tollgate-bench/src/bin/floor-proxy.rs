//! The floor proxy: hyper forwarding with no features, the least a Rust
//! proxy costs. The load harness measures the gateway against it.
//!
//! Run with: `cargo run --release -p tollgate-bench --bin floor-proxy -- --upstream 127.0.0.1:PORT [--listen 127.0.0.1:0]`
//!
//! Prints `listening on http://ADDR` once it accepts connections; stops on
//! SIGTERM or SIGINT. Both addresses must be loopback ones: it is a
//! benchmark fixture, not a proxy to deploy.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use http::uri::Authority;
use tollgate_bench::floor;

/// Forwards every HTTP/1.1 request to one upstream, bodies streamed through.
#[derive(Debug, Parser)]
#[command(name = "floor-proxy")]
struct Cli {
    /// The upstream, `127.0.0.1:PORT`.
    #[arg(long)]
    upstream: SocketAddr,
    /// Where to listen (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !cli.upstream.ip().is_loopback() || !cli.listen.ip().is_loopback() {
        eprintln!("floor-proxy: --upstream and --listen must be loopback addresses");
        return ExitCode::from(2);
    }
    let upstream = match Authority::try_from(cli.upstream.to_string()) {
        Ok(upstream) => upstream,
        Err(error) => {
            eprintln!("floor-proxy: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("floor-proxy: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(cli.listen).await {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!("floor-proxy: cannot listen on {}: {error}", cli.listen);
                return ExitCode::FAILURE;
            }
        };
        match listener.local_addr() {
            Ok(addr) => println!("listening on http://{addr}"),
            Err(error) => {
                eprintln!("floor-proxy: {error}");
                return ExitCode::FAILURE;
            }
        }
        tokio::select! {
            () = floor::serve(listener, upstream) => {}
            () = shutdown() => {}
        }
        ExitCode::SUCCESS
    })
}

/// SIGTERM or SIGINT. Exiting normally (not killed) lets valgrind write its
/// profile when the harness counts allocations.
async fn shutdown() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
