//! Serving on one runtime per core (`serve_per_core`), as the binary does:
//! one listener handing each connection to the thread serving the fewest,
//! each thread with its own upstream connections; one connection cap for
//! all; a shutdown that drains every thread before the ledger closes.

mod common;

use std::time::Duration;

use common::{chat_body, client, openai_config, send};
use http_body_util::BodyExt;
use tollgate_gateway::{Gateway, bind, config, serve_per_core};
use tollgate_testkit::{Reply, Upstream, openai};

const THREADS: usize = 3;
/// A guard against a connection nobody serves (it would hang), not a wait:
/// every request here is answered at once.
const GUARD: Duration = Duration::from_secs(20);

fn gateway(yaml: &str) -> Gateway {
    let env = |name: &str| (name == "UPSTREAM_KEY").then(|| "sk-test-upstream".to_owned());
    let loaded = config::load_str(yaml, &env).expect("the config loads");
    Gateway::new(&loaded.config).expect("the config builds")
}

/// The gateway of `yaml` served by [`THREADS`] threads, until the sender is
/// used; the task ends once every thread has drained.
async fn serve_on_threads(
    yaml: &str,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    serve_on(yaml, THREADS).await
}

/// The gateway of `yaml` served by `threads` threads (see
/// [`serve_on_threads`]).
async fn serve_on(
    yaml: &str,
    threads: usize,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let gateway = gateway(yaml);
    let (listener, addr) = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(serve_per_core(
        listener,
        threads,
        gateway,
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(5),
    ));
    (addr, stop, served)
}

/// A connection that has asked `GET /health/liveliness` once, read its
/// answer whole, and is kept open (HTTP/1.1 keep-alive).
async fn asked_once(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    ask(
        &mut stream,
        b"GET /health/liveliness HTTP/1.1\r\nhost: gateway\r\n\r\n",
    )
    .await;
    stream
}

/// Sends `request` on `stream` and reads its `200` answer whole (the head,
/// then the body its content-length announces), leaving it open.
async fn ask(stream: &mut tokio::net::TcpStream, request: &[u8]) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(request).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0; 1024];
    // The head, then the body its content-length announces.
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before answering");
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen).to_ascii_lowercase();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if seen.len() >= end + 4 + length {
                assert!(text.starts_with("http/1.1 200"), "{text}");
                return;
            }
        }
    }
}

/// Whether the gateway has closed `stream` (a read finds its end), without
/// waiting.
fn closed_by_peer(stream: &tokio::net::TcpStream) -> bool {
    let mut buf = [0; 64];
    match stream.try_read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        // Reset counts as closed; nothing to read yet does not.
        Err(error) => error.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// A fresh client connection sending one chat request.
async fn chat_once(url: &str) -> (http::StatusCode, bytes::Bytes) {
    let answer = send(
        &client(),
        "POST",
        url,
        chat_body("gpt-test", false),
        &[("content-type", "application/json")],
    )
    .await;
    let status = answer.status();
    let body = answer.into_body().collect().await.unwrap().to_bytes();
    (status, body)
}

#[tokio::test(flavor = "current_thread")]
async fn every_thread_is_served_and_the_shutdown_drains_them_all() {
    let upstream = Upstream::start().await;
    upstream.set_default(Reply::json(200, openai::chat_completion("Hello")));
    let ledger = std::env::temp_dir().join(format!("tollgate-per-core-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&ledger);
    let yaml = openai_config(
        &upstream.url(),
        &format!("tollgate:\n  ledger_path: {}\n", ledger.display()),
    );
    let (addr, stop, served) = serve_on_threads(&yaml).await;
    let url = format!("http://{addr}/v1/chat/completions");
    const REQUESTS: usize = 48;
    tokio::time::timeout(GUARD, async {
        for _ in 0..REQUESTS {
            let (status, body) = chat_once(&url).await;
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        }
    })
    .await
    .expect("every connection is answered, whichever thread took it");
    // Each serving thread keeps its own upstream connections: 48 client
    // connections spread over three threads open more than one, and no
    // more than one per thread (the requests came one at a time).
    let opened = upstream.connections();
    assert!(
        (2..=THREADS).contains(&opened),
        "{opened} upstream connections for {THREADS} threads"
    );

    stop.send(()).unwrap();
    tokio::time::timeout(GUARD, served)
        .await
        .expect("the shutdown drains every thread")
        .unwrap();
    // The ledger was closed last, with every row.
    let rows: i64 = rusqlite::Connection::open(&ledger)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM spend", [], |row| row.get(0))
        .unwrap();
    assert_eq!(rows, REQUESTS as i64);
    let _ = std::fs::remove_file(&ledger);
}

#[tokio::test(flavor = "current_thread")]
async fn the_connection_cap_counts_every_threads_connections() {
    let upstream = Upstream::start().await;
    let yaml = openai_config(&upstream.url(), "tollgate:\n  max_connections: 4\n");
    let (addr, stop, served) = serve_on_threads(&yaml).await;
    // Nine keep-alive connections, each asking one thing and then idle;
    // at the cap each newcomer takes the slot of an idle one, which its
    // thread closes. One table for all threads closes five of the nine;
    // a table per thread, four slots each, would close none (three
    // connections each) and the guard would end the test.
    let mut connections = Vec::new();
    let closed = tokio::time::timeout(GUARD, async {
        for _ in 0..9 {
            connections.push(asked_once(addr).await);
        }
        loop {
            let closed = connections.iter().filter(|c| closed_by_peer(c)).count();
            if closed >= 5 {
                return closed;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the cap of 4 holds across the threads: five of nine connections closed");
    assert_eq!(closed, 5);
    stop.send(()).unwrap();
    tokio::time::timeout(GUARD, served).await.unwrap().unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn each_connection_goes_to_the_thread_serving_the_fewest() {
    let upstream = Upstream::start().await;
    upstream.set_default(Reply::json(200, openai::chat_completion("Hello")));
    let yaml = openai_config(&upstream.url(), "");
    let (addr, stop, served) = serve_on_threads(&yaml).await;
    let body = chat_body("gpt-test", false).into_bytes();
    let mut chat = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    chat.extend_from_slice(&body);
    tokio::time::timeout(GUARD, async {
        // Six connections held open, then one chat request on each, one
        // at a time: with two connections on every thread, each thread
        // opens one upstream connection of its own and reuses it. A
        // dispatcher blind to load (the kernel's hash over listeners, a
        // thread taking them all) leaves a thread without any and opens
        // fewer.
        let mut held = Vec::new();
        for _ in 0..2 * THREADS {
            held.push(asked_once(addr).await);
        }
        for stream in &mut held {
            ask(stream, &chat).await;
        }
    })
    .await
    .expect("every request is answered");
    assert_eq!(upstream.connections(), THREADS);
    stop.send(()).unwrap();
    tokio::time::timeout(GUARD, served).await.unwrap().unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn one_thread_serves_on_the_callers_runtime_and_drains() {
    let upstream = Upstream::start().await;
    upstream.set_default(Reply::json(200, openai::chat_completion("Hello")));
    let (addr, stop, served) = serve_on(&openai_config(&upstream.url(), ""), 1).await;
    let url = format!("http://{addr}/v1/chat/completions");
    let (status, body) = tokio::time::timeout(GUARD, chat_once(&url))
        .await
        .expect("answered");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    stop.send(()).unwrap();
    tokio::time::timeout(GUARD, served).await.unwrap().unwrap();
}
