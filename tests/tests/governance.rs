//! aegis-governance 1.4.2 (PyPI, `import aegis`), the real client, against
//! the sidecar's governance API: `Aegis.evaluate` for a proceed, a halt (the
//! complexity floor), an escalate, shadow mode and idempotency reuse;
//! `@aegis_gate`; the risk check, health and the decision listing; a two-key
//! override through the approvals store; and its stdio MCP server
//! (`aegis-mcp-server`, driven by the MCP SDK's stdio client) whose tools
//! answer from the sidecar. Every test reads the ledger after: each
//! evaluation recorded once, in a chain that verifies.

#![allow(clippy::unwrap_used)]

use aegis_e2e::{Sidecar, seed, test_token, token_entry};
use aegis_proxy::admin::Role;
use serde_json::{Value, json};

const SECOND_OPERATOR: &str = "e2e-governance-second-operator-0123456789";

fn run_py<F: std::future::Future<Output = ()>>(body: F) {
    aegis_e2e::python::prepare(&[aegis_e2e::python::Sdk::Governance]);
    aegis_e2e::run_within(seed::TEST_TIMEOUT, body);
}

/// A sidecar with the client's key (`ingest`, which `http` sends), a
/// reader and two operators (two distinct approvers).
async fn sidecar() -> Sidecar {
    Sidecar::start_with_token(Role::Ingest, |config| {
        let dir = config.ledger.path.parent().unwrap().to_owned();
        for (name, token, role) in [
            ("reader", test_token(Role::Reader), Role::Reader),
            ("operator", test_token(Role::Operator), Role::Operator),
            ("operator-2", SECOND_OPERATOR.to_owned(), Role::Operator),
        ] {
            let path = dir.join(format!("{name}.token"));
            config
                .admin
                .auth
                .tokens
                .push(token_entry(&path, &token, role, &[]));
        }
    })
    .await
}

async fn client(sidecar: &Sidecar, script: Value) -> Vec<Value> {
    let url = format!("http://{}", sidecar.running.admin_addr());
    seed::governance(&url, sidecar.token.as_deref().unwrap(), &script).await
}

fn evaluate(args: Value) -> Value {
    let mut args = args;
    args["proposal_summary"] = json!(args["proposal_summary"].as_str().unwrap_or("add a cache"));
    json!({"op": "evaluate", "args": args})
}

fn decision(step: &Value) -> &Value {
    assert!(step.get("error").is_none(), "{step:#}");
    &step["decision"]
}

/// The session's evaluation records (`default`: the principal's), after
/// checking its chain verifies.
async fn evaluations(sidecar: &Sidecar) -> Vec<Value> {
    let verify = sidecar
        .http
        .get("/v1/sessions/default/verify?tenant_id=default")
        .await;
    assert_eq!(verify.json()["valid"], true, "{}", verify.text());
    sidecar
        .http
        .session_events("default", "default")
        .await
        .into_iter()
        .filter(|e| e["event_type"] == "POLICY_DECISION")
        .map(|e| e["payload"].clone())
        .collect()
}

async fn pending_overrides(sidecar: &Sidecar) -> Vec<Value> {
    let list = sidecar
        .http
        .with_token(&test_token(Role::Operator))
        .get("/v1/approvals?state=pending")
        .await
        .json();
    list["approvals"].as_array().unwrap().clone()
}

