//! Client connections: a limit on every phase of each, and on how many.
//!
//! hyper bounds little by itself: an HTTP/1 head must arrive within its
//! header-read timer, and that is all. An HTTP/2 connection with no stream
//! stays open for ever; so does one whose header block never ends; and
//! nothing caps how many connections are open. This module adds, around
//! hyper's own connection future:
//!
//! - **an idle timeout** ([`ConnectionSettings::idle_timeout`]): a
//!   connection with no request in flight for that long is shut down —
//!   `GOAWAY` on HTTP/2, a close on HTTP/1 — and dropped
//!   [`CLOSE_GRACE`] later if the client has not finished it;
//! - **a header timeout** ([`ConnectionSettings::header_read_timeout`]):
//!   from the first byte of an HTTP/1 request head, or from an HTTP/2
//!   `HEADERS` frame header, to the end of the head ([`frames`] follows the
//!   HTTP/2 framing of the bytes read to tell);
//! - **HTTP/2 keep-alive pings** (hyper's): a peer that does not answer one
//!   within [`ConnectionSettings::http2_keepalive_timeout`] is gone;
//! - **bounded HTTP/2 buffers**: streams per connection, flow-control
//!   windows, header list and send buffer sizes ([`configure_http2`]);
//!   hyper's rapid-reset guard stays on;
//! - **a connection cap** ([`ConnectionSettings::max_connections`], see
//!   [`table`]): at the cap a new connection takes the slot of the
//!   connection idle the longest (nginx reuses idle keep-alive slots the
//!   same way); when every connection has a request in flight it goes to a
//!   small reserve, where `/health` and `/health/readiness` are answered at
//!   once and anything else waits up to [`CAP_WAIT`] for a slot, then gets
//!   503 `overloaded` and a close. A full reserve gives up its own
//!   longest-idle connection; only a reserve whose every connection is
//!   answering refuses the newcomer.
//!
//! Each connection closed by one of these limits is counted in
//! `tollgate_connections_shed_total` by [`ShedReason`](crate::metrics::ShedReason).

mod driver;
pub(crate) mod frames;
mod io;
mod service;
mod table;

use std::time::Duration;

use hyper_util::rt::TokioTimer;
use hyper_util::server::conn::auto;

use crate::config::TollgateSettings;

pub(crate) use driver::Watched;
pub(crate) use io::WatchedStream;
pub(crate) use service::handle;
pub(crate) use table::{Admission, Graceful, Table};

/// Default `tollgate.connection_idle_timeout`: above the 60 s idle timeout
/// of the usual load balancers, so that they, not the gateway, close their
/// pooled connections (a gateway closing first races their next request).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// Default `tollgate.header_read_timeout`: hyper's own for HTTP/1.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `tollgate.http2_keepalive_interval`.
pub const DEFAULT_HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// Default `tollgate.http2_keepalive_timeout`.
pub const DEFAULT_HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// The most connections a default cap allows, whatever the fd limit: what
/// ~10,000 idle connections cost in memory is already well over 100 MB.
pub const MAX_DEFAULT_CONNECTIONS: usize = 10_000;

/// How long a request on a reserve connection waits for a regular slot.
pub(crate) const CAP_WAIT: Duration = Duration::from_secs(1);
/// How long a connection being shut down may take to finish once it has
/// no request in flight, before it is dropped.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// The idle and header timeouts of reserve connections, when shorter than
/// the configured ones: a reserve slot is for one quick answer.
pub(crate) const RESERVE_TIMEOUT: Duration = Duration::from_secs(5);

/// HTTP/2 streams one connection may have open: the RFC's recommended
/// floor, half of hyper's default.
pub(crate) const HTTP2_MAX_CONCURRENT_STREAMS: u32 = 100;
/// What one stream may have sent and not been read (a request body is
/// read as it comes, so this only bounds a client that outruns it).
pub(crate) const HTTP2_STREAM_WINDOW: u32 = 256 * 1024;
/// What all streams of one connection may have sent and not been read.
pub(crate) const HTTP2_CONNECTION_WINDOW: u32 = 1024 * 1024;
/// The largest header list accepted (hyper's default, made explicit).
pub(crate) const HTTP2_MAX_HEADER_LIST: u32 = 16 * 1024;
/// Response bytes buffered per stream for a client that reads slowly.
pub(crate) const HTTP2_MAX_SEND_BUFFER: usize = 128 * 1024;
/// Streams a client may open and reset before the server accepts them
/// (the rapid-reset guard, CVE-2023-44487; h2's default, made explicit).
pub(crate) const HTTP2_MAX_PENDING_RESETS: usize = 20;

/// The limits on client connections (the connection keys of the
/// `tollgate:` section, or their defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnectionSettings {
    /// Connections served at once (`max_connections`).
    pub(crate) max_connections: usize,
    /// Connections beyond the cap kept for health checks ([`reserve_for`]).
    pub(crate) reserve: usize,
    /// No request in flight this long closes a connection.
    pub(crate) idle_timeout: Duration,
    /// A request head must arrive within this time of its first byte.
    pub(crate) header_read_timeout: Duration,
    /// HTTP/2 pings after this much silence; `None`: no pings.
    pub(crate) http2_keepalive_interval: Option<Duration>,
    /// An HTTP/2 ping unanswered this long closes the connection.
    pub(crate) http2_keepalive_timeout: Duration,
}

