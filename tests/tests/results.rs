//! What the ledger keeps of a tool's result (`mcp.results`), end to end: the
//! demo tool server's `read_file` returns a file of secrets; under `full`
//! the record holds them, under `hash` only the size and SHA-256, under
//! `redact` the text with the secrets replaced. Whatever is kept, the agent
//! gets the tool's answer unchanged, and size and SHA-256 are of it whole.
//!
//! Events are read by tenant (`GET /v1/events?tenant_id=default`), each
//! test on a fresh ledger, so nothing here depends on how sessions are
//! named. The secrets never appear in the call's arguments (a file path),
//! so where they appear in the ledger is only where the result was kept.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use aegis_demo_upstream::{AnswerMode, DemoConfig, DemoServer};
use aegis_e2e::mcp::{MANIFEST, McpClient, Stack, result_text, upstream_config};
use aegis_e2e::{HANG_GUARD, Sidecar, run, wait_for};
use aegis_proxy::config::Config;
use aegis_proxy::results::Keep;
use http::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const AWS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
const PASSWORD: &str = "hunter2-very-secret";

/// What `get-env` would print: two secrets among ordinary variables.
fn secrets_file() -> String {
    format!(
        "HOME=/root\nAWS_ACCESS_KEY_ID={AWS_KEY}\nLANG=C.UTF-8\nDB_PASSWORD={PASSWORD}\n{}",
        "PATH=/usr/local/bin:/usr/bin:/bin\n".repeat(20)
    )
}

/// The demo tool server with `secrets.env` in its sandbox.
async fn upstream(answer: AnswerMode) -> DemoServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sandbox: PathBuf = tempfile::tempdir().unwrap().keep();
    std::fs::write(sandbox.join("secrets.env"), secrets_file()).unwrap();
    let config = DemoConfig {
        sandbox,
        answer,
        ..DemoConfig::default()
    };
    DemoServer::start(listener, config).await.unwrap()
}

/// The sidecar in front of a fresh upstream, `tune`d; the client initialised
/// in the default session (no session header).
async fn stack(answer: AnswerMode, tune: impl FnOnce(&mut Config)) -> Stack {
    let upstream = upstream(answer).await;
    let url = upstream.url();
    let sidecar = Sidecar::start_with(|config| {
        let path = config.ledger.path.parent().unwrap().join("manifest.yaml");
        std::fs::write(&path, MANIFEST).unwrap();
        config.manifest = Some(path);
        config.mcp.listen = Some("127.0.0.1:0".parse().unwrap());
        config.mcp.upstreams = vec![upstream_config("tools", &url)];
        config.mcp.default_upstream = Some("tools".into());
        tune(config);
    })
    .await;
    let mut client = McpClient::new(sidecar.running.mcp_addr().unwrap(), "/mcp/tools");
    client.initialize().await;
    Stack {
        sidecar,
        upstream,
        client,
    }
}

/// Every envelope of the tenant, following `NextToken`.
async fn tenant_events(sidecar: &Sidecar) -> Vec<Value> {
    let mut events = Vec::new();
    let mut token = String::new();
    loop {
        let mut path = "/v1/events?tenant_id=default&limit=1000".to_owned();
        if !token.is_empty() {
            path.push_str(&format!("&page_token={token}"));
        }
        let page = sidecar.http.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text());
        let page = page.json();
        events.extend(page["Events"].as_array().unwrap().iter().cloned());
        token = page["NextToken"].as_str().unwrap().to_owned();
        if token.is_empty() {
            return events;
        }
    }
}

/// The `TOOL_RESULT` payloads for `tool`, in chain order.
fn results_of<'a>(events: &'a [Value], tool: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["event_type"] == "TOOL_RESULT" && e["payload"]["tool_name"] == tool)
        .map(|e| &e["payload"])
        .collect()
}

async fn assert_chain_valid(sidecar: &Sidecar, events: &[Value]) {
    let session = events[0]["session_id"].as_str().unwrap();
    let verify = sidecar
        .http
        .get(&format!("/v1/sessions/{session}/verify?tenant_id=default"))
        .await
        .json();
    assert_eq!(verify["valid"], true, "{verify}");
}

/// What one run under `keep` saw: the agent's answer, the raw answer body,
/// the recorded payload and the whole event list as text.
struct Run {
    answer: Value,
    body_len: usize,
    payload: Value,
    ledger_text: String,
}