#[test]
fn evaluate_answers_proceed_halt_escalate_shadow_and_honours_idempotency_keys() {
    run_py(async {
        let sidecar = sidecar().await;
        let steps = client(
            &sidecar,
            json!([
                evaluate(json!({"agent_id": "deploy-bot"})),
                evaluate(json!({"complexity_score": 0.3})),
                evaluate(json!({"requires_human_approval": true, "estimated_impact": "high"})),
                evaluate(json!({"shadow_mode": true, "reversible": false, "proposal_summary": "shadow"})),
                evaluate(json!({"idempotency_key": "key-1", "proposal_summary": "once"})),
                evaluate(json!({"idempotency_key": "key-1", "proposal_summary": "once"})),
                evaluate(json!({"idempotency_key": "key-1", "proposal_summary": "another"})),
                {"op": "gate", "args": {"proposal_summary": "simple", "complexity_score": 0.9}},
                {"op": "gate", "args": {"proposal_summary": "tangled", "complexity_score": 0.1}},
                {"op": "risk_check", "args": {"risk_score": 0.1, "threshold": 0.3}},
                {"op": "health"},
            ]),
        )
        .await;
        let proceed = decision(&steps[0]);
        assert_eq!(proceed["status"], "proceed", "{proceed:#}");
        assert_eq!(proceed["gates_passed"], 5);
        assert_eq!(proceed["gates_failed"], 0);
        assert!(proceed["request_id"].as_str().unwrap().starts_with("req-"));
        for gate in [
            "risk",
            "profit",
            "novelty",
            "complexity",
            "quality",
            "utility",
        ] {
            assert!(proceed["gates"][gate].is_object(), "{gate}: {proceed:#}");
        }
        assert_eq!(proceed["drift"]["status"], "normal");

        let halt = decision(&steps[1]);
        assert_eq!(halt["status"], "halt", "{halt:#}");
        assert_eq!(halt["failing_gates"], json!(["complexity"]));
        assert_eq!(
            halt["override_eligible"], false,
            "the floor is never overridable"
        );

        let escalate = decision(&steps[2]);
        assert_eq!(escalate["status"], "escalate", "{escalate:#}");
        assert_eq!(
            escalate["override_requires"],
            json!(["risk_lead", "security_lead"])
        );

        // Shadow mode: evaluated (irreversible: escalate) and recorded, but
        // nobody is asked to approve anything.
        assert_eq!(decision(&steps[3])["status"], "escalate");

        let once = decision(&steps[4]);
        assert_eq!(
            decision(&steps[5])["decision_id"],
            once["decision_id"],
            "replayed"
        );
        assert_eq!(decision(&steps[5])["request_id"], once["request_id"]);
        let reused = steps[6]["error"].as_str().unwrap();
        assert!(
            reused.starts_with("IdempotencyBodyMismatchError"),
            "{reused}"
        );

        assert_eq!(steps[7]["ran"], true, "{:#}", steps[7]);
        assert_eq!(steps[8]["ran"], false, "{:#}", steps[8]);
        assert!(steps[8]["error"].as_str().unwrap().starts_with("HaltError"));
        assert_eq!(steps[9]["result"]["safe"], true, "{:#}", steps[9]);
        assert_eq!(steps[10]["result"]["status"], "ok", "{:#}", steps[10]);

        let records = evaluations(&sidecar).await;
        let evaluated: Vec<&Value> = records
            .iter()
            .filter(|r| r["action"] == "governance_evaluate")
            .collect();
        // Seven evaluations reached the gates; the replay and the refused
        // reuse recorded nothing.
        assert_eq!(evaluated.len(), 7, "{records:#?}");
        assert_eq!(evaluated[0]["args"]["agent_id"], "deploy-bot");
        assert_eq!(evaluated[3]["enforced"], false);
        assert_eq!(evaluated[3]["answer"]["shadow_mode"], true);
        assert_eq!(evaluated[3]["answer"]["shadow_result"]["shadow_only"], true);
        assert!(evaluated[3]["answer"].get("approval_id").is_none());
        assert_eq!(
            records
                .iter()
                .filter(|r| r["action"] == "governance_risk_check")
                .count(),
            1
        );
        // One override asked for: the escalate's, not the shadow's.
        let pending = pending_overrides(&sidecar).await;
        assert_eq!(pending.len(), 1, "{pending:#?}");
        assert_eq!(pending[0]["tool_name"], "aegis.governance.override");
        assert_eq!(pending[0]["approvals_required"], 2);
        assert_eq!(pending[0]["args"]["estimated_impact"], "high");
    });
}

