//! aegislib 0.2.3 (PyPI `aegislib`, `import aegis`), the real client,
//! against the sidecar's decision API (`/v1/decision`, its batch and status
//! routes) with its own API key: `decide` for each effect, a batch,
//! `@aegis_guard` running a tool only when allowed (with the sanitized
//! argument when rewritten; never a denied one, `fail_mode=open` or not),
//! and an approval that an operator grants through our CLI, after which
//! aegislib's own poller runs the tool. Each test reads the ledger after:
//! every decision recorded in the session's chain, which verifies.

#![allow(clippy::unwrap_used)]

use aegis_e2e::seed::{self, AegislibRun};
use aegis_e2e::{Sidecar, token_entry};
use aegis_proxy::admin::Role;
use aegis_proxy::cli::{Cli, Command};
use clap::Parser as _;
use serde_json::{Value, json};

const MANIFEST: &str = r#"
schema: aegis.dev/manifest/v0.1
name: aegislib-agent
version: "1.0.0"
publisher: aegis-tests
sandbox: {required: false}
permissions:
  tools: [read_file, write_file, send_email]
  approval_required: [send_email]
  budgets: {max_steps: 1000, max_tool_calls: 1000, max_wall_time_ms: 3600000}
policy:
  non_tainting_tools: [read_file, write_file, send_email]
  sanitize:
    write_file:
      - field: content
        redact: '\b\d{4}[ -]?\d{4}[ -]?\d{4}[ -]?\d{4}\b'
        reason: card numbers are not written to files
"#;

const OPERATOR_TOKEN: &str = "e2e-aegislib-operator-token-0123456789";

/// Installs aegislib's venv (outside the time bound), then runs `body`.
fn run_py<F: std::future::Future<Output = ()>>(body: F) {
    aegis_e2e::python::prepare(&[aegis_e2e::python::Sdk::Aegislib]);
    aegis_e2e::run_within(seed::TEST_TIMEOUT, body);
}

/// A sidecar with the manifest, an ingest token (aegislib's API key, which
/// `http` sends) and an operator token (for the CLI).
async fn sidecar() -> Sidecar {
    Sidecar::start_with_token(Role::Ingest, |config| {
        let dir = config.ledger.path.parent().unwrap().to_owned();
        let path = dir.join("manifest.yaml");
        std::fs::write(&path, MANIFEST).unwrap();
        config.manifest = Some(path);
        let op = dir.join("operator.token");
        config
            .admin
            .auth
            .tokens
            .push(token_entry(&op, OPERATOR_TOKEN, Role::Operator, &[]));
    })
    .await
}

fn url(sidecar: &Sidecar) -> String {
    format!("http://{}", sidecar.running.admin_addr())
}

fn key(sidecar: &Sidecar) -> String {
    sidecar.token.clone().unwrap()
}

fn decide(tool: &str, params: Value) -> Value {
    json!({"op": "decide", "agent_id": "support-bot", "tool": tool, "params": params,
           "session": {"user_id": "u-7", "ticket": 42}})
}

fn guard(tool: &str, params: Value) -> Value {
    json!({"op": "guard", "agent_id": "support-bot", "tool": tool, "params": params})
}

fn effect(step: &Value) -> &str {
    step["response"]["final_decision"]["effect"]
        .as_str()
        .unwrap_or_else(|| panic!("no effect in {step:#}"))
}

/// The session's envelopes (every decision-API call of this pod is the
/// principal's session, `default`), after checking its chain verifies.
async fn ledger(sidecar: &Sidecar) -> Vec<Value> {
    let verify = sidecar
        .http
        .get("/v1/sessions/default/verify?tenant_id=default")
        .await;
    assert_eq!(verify.status, 200, "{}", verify.text());
    assert_eq!(verify.json()["valid"], true, "{}", verify.text());
    sidecar.http.session_events("default", "default").await
}

