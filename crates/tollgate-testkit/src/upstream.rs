//! The server: accepts connections and answers each request from the script.

use std::{
    collections::VecDeque,
    error::Error,
    fmt,
    net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener},
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use http::{Request, Response, Version};
use http_body_util::BodyExt;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use tokio::{
    io::DuplexStream,
    net::{TcpListener, TcpStream},
    sync::watch,
    task::{AbortHandle, JoinHandle, JoinSet},
    time::Instant,
};

use crate::{RecordedRequest, Reply, body::ReplyBody, io::ResetOnDrop, openai};

/// A fake OpenAI-compatible upstream on `127.0.0.1`, answering from a script.
///
/// Each request is read whole, recorded, then answered with the next [`Reply`]
/// [pushed](Upstream::push), or with the [default reply](Upstream::set_default) once the
/// script is empty. It speaks HTTP/1.1 (keep-alive) and h2c with prior knowledge, sets
/// `TCP_NODELAY`, and serves any number of connections concurrently.
///
/// Dropping the `Upstream` stops the server and closes every connection, stalled ones
/// included.
#[must_use = "dropping the Upstream stops the server"]
pub struct Upstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
    in_memory: Mutex<Vec<AbortHandle>>,
}

/// State shared by the handle and the connection tasks.
struct Shared {
    script: Mutex<Script>,
    /// How many requests were seen; `wait_for_requests` watches it.
    seen: watch::Sender<usize>,
    recording: AtomicBool,
    guard: Mutex<Option<Guard>>,
    connections: AtomicUsize,
    /// Connections open now; `wait_for_open_connections` watches it.
    open: watch::Sender<usize>,
    /// Answers some requests before the script does (a fake's own routes).
    intercept: Mutex<Option<Intercept>>,
}

/// A check run on every request before the script answers it.
type Guard = Arc<dyn Fn(&RecordedRequest) -> Option<Reply> + Send + Sync>;
/// A check run on every request before the script: `Some(reply)` answers
/// the request there (it is neither recorded nor counted), `None` leaves it
/// to the script.
pub(crate) type Intercept = Arc<dyn Fn(&RecordedRequest) -> Option<Reply> + Send + Sync>;

struct Script {
    replies: VecDeque<Arc<Reply>>,
    default: Arc<Reply>,
    requests: Vec<RecordedRequest>,
}

impl Upstream {
    /// Binds `127.0.0.1:0` and starts serving on the current tokio runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, or if the port cannot be bound.
    pub async fn start() -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("testkit: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("testkit: local address");
        let shared = Arc::new(Shared {
            script: Mutex::new(Script {
                replies: VecDeque::new(),
                default: Arc::new(unscripted()),
                requests: Vec::new(),
            }),
            seen: watch::Sender::new(0),
            recording: AtomicBool::new(true),
            guard: Mutex::new(None),
            connections: AtomicUsize::new(0),
            open: watch::Sender::new(0),
            intercept: Mutex::new(None),
        });
        let server = tokio::spawn(serve(listener, shared.clone()));
        Self {
            addr,
            shared,
            server,
            in_memory: Mutex::new(Vec::new()),
        }
    }

    /// Opens a connection to the upstream that lives in memory: a
    /// [`DuplexStream`] served by the same script as the TCP listener.
    ///
    /// With no operating-system I/O on the way, a test can run the whole
    /// exchange under paused tokio time — the runtime only advances the clock
    /// when every task, the upstream's included, is waiting on a timer — and
    /// a benchmark can measure a stack without sockets. A [`Reply::reset`]
    /// closes the stream (the client sees the connection end, not an RST).
    pub fn connect_in_memory(&self) -> DuplexStream {
        let (client, server) = tokio::io::duplex(64 * 1024);
        self.shared.connections.fetch_add(1, Ordering::Relaxed);
        let http = Arc::new(auto::Builder::new(TokioExecutor::new()));
        let shared = self.shared.clone();
        let open = Open::new(&shared);
        let task = tokio::spawn(async move {
            let _open = open;
            let reset = Arc::new(AtomicBool::new(false));
            let service =
                service_fn(move |request| respond(shared.clone(), reset.clone(), request));
            let _ = http.serve_connection(TokioIo::new(server), service).await;
        });
        self.in_memory
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(task.abort_handle());
        client
    }