#[test]
fn a_two_key_override_releases_an_escalated_evaluation_once() {
    run_py(async {
        let sidecar = sidecar().await;
        let ask = evaluate(json!({"proposal_summary": "drop the old table", "reversible": false}));
        let steps = client(&sidecar, json!([ask.clone()])).await;
        assert_eq!(decision(&steps[0])["status"], "escalate");
        let id = pending_overrides(&sidecar).await[0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let vote = |token: String| {
            let (http, id) = (sidecar.http.clone(), id.clone());
            async move {
                let answer = http
                    .with_token(&token)
                    .post_json(&format!("/v1/approvals/{id}/approve"), "{}")
                    .await;
                assert_eq!(answer.status, 200, "{}", answer.text());
                answer.json()
            }
        };
        // The agent's own key cannot vote.
        let refused = sidecar
            .http
            .post_json(&format!("/v1/approvals/{id}/approve"), "{}")
            .await;
        assert_eq!(refused.status, 403);
        assert_eq!(vote(test_token(Role::Operator)).await["state"], "pending");
        let steps = client(&sidecar, json!([ask.clone()])).await;
        assert_eq!(
            decision(&steps[0])["status"],
            "escalate",
            "one key is not two"
        );
        assert_eq!(vote(SECOND_OPERATOR.to_owned()).await["state"], "approved");

        let steps = client(&sidecar, json!([ask.clone(), ask])).await;
        let released = decision(&steps[0]);
        assert_eq!(released["status"], "proceed", "{released:#}");
        assert!(
            released["rationale"]
                .as_str()
                .unwrap()
                .contains("Overridden")
        );
        assert_eq!(
            decision(&steps[1])["status"],
            "escalate",
            "an override is used once"
        );

        let events = sidecar.http.session_events("default", "default").await;
        let allowed: Vec<&Value> = events
            .iter()
            .filter(|e| e["event_type"] == "TOOL_CALL_ALLOWED")
            .map(|e| &e["payload"])
            .collect();
        assert_eq!(allowed.len(), 1, "{events:#?}");
        assert_eq!(allowed[0]["approval_id"], id.as_str());
        assert_eq!(allowed[0]["approved_by"].as_array().unwrap().len(), 2);
        let shown = sidecar
            .http
            .with_token(&test_token(Role::Operator))
            .get(&format!("/v1/approvals/{id}"))
            .await
            .json();
        assert_eq!(shown["state"], "consumed");
        assert_eq!(evaluations(&sidecar).await.len(), 4);
    });
}

#[test]
fn the_stdio_mcp_server_answers_from_the_sidecar() {
    run_py(async {
        let sidecar = sidecar().await;
        let steps = client(
            &sidecar,
            json!([{"op": "mcp", "calls": [
                {"tool": "aegis_evaluate_proposal", "args": {"proposal_summary": "rotate the keys"}},
                {"tool": "aegis_quick_risk_check", "args": {"risk_score": 0.6}},
                {"tool": "aegis_health", "args": {}},
                {"tool": "aegis_list_decisions", "args": {}},
                {"tool": "aegis_get_usage", "args": {}},
            ]}]),
        )
        .await;
        let step = &steps[0];
        assert!(step.get("error").is_none(), "{step:#}");
        assert_eq!(
            step["tools"],
            json!([
                "aegis_evaluate_proposal",
                "aegis_get_decision",
                "aegis_get_usage",
                "aegis_health",
                "aegis_list_decisions",
                "aegis_quick_risk_check"
            ])
        );
        let results: Vec<Value> = step["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                assert_eq!(r["is_error"], false, "{r:#}");
                let parsed: Value = serde_json::from_str(r["text"].as_str().unwrap()).unwrap();
                assert!(parsed.get("error").is_none(), "{}: {parsed:#}", r["tool"]);
                parsed
            })
            .collect();
        assert_eq!(results[0]["status"], "proceed", "{:#}", results[0]);
        assert_eq!(results[1]["safe"], false);
        assert_eq!(results[2]["status"], "ok");
        let listed = results[3].as_array().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0]["decision_id"], results[0]["decision_id"]);
        assert_eq!(results[4]["total_evaluations"], 1);
        assert_eq!(results[4]["total_risk_checks"], 1);

        // Its decision, read back by id with the client.
        let id = results[0]["decision_id"].as_str().unwrap();
        let steps = client(&sidecar, json!([{"op": "get_decision", "decision_id": id}])).await;
        assert_eq!(decision(&steps[0])["status"], "proceed");
        assert_eq!(evaluations(&sidecar).await.len(), 2);
    });
}

#[test]
fn bad_requests_and_credentials_change_nothing() {
    aegis_e2e::run(async {
        let sidecar = sidecar().await;
        let good = r#"{"proposal_summary": "x"}"#;
        let none = sidecar
            .http
            .without_token()
            .post_json("/evaluate", good)
            .await;
        assert_eq!(none.status, 401, "{}", none.text());
        let reader = sidecar
            .http
            .with_token(&test_token(Role::Reader))
            .post_json("/evaluate", good)
            .await;
        assert_eq!(reader.status, 403, "{}", reader.text());
        for (body, says) in [
            ("{", "not a JSON object"),
            (
                r#"{"proposal_summary": "x", "proposal_summary": "y"}"#,
                "duplicate",
            ),
            (
                r#"{"proposal_summary": "x", "risk_proposed": 2}"#,
                "risk_proposed",
            ),
            (
                r#"{"proposal_summary": "x", "sneaky": 1}"#,
                "unknown member sneaky",
            ),
        ] {
            let answer = sidecar.http.post_json("/evaluate", body).await;
            assert_eq!(answer.status, 400, "{body}: {}", answer.text());
            assert!(answer.text().contains(says), "{body}: {}", answer.text());
        }
        let risk = sidecar
            .http
            .post_json("/risk-check", r#"{"threshold": 0.2}"#)
            .await;
        assert_eq!(risk.status, 400);
        let month = sidecar.http.get("/customer/usage/2026-13").await;
        assert_eq!(month.status, 400, "{}", month.text());
        let missing = sidecar.http.get("/customer/decisions/no-such").await;
        assert_eq!(missing.status, 404);
        assert!(
            sidecar
                .http
                .session_events("default", "default")
                .await
                .is_empty()
        );
        let health = sidecar.http.without_token().get("/health").await;
        assert_eq!(health.status, 200);
    });
}
