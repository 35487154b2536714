//! How the upstream client opens connections: over the network, or in
//! memory for tests and benchmarks.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::io::DuplexStream;
use tokio::net::TcpStream;
use tollgate_core::BoxError;
use tower_service::Service;

/// Opens an in-memory connection for a URI.
pub type Dial = dyn Fn(&Uri) -> io::Result<DuplexStream> + Send + Sync;

/// Where the upstream client's connections come from.
#[derive(Clone)]
pub(crate) enum Connector {
    /// TCP, TLS where the scheme says so, HTTP/2 by ALPN.
    Network(HttpsConnector<HttpConnector>),
    /// In-process streams: no sockets, so paused-time tests and benchmarks
    /// of the whole stack stay deterministic.
    InMemory(Arc<Dial>),
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Connector::Network(_) => "Connector::Network",
            Connector::InMemory(_) => "Connector::InMemory",
        })
    }
}

type ConnectFuture = Pin<Box<dyn Future<Output = Result<Conn, BoxError>> + Send>>;

impl Service<Uri> for Connector {
    type Response = Conn;
    type Error = BoxError;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self {
            Connector::Network(https) => https.poll_ready(cx),
            Connector::InMemory(_) => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, uri: Uri) -> ConnectFuture {
        match self {
            Connector::Network(https) => {
                let connecting = https.call(uri);
                // Once per pooled connection, not per request.
                Box::pin(async move { connecting.await.map(|c| Conn::Network(Box::new(c))) })
            }
            Connector::InMemory(dial) => {
                let dialed = dial(&uri).map(|stream| Conn::Memory(TokioIo::new(stream)));
                Box::pin(async move { dialed.map_err(BoxError::from) })
            }
        }
    }
}

/// A connection of either kind.
#[derive(Debug)]
pub(crate) enum Conn {
    // The TLS state is large, and a connection lives as long as the pool
    // keeps it: boxing it costs one allocation per connection, not per
    // request.
    Network(Box<MaybeHttpsStream<TokioIo<TcpStream>>>),
    Memory(TokioIo<DuplexStream>),
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        match self {
            Conn::Network(stream) => stream.connected(),
            Conn::Memory(_) => Connected::new(),
        }
    }
}

impl Read for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Network(stream) => Pin::new(&mut **stream).poll_read(cx, buf),
            Conn::Memory(stream) => Pin::new(stream).poll_read(cx, buf),
        }
    }
}

impl Write for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Network(stream) => Pin::new(&mut **stream).poll_write(cx, buf),
            Conn::Memory(stream) => Pin::new(stream).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Network(stream) => Pin::new(&mut **stream).poll_flush(cx),
            Conn::Memory(stream) => Pin::new(stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Network(stream) => Pin::new(&mut **stream).poll_shutdown(cx),
            Conn::Memory(stream) => Pin::new(stream).poll_shutdown(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Network(stream) => stream.is_write_vectored(),
            Conn::Memory(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Network(stream) => Pin::new(&mut **stream).poll_write_vectored(cx, bufs),
            Conn::Memory(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
        }
    }
}
