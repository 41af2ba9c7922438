//! A blocking client of a running server's admin API, for `conformance run
//! --server` and `approvals`: one request at a time, each under a timeout, with the admin
//! token from `--token-file` (else `AEGIS_ADMIN_TOKEN_FILE`) when one is
//! given. The token is read once, kept in a sensitive header value (not
//! shown by `Debug`) and never printed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Longest wait for one decision (connect, send, answer).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A running server's admin API: `POST /v1/policy/decide` for
/// `conformance run --server`, `/v1/approvals` for `approvals`.
pub struct Server {
    /// `http://host:port`, without a trailing slash.
    base: String,
    runtime: tokio::runtime::Runtime,
    client: Client<HttpConnector, Full<Bytes>>,
    /// `Bearer <token>`, marked sensitive.
    authorization: Option<HeaderValue>,
}

/// The token file to send from: the flag, else the environment.
fn token_file(flag: Option<&Path>) -> Option<PathBuf> {
    flag.map(Path::to_path_buf).or_else(|| {
        std::env::var_os(crate::config::ENV_ADMIN_TOKEN_FILE)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
}

/// `Bearer <token>` from the file: its contents less one trailing newline.
/// Errors name the file, never its contents.
fn authorization(path: &Path) -> Result<HeaderValue, String> {
    let text = std::fs::read(path)
        .map_err(|e| format!("cannot read the token file \"{}\": {e}", path.display()))?;
    let token = text.strip_suffix(b"\n").unwrap_or(&text);
    let token = token.strip_suffix(b"\r").unwrap_or(token);
    if token.is_empty() {
        return Err(format!("the token file \"{}\" is empty", path.display()));
    }
    let mut value =
        HeaderValue::from_bytes(&[b"Bearer ".as_slice(), token].concat()).map_err(|_| {
            format!(
                "the token in \"{}\" cannot be sent in a header (control characters?)",
                path.display()
            )
        })?;
    value.set_sensitive(true);
    Ok(value)
}

impl Server {
    /// `base` is `http://host:port` (TLS to the server is not supported
    /// yet); `token_file` (else `AEGIS_ADMIN_TOKEN_FILE`) holds the admin
    /// token to send.
    pub fn new(base: &str, token_file_flag: Option<&Path>) -> Result<Server, String> {
        let authorization = token_file(token_file_flag)
            .map(|path| authorization(&path))
            .transpose()?;
        let base = base.trim_end_matches('/');
        if !base.starts_with("http://") {
            return Err(format!("--server must be an http:// URL, got {base:?}"));
        }
        let base: Uri = base
            .parse()
            .map_err(|e| format!("--server {base:?} is not a valid URL: {e}"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the async runtime: {e}"))?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(REQUEST_TIMEOUT));
        let client = {
            let _entered = runtime.enter();
            Client::builder(TokioExecutor::new()).build(connector)
        };
        Ok(Server {
            base: base.to_string().trim_end_matches('/').to_owned(),
            runtime,
            client,
            authorization,
        })
    }

    /// One request to `path` (with a JSON `body`, if any): the status and
    /// the JSON answer. Transport failures and a non-JSON answer are `Err`.
    pub fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), String> {
        let url = format!("{}{path}", self.base);
        let mut req = Request::builder().method(method).uri(&url);
        if let Some(value) = &self.authorization {
            req = req.header(header::AUTHORIZATION, value.clone());
        }
        let body = match body {
            Some(body) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(body.to_string())
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(body))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        let (status, body) = self.runtime.block_on(async {
            let response = tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(req))
                .await
                .map_err(|_| format!("no answer from {url} within {REQUEST_TIMEOUT:?}"))?
                .map_err(|e| format!("{url}: {e}"))?;
            let status = response.status();
            let body = tokio::time::timeout(REQUEST_TIMEOUT, response.into_body().collect())
                .await
                .map_err(|_| format!("the answer from {url} did not finish in time"))?
                .map_err(|e| format!("{url}: {e}"))?
                .to_bytes();
            Ok::<_, String>((status, body))
        })?;
        let body: Value = serde_json::from_slice(&body)
            .map_err(|e| format!("HTTP {status}: the answer is not JSON ({e})"))?;
        Ok((status, body))
    }

    /// [`Server::call`], where anything but `200` is an error naming the
    /// server's message.
    pub fn call_ok(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, String> {
        let (status, body) = self.call(method, path, body)?;
        if status != StatusCode::OK {
            let error = body.get("error").and_then(Value::as_str).unwrap_or("");
            return Err(format!("HTTP {status}: {error}"));
        }
        Ok(body)
    }

    /// The server's `(outcome, reason)` for an Aegis decide request.
    pub fn decide(&self, request: &Value) -> Result<(String, String), String> {
        let body = self.call_ok(Method::POST, "/v1/policy/decide", Some(request))?;
        let field = |name: &str| {
            body.get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("the answer has no string {name:?}: {body}"))
        };
        Ok((field("outcome")?, field("reason")?))
    }
}
