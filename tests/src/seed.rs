//! The seed systems' real clients from PyPI, each in its own pinned venv
//! ([`crate::python`]), driven by a JSON script of steps; the scripts are in
//! `tests/python/` and document their steps and reports.

use std::time::Duration;

use serde_json::Value;

use crate::python::{CLIENT_TIMEOUT, PyProcess, Sdk};

/// One run of `aegislib_client.py`: started, then read line by line.
#[derive(Debug)]
pub struct AegislibRun {
    process: PyProcess,
}

impl AegislibRun {
    /// Starts aegislib against the sidecar's admin API at `url` with
    /// `api_key` (sent as `X-API-KEY`, as aegislib does).
    pub async fn start(url: &str, api_key: &str, script: &Value) -> AegislibRun {
        let args = [
            "--url".to_owned(),
            url.to_owned(),
            "--api-key".to_owned(),
            api_key.to_owned(),
            "--script".to_owned(),
            script.to_string(),
        ];
        let script_path = Sdk::Aegislib.client_script();
        let process = PyProcess::spawn(Sdk::Aegislib, &script_path, &args, &[]).await;
        AegislibRun { process }
    }

    /// Waits until an `approval` step's call came back pending (its poller
    /// is running).
    pub async fn pending(&mut self) {
        self.process.wait_for_line("PENDING", CLIENT_TIMEOUT).await;
    }

    /// The report: `{"steps": [...]}`.
    pub async fn report(mut self) -> Value {
        let line = self.process.wait_for_line("REPORT ", CLIENT_TIMEOUT).await;
        serde_json::from_str(&line).unwrap_or_else(|e| {
            panic!(
                "aegislib_client.py printed a report that is not JSON ({e}): {line}\nstderr:\n{}",
                self.process.stderr()
            )
        })
    }
}

/// Runs an aegislib script to its end and returns its steps' results.
pub async fn aegislib(url: &str, api_key: &str, script: &Value) -> Vec<Value> {
    let report = AegislibRun::start(url, api_key, script)
        .await
        .report()
        .await;
    report["steps"].as_array().cloned().unwrap_or_default()
}

/// Runs a `governance_client.py` script against the governance API at
/// `url` with `api_key` (as `AEGIS_BASE_URL` and `AEGIS_API_KEY`, which
/// the client, `@aegis_gate` and `aegis-mcp-server` read) and returns its
/// steps' results.
pub async fn governance(url: &str, api_key: &str, script: &Value) -> Vec<Value> {
    let args = ["--script".to_owned(), script.to_string()];
    let env = [("AEGIS_API_KEY", api_key), ("AEGIS_BASE_URL", url)];
    let mut process = PyProcess::spawn(
        Sdk::Governance,
        &Sdk::Governance.client_script(),
        &args,
        &env,
    )
    .await;
    let line = process.wait_for_line("REPORT ", CLIENT_TIMEOUT).await;
    let report: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
        panic!(
            "governance_client.py printed a report that is not JSON ({e}): {line}\nstderr:\n{}",
            process.stderr()
        )
    });
    report["steps"].as_array().cloned().unwrap_or_default()
}

/// How long a seed-client test may run (interpreters start, venvs are
/// installed before the bound).
pub const TEST_TIMEOUT: Duration = crate::python::TEST_TIMEOUT;
