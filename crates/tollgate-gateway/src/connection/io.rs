//! The client socket, watched for the start and end of request heads.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::frames::{FrameScanner, Protocol};
use super::table::ConnState;

pin_project_lite::pin_project! {
    /// A client connection's socket: what is read goes through a
    /// [`FrameScanner`] (frame headers only, nothing copied), which tells
    /// the connection's state when a request head starts and ends. Writes
    /// pass through.
    #[derive(Debug)]
    pub(crate) struct WatchedStream<T> {
        #[pin]
        inner: T,
        scanner: FrameScanner,
        state: Arc<ConnState>,
    }
}

impl<T> WatchedStream<T> {
    /// Watches `inner` for the connection whose state is `state`.
    pub(crate) fn new(inner: T, state: Arc<ConnState>) -> Self {
        WatchedStream {
            inner,
            scanner: FrameScanner::default(),
            state,
        }
    }
}

/// Notes what `bytes`, just read, mean for the request head.
fn observe(scanner: &mut FrameScanner, state: &ConnState, bytes: &[u8]) {
    let was_open = scanner.in_header_block();
    scanner.scan(bytes);
    match scanner.protocol() {
        // An HTTP/1 head starts with the first byte read while no request
        // is in flight; the service's call ends it.
        Protocol::Http1 => {
            if state.in_flight() == 0 {
                state.head_started();
            }
        }
        Protocol::Undecided | Protocol::Http2 => match (was_open, scanner.in_header_block()) {
            (false, true) => state.head_started(),
            (true, false) => state.head_finished(),
            _ => {}
        },
    }
}

impl<T: AsyncRead> AsyncRead for WatchedStream<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let result = this.inner.poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            let read = &buf.filled()[before..];
            if !read.is_empty() {
                observe(this.scanner, this.state, read);
            }
        }
        result
    }
}

impl<T: AsyncWrite> AsyncWrite for WatchedStream<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::table::{Admission, Table};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn an_http1_head_starts_at_its_first_byte() {
        let table = Table::new(4, 1, crate::metrics::Metrics::new());
        let Admission::Admitted(held) = table.admit(|| {}) else {
            panic!("refused")
        };
        let (mut client, server) = tokio::io::duplex(1024);
        let mut watched = WatchedStream::new(server, held.state().clone());
        tokio::time::advance(std::time::Duration::from_secs(3)).await;
        client.write_all(b"GET /hea").await.unwrap();
        let mut buf = [0; 64];
        let n = watched.read(&mut buf).await.unwrap();
        assert_eq!(n, 8);
        assert_eq!(held.state().head_since(), Some(3000));
        // The service's call ends the head; bytes read while a request is
        // in flight (its body) start none.
        held.state().request_started();
        held.state().head_finished();
        client.write_all(b"body").await.unwrap();
        let _ = watched.read(&mut buf).await.unwrap();
        assert_eq!(held.state().head_since(), None);
    }
}