    /// A loopback URL where nothing listens, for "connection refused" tests.
    ///
    /// It binds a free port and closes it again; another process could take the port in
    /// between, which is unlikely on a test machine.
    pub fn refused_url() -> String {
        let listener =
            StdTcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("testkit: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("testkit: local address");
        format!("http://{addr}")
    }

    /// The base URL, `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Appends a reply to the script: requests take scripted replies in arrival order
    /// (the order their bodies finished arriving).
    pub fn push(&self, reply: Reply) {
        self.shared.script().replies.push_back(Arc::new(reply));
    }

    /// Sets the reply used once the script is empty.
    ///
    /// The initial default is a 500 with an OpenAI error body whose message is
    /// `testkit: no scripted reply`. The default is shared, not consumed, so it also
    /// serves as the fixed fast reply of load benchmarks.
    pub fn set_default(&self, reply: Reply) {
        self.shared.script().default = Arc::new(reply);
    }

    /// Checks every request before the script answers it, as a provider's
    /// front end does (a signature, a key): a reply from `guard` answers
    /// the request instead, and the script's next reply waits for the next
    /// request. Refused requests are recorded and counted like the others.
    pub fn set_guard(
        &self,
        guard: impl Fn(&RecordedRequest) -> Option<Reply> + Send + Sync + 'static,
    ) {
        *self
            .shared
            .guard
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(guard));
    }

    /// Turns request recording on (the default) or off.
    ///
    /// With recording off, bodies are drained without being kept and
    /// [`requests`](Upstream::requests) stops growing, so long benchmarks do not
    /// accumulate memory; [`wait_for_requests`](Upstream::wait_for_requests) still counts.
    pub fn set_recording(&self, on: bool) {
        self.shared.recording.store(on, Ordering::Relaxed);
    }

    /// Answers requests `intercept` picks before the script does: how a
    /// fake serves routes of its own (a token endpoint) and refuses
    /// requests a real provider would (bad credentials).
    pub(crate) fn set_intercept(&self, intercept: Intercept) {
        *self
            .shared
            .intercept
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(intercept);
    }

    /// Every request recorded so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.script().requests.clone()
    }

    /// Waits until at least `n` requests were seen, then returns the recorded ones.
    ///
    /// This never times out; wrap it in [`tokio::time::timeout`] to bound a test.
    pub async fn wait_for_requests(&self, n: usize) -> Vec<RecordedRequest> {
        let mut seen = self.shared.seen.subscribe();
        // The sender lives in `self.shared`, so waiting cannot fail.
        let _ = seen.wait_for(|&seen| seen >= n).await;
        self.requests()
    }

    /// How many connections the server has accepted (TCP and in memory).
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// How many connections are open now: a client that let go of a
    /// connection (closed it, or dropped a response mid-body, which closes
    /// an HTTP/1.1 connection) no longer counts once the server saw it.
    pub fn open_connections(&self) -> usize {
        *self.shared.open.borrow()
    }

    /// Waits until exactly `n` connections are open.
    ///
    /// This never times out; wrap it in [`tokio::time::timeout`] to bound a test.
    pub async fn wait_for_open_connections(&self, n: usize) {
        let mut open = self.shared.open.subscribe();
        // The sender lives in `self.shared`, so waiting cannot fail.
        let _ = open.wait_for(|&open| open == n).await;
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        // Dropping the accept task drops its `JoinSet`, which aborts every connection.
        self.server.abort();
        for task in self
            .in_memory
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
    }
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn script(&self) -> MutexGuard<'_, Script> {
        // Nothing panics while holding the lock; recover rather than cascade anyway.
        self.script.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records `request` (when recording) and picks its reply.
    fn guard(&self) -> Option<Guard> {
        self.guard
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The reply to `request`: the guard's refusal, else the script's next.
    fn next_reply(&self, request: Option<RecordedRequest>, refusal: Option<Reply>) -> Arc<Reply> {
        let reply = {
            let mut script = self.script();
            script.requests.extend(request);
            match refusal {
                Some(refusal) => Arc::new(refusal),
                None => script
                    .replies
                    .pop_front()
                    .unwrap_or_else(|| script.default.clone()),
            }
        };
        self.seen.send_modify(|seen| *seen += 1);
        reply
    }
}

