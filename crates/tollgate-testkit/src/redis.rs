//! [`RedisServer`]: a real `redis-server` on a loopback port, for tests of
//! state shared between replicas.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A `redis-server` child process on a free loopback port, without
/// persistence; killed on drop. Needs Debian's `redis-server` on the PATH
/// (CI installs it): without it, [`start`](Self::start) panics saying so.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server and waits until it answers `PING`.
    pub async fn start() -> Self {
        // A free port: bind to 0, read it, let it go.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        let mut server = RedisServer { port, child: None };
        server.restart().await;
        server
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts the server again on the same port (after [`kill`](Self::kill))
    /// and waits until it answers `PING`.
    pub async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot start `redis-server` ({error}): these tests need a real Redis. \
                     Install it (Debian/Ubuntu: `apt-get install redis-server`); CI installs it."
                )
            });
        self.child = Some(child);
        for _ in 0..250 {
            if self.ping() {
                return;
            }
            // Waiting for an external process to start, not for time itself.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "redis-server on port {} did not answer PING within 5 s",
            self.port
        );
    }

    /// Whether the server answers `PING` right now.
    pub fn ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }

    /// Sends the server a signal (`-STOP` freezes it: connected clients
    /// wait on it; `-CONT` thaws it).
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("the server is running").id();
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("`kill` runs");
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// Every key the server holds (`KEYS *`).
    pub async fn keys(&self) -> Vec<String> {
        let reply = self.command(&["KEYS", "*"]);
        // A RESP array of bulk strings: `*N`, then `$len` / value pairs.
        reply
            .lines()
            .skip(1)
            .filter(|line| !line.starts_with('$'))
            .map(str::to_owned)
            .collect()
    }

    /// The string value of `key`, if it has one (`GET`).
    pub async fn get(&self, key: &str) -> Option<String> {
        let reply = self.command(&["GET", key]);
        let mut lines = reply.lines();
        match lines.next() {
            Some(header) if header.starts_with('$') && header != "$-1" => {
                lines.next().map(str::to_owned)
            }
            _ => None,
        }
    }

    /// Sends one command, reads its whole reply (RESP, as text).
    fn command(&self, args: &[&str]) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("the server accepts");
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        // QUIT after it: the server answers `+OK` and closes, so the reply
        // ends at the end of the stream.
        request.push_str("*1\r\n$4\r\nQUIT\r\n");
        stream
            .write_all(request.as_bytes())
            .expect("the server reads");
        let mut reply = String::new();
        stream
            .read_to_string(&mut reply)
            .expect("the server answers");
        reply.strip_suffix("+OK\r\n").unwrap_or(&reply).to_owned()
    }

    /// Stops the server at once (SIGKILL): clients see refused connections.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
