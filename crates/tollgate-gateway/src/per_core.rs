//! Serving on one single-threaded runtime per core.
//!
//! tokio's multi-threaded scheduler moves tasks between its workers and
//! wakes an idle worker whenever work is queued: at one connection, four
//! to five context switches a request where two would do (BENCHMARKS.md,
//! "One runtime per core"). Here each serving thread runs a current-thread
//! runtime with a listener of its own on the same address
//! (`SO_REUSEPORT`: the kernel spreads new connections over the threads'
//! listeners) and an upstream connection pool of its own
//! ([`use_pool`](crate::upstream::use_pool)): a request is served, start
//! to end, on the thread that accepted its connection.
//!
//! What stays shared: the gateway (its state is `Send + Sync`), the
//! connection cap (one table for every listener), the shutdown (it reaches
//! every thread, and the ledger closes once all have drained). Background
//! work — reloads, metrics upkeep, Redis — stays on the caller's runtime,
//! which serves the first listener.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{oneshot, watch};

use crate::app::Gateway;
use crate::server::{connection_table, serve_until};
use crate::upstream::use_pool;

/// The backlog of each listener: what `TcpListener::bind` gives on Linux
/// (tokio's default), per listener.
const BACKLOG: u32 = 1024;

/// Binds `count` listeners (at least one) to `addr`, each with
/// `SO_REUSEPORT`: the first picks the port when `addr`'s is 0, the others
/// take the same. Reports the address bound. Where `SO_REUSEPORT` is not
/// available, one listener.
///
/// # Errors
///
/// When a listener cannot be bound (the address in use by another
/// program, no permission for the port).
pub async fn bind_per_core(
    addr: SocketAddr,
    count: usize,
) -> io::Result<(Vec<TcpListener>, SocketAddr)> {
    if count <= 1 {
        return one_listener(addr).await;
    }
    shared_listeners(addr, count).await
}

async fn one_listener(addr: SocketAddr) -> io::Result<(Vec<TcpListener>, SocketAddr)> {
    let (listener, local) = crate::server::bind(addr).await?;
    Ok((vec![listener], local))
}

#[cfg(unix)]
async fn shared_listeners(
    addr: SocketAddr,
    count: usize,
) -> io::Result<(Vec<TcpListener>, SocketAddr)> {
    let bind = |addr: SocketAddr| -> io::Result<TcpListener> {
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        // As `TcpListener::bind` does: a restart binds while the old
        // connections are in TIME_WAIT.
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        socket.bind(addr)?;
        socket.listen(BACKLOG)
    };
    let first = bind(addr)?;
    let local = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..count {
        listeners.push(bind(local)?);
    }
    Ok((listeners, local))
}

/// Without `SO_REUSEPORT`, one listener: the threads would have nothing to
/// share a port with.
#[cfg(not(unix))]
async fn shared_listeners(
    addr: SocketAddr,
    _count: usize,
) -> io::Result<(Vec<TcpListener>, SocketAddr)> {
    one_listener(addr).await
}

/// Serves `gateway` on `listeners` until `shutdown` completes, as
/// [`serve`](crate::serve) does on one: the first listener on the caller's
/// runtime, each other on a thread of its own running a current-thread
/// runtime. Returns once every thread has drained and the gateway is
/// closed (its ledger flushed).
pub async fn serve_per_core(
    listeners: Vec<TcpListener>,
    gateway: Gateway,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let table = connection_table(&gateway);
    let (stop, stopped) = watch::channel(false);
    let mut listeners = listeners.into_iter();
    let Some(first) = listeners.next() else {
        gateway.close().await;
        return;
    };
    let mut threads = Vec::new();
    for (index, listener) in (1..).zip(listeners) {
        let (done, finished) = oneshot::channel();
        let (gateway, table, stopped) = (gateway.clone(), table.clone(), stopped.clone());
        // Registered anew with the thread's own runtime there.
        let listener = match listener.into_std() {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!(%error, index, "cannot hand a listener to its thread");
                continue;
            }
        };
        let spawned = std::thread::Builder::new()
            .name(format!("tollgate-serve-{index}"))
            .spawn(move || {
                serve_thread(index, listener, &gateway, table, stopped, grace);
                let _ = done.send(());
            });
        match spawned {
            Ok(_) => threads.push(finished),
            // Its listener is closed with the closure: the kernel sends
            // its share to the others.
            Err(error) => tracing::error!(%error, index, "cannot start a serving thread"),
        }
    }
    use_pool(0);
    let signal = async {
        shutdown.await;
        let _ = stop.send(true);
    };
    let serve = serve_until(first, &gateway, table, stopped_of(stopped), grace);
    tokio::join!(signal, serve);
    // Awaited, not joined: the caller's runtime keeps driving what the
    // threads may still wait on (Redis connections opened here).
    for finished in threads {
        let _ = finished.await;
    }
    gateway.close().await;
}

/// One serving thread: a current-thread runtime serving `listener`.
fn serve_thread(
    index: usize,
    listener: std::net::TcpListener,
    gateway: &Gateway,
    table: std::sync::Arc<crate::connection::Table>,
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
        match TcpListener::from_std(listener) {
            Ok(listener) => serve_until(listener, gateway, table, stopped_of(stopped), grace).await,
            Err(error) => tracing::error!(%error, index, "cannot serve a listener"),
        }
    });
}

/// Completes once the shutdown is signalled (or its sender is gone).
async fn stopped_of(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}
