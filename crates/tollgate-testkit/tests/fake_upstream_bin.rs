//! The `fake-upstream` binary (the Python SDK tests' upstream, run as a
//! process): its usage errors, and that every answer is the file, whether cut
//! into chunks or sent whole; it exits cleanly on SIGTERM. Loopback only;
//! every wait is bounded.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};

const EVENTS: &str = "data: {\"id\":\"1\",\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n\
                      : a comment\n\n\
                      data: {\"id\":\"1\",\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n\
                      data: [DONE]\n\n";

fn fake_upstream(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fake-upstream"));
    command.args(args);
    command
}

fn run(args: &[&str]) -> Output {
    fake_upstream(args).output().expect("the binary runs")
}

fn events_file() -> PathBuf {
    let path = std::env::temp_dir().join(format!("fake-upstream-{}.sse", std::process::id()));
    std::fs::write(&path, EVENTS).unwrap();
    path
}

/// Kills the server if the test ends before it stopped.
struct Serving(Option<Child>);

impl Serving {
    /// SIGTERM, then its exit status (within 10 s).
    async fn stop(&mut self) -> ExitStatus {
        let mut child = self.0.take().expect("serving");
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        let exited = tokio::task::spawn_blocking(move || child.wait());
        tokio::time::timeout(Duration::from_secs(10), exited)
            .await
            .expect("it exits within 10 s of SIGTERM")
            .unwrap()
            .unwrap()
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn usage_errors_exit_with_2_and_say_how_to_call_it() {
    for args in [&[][..], &["--sse"], &["--splits", "3"], &["--port", "1"]] {
        let output = run(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("usage: fake-upstream --sse FILE"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn an_unreadable_file_fails_naming_it() {
    let missing = std::env::temp_dir().join("fake-upstream-no-such-file.sse");
    let output = run(&["--sse", missing.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("fake-upstream: {}", missing.display())),
        "{stderr}"
    );
}

#[tokio::test]
async fn every_answer_is_the_file_cut_or_whole() {
    let path = events_file();
    let mut child = fake_upstream(&["--sse", path.to_str().unwrap(), "--splits", "2"])
        .args(["--seed", "7"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().unwrap();
    let mut serving = Serving(Some(child));

    // The first line says where it listens; EOF (it died) ends the read too.
    let first_line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    });
    let line = tokio::time::timeout(Duration::from_secs(10), first_line)
        .await
        .expect("its address within 10 s")
        .unwrap()
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    // Answers 1 (a byte per chunk) and 2 (random cuts) are split; 3 is whole.
    for answer in 1..=3 {
        let request = client.get(format!("{url}/v1/chat/completions").parse().unwrap());
        let response = tokio::time::timeout(Duration::from_secs(10), request)
            .await
            .expect("an answer within 10 s")
            .expect("an answer");
        assert_eq!(response.status(), 200, "answer {answer}");
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "answer {answer}"
        );
        let body = tokio::time::timeout(Duration::from_secs(10), response.into_body().collect())
            .await
            .expect("a whole body within 10 s")
            .expect("a whole body")
            .to_bytes();
        assert_eq!(body, EVENTS.as_bytes(), "answer {answer}");
    }
    let status = serving.stop().await;
    assert!(status.success(), "SIGTERM ends it cleanly: {status}");
}

#[tokio::test]
async fn as_the_bedrock_fake_it_refuses_unsigned_requests() {
    let mut child = fake_upstream(&["--fake", "bedrock"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().unwrap();
    let mut serving = Serving(Some(child));
    let first_line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    });
    let line = tokio::time::timeout(Duration::from_secs(10), first_line)
        .await
        .expect("its address within 10 s")
        .unwrap()
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = http::Request::post(format!("{url}/model/m/converse"))
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
        .await
        .expect("an answer within 10 s")
        .expect("an answer");
    assert_eq!(response.status(), 403);
    let status = serving.stop().await;
    assert!(status.success(), "SIGTERM ends it cleanly: {status}");
}
