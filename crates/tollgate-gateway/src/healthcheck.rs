//! `tollgate healthcheck`: a liveness probe with no curl.
//!
//! The container image carries the binary and CA certificates, nothing
//! else; its `HEALTHCHECK` runs the binary itself, which asks `GET /health`
//! over a plain blocking socket. No runtime, no HTTP client: a probe that
//! starts a thread pool every few seconds would cost more than the check.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The socket could not connect, write or read in time.
    #[error("{addr}: {source}")]
    Io {
        /// The address probed.
        addr: SocketAddr,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The answer was not an HTTP response.
    #[error("{addr}: not an HTTP response")]
    NotHttp {
        /// The address probed.
        addr: SocketAddr,
    },
    /// The gateway answered with a status other than 200.
    #[error("{addr}: {path} answered {status}")]
    Unhealthy {
        /// The address probed.
        addr: SocketAddr,
        /// The path asked.
        path: String,
        /// The status it answered.
        status: u16,
    },
}

/// Asks `GET path` of the gateway at `addr` and succeeds on a 200, each of
/// connecting, writing and reading bounded by `timeout`.
pub fn probe(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(), ProbeError> {
    let io = |source| ProbeError::Io { addr, source };
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nuser-agent: tollgate-healthcheck\r\nconnection: close\r\n\r\n"
    )
    .map_err(io)?;
    // The status line is all the probe needs: read at most a small head.
    let mut head = [0u8; 64];
    let mut len = 0;
    while len < head.len() && !head[..len].contains(&b'\n') {
        match stream.read(&mut head[len..]).map_err(io)? {
            0 => break,
            n => len += n,
        }
    }
    let status = status_code(&head[..len]).ok_or(ProbeError::NotHttp { addr })?;
    if status == 200 {
        Ok(())
    } else {
        Err(ProbeError::Unhealthy {
            addr,
            path: path.to_owned(),
            status,
        })
    }
}

/// The status of an HTTP/1.x status line (`HTTP/1.1 200 OK`).
fn status_code(head: &[u8]) -> Option<u16> {
    let rest = head.strip_prefix(b"HTTP/1.")?;
    let code = rest.get(2..5)?;
    if rest.get(1) != Some(&b' ') || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::status_code;

    #[test]
    fn reads_the_status_of_a_status_line() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(status_code(b"HTTP/1.0 503 Service Unavailable"), Some(503));
        assert_eq!(status_code(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_code(b"HTTP/1.1 2"), None);
        assert_eq!(status_code(b""), None);
    }
}
