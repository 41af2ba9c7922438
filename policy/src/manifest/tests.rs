#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::PathBuf;

use serde_json::{Value, json};

use super::*;

mod rules;

/// The manifest of the Aegis reference's quick start (which names it
/// `aegis-manifest.json`).
const QUICK_START: &str = r#"{
  "schema": "aegis.dev/manifest/v0.1",
  "name": "my-research-skill",
  "version": "1.0.0",
  "publisher": "acme-corp",
  "permissions": {
    "tools": ["read_file", "mcp.https"],
    "net": {"domains": ["api.openai.com", "*.wikipedia.org"]},
    "budgets": {
      "max_steps": 24,
      "max_tool_calls": 12,
      "max_wall_time_ms": 120000
    }
  },
  "sandbox": {"required": true},
  "integrity": {}
}"#;

/// The same manifest, written as YAML.
const QUICK_START_YAML: &str = r#"
schema: aegis.dev/manifest/v0.1
name: my-research-skill
version: "1.0.0"
publisher: acme-corp
permissions:
  tools: [read_file, mcp.https]
  net:
    domains: [api.openai.com, "*.wikipedia.org"]
  budgets: {max_steps: 24, max_tool_calls: 12, max_wall_time_ms: 120000}
sandbox:
  required: true
integrity: {}
"#;

/// The smallest valid manifest, as a value to mutate.
fn minimal() -> Value {
    json!({
        "schema": "aegis.dev/manifest/v0.1",
        "name": "test-skill",
        "version": "0.1.0",
        "publisher": "acme",
        "permissions": {"tools": ["read_file"]},
        "sandbox": {"required": false}
    })
}

