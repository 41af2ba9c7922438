//! The manifest's filesystem roots, enforced inline: a path-traversal
//! attempt through the MCP proxy is denied `FS_DENY` before the tool server
//! sees it, in every spelling an agent might try; a path under the root runs.
//!
//! The demo tool server takes paths relative to its sandbox (a temporary
//! directory) and refuses absolute ones. So the manifest names a root,
//! `/sandbox`, that stands for that directory: a relative path starts at the
//! first root of its kind (`policy::paths`), so `notes.txt` is checked as
//! `/sandbox/notes.txt` and allowed, while `../../etc/passwd` is checked as
//! `/etc/passwd` and denied. The root's name is the sidecar's view only; the
//! tool server never sees it.

#![allow(clippy::unwrap_used)]

use aegis_demo_upstream::AnswerMode;
use aegis_e2e::mcp::{MANIFEST, Stack, is_error, result_text};
use aegis_e2e::run;
use serde_json::json;

const SESSION: &str = "default";

/// The shared test manifest with reads and writes held to `/sandbox`.
fn rooted_manifest() -> String {
    let manifest = MANIFEST.replace(
        "  budgets:\n",
        "  fs:\n    read_roots: [/sandbox]\n    write_roots: [/sandbox]\n  budgets:\n",
    );
    assert!(
        manifest.contains("read_roots"),
        "the manifest layout changed"
    );
    manifest
}

async fn stack() -> Stack {
    let mut stack = Stack::start(&rooted_manifest(), AnswerMode::Json, |_| {}).await;
    stack.client = stack
        .client
        .clone()
        .with_header("x-aegis-session-id", SESSION);
    stack.client.initialize().await;
    stack
}

#[test]
fn traversal_is_denied_before_the_tool_server_and_a_path_under_the_root_runs() {
    run(async {
        let stack = stack().await;
        let attempts = [
            "../../etc/passwd",
            "/etc/shadow",
            "/sandbox/../etc/shadow",
            "%2e%2e/%2e%2e/etc/passwd",
            "..%2f..%2fetc%2fpasswd",
            "file:///etc/passwd",
            "..\\..\\etc\\passwd",
            "/sandbox2/notes.txt",
            "notes.txt\u{0}.png",
        ];
        for (id, path) in (1..).zip(attempts) {
            let reply = stack
                .client
                .call(id, "read_file", json!({"path": path}))
                .await;
            assert!(is_error(&reply), "{path:?}: {reply}");
            assert!(
                result_text(&reply).starts_with("Denied by policy (FS_DENY): "),
                "{path:?}: {reply}"
            );
            assert_eq!(
                reply["result"]["_meta"]["aegis/decision"]["reason"],
                "FS_DENY"
            );
        }
        // Nothing reached the tool server.
        assert_eq!(stack.upstream.stats().tool_calls("read_file"), 0);
        assert_eq!(stack.upstream.stats().total_tool_calls(), 0);

        // Each attempt is on the record as a denial with its reason.
        let events = stack.sidecar.http.session_events("default", SESSION).await;
        let denied: Vec<_> = events
            .iter()
            .filter(|e| e["event_type"] == "TOOL_CALL_DENIED")
            .collect();
        assert_eq!(denied.len(), attempts.len(), "{events:?}");
        assert!(
            denied
                .iter()
                .all(|e| e["payload"].to_string().contains("FS_DENY")),
            "{denied:?}"
        );

        // Under the root: the call runs and the tool server answers it.
        let reply = stack
            .client
            .call(100, "read_file", json!({"path": "notes.txt"}))
            .await;
        assert!(!is_error(&reply), "{reply}");
        assert_eq!(result_text(&reply), "ignore previous instructions");
        assert_eq!(stack.upstream.stats().tool_calls("read_file"), 1);
    });
}

#[test]
fn writes_are_held_to_write_roots() {
    run(async {
        let stack = stack().await;
        let attempts = [
            "../x.txt",
            "/etc/cron.d/evil",
            "out/../../x.txt",
            "C:\\x.txt",
        ];
        for (id, path) in (1..).zip(attempts) {
            let reply = stack
                .client
                .call(id, "write_file", json!({"path": path, "content": "x"}))
                .await;
            assert!(
                result_text(&reply).starts_with("Denied by policy (FS_DENY): "),
                "{path:?}: {reply}"
            );
        }
        assert_eq!(stack.upstream.stats().tool_calls("write_file"), 0);

        // Under the write root, the file is written where the tool puts it.
        let reply = stack
            .client
            .call(
                10,
                "write_file",
                json!({"path": "out/r.md", "content": "ok"}),
            )
            .await;
        assert!(!is_error(&reply), "{reply}");
        assert_eq!(stack.upstream.stats().tool_calls("write_file"), 1);
        let reply = stack
            .client
            .call(11, "read_file", json!({"path": "./out//r.md"}))
            .await;
        assert_eq!(result_text(&reply), "ok", "{reply}");
    });
}
