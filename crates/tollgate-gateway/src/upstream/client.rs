//! [`UpstreamClient`], the service.

use std::cell::Cell;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::Instant;
use tollgate_core::{BoxError, ErrorClass, Failure, RequestBody};
use tower_service::Service;

use super::body::TimedBody;
use super::connector::Connector;
use super::endpoint::Endpoint;
use super::future::ResponseFuture;
use crate::deadlines::Timeouts;
use crate::learned::StreamTimings;

/// Connection settings shared by every deployment.
#[derive(Debug, Clone, Copy)]
pub struct ClientConfig {
    /// Deadline for opening a TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// How long an idle pooled connection is kept.
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per host.
    pub pool_max_idle_per_host: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout: Duration::from_secs(5),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 256,
        }
    }
}

/// How many connection pools a client keeps at most: one per serving
/// thread (see [`use_pool`]); threads past it share.
const MAX_POOLS: usize = 64;

thread_local! {
    /// The pool this thread's requests take their connections from.
    static POOL: Cell<usize> = const { Cell::new(0) };
}

/// Makes every [`UpstreamClient`]'s requests made on this thread use its
/// pool `index` (modulo 64, the most pools a client keeps).
///
/// A gateway serving on one single-threaded runtime per core gives each
/// thread a pool of its own: a pooled connection's task runs on the
/// runtime that opened it, and a request from another thread's runtime
/// would hand every read and write across threads, a wake-up each way.
/// Threads that never call it share pool 0 — on a multi-threaded runtime,
/// one pool for the whole runtime, as hyper's client alone would have.
pub fn use_pool(index: usize) {
    POOL.with(|pool| pool.set(index % MAX_POOLS));
}

/// A pooled HTTP/1.1 + HTTP/2 client over rustls (ring), as a tower
/// `Service<Request<RequestBody>>`.
///
/// Cloning it is cheap and shares the pools.
#[derive(Clone, Debug)]
pub struct UpstreamClient {
    // Behind one `Arc`: the stack's services (cloned several times per
    // request) and the provider's future each hold one.
    pools: Arc<Pools>,
}

/// hyper's client (some 300 bytes of handles, its pool behind them), one
/// per serving thread, made on first use.
#[derive(Debug)]
struct Pools {
    config: ClientConfig,
    connector: Connector,
    clients: [OnceLock<Client<Connector, RequestBody>>; MAX_POOLS],
}

impl Pools {
    /// This thread's client.
    fn current(&self) -> &Client<Connector, RequestBody> {
        let index = POOL.with(Cell::get);
        self.clients[index].get_or_init(|| {
            Client::builder(TokioExecutor::new())
                .timer(TokioTimer::new())
                .pool_timer(TokioTimer::new())
                .pool_idle_timeout(self.config.pool_idle_timeout)
                .pool_max_idle_per_host(self.config.pool_max_idle_per_host)
                .build(self.connector.clone())
        })
    }
}

impl UpstreamClient {
    /// A client with the given connection settings.
    pub fn new(config: ClientConfig) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.connect_timeout));
        let https = HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map(|builder| {
                builder
                    .https_or_http()
                    .enable_all_versions()
                    .wrap_connector(http.clone())
            })
            // Building the ring provider's config only fails when the provider
            // lacks TLS 1.2 and 1.3, which ring never does.
            .unwrap_or_else(|_| {
                HttpsConnectorBuilder::new()
                    .with_webpki_roots()
                    .https_or_http()
                    .enable_all_versions()
                    .wrap_connector(http)
            });
        Self::with_connector(config, Connector::Network(https))
    }

    /// A client whose connections are in-memory streams opened by `dial`,
    /// whatever the URI: for tests under paused time and for benchmarks of
    /// the whole stack without sockets. Everything above the connection —
    /// pooling, HTTP/1.1, deadlines — is the same as over the network.
    pub fn in_memory(
        config: ClientConfig,
        dial: impl Fn(&http::Uri) -> std::io::Result<tokio::io::DuplexStream> + Send + Sync + 'static,
    ) -> Self {
        Self::with_connector(config, Connector::InMemory(std::sync::Arc::new(dial)))
    }

    fn with_connector(config: ClientConfig, connector: Connector) -> Self {
        UpstreamClient {
            pools: Arc::new(Pools {
                config,
                connector,
                clients: [const { OnceLock::new() }; MAX_POOLS],
            }),
        }
    }

    /// Sends `request`, addressed already (an absolute URI, its headers
    /// all set), under `timeouts`, recording a stream's phases in
    /// `timings`: what [`call`](Service::call) does once it has read these
    /// from the request's extensions, for a caller that holds them (the
    /// provider's chat call: no extension inserted to be read back here).
    pub(crate) fn send(
        &self,
        request: Request<RequestBody>,
        timeouts: Timeouts,
        timings: Option<Arc<StreamTimings>>,
    ) -> ResponseFuture {
        let start = Instant::now();
        ResponseFuture::new(
            self.pools.current().request(request),
            timeouts,
            start,
            timings,
        )
    }
}

impl Default for UpstreamClient {
    fn default() -> Self {
        UpstreamClient::new(ClientConfig::default())
    }
}

impl Service<Request<RequestBody>> for UpstreamClient {
    type Response = Response<TimedBody<Incoming>>;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // The pool queues requests itself; there is no back-pressure to pass on.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<RequestBody>) -> ResponseFuture {
        let timeouts = request
            .extensions()
            .get::<Timeouts>()
            .copied()
            .unwrap_or_default();
        match request.extensions_mut().remove::<Arc<Endpoint>>() {
            Some(endpoint) => {
                *request.uri_mut() = endpoint.uri_for(request.uri().path_and_query());
                endpoint.set_headers(request.headers_mut());
            }
            // A layer below the gateway's router (a provider normalizer) may
            // have addressed the request itself.
            None if request.uri().scheme().is_some() && request.uri().authority().is_some() => {}
            None => {
                return ResponseFuture::failed(Failure::new(
                    ErrorClass::Internal,
                    "no upstream endpoint was chosen for the request",
                ));
            }
        }
        let timings = request.extensions().get::<Arc<StreamTimings>>().cloned();
        self.send(request, timeouts, timings)
    }
}
