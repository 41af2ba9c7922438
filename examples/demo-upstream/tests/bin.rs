//! The `demo-upstream` binary: prints its URL, prepares the sandbox, serves,
//! and exits 0 on SIGTERM and SIGINT.

#![cfg(unix)]
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;

use bytes::Bytes;
use common::{WAIT, run};
use http::{Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// The child, killed if a test fails before it exits.
struct Running(Option<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Running {
    fn start(args: &[&str]) -> (Running, String) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_demo-upstream"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let running = Running(Some(child));
        let line = rx.recv_timeout(WAIT).expect("no URL printed in time");
        (running, line.trim_end().to_owned())
    }

    /// Sends `signal` and waits for the exit.
    fn stop(mut self, signal: &str) -> ExitStatus {
        let mut child = self.0.take().unwrap();
        let sent = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        rx.recv_timeout(WAIT).expect("no exit in time").unwrap()
    }
}

#[test]
fn prints_its_url_serves_and_exits_cleanly_on_signals() {
    for signal in ["-TERM", "-INT"] {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = dir.path().join("sandbox");
        let (running, url) = Running::start(&[
            "--listen",
            "127.0.0.1:0",
            "--sandbox",
            sandbox.to_str().unwrap(),
            "--answer",
            "sse",
        ]);
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        assert!(url.ends_with("/mcp"), "{url}");
        assert!(sandbox.join("README.txt").is_file());
        run(async {
            let client: Client<HttpConnector, Full<Bytes>> =
                Client::builder(TokioExecutor::new()).build(HttpConnector::new());
            let body = common::initialize(1, "2025-11-25").to_string();
            let req = Request::post(url.as_str())
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))
                .unwrap();
            let response = tokio::time::timeout(WAIT, client.request(req))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            assert!(response.headers().contains_key("mcp-session-id"));
            assert_eq!(response.headers()["content-type"], "text/event-stream");
            let body = tokio::time::timeout(WAIT, response.into_body().collect())
                .await
                .unwrap()
                .unwrap()
                .to_bytes();
            assert!(String::from_utf8_lossy(&body).contains("aegis-demo-upstream"));
        });
        let status = running.stop(signal);
        assert!(status.success(), "{signal}: {status}");
    }
}

#[test]
fn a_busy_address_is_an_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_demo-upstream"))
        .args(["--listen", &addr, "--sandbox", dir.path().to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let Ok(output) = rx.recv_timeout(WAIT) else {
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
        panic!("demo-upstream did not exit in time");
    };
    let output = output.unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains(&addr));
}
