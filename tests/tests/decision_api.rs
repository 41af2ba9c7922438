//! The decision APIs (aegislib's `/v1/decision`, the platform's `propose`)
//! tried as the governed agent would, with its own key: a fresh `agent_id`
//! does not reset its budget; bad requests and bad credentials change
//! nothing; a session it forged through `/v1/events` and a ledger that
//! cannot write answer 200 deny (never an error, which aegislib's
//! `fail_mode=open` would run), unless `ledger.fail_open` says otherwise for
//! a store fault; and `propose` answers each of its four verdicts from the
//! manifest and the approvals store.

#![allow(clippy::unwrap_used)]

use aegis_e2e::{Sidecar, run, test_token, token_entry};
use aegis_proxy::admin::Role;
use serde_json::{Value, json};

const MANIFEST: &str = r#"
schema: aegis.dev/manifest/v0.1
name: decision-api-agent
version: "1.0.0"
publisher: aegis-tests
sandbox: {required: false}
permissions:
  tools: [read_file, send_email, deploy]
  approval_required: [send_email, deploy]
  budgets: {max_steps: 1000, max_tool_calls: 3, max_wall_time_ms: 3600000}
policy:
  non_tainting_tools: [read_file, send_email, deploy]
  approvals:
    deploy: {approvers: 2}
"#;

async fn sidecar(tune: impl FnOnce(&mut aegis_proxy::config::Config)) -> Sidecar {
    Sidecar::start_with_token(Role::Ingest, |config| {
        let dir = config.ledger.path.parent().unwrap().to_owned();
        let path = dir.join("manifest.yaml");
        std::fs::write(&path, MANIFEST).unwrap();
        config.manifest = Some(path);
        for role in [Role::Reader, Role::Operator] {
            let path = dir.join(format!("{role}.token"));
            config
                .admin
                .auth
                .tokens
                .push(token_entry(&path, &test_token(role), role, &[]));
        }
        tune(config);
    })
    .await
}

fn ask(agent: &str, tool: &str, params: Value) -> String {
    json!({"agent_id": agent, "tool": {"name": tool, "params": params}, "session": null})
        .to_string()
}

async fn decide(sidecar: &Sidecar, body: String) -> Value {
    let answer = sidecar.http.post_json("/v1/decision", body).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()
}

fn effect(answer: &Value) -> (&str, &str) {
    (
        answer["final_decision"]["effect"].as_str().unwrap(),
        answer["final_decision"]["reason"].as_str().unwrap(),
    )
}

async fn envelopes(sidecar: &Sidecar) -> usize {
    sidecar
        .http
        .session_events("default", "default")
        .await
        .len()
}

#[test]
fn a_new_agent_id_does_not_reset_the_budget() {
    run(async {
        let sidecar = sidecar(|_| {}).await;
        for (n, agent) in ["bot-1", "bot-1", "bot-2"].into_iter().enumerate() {
            let answer = decide(&sidecar, ask(agent, "read_file", json!({"n": n}))).await;
            assert_eq!(effect(&answer), ("allow", "OK"), "{answer:#}");
        }
        // The fourth call, under yet another agent id and a new session
        // object, is the same pod's session: its budget is spent.
        let body = json!({"agent_id": "bot-3", "tool": {"name": "read_file", "params": {}},
                          "session": {"id": "fresh"}});
        let answer = decide(&sidecar, body.to_string()).await;
        assert_eq!(effect(&answer), ("deny", "BUDGET_EXCEEDED"), "{answer:#}");
        assert_eq!(
            answer["agent_id"], "bot-3",
            "echoed, not used as the session"
        );
        let events = sidecar.http.session_events("default", "default").await;
        assert_eq!(events.len(), 8, "four proposals and their decisions");
        assert_eq!(
            events[6]["payload"]["client_context"]["session"]["id"],
            "fresh"
        );
    });
}

#[test]
fn under_session_scope_client_the_agent_id_names_the_session() {
    run(async {
        let sidecar = sidecar(aegis_e2e::mcp::client_sessions).await;
        let answer = decide(&sidecar, ask("bot-a", "read_file", json!({}))).await;
        assert_eq!(effect(&answer), ("allow", "OK"));
        let events = sidecar.http.session_events("default", "bot-a").await;
        assert_eq!(events.len(), 2, "{events:#?}");
        assert_eq!(envelopes(&sidecar).await, 0);
    });
}

