//! A testkit upstream as a process, for tests written in other languages.
//!
//! Run with: `cargo run -p tollgate-testkit --bin fake-upstream -- --sse FILE [--splits N] [--seed S]`
//! or `-- --fake bedrock`.
//!
//! Answers every request with the file as a `text/event-stream` body. The
//! first N answers (default 16) are cut into chunks at pseudo-random byte
//! boundaries (seeded, so a failure can be replayed), the first of them one
//! byte at a time; later ones are sent whole. With `--fake bedrock` it is
//! the testkit's Bedrock fake instead: every request's SigV4 signature
//! checked, each answered by what it asks (`bedrock::scripted_reply`). Prints
//! `listening on http://127.0.0.1:PORT` once ready, then serves until SIGTERM
//! or Ctrl-C, and exits with 0.

use std::process::ExitCode;

use bytes::Bytes;
use tollgate_testkit::{Reply, Upstream};

fn main() -> ExitCode {
    let mut sse = None;
    let mut splits = 16usize;
    let mut seed = 0x5eed_u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next();
        match (arg.as_str(), value) {
            ("--sse", Some(path)) => sse = Some(path),
            ("--splits", Some(n)) => splits = n.parse().unwrap_or(splits),
            ("--seed", Some(n)) => seed = n.parse().unwrap_or(seed),
            ("--fake", Some(kind)) if kind == "bedrock" => return serve_bedrock(),
            _ => {
                eprintln!(
                    "usage: fake-upstream --sse FILE [--splits N] [--seed S] | --fake bedrock"
                );
                return ExitCode::from(2);
            }
        }
    }
    let Some(path) = sse else {
        eprintln!("usage: fake-upstream --sse FILE [--splits N] [--seed S] | --fake bedrock");
        return ExitCode::from(2);
    };
    let body = match std::fs::read(&path) {
        Ok(body) => Bytes::from(body),
        Err(error) => {
            eprintln!("fake-upstream: {path}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("fake-upstream: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let upstream = Upstream::start().await;
        for round in 0..splits {
            upstream.push(split_reply(&body, round, &mut seed));
        }
        upstream.set_default(Reply::sse().raw(body));
        println!("listening on {}", upstream.url());
        stop_requested().await;
    });
    ExitCode::SUCCESS
}

/// The Bedrock fake, until SIGTERM or Ctrl-C.
fn serve_bedrock() -> ExitCode {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(async move {
        let upstream = tollgate_testkit::bedrock::scripted_upstream().await;
        println!("listening on {}", upstream.url());
        stop_requested().await;
    });
    ExitCode::SUCCESS
}

/// Until SIGTERM or Ctrl-C. Exiting, rather than dying of the signal, lets a
/// build instrumented for coverage write its profile.
async fn stop_requested() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The body as an SSE reply cut at xorshift-chosen points.
fn split_reply(body: &Bytes, round: usize, seed: &mut u64) -> Reply {
    let mut reply = Reply::sse();
    let mut at = 0;
    while at < body.len() {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        let len = if round == 0 {
            1
        } else {
            1 + (*seed % 97) as usize
        };
        let end = (at + len).min(body.len());
        reply = reply.raw(body.slice(at..end));
        at = end;
    }
    reply
}
