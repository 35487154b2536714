//! Child processes: the upstream, the floor proxy and the gateway each run
//! in their own, so that CPU time and memory can be read per process.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::BoxError;

/// The line a server child prints on stdout once it accepts connections.
pub const LISTENING: &str = "listening on http://";

/// A child process, killed when dropped.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    log: Option<PathBuf>,
}

impl Process {
    /// Starts `command` (stdin closed; stdout piped for
    /// [`wait_listening`](Process::wait_listening); stderr inherited unless
    /// the command redirects it, or to `log` when given).
    ///
    /// # Errors
    ///
    /// When the program cannot be started.
    pub fn spawn(name: &str, command: &mut Command, log: Option<&Path>) -> Result<Self, BoxError> {
        command.stdin(Stdio::null()).stdout(Stdio::piped());
        if let Some(log) = log {
            command.stderr(std::fs::File::create(log)?);
        }
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {name} ({command:?}): {e}"))?;
        Ok(Process {
            name: name.to_owned(),
            child,
            log: log.map(Path::to_path_buf),
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The name it was started under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits for the [`LISTENING`] line on the child's stdout and returns
    /// the address in it. Later output is drained by a thread, so the child
    /// never blocks on a full pipe.
    ///
    /// # Errors
    ///
    /// When the child exits or says nothing of the kind within `timeout`.
    pub fn wait_listening(&mut self, timeout: Duration) -> Result<SocketAddr, BoxError> {
        let stdout = self
            .child
            .stdout
            .take()
            .ok_or_else(|| format!("{}: stdout already taken", self.name))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !sent && let Some(at) = line.find(LISTENING) {
                    sent = tx
                        .send(line[at + LISTENING.len()..].trim().to_owned())
                        .is_ok();
                }
            }
        });
        let addr = rx
            .recv_timeout(timeout)
            .map_err(|_| format!("{} did not start listening: {}", self.name, self.tail()))?;
        Ok(addr.parse()?)
    }

    /// Waits until the child's log file says it is listening; for the
    /// gateway, which logs to stderr (here, a file).
    ///
    /// # Errors
    ///
    /// When the child exits or does not log it within `timeout`.
    pub fn wait_logged(&mut self, needle: &str, timeout: Duration) -> Result<(), BoxError> {
        let log = self
            .log
            .clone()
            .ok_or_else(|| format!("{}: no log file", self.name))?;
        let step = Duration::from_millis(20);
        let mut waited = Duration::ZERO;
        loop {
            if std::fs::read_to_string(&log).is_ok_and(|text| text.contains(needle)) {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                return Err(format!("{} exited ({status}): {}", self.name, self.tail()).into());
            }
            if waited >= timeout {
                return Err(
                    format!("{} did not log {needle:?}: {}", self.name, self.tail()).into(),
                );
            }
            std::thread::sleep(step);
            waited += step;
        }
    }

    /// Asks the child to stop (SIGTERM, through `kill(1)`: this crate has no
    /// `unsafe` for `kill(2)`) and waits for it; kills it after `timeout`.
    ///
    /// # Errors
    ///
    /// When waiting for the child fails.
    pub fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus, BoxError> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let step = Duration::from_millis(20);
        let mut waited = Duration::ZERO;
        while waited < timeout {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(step);
            waited += step;
        }
        let _ = self.child.kill();
        Ok(self.child.wait()?)
    }

    /// The last lines of the child's log, for error messages.
    fn tail(&self) -> String {
        let Some(log) = &self.log else {
            return String::from("(stderr above)");
        };
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(5)..].join("\n");
        format!("log {}:\n{tail}", log.display())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