fn of_type<'a>(events: &'a [Value], event_type: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["event_type"] == event_type)
        .map(|e| &e["payload"])
        .collect()
}

/// Runs `aegis-proxy approvals ... <verb> <id>` as the CLI does, with the
/// operator token, and returns what it printed.
async fn approvals_cli(sidecar: &Sidecar, verb: &str, id: &str) -> String {
    let token_file = sidecar.dir.path().join("operator.token");
    let argv = [
        "aegis-proxy".to_owned(),
        "approvals".to_owned(),
        "--server".to_owned(),
        url(sidecar),
        "--token-file".to_owned(),
        token_file.display().to_string(),
        verb.to_owned(),
        id.to_owned(),
        "--reason".to_owned(),
        "checked by the on-call".to_owned(),
    ];
    let Command::Approvals(args) = Cli::try_parse_from(argv).unwrap().command else {
        panic!("not the approvals command");
    };
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let code = aegis_proxy::commands::approvals::approvals(&args, &mut out);
        let out = String::from_utf8(out).unwrap();
        assert_eq!(code, std::process::ExitCode::SUCCESS, "{out}");
        out
    })
    .await
    .unwrap()
}

/// The one pending approval of the session, as the operator lists it.
async fn pending_approval(sidecar: &Sidecar) -> Value {
    let list = sidecar
        .http
        .with_token(OPERATOR_TOKEN)
        .get("/v1/approvals?state=pending")
        .await;
    assert_eq!(list.status, 200, "{}", list.text());
    let list = list.json();
    let approvals = list["approvals"].as_array().unwrap();
    assert_eq!(approvals.len(), 1, "{list:#}");
    approvals[0].clone()
}