fn problems(value: &Value) -> Vec<String> {
    match Manifest::from_value(value) {
        Ok(m) => panic!("expected problems, got {m:?}"),
        Err(e) => e.problems.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn quick_start_manifest_loads() {
    let m = Manifest::from_json(QUICK_START).unwrap();
    assert_eq!(m.schema, SCHEMA_V0_1);
    assert_eq!(m.name, "my-research-skill");
    assert_eq!(m.permissions.tools, ["read_file", "mcp.https"]);
    let domains: Vec<String> = m
        .permissions
        .net
        .domains
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(domains, ["api.openai.com", "*.wikipedia.org"]);
    assert!(m.sandbox.required);
    assert_eq!(m.integrity, json!({}));
    assert_eq!(m.permissions.exec, None);
}

#[test]
fn json_and_yaml_forms_give_equal_manifests() {
    let from_json = Manifest::from_json(QUICK_START).unwrap();
    assert_eq!(Manifest::from_yaml(QUICK_START_YAML).unwrap(), from_json);
    assert_eq!(
        Manifest::parse(QUICK_START_YAML.as_bytes()).unwrap(),
        from_json
    );
    let padded = format!("\u{feff} \n\t{QUICK_START}");
    assert_eq!(Manifest::parse(padded.as_bytes()).unwrap(), from_json);
}

/// Every `request.manifest` of the six Aegis conformance packs
/// (`tests/data/aegis-conformance/packs`), as `(id, manifest)`.
fn pack_manifests() -> Vec<(String, Value)> {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/aegis-conformance/packs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the conformance packs in {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 6, "packs in {}", dir.display());
    let mut out = Vec::new();
    for file in files {
        let pack: Value = serde_saphyr::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        for test in pack["tests"].as_array().unwrap() {
            let id = test["id"].as_str().unwrap().to_owned();
            out.push((id, test["request"]["manifest"].clone()));
        }
    }
    out
}

#[test]
fn every_conformance_pack_manifest_loads_strictly() {
    let manifests = pack_manifests();
    assert_eq!(manifests.len(), 19);
    let rejected: Vec<String> = manifests
        .iter()
        .filter_map(|(id, value)| {
            Manifest::from_value(value)
                .err()
                .map(|e| format!("{id}:\n{e}"))
        })
        .collect();
    assert!(
        rejected.is_empty(),
        "rejected by a strict load:\n{}",
        rejected.join("\n")
    );
}

#[test]
fn defaults_apply_when_absent() {
    let m = Manifest::from_value(&minimal()).unwrap();
    let b = &m.permissions.budgets;
    assert_eq!(
        (b.max_steps, b.max_tool_calls, b.max_wall_time_ms),
        (24, 12, 120_000)
    );
    assert_eq!((b.max_output_bytes, b.timeout_ms), (1_048_576, 30_000));
    assert_eq!(b.max_model_calls, None);
    assert_eq!(*b, Budgets::default());
    assert_eq!(m.policy, PolicySection::default());
    assert_eq!(m.policy.high_risk_sinks, None);
    let loops = &m.policy.loops;
    let got = (
        loops.identical_calls,
        loops.identical_window,
        loops.min_sequence,
        loops.max_sequence,
    );
    assert_eq!(got, (3, 20, 3, 7));
    assert_eq!(m.integrity, json!({}));
    assert_eq!(
        m.sandbox,
        Sandbox {
            required: false,
            image: None,
            mounts: vec![]
        }
    );
    assert!(m.permissions.fs.read_roots.is_empty() && m.permissions.secrets.is_empty());

    // Explicit values replace the defaults, field by field; null means absent.
    let mut v = minimal();
    v["permissions"]["budgets"] =
        json!({"max_steps": 5, "timeout_ms": 100, "max_output_bytes": null});
    let b = Manifest::from_value(&v).unwrap().permissions.budgets;
    assert_eq!((b.max_steps, b.max_tool_calls, b.timeout_ms), (5, 12, 100));
    assert_eq!(b.max_output_bytes, DEFAULT_MAX_OUTPUT_BYTES);
}

#[test]
fn an_empty_tool_list_is_allowed() {
    let mut v = minimal();
    v["permissions"]["tools"] = json!([]);
    assert!(
        Manifest::from_value(&v)
            .unwrap()
            .permissions
            .tools
            .is_empty()
    );
}

#[test]
fn full_manifest_with_every_field_loads() {
    let yaml = r#"
schema: aegis.dev/manifest/v0.1
name: k8s-deployer
version: 1.0.0
publisher: platform-team
permissions:
  tools: [read_file, exec, mcp.https, net.fetch, search_docs]
  fs: {read_roots: [/workspace], write_roots: [/workspace/out]}
  net: {domains: [registry.k8s.io, "*.example.com"]}
  secrets: [GITHUB_TOKEN]
  exec: {allowed_bins: [/usr/local/bin/kubectl], arg_patterns: ["^get .*$"]}
  approval_required: [exec]
  budgets: {max_steps: 10, max_tool_calls: 5, max_output_bytes: 4096,
            timeout_ms: 1000, max_wall_time_ms: 600000, max_model_calls: 10}
sandbox:
  required: true
  image: ghcr.io/platform-team/k8s-deployer@sha256:abc
  mounts: [/workspace, {source: /data, target: /data, readonly: true, extra: 1}]
integrity:
  files: {skill.py: abc123}
  tree_sha256: abc123
  signature: cosign-ref
  anything_else: [kept]
policy:
  high_risk_sinks: [exec, fs.write]
  non_tainting_tools: [search_docs]
  loops: {identical_calls: 2, identical_window: 2, min_sequence: 2, max_sequence: 10}
  rate_limits: {net.fetch: {per_second: 2, burst: 5}}
  trusted_content:
    upstreams: [handbook]
    resources: ["file:///workspace/docs/*"]
    prompts: [summarize]
"#;
    let m = Manifest::from_yaml(yaml).unwrap();
    let trusted = &m.policy.trusted_content;
    assert_eq!(trusted.upstreams, ["handbook"]);
    assert_eq!(trusted.prompts, ["summarize"]);
    assert!(trusted.resource("files", "file:///workspace/docs/a.md"));
    assert!(!trusted.resource("files", "file:///workspace/secrets"));
    let p = &m.permissions;
    assert_eq!(p.fs.write_roots, ["/workspace/out"]);
    assert_eq!(p.secrets, ["GITHUB_TOKEN"]);
    let exec = p.exec.as_ref().unwrap();
    assert_eq!(exec.allowed_bins, ["/usr/local/bin/kubectl"]);
    assert_eq!(exec.arg_patterns, ["^get .*$"]);
    assert_eq!(p.approval_required, ["exec"]);
    assert_eq!(p.budgets.max_model_calls, Some(10));
    assert_eq!(p.budgets.max_output_bytes, 4096);
    assert_eq!(m.sandbox.mounts.len(), 2);
    assert_eq!(m.integrity["anything_else"], json!(["kept"]));
    assert_eq!(
        m.policy.high_risk_sinks,
        Some(vec!["exec".to_owned(), "fs.write".to_owned()])
    );
    assert_eq!(m.policy.non_tainting_tools, ["search_docs"]);
    assert_eq!(m.policy.loops.max_sequence, 10);
    let limit = RateLimit {
        per_second: 2.0,
        burst: 5,
    };
    assert_eq!(m.policy.rate_limits.get("net.fetch"), Some(&limit));
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let v = json!({
        "schema": "aegis.dev/manifest/v0.2",
        "version": 1.0,
        "publisher": "",
        "permissions": {
            "tools": ["read_file", "exec", 7, "read_file", ""],
            "net": {"domains": ["api.example.com", "*.ok.com", "a.*.com"]},
            "exec": {"allowed_bins": "/bin/sh"},
            "approval_required": ["deploy", "exec"],
            "budgets": {"max_steps": 0, "max_tool_calls": -1, "timeout_ms": 2.5, "max_wall_time_ms": "60000"},
            "network": {}
        },
        "sandbox": {"required": false, "mounts": "/data"},
        "integrity": {"files": {"a.py": 1}, "signature": false},
        "policy": {
            "non_tainting_tools": ["search_docs"],
            "loops": {"identical_calls": 1, "min_sequence": 4, "max_sequence": 3},
            "rate_limits": {"exec": {"per_second": 0, "burst": 0}, "net.fetch": {"per_second": 1, "burst": 1}},
            "sinks": [],
            "trusted_content": {"resources": ["*", "file:///a/../*", 3], "prompts": "x", "uris": []}
        },
        "extra": true
    });
    let domain_error = crate::domain::DomainPattern::parse("a.*.com").unwrap_err();
    let domain_problem = super::validate::domain_message("a.*.com", &domain_error);
    let expected = vec![
        r#"schema: must be "aegis.dev/manifest/v0.1", got "aegis.dev/manifest/v0.2""#.to_owned(),
        "name: required".to_owned(),
        "version: expected a string, got 1.0".to_owned(),
        "publisher: must not be empty".to_owned(),
        "permissions.tools[2]: expected a string, got 7".to_owned(),
        r#"permissions.tools[3]: "read_file" is already declared at permissions.tools[0]"#.to_owned(),
        "permissions.tools[4]: must not be empty".to_owned(),
        format!("permissions.net.domains[2]: {domain_problem}"),
        r#"permissions.exec.allowed_bins: expected a list of strings, got "/bin/sh""#.to_owned(),
        r#"permissions.approval_required[0]: "deploy" is not declared in permissions.tools"#.to_owned(),
        "permissions.budgets.max_steps: must be a positive integer, got 0".to_owned(),
        "permissions.budgets.max_tool_calls: must be a positive integer, got -1".to_owned(),
        "permissions.budgets.timeout_ms: must be a positive integer, got 2.5".to_owned(),
        r#"permissions.budgets.max_wall_time_ms: must be a positive integer, got "60000""#.to_owned(),
        "permissions.network: unknown field (expected one of: tools, fs, net, secrets, exec, \
         approval_required, budgets)"
            .to_owned(),
        "sandbox.required: must be true when exec, fs.write or network permissions are declared \
         (declared: permissions.tools[1] \"exec\", permissions.net.domains)"
            .to_owned(),
        r#"sandbox.mounts: expected a list, got "/data""#.to_owned(),
        r#"integrity.files["a.py"]: expected a string, got 1"#.to_owned(),
        "integrity.signature: expected a string, got false".to_owned(),
        r#"policy.non_tainting_tools[0]: "search_docs" is not declared in permissions.tools"#.to_owned(),
        "policy.loops.identical_calls: must be at least 2, got 1".to_owned(),
        "policy.loops.max_sequence: must be at least min_sequence (4), got 3".to_owned(),
        r#"policy.rate_limits["exec"].per_second: must be a positive number, got 0"#.to_owned(),
        r#"policy.rate_limits["exec"].burst: must be a positive integer up to 4294967295, got 0"#.to_owned(),
        r#"policy.rate_limits["net.fetch"]: "net.fetch" is not declared in permissions.tools"#.to_owned(),
        r#"policy.trusted_content.prompts: expected a list of strings, got "x""#.to_owned(),
        r#"policy.trusted_content.resources[0]: "*": must start with a URI scheme (e.g. docs://handbook/*)"#.to_owned(),
        r#"policy.trusted_content.resources[1]: "file:///a/../*": must not contain a `.` or `..` path segment, `%` or `\` (a URI with those never matches)"#.to_owned(),
        "policy.trusted_content.resources[2]: expected a string, got 3".to_owned(),
        "policy.trusted_content.uris: unknown field (expected one of: upstreams, resources, prompts)".to_owned(),
        "policy.sinks: unknown field (expected one of: high_risk_sinks, non_tainting_tools, loops, \
         rate_limits, fs_paths, trusted_content, approvals, sanitize)"
            .to_owned(),
        "extra: unknown field (expected one of: schema, name, version, publisher, permissions, \
         sandbox, integrity, policy)"
            .to_owned(),
    ];
    assert_eq!(problems(&v), expected);

    // Display: one `path: message` per line, in the same order.
    let error = Manifest::from_value(&v).unwrap_err();
    assert_eq!(error.to_string(), expected.join("\n"));
}

#[test]
fn unknown_fields_are_rejected_with_their_path() {
    let cases: &[(&str, Value, &str)] = &[
        ("top level", json!({"descripton": "x"}), "descripton"),
        (
            "permissions",
            json!({"permissions": {"tools": [], "tool": []}}),
            "permissions.tool",
        ),
        (
            "fs",
            json!({"permissions": {"tools": [], "fs": {"roots": []}}}),
            "permissions.fs.roots",
        ),
        (
            "net",
            json!({"permissions": {"tools": [], "net": {"domain": []}}}),
            "permissions.net.domain",
        ),
        (
            "exec",
            json!({"permissions": {"tools": [], "exec": {"bins": []}}}),
            "permissions.exec.bins",
        ),
        (
            "budgets",
            json!({"permissions": {"tools": [], "budgets": {"max_step": 1}}}),
            "permissions.budgets.max_step",
        ),
        (
            "sandbox",
            json!({"sandbox": {"required": false, "img": "x"}}),
            "sandbox.img",
        ),
        ("policy", json!({"policy": {"loop": {}}}), "policy.loop"),
        (
            "loops",
            json!({"policy": {"loops": {"window": 3}}}),
            "policy.loops.window",
        ),
        (
            "rate limit",
            json!({"permissions": {"tools": ["t"]}, "policy": {"rate_limits": {"t": {"per_second": 1, "burst": 1, "rate": 2}}}}),
            r#"policy.rate_limits["t"].rate"#,
        ),
    ];
    for (name, patch, path) in cases {
        let mut v = minimal();
        merge(&mut v, patch);
        let found = problems(&v);
        let expected_prefix = format!("{path}: unknown field (expected one of: ");
        assert_eq!(found.len(), 1, "{name}: {found:?}");
        assert!(found[0].starts_with(&expected_prefix), "{name}: {found:?}");
    }
}

#[test]
fn free_form_places_accept_unknown_keys() {
    let mut v = minimal();
    v["integrity"] = json!({"files": {}, "vendor_ext": {"x": 1}});
    v["sandbox"]["mounts"] = json!([{"source": "/a", "anything": true}, "/b"]);
    let m = Manifest::from_value(&v).unwrap();
    assert_eq!(m.integrity["vendor_ext"], json!({"x": 1}));
    assert_eq!(m.sandbox.mounts.len(), 2);
}

/// Deep-merges `patch` into `base` (objects merge, anything else replaces).
fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(base), Value::Object(patch)) => {
            for (key, value) in patch {
                merge(base.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
        (base, patch) => *base = patch.clone(),
    }
}

#[test]
fn fs_roots_must_be_absolute_paths() {
    let mut v = minimal();
    merge(
        &mut v,
        &json!({"permissions": {"fs": {
            "read_roots": ["/workspace/", "workspace", "/a/../..", "file:///srv", "C:\\data"],
            "write_roots": ["/out", "", "/x/%zz"],
        }}, "sandbox": {"required": true}}),
    );
    assert_eq!(
        problems(&v),
        [
            r#"permissions.fs.read_roots[1]: "workspace": the path is not absolute (a root must be an absolute path)"#,
            r#"permissions.fs.read_roots[2]: "/a/../..": the path climbs above its root with .. (a root must be an absolute path)"#,
            "permissions.fs.write_roots[1]: must not be empty",
            r#"permissions.fs.write_roots[2]: "/x/%zz": the path has an invalid %-escape (a root must be an absolute path)"#,
        ]
    );
}

#[test]
fn policy_fs_paths_is_validated() {
    let mut v = minimal();
    merge(
        &mut v,
        &json!({
            "permissions": {"tools": ["copy", "grep"], "fs": {"read_roots": ["/w"]}},
            "policy": {"fs_paths": {
                "copy": {"args": ["src", "dest"], "access": "write"},
                "grep": {"args": ["path", "path", 3], "access": "readwrite", "glob": true},
                "move": {"args": [], "access": "write"},
                "tar": {"access": "read"},
                "zip": ["x"],
            }},
        }),
    );
    assert_eq!(
        problems(&v),
        [
            r#"policy.fs_paths["grep"].args[1]: "path" is listed twice"#,
            r#"policy.fs_paths["grep"].args[2]: expected a string, got 3"#,
            r#"policy.fs_paths["grep"].access: must be "read" or "write", got "readwrite""#,
            r#"policy.fs_paths["grep"].glob: unknown field (expected one of: args, access)"#,
            r#"policy.fs_paths["move"]: "move" is not declared in permissions.tools"#,
            r#"policy.fs_paths["move"].args: must name at least one argument"#,
            r#"policy.fs_paths["tar"]: "tar" is not declared in permissions.tools"#,
            r#"policy.fs_paths["tar"].args: required (the argument names that hold paths)"#,
            r#"policy.fs_paths["zip"]: "zip" is not declared in permissions.tools"#,
            r#"policy.fs_paths["zip"]: expected a mapping with args and access, got a list"#,
        ]
    );

    v["policy"]["fs_paths"] = json!({
        "copy": {"args": ["src", "dest"], "access": "write"},
        "grep": {"args": ["path"], "access": "read"},
    });
    let m = Manifest::from_value(&v).unwrap();
    let copy = &m.policy.fs_paths["copy"];
    assert_eq!(copy.args, ["src", "dest"]);
    assert_eq!(copy.access, crate::manifest::FsAccess::Write);

    // A mapping with no root to check against is a mistake, not a no-op.
    v["permissions"]["fs"] = json!({});
    assert_eq!(
        problems(&v),
        [
            "policy.fs_paths: has no effect: permissions.fs declares no read_roots or write_roots, so no path is checked"
        ]
    );
}

#[test]
fn approval_rules_name_approval_tools_with_approvers_and_a_mode() {
    let mut value = minimal();
    value["permissions"]["tools"] = json!(["read_file", "write_file", "exec"]);
    value["sandbox"]["required"] = json!(true);
    value["permissions"]["approval_required"] = json!(["write_file", "exec"]);
    value["policy"] = json!({"approvals": {"write_file": {"approvers": 2, "mode": "retry"}}});
    let m = Manifest::from_value(&value).unwrap();
    assert_eq!(
        m.approval_rule("write_file"),
        ApprovalRule {
            approvers: 2,
            mode: Some(ApprovalMode::Retry)
        }
    );
    value["policy"] = json!({"approvals": {"write_file": {"mode": "hold"}}});
    let m = Manifest::from_value(&value).unwrap();
    assert_eq!(m.approval_rule("write_file").mode, Some(ApprovalMode::Hold));
    value["policy"] = json!({"approvals": {"write_file": {"mode": "wait"}}});
    assert!(
        problems(&value)
            .iter()
            .any(|p| p.contains("must be \"hold\" or \"retry\", got \"wait\"")),
        "{:?}",
        problems(&value)
    );
    // A tool without a rule: one approver, the sidecar's mode.
    assert_eq!(m.approval_rule("exec"), ApprovalRule::default());
    assert_eq!(ApprovalRule::default().approvers, 1);

    value["policy"] = json!({"approvals": {
        "read_file": {"approvers": 1},
        "write_file": {"approvers": 0, "mode": "wait", "quorum": 3},
        "exec": {"approvers": 11},
    }});
    let found = problems(&value);
    for expected in [
        "policy.approvals[\"read_file\"]: \"read_file\" is not in permissions.approval_required",
        "policy.approvals[\"write_file\"].approvers: must be an integer from 1 to 10, got 0",
        "policy.approvals[\"write_file\"].mode: must be \"hold\" or \"retry\", got \"wait\"",
        "policy.approvals[\"write_file\"].quorum: unknown field",
        "policy.approvals[\"exec\"].approvers: must be an integer from 1 to 10, got 11",
    ] {
        assert!(
            found.iter().any(|p| p.starts_with(expected)),
            "{expected} not in {found:#?}"
        );
    }
    value["policy"] = json!({"approvals": {"exec": 2}});
    let found = problems(&value);
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("policy.approvals[\"exec\"]: expected a mapping")),
        "{found:#?}"
    );
}