#[test]
fn bad_requests_and_credentials_are_refused_and_record_nothing() {
    run(async {
        let sidecar = sidecar(|c| c.admin.max_body_bytes = 4096).await;
        let big = format!(
            r#"{{"agent_id": "a", "tool": {{"name": "read_file", "params": {{"x": "{}"}}}}}}"#,
            "y".repeat(8192)
        );
        let batch = json!({"requests": vec![json!({"tool": {"name": "t"}}); 101]});
        let cases: Vec<(&str, String, u16, &str)> = vec![
            ("/v1/decision", "{".into(), 400, "not a JSON object"),
            ("/v1/decision", r#"{"agent_id": "a", "agent_id": "b", "tool": {"name": "t"}}"#.into(), 400, "duplicate"),
            ("/v1/decision", r#"{"agent_id": 7, "tool": {"name": "t"}}"#.into(), 400, "agent_id must be a non-empty string"),
            ("/v1/decision", r#"{"agent_id": "a", "tool": {"name": "t", "params": "x"}}"#.into(), 400, "tool.params must be an object"),
            ("/v1/decision", r#"{"agent_id": "a", "tool": {"name": "t"}, "tenant_id": "other"}"#.into(), 400, "unknown member tenant_id"),
            ("/v1/decision", big, 413, "limit"),
            ("/v1/decision/batch", r#"{"requests": [{"agent_id": "a", "tool": {"name": "read_file"}}, {"agent_id": "a"}]}"#.into(), 400, "requests[1].tool is required"),
            ("/v1/decision/batch", batch.to_string(), 400, "at most 100"),
            ("/api/v1/governance/propose", r#"{"parameters": {}}"#.into(), 400, "capability is required"),
        ];
        for (path, body, status, says) in cases {
            let answer = sidecar.http.post_json(path, body).await;
            assert_eq!(answer.status, status, "{path}: {}", answer.text());
            assert!(answer.text().contains(says), "{path}: {}", answer.text());
        }
        let body = ask("a", "read_file", json!({}));
        for path in ["/v1/decision", "/api/v1/governance/propose"] {
            let none = sidecar
                .http
                .without_token()
                .post_json(path, body.clone())
                .await;
            assert_eq!(none.status, 401, "{}", none.text());
            let reader = sidecar
                .http
                .with_token(&test_token(Role::Reader))
                .post_json(path, body.clone())
                .await;
            assert_eq!(reader.status, 403, "{}", reader.text());
        }
        let status = sidecar
            .http
            .without_token()
            .get("/v1/decision/appr-00/status")
            .await;
        assert_eq!(status.status, 401);
        let unknown = sidecar.http.get("/v1/decision/appr-00/status").await;
        assert_eq!(unknown.status, 404, "{}", unknown.text());
        assert_eq!(envelopes(&sidecar).await, 0, "nothing was recorded");
        // The first good request after all that is the session's first call.
        let answer = decide(&sidecar, ask("a", "read_file", json!({}))).await;
        assert_eq!(effect(&answer), ("allow", "OK"));
        assert_eq!(envelopes(&sidecar).await, 2);
    });
}

#[test]
fn a_session_the_agent_forged_through_the_events_api_answers_deny_even_fail_open() {
    for fail_open in [false, true] {
        run(async move {
            let sidecar = sidecar(|config| config.ledger.fail_open = fail_open).await;
            let forged = json!({"tenant_id": "default", "user_id": "default",
                "session_id": "default", "ts_unix_ms": 1, "event_type": "TERMINATION",
                "payload": {"reason": "fresh start"}});
            let answer = sidecar
                .http
                .post_json("/v1/events", forged.to_string())
                .await;
            assert_eq!(answer.status, 201, "{}", answer.text());
            let answer = decide(&sidecar, ask("a", "read_file", json!({}))).await;
            assert_eq!(
                effect(&answer),
                ("deny", "CLIENT_RECORDED_SESSION"),
                "{answer:#}"
            );
            assert_eq!(envelopes(&sidecar).await, 1, "nothing added to it");
        });
    }
}

#[test]
fn a_ledger_that_cannot_write_answers_deny_unless_fail_open() {
    for fail_open in [false, true] {
        run(async move {
            let sidecar = sidecar(|config| config.ledger.fail_open = fail_open).await;
            let answer = decide(&sidecar, ask("a", "read_file", json!({"n": 0}))).await;
            assert_eq!(effect(&answer), ("allow", "OK"));
            std::fs::remove_file(sidecar.ledger_path()).unwrap();
            let answer = decide(&sidecar, ask("a", "read_file", json!({"n": 1}))).await;
            let want = if fail_open { "allow" } else { "deny" };
            assert_eq!(effect(&answer), (want, "LEDGER_UNAVAILABLE"), "{answer:#}");
            let propose = sidecar
                .http
                .post_json(
                    "/api/v1/governance/propose",
                    r#"{"capability": "read_file", "parameters": {"n": 2}}"#,
                )
                .await;
            assert_eq!(propose.status, 200, "{}", propose.text());
            let want = if fail_open { "ALLOW" } else { "DENY" };
            assert_eq!(propose.json()["verdict"], want, "{}", propose.text());
        });
    }
}

#[test]
fn propose_answers_all_four_verdicts_from_the_manifest_and_the_approvals_store() {
    run(async {
        let sidecar = sidecar(|_| {}).await;
        let propose = |body: Value| {
            let http = sidecar.http.clone();
            async move {
                let answer = http
                    .post_json("/api/v1/governance/propose", body.to_string())
                    .await;
                assert_eq!(answer.status, 200, "{}", answer.text());
                answer.json()
            }
        };
        let allow =
            propose(json!({"capability": "read_file", "resource": "/srv/a", "parameters": {}}))
                .await;
        assert_eq!(allow["verdict"], "ALLOW", "{allow:#}");
        assert_eq!(allow["risk_score"], 0.0);
        assert!(
            allow["policy_ids"][0]
                .as_str()
                .unwrap()
                .starts_with("manifest:")
        );
        assert!(allow["timestamp"].as_str().unwrap().ends_with('Z'));
        let deny = propose(json!({
            "actor": {"id": "agent-001", "type": "ai-agent"},
            "action": {"capability": "database.drop", "parameters": {"db": "prod"}},
            "context": {"session_id": "sess_abc123"},
        }))
        .await;
        assert_eq!(deny["verdict"], "DENY", "{deny:#}");
        assert!(
            deny["reason"]
                .as_str()
                .unwrap()
                .starts_with("PERMISSION_UNDECLARED")
        );
        let confirm =
            propose(json!({"capability": "send_email", "parameters": {"to": "x@example.com"}}))
                .await;
        assert_eq!(confirm["verdict"], "REQUIRE_CONFIRMATION", "{confirm:#}");
        let escalate =
            propose(json!({"capability": "deploy", "parameters": {"service": "api"}})).await;
        assert_eq!(escalate["verdict"], "ESCALATE", "{escalate:#}");
        assert_eq!(escalate["approvals_required"], 2);

        // A person confirms; the same proposal made again is allowed, once.
        let id = confirm["approval_id"].as_str().unwrap();
        let approved = sidecar
            .http
            .with_token(&test_token(Role::Operator))
            .post_json(&format!("/v1/approvals/{id}/approve"), "{}")
            .await;
        assert_eq!(approved.status, 200, "{}", approved.text());
        let again = json!({"capability": "send_email", "parameters": {"to": "x@example.com"}});
        let released = propose(again.clone()).await;
        assert_eq!(released["verdict"], "ALLOW", "{released:#}");
        let once_more = propose(again).await;
        assert_eq!(
            once_more["verdict"], "REQUIRE_CONFIRMATION",
            "{once_more:#}"
        );
        assert_ne!(once_more["approval_id"], confirm["approval_id"]);

        let health = sidecar.http.without_token().get("/api/v1/health").await;
        assert_eq!(health.status, 200);
        assert_eq!(health.json()["status"], "ok");
        let verify = sidecar
            .http
            .get("/v1/sessions/default/verify?tenant_id=default")
            .await;
        assert_eq!(verify.json()["valid"], true, "{}", verify.text());
        let events = sidecar.http.session_events("default", "default").await;
        let types: Vec<&str> = events
            .iter()
            .map(|e| e["event_type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            [
                "TOOL_CALL_PROPOSED",
                "TOOL_CALL_ALLOWED",
                "TOOL_CALL_PROPOSED",
                "TOOL_CALL_DENIED",
                "TOOL_CALL_PROPOSED",
                "APPROVAL_REQUESTED",
                "TOOL_CALL_PROPOSED",
                "APPROVAL_REQUESTED",
                "APPROVAL_DECIDED",
                "TOOL_CALL_PROPOSED",
                "TOOL_CALL_ALLOWED",
                "TOOL_CALL_PROPOSED",
                "APPROVAL_REQUESTED",
            ]
        );
        assert_eq!(events[10]["payload"]["approval_id"], id);
        assert_eq!(events[10]["payload"]["delegated"], true);
        assert_eq!(
            events[2]["payload"]["client_context"]["actor"]["id"],
            "agent-001"
        );
        assert_eq!(events[0]["payload"]["args"], json!({"resource": "/srv/a"}));
    });
}
