//! `aegis-proxy approvals list | show ID | approve ID | deny ID | watch`:
//! the humans' side of approvals against a running sidecar's
//! `/v1/approvals`, with an operator token (`README.md`, "Approvals").
//!
//! Text by default, one line per approval (`--json`: the API's JSON, one
//! document per line). The server is `--server`, else `AEGIS_ADMIN_URL`,
//! else `http://127.0.0.1:8080`.

use std::collections::HashSet;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::remote::Server;
use super::{EXIT_INVALID, EXIT_OK, EXIT_USAGE};
use crate::cli::{ApprovalsArgs, ApprovalsCommand};

/// Where the admin API is when nothing says.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";
pub const ENV_ADMIN_URL: &str = "AEGIS_ADMIN_URL";

/// Shortest `watch --interval-ms`: a human-facing poll, not a busy loop.
const MIN_INTERVAL_MS: u64 = 100;

/// What went wrong, and which exit code says so.
enum Failure {
    /// The sidecar answered and refused (1).
    Refused(String),
    /// Bad usage, or no answer (2).
    Usage(String),
}

pub fn approvals(args: &ApprovalsArgs, out: &mut dyn Write) -> ExitCode {
    match run(args, out) {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(Failure::Refused(e)) => {
            eprintln!("aegis-proxy approvals: {e}");
            ExitCode::from(EXIT_INVALID)
        }
        Err(Failure::Usage(e)) => {
            eprintln!("aegis-proxy approvals: {e}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn run(args: &ApprovalsArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let base = args
        .server
        .clone()
        .or_else(|| std::env::var(ENV_ADMIN_URL).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
    let server = Server::new(&base, args.token_file.as_deref()).map_err(Failure::Usage)?;
    let print = |out: &mut dyn Write, approval: &Value| -> Result<(), Failure> {
        let line = if args.json {
            approval.to_string()
        } else {
            line(approval)
        };
        writeln!(out, "{line}").map_err(|e| Failure::Usage(format!("cannot write: {e}")))
    };
    match &args.command {
        ApprovalsCommand::List {
            state,
            tenant,
            session,
        } => {
            for approval in list(
                &server,
                state.as_deref(),
                tenant.as_deref(),
                session.as_deref(),
            )? {
                print(out, &approval)?;
            }
        }
        ApprovalsCommand::Show { id } => {
            let approval = call(
                &server,
                Method::GET,
                &format!("/v1/approvals/{}", segment(id)?),
                None,
            )?;
            if args.json {
                print(out, &approval)?;
            } else {
                writeln!(out, "{}", details(&approval))
                    .map_err(|e| Failure::Usage(format!("cannot write: {e}")))?;
            }
        }
        ApprovalsCommand::Approve { id, reason } | ApprovalsCommand::Deny { id, reason } => {
            let verb = match &args.command {
                ApprovalsCommand::Approve { .. } => "approve",
                _ => "deny",
            };
            let path = format!("/v1/approvals/{}/{verb}", segment(id)?);
            let approval = call(
                &server,
                Method::POST,
                &path,
                Some(&json!({"reason": reason})),
            )?;
            print(out, &approval)?;
        }
        ApprovalsCommand::Watch {
            tenant,
            interval_ms,
            count,
        } => {
            let interval = Duration::from_millis((*interval_ms).max(MIN_INTERVAL_MS));
            let mut seen: HashSet<String> = HashSet::new();
            let mut printed = 0u64;
            loop {
                for approval in list(&server, Some("pending"), tenant.as_deref(), None)? {
                    let id = approval["id"].as_str().unwrap_or_default().to_owned();
                    if approval["state"] == "pending" && seen.insert(id) {
                        print(out, &approval)?;
                        out.flush().ok();
                        printed += 1;
                        if count.is_some_and(|n| printed >= n) {
                            return Ok(());
                        }
                    }
                }
                std::thread::sleep(interval);
            }
        }
    }
    Ok(())
}

/// Every page of `GET /v1/approvals` with these filters.
fn list(
    server: &Server,
    state: Option<&str>,
    tenant: Option<&str>,
    session: Option<&str>,
) -> Result<Vec<Value>, Failure> {
    let mut all = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (name, value) in [
            ("state", state),
            ("tenant_id", tenant),
            ("session_id", session),
            ("page_token", token.as_deref()),
        ] {
            if let Some(value) = value {
                query.append_pair(name, value);
            }
        }
        let page = call(
            server,
            Method::GET,
            &format!("/v1/approvals?{}", query.finish()),
            None,
        )?;
        if let Some(approvals) = page["approvals"].as_array() {
            all.extend(approvals.iter().cloned());
        }
        match page["next_page_token"].as_str() {
            Some(next) => token = Some(next.to_owned()),
            None => return Ok(all),
        }
    }
}

fn call(
    server: &Server,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, Failure> {
    let (status, answer) = server.call(method, path, body).map_err(Failure::Usage)?;
    if status == StatusCode::OK {
        return Ok(answer);
    }
    let error = answer["error"].as_str().unwrap_or("").to_owned();
    let message = format!("HTTP {status}: {error}");
    Err(match status {
        StatusCode::BAD_REQUEST => Failure::Usage(message),
        _ => Failure::Refused(message),
    })
}

/// An approval id as a path segment: only what ids are made of.
fn segment(id: &str) -> Result<&str, Failure> {
    if !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(id)
    } else {
        Err(Failure::Usage(format!("{id:?} is not an approval id")))
    }
}

/// `appr-… pending 0/1 write_file tenant/session {"path":…}`: one line.
fn line(a: &Value) -> String {
    let args = match &a["args"] {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let args = shorten(&shown(&args), 80);
    shown(&format!(
        "{} {} {}/{} {} {}/{} ",
        a["id"].as_str().unwrap_or(""),
        a["state"].as_str().unwrap_or(""),
        a["approvals"],
        a["approvals_required"],
        a["tool_name"].as_str().unwrap_or(""),
        a["tenant_id"].as_str().unwrap_or(""),
        a["session_id"].as_str().unwrap_or(""),
    )) + &args
}

/// `show`: every field a person deciding needs, one per line.
fn details(a: &Value) -> String {
    let mut text = String::new();
    let mut add = |name: &str, value: String| {
        text.push_str(&format!("{name:<18}{value}\n"));
    };
    let s = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    add("id", s(&a["id"]));
    add("state", s(&a["state"]));
    add("tool", s(&a["tool_name"]));
    add(
        "tenant/session",
        format!("{}/{}", s(&a["tenant_id"]), s(&a["session_id"])),
    );
    add(
        "approvals",
        format!("{} of {}", a["approvals"], a["approvals_required"]),
    );
    add("requested", format!("{} (unix ms)", a["requested_unix_ms"]));
    add("expires", format!("{} (unix ms)", a["expires_unix_ms"]));
    add("manifest sha256", s(&a["manifest_sha256"]));
    add("args sha256", s(&a["args_digest"]));
    let args = match &a["args"] {
        Value::String(text) => text.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    };
    let truncated = if a["args_truncated"] == true {
        " (cut at 16 KiB)"
    } else {
        ""
    };
    add("args", format!("{args}{truncated}"));
    for vote in a["votes"].as_array().into_iter().flatten() {
        add(
            "vote",
            format!(
                "{} {} ({})",
                s(&vote["decision"]),
                s(&vote["approver"]),
                s(&vote["reason"])
            ),
        );
    }
    shown(text.trim_end())
}

/// What the agent wrote (its arguments, its session id), made safe to
/// print to the operator deciding on it: JSON already escapes control
/// characters; this also escapes the invisible and direction-changing ones
/// (zero-width, bidi overrides and isolates, the BOM, other controls) that
/// would let the text look like something it is not.
fn shown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        // (A newline is ours: JSON escapes the ones inside strings.)
        let hidden = (c.is_control() && c != '\n')
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}' | '\u{feff}' | '\u{061c}' | '\u{00ad}');
        if hidden {
            out.push_str(&format!("\\u{{{:04x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let cut: String = text.chars().take(max.saturating_sub(1)).collect();
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_says_what_waits_and_for_whom() {
        let a = json!({"id": "appr-1", "state": "pending", "approvals": 0,
            "approvals_required": 2, "tool_name": "write_file", "tenant_id": "t",
            "session_id": "s", "args": {"path": "x".repeat(200)}});
        let text = line(&a);
        assert!(
            text.starts_with("appr-1 pending 0/2 write_file t/s {\"path\":\"xx"),
            "{text}"
        );
        assert!(text.ends_with('…') && text.chars().count() < 140, "{text}");
        let shown = details(&json!({"id": "appr-1", "votes": [
            {"decision": "approve", "approver": "token:/a", "reason": "ok"}]}));
        assert!(
            shown.contains("vote              approve token:/a (ok)"),
            "{shown}"
        );
        // What the agent wrote cannot reorder or hide what the operator reads.
        let tricky = json!({"id": "appr-2", "session_id": "s\u{202e}txt.exe",
            "args": {"path": "a\u{200b}b\u{2066}c\u{1b}[2J"}});
        for text in [line(&tricky), details(&tricky)] {
            assert!(
                !text
                    .chars()
                    .any(|c| matches!(c, '\u{202e}' | '\u{200b}' | '\u{2066}' | '\u{1b}')),
                "{text}"
            );
            assert!(text.contains("\\u{202e}"), "{text}");
        }
        assert!(segment("appr-1").is_ok());
        assert!(segment("../x").is_err() && segment("").is_err());
    }
}
