//! The real `tollgate` binary as a child process, for tests of what only a
//! process shows: signals, restarts, several replicas.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// One gateway process on a free loopback port; its stderr is kept.
pub struct GatewayProcess {
    /// `None` once [`exited`](Self::exited) has taken it.
    child: Option<Child>,
    base: String,
    log: Arc<Mutex<String>>,
    /// Reads the child's stderr into `log` until it closes.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl GatewayProcess {
    /// Starts the binary on `config` in `dir` (its spend ledger's default
    /// place), with `env` added to its environment, and waits until it
    /// says where it listens.
    pub fn start(config: &Path, dir: &Path, env: &[(&str, &str)]) -> GatewayProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tollgate"));
        command
            .arg("--config")
            .arg(config)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .current_dir(dir)
            .args(["--log-format", "json"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("the binary starts");
        // Every line is kept; reading them all also keeps the child from
        // blocking on a full pipe.
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn({
            let log = log.clone();
            move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(at) = line.find("listening on http://") {
                        // The URL ends the JSON string it is in.
                        let addr = line[at + "listening on ".len()..]
                            .split(['"', ' '])
                            .next()
                            .unwrap()
                            .to_owned();
                        let _ = tx.send(addr);
                    }
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the gateway says where it listens");
        GatewayProcess {
            child: Some(child),
            base,
            log,
            reader: Some(reader),
        }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// What it has written to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends `signal` (`-TERM`, `-KILL`).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The process id, for `/proc/<pid>`.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Waits for the process to exit.
    pub async fn exited(self) -> ExitStatus {
        self.exited_with_log().await.0
    }

    /// Waits for the process to exit, and for the last of what it wrote.
    pub async fn exited_with_log(mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("running");
        let reader = self.reader.take().expect("reading");
        let status = tokio::task::spawn_blocking(move || {
            let status = child.wait().unwrap();
            // Its stderr is closed now: the reader ends.
            reader.join().unwrap();
            status
        })
        .await
        .unwrap();
        (status, self.log())
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