async fn read_secrets(answer: AnswerMode, tune: impl FnOnce(&mut Config)) -> Run {
    let stack = stack(answer, tune).await;
    let reply = stack
        .client
        .post(&aegis_e2e::mcp::call(
            1,
            "read_file",
            json!({"path": "secrets.env"}),
        ))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let message = reply.answer(&json!(1));
    assert_eq!(stack.upstream.stats().tool_calls("read_file"), 1);
    let events = tenant_events(&stack.sidecar).await;
    let recorded = results_of(&events, "read_file");
    assert_eq!(recorded.len(), 1, "{events:?}");
    assert_chain_valid(&stack.sidecar, &events).await;
    Run {
        answer: message,
        body_len: reply.body.len(),
        payload: recorded[0].clone(),
        ledger_text: serde_json::to_string(&events).unwrap(),
    }
}

fn keep_all(keep: Keep) -> impl FnOnce(&mut Config) {
    move |config| config.mcp.results.keep = keep
}

#[test]
fn the_secret_is_kept_only_under_full_and_the_agent_always_gets_it_whole() {
    for answer in [AnswerMode::Json, AnswerMode::Sse] {
        run(async move {
            let full = read_secrets(answer, keep_all(Keep::Full)).await;
            let hash = read_secrets(answer, keep_all(Keep::Hash)).await;
            let redact = read_secrets(answer, keep_all(Keep::Redact)).await;

            // What the agent gets never depends on what is kept.
            for run in [&full, &hash, &redact] {
                assert_eq!(result_text(&run.answer), secrets_file());
                assert_eq!(run.answer, full.answer);
            }
            // Size and digest are of the whole answer, in every mode; for a
            // JSON answer, of exactly the bytes the agent got.
            let sizes = |run: &Run| {
                (
                    run.payload["size_bytes"].clone(),
                    run.payload["sha256"].clone(),
                )
            };
            assert_eq!(sizes(&hash), sizes(&full));
            assert_eq!(sizes(&redact), sizes(&full));
            assert_eq!(full.payload["sha256"].as_str().unwrap().len(), 64);
            if let AnswerMode::Json = answer {
                assert_eq!(full.payload["size_bytes"], full.body_len);
            }

            // full: the result, secrets and all.
            assert_eq!(full.payload["kept"], "full");
            assert_eq!(full.payload["result"], full.answer["result"]);
            for secret in [AWS_KEY, PASSWORD] {
                assert!(full.ledger_text.contains(secret));
            }

            // hash: no content at all.
            assert_eq!(hash.payload["kept"], "hash");
            for key in ["result", "result_prefix", "truncated", "redactions"] {
                assert!(hash.payload.get(key).is_none(), "{key}: {}", hash.payload);
            }

            // redact: the text, each secret replaced.
            assert_eq!(redact.payload["kept"], "redact");
            assert_eq!(redact.payload["redactions"], 2);
            let kept = result_text(&redact.payload);
            assert_eq!(
                kept,
                secrets_file()
                    .replace(&format!("ACCESS_KEY_ID={AWS_KEY}"), "[REDACTED]")
                    .replace(&format!("PASSWORD={PASSWORD}"), "[REDACTED]")
            );
            assert!(kept.starts_with("HOME=/root\nAWS_[REDACTED]\nLANG=C.UTF-8\nDB_[REDACTED]\n"));

            for run in [&hash, &redact] {
                for secret in [AWS_KEY, PASSWORD] {
                    assert!(
                        !run.ledger_text.contains(secret),
                        "{secret} in the ledger under {}",
                        run.payload["kept"]
                    );
                }
            }
        });
    }
}

#[test]
fn a_tools_own_choice_overrides_the_default() {
    run(async {
        let stack = stack(AnswerMode::Json, |config| {
            let results = &mut config.mcp.results;
            results.keep = Keep::Hash;
            results.tools = BTreeMap::from([("read_file".to_owned(), Keep::Redact)]);
        })
        .await;
        let echoed = stack.client.call(1, "echo", json!({"text": "hello"})).await;
        assert_eq!(result_text(&echoed), "hello");
        let read = stack
            .client
            .call(2, "read_file", json!({"path": "secrets.env"}))
            .await;
        assert_eq!(result_text(&read), secrets_file());

        let events = tenant_events(&stack.sidecar).await;
        let echo = results_of(&events, "echo");
        assert_eq!(echo.len(), 1);
        assert_eq!(echo[0]["kept"], "hash");
        assert!(echo[0].get("result").is_none(), "{}", echo[0]);
        let read = results_of(&events, "read_file");
        assert_eq!(read.len(), 1);
        assert_eq!(read[0]["kept"], "redact");
        assert_eq!(read[0]["redactions"], 2);
        assert_chain_valid(&stack.sidecar, &events).await;
    });
}

