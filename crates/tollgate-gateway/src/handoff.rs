//! Connections accepted on one thread and served on another: what the
//! per-core server's dispatcher hands each serving thread
//! ([`serve_per_core`](crate::serve_per_core)), and the count of each
//! thread's open connections it picks the least loaded by.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Where `server::serve_until` takes its connections: a listener of its own, or
/// the connections a dispatcher hands this thread (see `per_core`).
pub(crate) enum Connections {
    Listener(TcpListener),
    Handed(mpsc::Receiver<Handed>),
}

/// A connection accepted on another runtime's thread, for this one to serve.
pub(crate) struct Handed {
    pub(crate) stream: std::net::TcpStream,
    pub(crate) peer: SocketAddr,
    /// Counts the connection in its thread's load until it ends.
    pub(crate) load: LoadGuard,
}

impl Connections {
    /// The next connection; `None` once a dispatcher has stopped handing
    /// them.
    pub(crate) async fn next(
        &mut self,
    ) -> Option<std::io::Result<(TcpStream, SocketAddr, Option<LoadGuard>)>> {
        match self {
            Connections::Listener(listener) => Some(
                listener
                    .accept()
                    .await
                    .map(|(stream, peer)| (stream, peer, None)),
            ),
            Connections::Handed(handed) => {
                let Handed { stream, peer, load } = handed.recv().await?;
                // Registered with this thread's runtime here.
                Some(TcpStream::from_std(stream).map(|stream| (stream, peer, Some(load))))
            }
        }
    }
}

/// The open connections of each serving thread.
#[derive(Debug)]
pub(crate) struct Load(Box<[AtomicUsize]>);

impl Load {
    pub(crate) fn new(threads: usize) -> Arc<Self> {
        Arc::new(Load((0..threads).map(|_| AtomicUsize::new(0)).collect()))
    }

    /// The threads, those serving the fewest connections first.
    pub(crate) fn least_loaded(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.0.len()).collect();
        order.sort_by_key(|&thread| self.0[thread].load(Ordering::Relaxed));
        order
    }
}

/// Counts one connection in its thread's load until dropped.
#[derive(Debug)]
pub(crate) struct LoadGuard {
    load: Arc<Load>,
    thread: usize,
}

impl LoadGuard {
    pub(crate) fn new(load: &Arc<Load>, thread: usize) -> Self {
        load.0[thread].fetch_add(1, Ordering::Relaxed);
        LoadGuard {
            load: load.clone(),
            thread,
        }
    }
}

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.load.0[self.thread].fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_loaded_thread_comes_first_and_a_guard_counts_until_dropped() {
        let load = Load::new(3);
        let first = LoadGuard::new(&load, 0);
        let _second = LoadGuard::new(&load, 0);
        let _third = LoadGuard::new(&load, 2);
        assert_eq!(load.least_loaded(), vec![1, 2, 0]);
        drop(first);
        let _fourth = LoadGuard::new(&load, 1);
        // 1, 1, 1: ties keep the threads' order.
        assert_eq!(load.least_loaded(), vec![0, 1, 2]);
    }
}
