//! Serving a [`Gateway`] on a TCP listener, with graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::after_write::AfterWrite;
use crate::app::Gateway;
use crate::connection::{self, Admission, Graceful, Table, Watched, WatchedStream};
use crate::handoff::Connections;
use crate::metrics::ShedReason;
use crate::write_deadline::WriteDeadline;

/// How long in-flight requests and streams may run on after a shutdown
/// signal, unless `tollgate.shutdown_grace_period` says otherwise.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(30);

/// How long, after the grace period, the connections have to send what its
/// end cut (a 503, a stream's last event) before they are closed: a client
/// that reads nothing does not hold the shutdown longer.
const GRACE_END_FLUSH: Duration = Duration::from_secs(1);

/// Serves `gateway` on `listener` until `shutdown` completes; then stops
/// accepting, fails readiness, and lets in-flight requests and streams finish
/// for up to `grace` before returning. What is still running then is cut:
/// a request not yet answered gets a 503, a stream an error event, both
/// with `code: "shutdown"`, sent within a second before the connections
/// close.
pub async fn serve(
    listener: TcpListener,
    gateway: Gateway,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let table = connection_table(&gateway);
    serve_until(
        Connections::Listener(listener),
        &gateway,
        table,
        shutdown,
        grace,
    )
    .await;
    gateway.close().await;
}

/// The connection cap's table, read once: the connection limits need a
/// restart (see `reload`).
pub(crate) fn connection_table(gateway: &Gateway) -> Arc<Table> {
    let settings = gateway.connections;
    let metrics = gateway.app().metrics.clone();
    Table::new(settings.max_connections, settings.reserve, metrics)
}

/// [`serve`] but for closing the gateway: the connections accepted on
/// `listener` or handed to this thread, counted in `table` (which other
/// threads may share), until `shutdown` and the grace period after it.
pub(crate) async fn serve_until(
    mut listener: Connections,
    gateway: &Gateway,
    table: Arc<Table>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    // HTTP/2 streams run in tasks of their own: kept, like the
    // connections, so that the shutdown ends them before the ledger closes.
    let streams = StreamTasks::default();
    let mut builder = auto::Builder::new(streams.clone());
    // Idle, header and keep-alive timeouts, HTTP/2 buffers, the cap: see
    // `connection`.
    let settings = gateway.connections;
    connection::configure(&mut builder, &settings);
    let metrics = gateway.app().metrics.clone();
    let graceful = Graceful::new(table.clone());
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    // False once a dispatcher has stopped handing connections: the ones
    // open are still served until the shutdown.
    let mut open = true;
    loop {
        tokio::select! {
            accepted = listener.next(), if open => {
                let (stream, peer, load) = match accepted {
                    None => {
                        open = false;
                        continue;
                    }
                    Some(Ok(accepted)) => accepted,
                    Some(Err(error)) => {
                        // Out of file descriptors and the like: back off
                        // instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let held = match table.admit(|| metrics.connection_shed(ShedReason::Cap)) {
                    Admission::Admitted(held) => held,
                    Admission::Refused => {
                        // Beyond the cap and the reserve, every one busy.
                        metrics.connection_shed(ShedReason::Cap);
                        drop(stream);
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let gateway = gateway.clone();
                let (state, conns) = (held.state().clone(), held.table().clone());
                let service = service_fn(move |request: http::Request<Incoming>| {
                    let (gateway, state, conns) = (gateway.clone(), state.clone(), conns.clone());
                    async move {
                        let metrics = gateway.app().metrics.clone();
                        // The handler's future itself, not one more async
                        // block around it: each level is a copy per request.
                        let serve = |request| gateway.handle(request);
                        Ok::<_, Infallible>(
                            connection::handle(&metrics, state, conns, request, serve).await,
                        )
                    }
                });
                let io = TokioIo::new(WatchedStream::new(stream, held.state().clone()));
                let connection = builder.serve_connection(io, service).into_owned();
                let connection = Watched::new(connection, held, settings, metrics.clone(), |c| {
                    c.graceful_shutdown();
                });
                // Logs, metrics and spend wait until the answer is written:
                // see `AfterWrite`. A response the client does not take by
                // its deadline ends the connection: see `WriteDeadline`.
                let connection = WriteDeadline::new(AfterWrite::new(connection));
                // Finished connections are reaped as new ones come, so the
                // set holds about the open ones.
                while connections.try_join_next().is_some() {}
                let streams = streams.clone();
                connections.spawn(async move {
                    // The thread's load counts the connection until it ends.
                    let _load = load;
                    if let Some(Err(error)) = connection.await {
                        tracing::debug!(%peer, error = %error, "connection ended with an error");
                    }
                    // A finished task's memory is the set's until joined:
                    // without new streams to reap them, a flood's would stay.
                    streams.reap();
                });
            }
            // Likewise for connections, when no new one comes to reap them.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    gateway.start_draining();
    tracing::info!(
        grace_secs = grace.as_secs_f64(),
        "shutting down: draining in-flight requests"
    );
    let all_closed = graceful.shutdown();
    tokio::pin!(all_closed);
    tokio::select! {
        () = &mut all_closed => tracing::info!("all connections closed"),
        () = tokio::time::sleep(grace) => {
            tracing::warn!("grace period over; cutting what is still running");
            gateway.end_grace_period();
            tokio::select! {
                () = &mut all_closed => tracing::info!("all connections closed"),
                () = tokio::time::sleep(GRACE_END_FLUSH) => {
                    tracing::warn!("closing the connections that did not finish");
                }
            }
        }
    }
    // What is still running ends now, and its responses' cost records and
    // limit settlements are taken (as `shutdown`) before the ledger closes.
    connections.abort_all();
    while connections.join_next().await.is_some() {}
    let mut streams = streams.take();
    streams.abort_all();
    while streams.join_next().await.is_some() {}
}

/// Where hyper spawns what runs beside a connection (HTTP/2 streams): a
/// set the shutdown can end, as it ends the connections — a stream still
/// running after the grace period's end is dropped, and its attempt
/// recorded as `shutdown`, before the ledger closes.
#[derive(Clone, Default)]
struct StreamTasks(Arc<Mutex<JoinSet<()>>>);

impl StreamTasks {
    fn lock(&self) -> std::sync::MutexGuard<'_, JoinSet<()>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets the tasks that have finished.
    fn reap(&self) {
        let mut tasks = self.lock();
        while tasks.try_join_next().is_some() {}
    }

    /// The tasks still running; none is added after the connections ended.
    fn take(&self) -> JoinSet<()> {
        std::mem::take(&mut *self.lock())
    }
}

impl<F> hyper::rt::Executor<F> for StreamTasks
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        let mut tasks = self.lock();
        // Finished ones are reaped as new ones come.
        while tasks.try_join_next().is_some() {}
        // A response the client does not take by its deadline ends its
        // stream (hyper resets it): see `WriteDeadline`.
        tasks.spawn(async move {
            let _ = WriteDeadline::new(future).await;
        });
    }
}

/// Binds `addr` and reports the address actually bound (port 0 picks one).
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}
