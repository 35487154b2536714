use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::Frame;
use tokio::sync::mpsc;

use super::*;

/// A request body fed by the test, chunk by chunk; it ends when the sender
/// is dropped.
struct Fed(mpsc::Receiver<Bytes>);

impl Body for Fed {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
    }
}

fn fed() -> (mpsc::Sender<Bytes>, Fed) {
    let (tx, rx) = mpsc::channel(64);
    (tx, Fed(rx))
}

const MIB: usize = 1024 * 1024;

fn reader(memory: usize) -> BodyReader {
    BodyReader::new(
        10 * MIB,
        Duration::from_secs(30),
        Duration::from_secs(10),
        memory,
        Metrics::new(),
    )
}

fn timeouts_counted(reader: &BodyReader, phase: &str) -> bool {
    reader.metrics.render().contains(&format!(
        "tollgate_client_timeouts_total{{phase=\"{phase}\"}} 1"
    ))
}

/// Sends `chunks` pieces of `size` bytes, `gap` apart, then keeps the body
/// open (silent) for as long as the test runs.
fn trickle(tx: mpsc::Sender<Bytes>, chunks: usize, size: usize, gap: Duration) {
    tokio::spawn(async move {
        for _ in 0..chunks {
            if tx.send(Bytes::from(vec![b'x'; size])).await.is_err() {
                return;
            }
            tokio::time::sleep(gap).await;
        }
        std::future::pending::<()>().await;
    });
}

#[tokio::test(start_paused = true)]
async fn half_a_body_then_silence_is_a_408_at_the_idle_timeout() {
    let reader = reader(DEFAULT_REQUEST_BODY_MEMORY);
    let (tx, body) = fed();
    trickle(tx, 1, 5 * MIB, Duration::ZERO);
    let start = Instant::now();
    let failure = reader.read(body, Some(10 * MIB as u64)).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_secs(10));
    assert_eq!(failure.status(), StatusCode::REQUEST_TIMEOUT);
    assert_eq!(
        failure.message(),
        "the request body stalled for more than 10 s"
    );
    let body: serde_json::Value = serde_json::from_slice(&failure.to_openai_body()).unwrap();
    assert_eq!(body["error"]["code"], "request_body_timeout");
    assert!(timeouts_counted(&reader, STALLED_CHUNK));
}

#[tokio::test(start_paused = true)]
async fn a_body_trickling_under_the_idle_limit_is_a_408_at_the_whole_body_timeout() {
    let reader = reader(DEFAULT_REQUEST_BODY_MEMORY);
    let (tx, body) = fed();
    // A byte every 9 s: never 10 s of silence, never the whole body.
    trickle(tx, 100, 1, Duration::from_secs(9));
    let start = Instant::now();
    let failure = reader.read(body, Some(100)).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_secs(30));
    assert_eq!(failure.status(), StatusCode::REQUEST_TIMEOUT);
    assert_eq!(
        failure.message(),
        "the request body did not arrive within 30 s"
    );
    assert!(timeouts_counted(&reader, STALLED_BODY));
}