#[test]
fn a_secret_across_the_capture_cut_is_redacted_whole() {
    run(async {
        // Where the key starts in the recorded result's JSON text (the
        // proxy serialises it as serde_json does here).
        let probe = read_secrets(AnswerMode::Json, keep_all(Keep::Full)).await;
        let text = serde_json::to_string(&probe.answer["result"]).unwrap();
        let at = text.find(AWS_KEY).unwrap();
        let capture = at + 8;
        let cut = |keep: Keep| {
            move |config: &mut Config| {
                config.mcp.results.keep = keep;
                config.mcp.result_capture_bytes = capture;
            }
        };

        // Cutting first would keep half the key.
        let full = read_secrets(AnswerMode::Json, cut(Keep::Full)).await;
        assert_eq!(full.payload["result_prefix"], text[..capture]);
        assert!(full.ledger_text.contains(&AWS_KEY[..8]));

        let redact = read_secrets(AnswerMode::Json, cut(Keep::Redact)).await;
        let kept = redact.payload["result_prefix"].as_str().unwrap();
        assert_eq!(redact.payload["truncated"], true);
        assert!(kept.len() <= capture);
        assert!(!redact.ledger_text.contains(&AWS_KEY[..8]), "{kept}");
        assert_eq!(result_text(&redact.answer), secrets_file());
        assert_eq!(redact.payload["sha256"], full.payload["sha256"]);
    });
}

/// A destination answering one HTTP request with `body`.
async fn web_server(body: String) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                read_head(&mut stream).await;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    port
}

async fn read_head(stream: &mut TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.unwrap() == 0 {
            break;
        }
        head.push(byte[0]);
    }
    head
}

#[test]
fn the_egress_proxy_keeps_no_content_whatever_is_configured() {
    run(async {
        let port = web_server(secrets_file()).await;
        let manifest = MANIFEST
            .replace(
                "permissions:\n  tools: [echo,",
                "permissions:\n  net:\n    domains: [\"secrets.test\"]\n  tools: [net.http, echo,",
            )
            .replace("non_tainting_tools: [", "non_tainting_tools: [net.http, ");
        let sidecar = Sidecar::start_with(|config| {
            let path = config.ledger.path.parent().unwrap().join("manifest.yaml");
            std::fs::write(&path, manifest).unwrap();
            config.manifest = Some(path);
            config.forward.listen = Some("127.0.0.1:0".parse().unwrap());
            config.forward.allowed_ports = vec![port];
            config.forward.dns_overrides =
                BTreeMap::from([("secrets.test".to_owned(), "127.0.0.1".parse().unwrap())]);
            config.forward.connect_timeout = HANG_GUARD;
            config.mcp.results.tools = BTreeMap::from([("net.http".to_owned(), Keep::Full)]);
        })
        .await;
        let proxy = sidecar.running.forward_addr().unwrap();

        let mut stream = TcpStream::connect(proxy).await.unwrap();
        let request = format!(
            "GET http://secrets.test:{port}/env HTTP/1.1\r\nHost: secrets.test:{port}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await.unwrap();
        let reply = String::from_utf8(reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(
            reply.ends_with(&secrets_file()),
            "the agent gets the body whole"
        );

        // The result lands when the body has ended.
        let events = wait_for("the egress TOOL_RESULT", || async {
            let events = tenant_events(&sidecar).await;
            (!results_of(&events, "net.http").is_empty()).then_some(events)
        })
        .await;
        let recorded = results_of(&events, "net.http");
        assert_eq!(recorded[0]["kept"], "none");
        assert_eq!(recorded[0]["bytes_down"], secrets_file().len());
        let text = serde_json::to_string(&events).unwrap();
        for secret in [AWS_KEY, PASSWORD] {
            assert!(!text.contains(secret));
        }
        assert_chain_valid(&sidecar, &events).await;
    });
}