/// The default default: a 500 saying the test forgot to script this request.
fn unscripted() -> Reply {
    Reply::json(
        500,
        openai::error_body("testkit: no scripted reply", "server_error", None),
    )
}

async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let http = Arc::new(auto::Builder::new(TokioExecutor::new()));
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(http.clone(), stream, shared.clone()));
                }
                // Out of file descriptors or similar: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next() => {}
        }
    }
}

async fn serve_connection(
    http: Arc<auto::Builder<TokioExecutor>>,
    stream: TcpStream,
    shared: Arc<Shared>,
) {
    shared.connections.fetch_add(1, Ordering::Relaxed);
    let _open = Open::new(&shared);
    let _ = stream.set_nodelay(true);
    let stream = ResetOnDrop::new(stream);
    let reset = stream.flag();
    let service = service_fn(move |request| respond(shared.clone(), reset.clone(), request));
    // Errors are the client going away, or a scripted reset or cut: nothing to report.
    let _ = http.serve_connection(TokioIo::new(stream), service).await;
}

async fn respond(
    shared: Arc<Shared>,
    reset: Arc<AtomicBool>,
    request: Request<Incoming>,
) -> Result<Response<ReplyBody>, Abort> {
    let received_at = Instant::now();
    let (head, mut body) = request.into_parts();
    let version = head.version;

    let guard = shared.guard();
    let intercept = shared
        .intercept
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let recording = shared.recording.load(Ordering::Relaxed);
    let request = if recording || guard.is_some() || intercept.is_some() {
        let body = body.collect().await.map_err(|_| Abort::ClientGone)?;
        Some(RecordedRequest {
            method: head.method,
            uri: head.uri,
            version,
            headers: head.headers,
            body: body.to_bytes(),
            received_at,
        })
    } else {
        while let Some(frame) = body.frame().await {
            frame.map_err(|_| Abort::ClientGone)?;
        }
        None
    };
    if let (Some(intercept), Some(request)) = (&intercept, &request)
        && let Some(reply) = intercept(request)
    {
        if !reply.header_delay().is_zero() {
            tokio::time::sleep(reply.header_delay()).await;
        }
        return Ok(reply.to_response());
    }
    let refusal = match (&guard, &request) {
        (Some(guard), Some(request)) => guard(request),
        _ => None,
    };
    let record = request.filter(|_| recording);
    let reply = shared.next_reply(record, refusal);

    if !reply.header_delay().is_zero() {
        tokio::time::sleep(reply.header_delay()).await;
    }
    if reply.is_reset() {
        // On h2 the service error resets just the stream; the connection lives on.
        if version < Version::HTTP_2 {
            reset.store(true, Ordering::Release);
        }
        return Err(Abort::Reset);
    }
    Ok(reply.to_response())
}

/// Counts a connection as open for as long as it lives: ended, aborted or
/// dropped with the server.
struct Open(Arc<Shared>);

impl Open {
    fn new(shared: &Arc<Shared>) -> Self {
        shared.open.send_modify(|open| *open += 1);
        Open(shared.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.send_modify(|open| *open -= 1);
    }
}

/// Why a request got no response.
#[derive(Debug)]
enum Abort {
    /// The request body failed: the client is gone.
    ClientGone,
    /// A [`Reply::reset`].
    Reset,
}

impl fmt::Display for Abort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ClientGone => "testkit: request body failed",
            Self::Reset => "testkit: scripted reset",
        })
    }
}

impl Error for Abort {}