#[tokio::test(start_paused = true)]
async fn a_body_in_pieces_within_the_limits_arrives_whole() {
    let reader = reader(DEFAULT_REQUEST_BODY_MEMORY);
    let (tx, body) = fed();
    let sender = tokio::spawn(async move {
        for piece in 0u8..20 {
            tx.send(Bytes::from(vec![piece; 100 * 1024])).await.unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let read = reader.read(body, Some(20 * 100 * 1024)).await.unwrap();
    sender.await.unwrap();
    assert_eq!(read.len(), 20 * 100 * 1024);
    for (piece, chunk) in read.chunks(100 * 1024).enumerate() {
        assert!(chunk.iter().all(|&b| usize::from(b) == piece));
    }
    // Everything taken from the budget is back.
    assert_eq!(
        reader.budget.available_permits(),
        DEFAULT_REQUEST_BODY_MEMORY
    );
}

#[tokio::test]
async fn a_body_in_one_piece_is_passed_on_without_a_copy() {
    let reader = reader(DEFAULT_REQUEST_BODY_MEMORY);
    let sent = Bytes::from_static(b"{\"model\":\"m\"}");
    let read = reader
        .read(http_body_util::Full::new(sent.clone()), Some(13))
        .await
        .unwrap();
    assert_eq!(read.as_ptr(), sent.as_ptr());
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_declared_or_not() {
    let reader = BodyReader::new(
        10,
        Duration::from_secs(30),
        Duration::from_secs(10),
        DEFAULT_REQUEST_BODY_MEMORY,
        Metrics::new(),
    );
    let declared = reader
        .read(
            http_body_util::Full::new(Bytes::from_static(b"x")),
            Some(11),
        )
        .await
        .unwrap_err();
    assert_eq!(declared.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let (tx, body) = fed();
    tx.send(Bytes::from_static(b"123456")).await.unwrap();
    tx.send(Bytes::from_static(b"789012")).await.unwrap();
    drop(tx);
    let undeclared = reader.read(body, None).await.unwrap_err();
    assert_eq!(undeclared.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test(start_paused = true)]
async fn stalled_bodies_hold_no_more_than_the_budget() {
    // 1 MiB shared; each stalled body has sent 900 KiB of 1 MiB.
    let reader = std::sync::Arc::new(BodyReader::new(
        MIB,
        Duration::from_secs(30),
        Duration::from_secs(30),
        MIB,
        Metrics::new(),
    ));
    let mut readers = Vec::new();
    for _ in 0..3 {
        let (tx, body) = fed();
        for _ in 0..9 {
            tx.send(Bytes::from(vec![b'x'; 100 * 1024])).await.unwrap();
        }
        let reader = reader.clone();
        readers.push(tokio::spawn(async move {
            let _keep_open = tx;
            reader.read(body, Some(MIB as u64)).await
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The first body took all it can need beyond its own 64 KiB; the others
    // wait for as much, holding their own 64 KiB at most (what is left of
    // the budget is set aside for the next in line).
    assert_eq!(reader.budget.available_permits(), 0);
    assert!(readers.iter().all(|r| !r.is_finished()));
    for r in readers {
        let status = r.await.unwrap().unwrap_err().status();
        assert!(
            [StatusCode::REQUEST_TIMEOUT, StatusCode::SERVICE_UNAVAILABLE].contains(&status),
            "{status}"
        );
    }
    assert_eq!(reader.budget.available_permits(), MIB);
}

#[tokio::test(start_paused = true)]
async fn a_body_the_budget_cannot_cover_by_its_deadline_is_a_503() {
    let reader = BodyReader::new(
        MIB,
        Duration::from_secs(30),
        Duration::from_secs(10),
        MIB,
        Metrics::new(),
    );
    // Other bodies hold the whole budget.
    let held = reader.budget.try_acquire_many(MIB as u32).unwrap();
    let (tx, body) = fed();
    tx.send(Bytes::from(vec![b'x'; 100 * 1024])).await.unwrap();
    tx.send(Bytes::from(vec![b'x'; 100 * 1024])).await.unwrap();
    let start = Instant::now();
    let failure = reader.read(body, None).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_secs(30));
    assert_eq!(failure.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(failure.retry_after(), Some(Duration::from_secs(1)));
    // Not the client's stall: not counted as one.
    assert!(
        !reader
            .metrics
            .render()
            .contains("phase=\"request_body\"} 1")
    );
    drop(held);
    assert_eq!(reader.budget.available_permits(), MIB);
}

#[tokio::test(start_paused = true)]
async fn a_body_waiting_for_the_budget_proceeds_when_another_is_done() {
    let reader = std::sync::Arc::new(BodyReader::new(
        MIB,
        Duration::from_secs(30),
        Duration::from_secs(30),
        MIB,
        Metrics::new(),
    ));
    let (first_tx, first_body) = fed();
    let (second_tx, second_body) = fed();
    for tx in [&first_tx, &second_tx] {
        for _ in 0..9 {
            tx.send(Bytes::from(vec![b'x'; 100 * 1024])).await.unwrap();
        }
    }
    let first = tokio::spawn({
        let reader = reader.clone();
        async move { reader.read(first_body, None).await }
    });
    let second = tokio::spawn({
        let reader = reader.clone();
        async move { reader.read(second_body, None).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!first.is_finished() && !second.is_finished());
    // One of them ends (its sender goes): its share goes to the other.
    drop(first_tx);
    drop(second_tx);
    let (first, second) = (first.await.unwrap(), second.await.unwrap());
    assert_eq!(first.unwrap().len(), 900 * 1024);
    assert_eq!(second.unwrap().len(), 900 * 1024);
    assert_eq!(reader.budget.available_permits(), MIB);
}

#[tokio::test(start_paused = true)]
async fn bodies_growing_together_never_wait_on_each_other() {
    // Room for two whole bodies; four arrive at once, in pieces. Taken
    // step by step, the budget would end up split between all four, each
    // waiting for more until its deadline.
    let reader = std::sync::Arc::new(BodyReader::new(
        MIB,
        Duration::from_secs(30),
        Duration::from_secs(10),
        2 * MIB,
        Metrics::new(),
    ));
    let mut readers = Vec::new();
    for _ in 0..4 {
        let (tx, body) = fed();
        tokio::spawn(async move {
            for _ in 0..16 {
                tx.send(Bytes::from(vec![b'x'; 64 * 1024])).await.unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let reader = reader.clone();
        readers.push(tokio::spawn(async move {
            reader.read(body, Some(MIB as u64)).await
        }));
    }
    let start = Instant::now();
    for r in readers {
        assert_eq!(r.await.unwrap().unwrap().len(), MIB);
    }
    // Two at a time: the second pair starts when the first is done.
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(reader.budget.available_permits(), 2 * MIB);
}