#[test]
fn decide_answers_each_effect_and_a_batch_in_order() {
    run_py(async {
        let sidecar = sidecar().await;
        let card = "pay 4111 1111 1111 1111 today";
        let steps = seed::aegislib(
            &url(&sidecar),
            &key(&sidecar),
            &json!([
                decide("read_file", json!({"path": "/srv/a.txt"})),
                decide("delete_file", json!({"path": "/srv/a.txt"})),
                decide("write_file", json!({"path": "/srv/b.txt", "content": card})),
                decide("send_email", json!({"to": "a@example.com", "body": "hi"})),
                {"op": "batch", "requests": [
                    {"agent_id": "support-bot", "tool": "write_file",
                     "params": {"path": "/x", "content": card}},
                    {"agent_id": "support-bot", "tool": "read_file", "params": {"path": "/y"}},
                    {"agent_id": "support-bot", "tool": "delete_file", "params": {"path": "/y"}},
                ]},
                {"op": "status", "decision_id": "d-0123456789abcdef0123456789abcdef"},
            ]),
        )
        .await;
        for step in &steps[..5] {
            assert!(step.get("error").is_none(), "{step:#}");
        }
        let allow = &steps[0]["response"];
        assert_eq!(effect(&steps[0]), "allow", "{allow:#}");
        assert_eq!(allow["tool"], "read_file");
        assert_eq!(allow["agent_id"], "support-bot");
        assert_eq!(allow["tenant_id"], "default");
        assert!(allow["latency_ms"].is_u64(), "{allow:#}");

        let deny = &steps[1]["response"]["final_decision"];
        assert_eq!(effect(&steps[1]), "deny");
        assert_eq!(deny["reason"], "PERMISSION_UNDECLARED");
        assert_eq!(deny["violations"][0]["condition"], "PERMISSION_UNDECLARED");
        assert!(
            deny["violations"][0]["message"]
                .as_str()
                .unwrap()
                .contains("not declared"),
            "{deny:#}"
        );

        let sanitized = &steps[2]["response"]["final_decision"];
        assert_eq!(effect(&steps[2]), "sanitize", "{sanitized:#}");
        assert_eq!(
            sanitized["sanitize"]["params"],
            json!({"content": "pay [REDACTED] today"})
        );
        assert!(
            sanitized["sanitize"]["message"]
                .as_str()
                .unwrap()
                .contains("card numbers"),
            "{sanitized:#}"
        );

        let held = &steps[3]["response"];
        assert_eq!(effect(&steps[3]), "approval_needed", "{held:#}");
        let approval_id = held["final_decision"]["approval_id"].as_str().unwrap();
        assert_eq!(held["decision_id"], approval_id);
        assert!(approval_id.starts_with("appr-"), "{held:#}");

        let batch: Vec<&str> = steps[4]["responses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["final_decision"]["effect"].as_str().unwrap())
            .collect();
        assert_eq!(batch, ["sanitize", "allow", "deny"], "{:#}", steps[4]);
        // A decision that needed no approval has no status: aegislib raises.
        assert!(
            steps[5]["error"]
                .as_str()
                .unwrap()
                .starts_with("NotFoundError"),
            "{:#}",
            steps[5]
        );

        let events = ledger(&sidecar).await;
        let proposed = of_type(&events, "TOOL_CALL_PROPOSED");
        assert_eq!(proposed.len(), 7, "{events:#?}");
        for p in &proposed {
            assert_eq!(p["transport"], "decision_api", "{p:#}");
            assert_eq!(p["client_context"]["api"], "aegislib", "{p:#}");
            assert_eq!(p["client_context"]["agent_id"], "support-bot", "{p:#}");
        }
        assert_eq!(proposed[0]["client_context"]["session"]["ticket"], 42);
        // The ledger keeps what the agent asked for; the decision, what was
        // decided on.
        assert_eq!(proposed[2]["args"]["content"], card);
        let allowed = of_type(&events, "TOOL_CALL_ALLOWED");
        assert_eq!(allowed.len(), 4);
        assert!(
            allowed.iter().all(|a| a["delegated"] == true),
            "{allowed:#?}"
        );
        assert_eq!(
            allowed[1]["sanitized"]["changed"],
            json!(["content redact"])
        );
        assert_eq!(
            allowed[2]["sanitized"]["changed"],
            json!(["content redact"])
        );
        assert_eq!(of_type(&events, "TOOL_CALL_DENIED").len(), 2);
        assert_eq!(of_type(&events, "APPROVAL_REQUESTED").len(), 1);
        // The four allowed calls count against the session's budget, like
        // inline ones; they never stay open (no result will come).
        let snapshot = sidecar
            .http
            .get("/v1/sessions/default/snapshot?tenant_id=default")
            .await
            .json();
        assert_eq!(snapshot["tool_calls_consumed"], 4, "{snapshot:#}");
    });
}

#[test]
fn aegis_guard_runs_a_tool_only_when_allowed_and_with_the_rewrite() {
    run_py(async {
        let sidecar = sidecar().await;
        let mut open = guard("delete_file", json!({"path": "/srv/a.txt"}));
        open["fail_mode"] = json!("open");
        let steps = seed::aegislib(
            &url(&sidecar),
            &key(&sidecar),
            &json!([
                guard("read_file", json!({"path": "/srv/a.txt"})),
                guard("delete_file", json!({"path": "/srv/a.txt"})),
                open,
                guard(
                    "write_file",
                    json!({"path": "/srv/b.txt", "content": "card 4111-1111-1111-1111"})
                ),
            ]),
        )
        .await;
        assert_eq!(
            steps[0]["ran"],
            json!([{"tool": "read_file", "kwargs": {"path": "/srv/a.txt"}}])
        );
        for denied in &steps[1..3] {
            assert_eq!(denied["ran"], json!([]), "a denied tool ran: {denied:#}");
            let error = denied["error"].as_str().unwrap();
            assert!(error.starts_with("ForbiddenError"), "{error}");
            assert!(error.contains("PERMISSION_UNDECLARED"), "{error}");
        }
        assert_eq!(
            steps[3]["ran"],
            json!([{"tool": "write_file",
                    "kwargs": {"path": "/srv/b.txt", "content": "card [REDACTED]"}}]),
            "{:#}",
            steps[3]
        );
        let events = ledger(&sidecar).await;
        assert_eq!(of_type(&events, "TOOL_CALL_ALLOWED").len(), 2);
        assert_eq!(of_type(&events, "TOOL_CALL_DENIED").len(), 2);
    });
}

#[test]
fn an_approval_granted_through_the_cli_lets_aegislibs_poller_run_the_tool() {
    run_py(async {
        let sidecar = sidecar().await;
        let mut run = AegislibRun::start(
            &url(&sidecar),
            &key(&sidecar),
            &json!([{"op": "approval", "agent_id": "support-bot", "tool": "send_email",
                     "params": {"to": "cfo@example.com", "body": "the numbers"}}]),
        )
        .await;
        run.pending().await;
        let approval = pending_approval(&sidecar).await;
        let id = approval["id"].as_str().unwrap().to_owned();
        assert_eq!(approval["tool_name"], "send_email");
        assert_eq!(approval["args"]["to"], "cfo@example.com");
        // While it waits, the poller sees PENDING and nothing runs; the
        // agent's own key cannot approve it.
        let refused = sidecar
            .http
            .post_json(&format!("/v1/approvals/{id}/approve"), "{}")
            .await;
        assert_eq!(refused.status, 403, "{}", refused.text());
        let out = approvals_cli(&sidecar, "approve", &id).await;
        assert!(out.contains("approved"), "{out}");

        let report = run.report().await;
        let step = &report["steps"][0];
        assert_eq!(
            step["finished"], true,
            "the poller never ran the tool: {step:#}"
        );
        assert!(
            step["returned"]
                .as_str()
                .unwrap()
                .contains("pending approval"),
            "{step:#}"
        );
        assert_eq!(
            step["ran"],
            json!([{"tool": "send_email", "kwargs": {"to": "cfo@example.com", "body": "the numbers"}}])
        );
        assert!(step["callback"]["error"].is_null(), "{step:#}");

        let events = ledger(&sidecar).await;
        let allowed = of_type(&events, "TOOL_CALL_ALLOWED");
        assert_eq!(allowed.len(), 1, "{events:#?}");
        assert_eq!(allowed[0]["approval_id"], id.as_str(), "{:#}", allowed[0]);
        assert_eq!(allowed[0]["delegated"], true);
        let shown = sidecar
            .http
            .with_token(OPERATOR_TOKEN)
            .get(&format!("/v1/approvals/{id}"))
            .await
            .json();
        assert_eq!(shown["state"], "consumed", "{shown:#}");

        // Polled again (a restarted poller): still this call's release, not
        // a second one. Another call, denied through the CLI, reads deny.
        let steps = seed::aegislib(
            &url(&sidecar),
            &key(&sidecar),
            &json!([
                {"op": "status", "decision_id": id},
                decide("send_email", json!({"to": "all@example.com", "body": "x"})),
            ]),
        )
        .await;
        assert_eq!(steps[0]["response"]["status"], "OK", "{:#}", steps[0]);
        assert_eq!(steps[0]["response"]["effect"], "allow");
        let other = steps[1]["response"]["decision_id"]
            .as_str()
            .unwrap()
            .to_owned();
        approvals_cli(&sidecar, "deny", &other).await;
        let steps = seed::aegislib(
            &url(&sidecar),
            &key(&sidecar),
            &json!([{"op": "status", "decision_id": other}]),
        )
        .await;
        assert_eq!(steps[0]["response"]["status"], "OK", "{:#}", steps[0]);
        assert_eq!(steps[0]["response"]["effect"], "deny");
        assert_eq!(
            of_type(&ledger(&sidecar).await, "TOOL_CALL_ALLOWED").len(),
            1,
            "the consumed approval released nothing twice"
        );
    });
}
