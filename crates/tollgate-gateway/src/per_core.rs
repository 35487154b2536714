//! Serving on one single-threaded runtime per core.
//!
//! tokio's multi-threaded scheduler moves tasks between its workers and
//! wakes an idle worker whenever work is queued: at one connection, four
//! to five context switches a request where two would do (BENCHMARKS.md,
//! "One runtime per core"). Here each serving thread runs a current-thread
//! runtime and an upstream connection pool of its own
//! ([`use_pool`](crate::upstream::use_pool)): a connection is served,
//! request after request, on the thread it was handed to.
//!
//! One listener, on the caller's runtime, accepts every connection and
//! hands it to the thread serving the fewest (a bounded queue per thread).
//! One listener per thread with `SO_REUSEPORT` had the kernel spread them
//! by a hash of the addresses instead, blind to load: a thread given fewer
//! of wrk's 16 connections runs short of work while the other is saturated
//! (most likely why one run of the shared bench gave 0.41× nginx's
//! throughput and the next 0.50×; DECISIONS 34).
//!
//! What stays shared: the gateway (its state is `Send + Sync`), the
//! connection cap (one table for every thread), the shutdown (it reaches
//! every thread, and the ledger closes once all have drained). Background
//! work — reloads, metrics upkeep, Redis — stays on the caller's runtime,
//! which serves too.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot, watch};

use crate::app::Gateway;
use crate::connection::Table;
use crate::handoff::{Connections, Handed, Load, LoadGuard};
use crate::server::{connection_table, serve_until};
use crate::upstream::use_pool;

/// Connections accepted and not yet taken by their thread, per thread: a
/// thread this far behind is skipped for the next least loaded.
const HANDOFF_QUEUE: usize = 1024;

/// Serves `gateway` on `listener` with `threads` serving threads (at least
/// one) until `shutdown` completes, as [`serve`](crate::serve) does with
/// one: the caller's runtime accepts and serves as the first, each other
/// runs a current-thread runtime on a thread of its own, and each accepted
/// connection goes to the thread serving the fewest. Returns once every
/// thread has drained and the gateway is closed (its ledger flushed).
pub async fn serve_per_core(
    listener: TcpListener,
    threads: usize,
    gateway: Gateway,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    use_pool(0);
    if threads <= 1 {
        return crate::serve(listener, gateway, shutdown, grace).await;
    }
    let table = connection_table(&gateway);
    let (stop, stopped) = watch::channel(false);
    let load = Load::new(threads);
    let (first, handed_here) = mpsc::channel(HANDOFF_QUEUE);
    let mut queues = vec![first];
    let mut threads_done = Vec::new();
    for index in 1..threads {
        let (queue, handed) = mpsc::channel(HANDOFF_QUEUE);
        let (done, finished) = oneshot::channel();
        let (gateway, table, stopped) = (gateway.clone(), table.clone(), stopped.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("tollgate-serve-{index}"))
            .spawn(move || {
                serve_thread(index, handed, &gateway, table, stopped, grace);
                let _ = done.send(());
            });
        match spawned {
            Ok(_) => threads_done.push(finished),
            // Its queue's receiver is gone with the closure: the
            // dispatcher finds it closed and hands its share to the others.
            Err(error) => tracing::error!(%error, index, "cannot start a serving thread"),
        }
        queues.push(queue);
    }
    let signal = async {
        shutdown.await;
        let _ = stop.send(true);
    };
    let dispatch = dispatch(listener, queues, load, stopped_of(stopped.clone()));
    let serve = serve_until(
        Connections::Handed(handed_here),
        &gateway,
        table,
        stopped_of(stopped),
        grace,
    );
    tokio::join!(signal, dispatch, serve);
    // Awaited, not joined: the caller's runtime keeps driving what the
    // threads may still wait on (Redis connections opened here).
    for finished in threads_done {
        let _ = finished.await;
    }
    gateway.close().await;
}

/// Accepts on `listener` until `stopped`, handing each connection to the
/// least loaded thread whose queue has room.
async fn dispatch(
    listener: TcpListener,
    queues: Vec<mpsc::Sender<Handed>>,
    load: Arc<Load>,
    stopped: impl Future<Output = ()>,
) {
    tokio::pin!(stopped);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off
                    // instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stopped => return,
        };
        // Deregistered from this runtime, to be registered with its
        // thread's.
        let Ok(mut stream) = stream.into_std() else {
            continue;
        };
        for thread in load.least_loaded() {
            let handed = Handed {
                stream,
                peer,
                load: LoadGuard::new(&load, thread),
            };
            match queues[thread].try_send(handed) {
                Ok(()) => break,
                // Its guard, dropped with it, uncounted it.
                Err(TrySendError::Full(back) | TrySendError::Closed(back)) => {
                    stream = back.stream;
                }
            }
        }
        // Every queue full or closed: the connection is closed, as a
        // listener's full backlog would refuse it.
    }
}

/// One serving thread: a current-thread runtime serving the connections
/// `handed` to it.
fn serve_thread(
    index: usize,
    handed: mpsc::Receiver<Handed>,
    gateway: &Gateway,
    table: Arc<Table>,
    stopped: watch::Receiver<bool>,
    grace: Duration,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, index, "cannot start a serving thread's runtime");
            return;
        }
    };
    runtime.block_on(async {
        use_pool(index);
        let connections = Connections::Handed(handed);
        serve_until(connections, gateway, table, stopped_of(stopped), grace).await;
    });
}

/// Completes once the shutdown is signalled (or its sender is gone).
async fn stopped_of(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}