#[test]
fn sanitize_rules_load_in_order_and_every_problem_has_its_path() {
    use crate::sanitize::{SanitizeAction, SanitizeRule};
    let mut value = minimal();
    value["permissions"]["tools"] = json!(["read_file", "send_email"]);
    value["policy"] = json!({"sanitize": {"send_email": [
        {"field": "cc", "drop": true, "reason": "no copies"},
        {"field": "headers.priority", "set": "normal"},
        {"redact": "\\d{16}"},
        {"field": "limit", "clamp": {"max": 10}},
    ]}});
    let m = Manifest::from_value(&value).unwrap();
    let rules = &m.policy.sanitize["send_email"];
    assert_eq!(rules.len(), 4);
    assert_eq!(
        rules[0],
        SanitizeRule {
            field: Some(vec!["cc".into()]),
            action: SanitizeAction::Drop,
            reason: Some("no copies".into()),
        }
    );
    assert_eq!(rules[1].field_text(), "headers.priority");
    assert_eq!(rules[2].field_text(), "*");
    assert!(matches!(
        &rules[2].action,
        SanitizeAction::Redact { replacement, .. } if replacement == "[REDACTED]"
    ));
    assert!(matches!(
        &rules[3].action,
        SanitizeAction::Clamp {
            min: None,
            max: Some(_)
        }
    ));

    value["policy"] = json!({"sanitize": {
        "fetch": [{"field": "url", "drop": true}],
        "read_file": [],
        "send_email": [
            {"field": "cc"},
            {"field": "cc", "drop": true, "set": 1},
            {"field": "a..b", "drop": false},
            {"set": 1},
            {"field": "body", "redact": "x*"},
            {"field": "body", "redact": "(", "replacement": 3},
            {"field": "n", "clamp": {"min": 5, "max": 1}},
            {"field": "n", "clamp": {"min": "1", "step": 2}},
            {"field": "n", "clamp": {}},
            {"field": 3, "drop": true, "why": "x"},
            {"field": "n", "set": 1, "replacement": "y", "reason": ""},
            "drop everything",
        ],
    }});
    let found = problems(&value);
    for expected in [
        "policy.sanitize[\"fetch\"]: \"fetch\" is not declared in permissions.tools",
        "policy.sanitize[\"read_file\"]: must list at least one rule",
        "policy.sanitize[\"send_email\"][0]: needs one of set, drop, redact or clamp",
        "policy.sanitize[\"send_email\"][1]: has set and drop",
        "policy.sanitize[\"send_email\"][2].field: must be member names joined by dots",
        "policy.sanitize[\"send_email\"][2].drop: must be true, got false",
        "policy.sanitize[\"send_email\"][3].field: required",
        "policy.sanitize[\"send_email\"][4].redact: not a usable pattern: the pattern matches the empty string",
        "policy.sanitize[\"send_email\"][5].replacement: expected a string, got 3",
        "policy.sanitize[\"send_email\"][6].clamp: min (5) is above max (1)",
        "policy.sanitize[\"send_email\"][7].clamp.min: expected a number, got \"1\"",
        "policy.sanitize[\"send_email\"][7].clamp.step: unknown field",
        "policy.sanitize[\"send_email\"][8].clamp: needs min, max or both",
        "policy.sanitize[\"send_email\"][9].field: expected a string, got 3",
        "policy.sanitize[\"send_email\"][9].why: unknown field",
        "policy.sanitize[\"send_email\"][10].reason: expected a non-empty string",
        "policy.sanitize[\"send_email\"][10].replacement: only a redact rule has a replacement",
        "policy.sanitize[\"send_email\"][11]: expected a mapping, got \"drop everything\"",
    ] {
        assert!(
            found.iter().any(|p| p.starts_with(expected)),
            "{expected} not in {found:#?}"
        );
    }
    value["policy"] = json!({"sanitize": {"send_email": {"field": "cc"}}});
    assert!(
        problems(&value)
            .iter()
            .any(|p| p.starts_with("policy.sanitize[\"send_email\"]: expected a list of rules")),
    );
}