impl ConnectionSettings {
    /// The settings `tollgate` asks for, with defaults for the rest (the
    /// cap's from this process's open-file limit).
    pub(crate) fn from_config(tollgate: &TollgateSettings) -> Self {
        let max_connections = tollgate
            .max_connections
            .unwrap_or_else(|| default_max_connections(open_file_limit()));
        ConnectionSettings {
            max_connections,
            reserve: reserve_for(max_connections),
            idle_timeout: tollgate
                .connection_idle_timeout
                .unwrap_or(DEFAULT_IDLE_TIMEOUT),
            header_read_timeout: tollgate
                .header_read_timeout
                .unwrap_or(DEFAULT_HEADER_READ_TIMEOUT),
            http2_keepalive_interval: match tollgate.http2_keepalive_interval {
                Some(Duration::ZERO) => None,
                Some(interval) => Some(interval),
                None => Some(DEFAULT_HTTP2_KEEPALIVE_INTERVAL),
            },
            http2_keepalive_timeout: tollgate
                .http2_keepalive_timeout
                .unwrap_or(DEFAULT_HTTP2_KEEPALIVE_TIMEOUT),
        }
    }

    /// The settings of a reserve connection: the same, with the idle and
    /// header timeouts at most [`RESERVE_TIMEOUT`].
    pub(crate) fn for_reserve(mut self) -> Self {
        self.idle_timeout = self.idle_timeout.min(RESERVE_TIMEOUT);
        self.header_read_timeout = self.header_read_timeout.min(RESERVE_TIMEOUT);
        self
    }
}

/// The reserve beyond a cap of `max_connections`: 1/64 of it, at least 8
/// and at most 256 — enough for probes and scrapes, few enough that the fd
/// budget holds.
pub(crate) fn reserve_for(max_connections: usize) -> usize {
    (max_connections / 64).clamp(8, 256)
}

/// The default cap for an open-file limit of `nofile`: each client
/// connection may hold an upstream connection too, and the process needs a
/// few dozen descriptors of its own (ledger, logs, Redis, the listener), so
/// half of what is left, less the reserve — at most
/// [`MAX_DEFAULT_CONNECTIONS`].
pub(crate) fn default_max_connections(nofile: u64) -> usize {
    let budget = usize::try_from(nofile.saturating_sub(64) / 2).unwrap_or(usize::MAX);
    let cap = budget.saturating_sub(reserve_for(budget));
    cap.clamp(16, MAX_DEFAULT_CONNECTIONS)
}

/// The soft limit on open files (`ulimit -n`), from `/proc/self/limits`;
/// 1024, the usual default, where that cannot be read.
fn open_file_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            let line = limits
                .lines()
                .find(|line| line.starts_with("Max open files"))?;
            line["Max open files".len()..]
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(1024)
}

/// Sets the HTTP/1 and HTTP/2 limits of `settings` on `builder`.
pub(crate) fn configure<E>(builder: &mut auto::Builder<E>, settings: &ConnectionSettings) {
    // The header timeout is the connection's own (it starts at a head's
    // first byte, so that idle keep-alive connections follow the idle
    // timeout instead): hyper's would close idle connections at 30 s.
    builder.http1().header_read_timeout(None);
    configure_http2(builder, settings);
}

/// The HTTP/2 limits: pings, streams, windows and buffers.
fn configure_http2<E>(builder: &mut auto::Builder<E>, settings: &ConnectionSettings) {
    let mut http2 = builder.http2();
    http2
        .timer(TokioTimer::new())
        .keep_alive_interval(settings.http2_keepalive_interval)
        .keep_alive_timeout(settings.http2_keepalive_timeout)
        .max_concurrent_streams(HTTP2_MAX_CONCURRENT_STREAMS)
        .initial_stream_window_size(HTTP2_STREAM_WINDOW)
        .initial_connection_window_size(HTTP2_CONNECTION_WINDOW)
        .max_header_list_size(HTTP2_MAX_HEADER_LIST)
        .max_send_buf_size(HTTP2_MAX_SEND_BUFFER)
        .max_pending_accept_reset_streams(HTTP2_MAX_PENDING_RESETS);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_leaves_room_for_upstreams_and_the_reserve() {
        // The usual soft limit.
        let cap = default_max_connections(1024);
        assert_eq!(cap, 480 - reserve_for(480));
        assert!(2 * (cap + reserve_for(cap)) + 64 <= 1024);
        // A raised one: capped for memory's sake.
        assert_eq!(default_max_connections(1 << 20), MAX_DEFAULT_CONNECTIONS);
        assert_eq!(default_max_connections(20_000), 9968 - 155);
        // A tiny one still serves.
        assert_eq!(default_max_connections(10), 16);
    }

    #[test]
    fn the_open_file_limit_is_read() {
        // Linux has /proc; anywhere else the fallback.
        assert!(open_file_limit() >= 16);
    }

    #[test]
    fn zero_turns_keepalive_pings_off() {
        let tollgate = TollgateSettings {
            http2_keepalive_interval: Some(Duration::ZERO),
            max_connections: Some(100),
            ..TollgateSettings::default()
        };
        let settings = ConnectionSettings::from_config(&tollgate);
        assert_eq!(settings.http2_keepalive_interval, None);
        assert_eq!(settings.max_connections, 100);
        assert_eq!(settings.reserve, 8);
        assert_eq!(settings.idle_timeout, DEFAULT_IDLE_TIMEOUT);
        let reserve = settings.for_reserve();
        assert_eq!(reserve.idle_timeout, RESERVE_TIMEOUT);
        assert_eq!(reserve.header_read_timeout, RESERVE_TIMEOUT);
    }
}
