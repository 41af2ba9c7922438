//! Rule 7: path arguments under the manifest's filesystem roots.
#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};

use super::*;

fn compile(permissions: Value, policy: Value) -> CompiledManifest {
    let m = json!({
        "schema": "aegis.dev/manifest/v0.1", "name": "t", "version": "1.0.0", "publisher": "acme",
        "permissions": permissions, "sandbox": {"required": true}, "integrity": {},
        "policy": policy,
    });
    CompiledManifest::new(&Manifest::from_value(&m).unwrap())
}

/// Reads under /workspace, writes under /workspace/out.
fn rooted() -> CompiledManifest {
    compile(
        json!({
            "tools": ["read_file", "write_file", "fs.read_text", "fs.write", "copy", "echo",
                      "archive"],
            "fs": {"read_roots": ["/workspace"], "write_roots": ["/workspace/out"]},
            "approval_required": ["archive"],
        }),
        json!({"fs_paths": {
            "copy": {"args": ["src", "dest"], "access": "write"},
            "archive": {"args": ["files"], "access": "read"},
        }}),
    )
}

fn decide_on(m: &CompiledManifest, tool: &str, args: Value) -> Reason {
    let proposal = Proposal {
        tool_name: tool,
        args: &args,
        sanitizer_key: None,
        args_digest: None,
    };
    decide(&proposal, &SessionFacts::default(), m).reason
}

#[test]
fn read_tools_are_held_to_read_roots() {
    let m = rooted();
    for path in [
        "/etc/shadow",
        "/workspace/../etc/shadow",
        "/workspace/%2e%2e/etc/shadow",
        "/workspace/%2E%2E%2Fetc%2Fshadow",
        "file:///etc/passwd",
        "file://evil.example/workspace/a",
        "/workspace\\..\\etc\\passwd",
        "..\\..\\etc\\passwd",
        "../../etc/passwd",
        "/workspace2/x",
        "C:\\Windows\\win.ini",
        "/workspace/a\0b",
        "/workspace/%zz",
        "~/.ssh/id_rsa",
        "//workspace/a",
        "",
    ] {
        assert_eq!(
            decide_on(&m, "read_file", json!({"path": path})),
            Reason::FsDeny,
            "{path:?}"
        );
        assert_eq!(
            decide_on(&m, "fs.read_text", json!({"path": path})),
            Reason::FsDeny,
            "{path:?}"
        );
    }
    for path in [
        "/workspace",
        "/workspace/a.txt",
        "/workspace/./deep//b.txt",
        "/workspace/out/../a.txt",
        "file:///workspace/a.txt",
        "file://localhost/workspace/a%20b.txt",
        "notes.txt",
        "sub/../notes.txt",
    ] {
        assert_eq!(
            decide_on(&m, "read_file", json!({"path": path})),
            Reason::Ok,
            "{path:?}"
        );
    }
}

#[test]
fn write_tools_are_held_to_write_roots() {
    let m = rooted();
    // Readable is not writable.
    assert_eq!(
        decide_on(
            &m,
            "write_file",
            json!({"path": "/workspace/a.txt", "content": "x"})
        ),
        Reason::FsDeny
    );
    assert_eq!(
        decide_on(&m, "fs.write", json!({"path": "/etc/cron.d/evil"})),
        Reason::FsDeny
    );
    assert_eq!(
        decide_on(&m, "write_file", json!({"path": "/workspace/out/../a.txt"})),
        Reason::FsDeny
    );
    assert_eq!(
        decide_on(&m, "write_file", json!({"path": "/workspace/out/r.md"})),
        Reason::Ok
    );
    // A relative write starts at the first write root.
    assert_eq!(
        decide_on(&m, "write_file", json!({"path": "r.md"})),
        Reason::Ok
    );
    assert_eq!(
        decide_on(&m, "write_file", json!({"path": "../r.md"})),
        Reason::FsDeny
    );
}

#[test]
fn path_arguments_must_be_strings_or_lists_of_strings() {
    let m = rooted();
    for args in [
        json!({"path": 7}),
        json!({"path": null}),
        json!({"path": {"p": "/workspace/a"}}),
        json!({"path": [["/workspace/a"]]}),
        json!({"path": ["/workspace/a", 3]}),
        json!("/etc/shadow"),
        json!(["/etc/shadow"]),
    ] {
        assert_eq!(
            decide_on(&m, "read_file", args.clone()),
            Reason::FsDeny,
            "{args}"
        );
    }
    // Absent: nothing named, nothing to check (the tool decides).
    assert_eq!(decide_on(&m, "read_file", json!({})), Reason::Ok);
    assert_eq!(decide_on(&m, "read_file", Value::Null), Reason::Ok);
    // A list of paths: every one must be under a root.
    assert_eq!(
        decide_on(
            &m,
            "read_file",
            json!({"path": ["/workspace/a", "/workspace/b"]})
        ),
        Reason::Ok
    );
    assert_eq!(
        decide_on(
            &m,
            "read_file",
            json!({"path": ["/workspace/a", "/etc/shadow"]})
        ),
        Reason::FsDeny
    );
}

#[test]
fn policy_fs_paths_maps_other_tools_and_arguments() {
    let m = rooted();
    let copy = |src: &str, dest: &str| decide_on(&m, "copy", json!({"src": src, "dest": dest}));
    assert_eq!(copy("/workspace/out/a", "/workspace/out/b"), Reason::Ok);
    // Every mapped argument is checked, against the rule's access (write).
    assert_eq!(copy("/workspace/a", "/workspace/out/b"), Reason::FsDeny);
    assert_eq!(copy("/workspace/out/a", "/tmp/b"), Reason::FsDeny);
    // Unmapped arguments are not paths to the sidecar.
    assert_eq!(
        decide_on(
            &m,
            "copy",
            json!({"src": "/workspace/out/a", "path": "/etc/x"})
        ),
        Reason::Ok
    );
    // A tool with neither a mapping nor a filesystem name is not checked.
    assert_eq!(
        decide_on(&m, "echo", json!({"path": "/etc/shadow"})),
        Reason::Ok
    );
    // The path rule comes before approval: a bad path is denied outright.
    assert_eq!(
        decide_on(
            &m,
            "archive",
            json!({"files": ["/workspace/a", "/etc/shadow"]})
        ),
        Reason::FsDeny
    );
    assert_eq!(
        decide_on(&m, "archive", json!({"files": ["/workspace/a"]})),
        Reason::ApprovalRequired
    );
}

#[test]
fn roots_of_one_kind_only_leave_the_other_kind_closed() {
    let m = compile(
        json!({"tools": ["read_file", "write_file"], "fs": {"read_roots": ["/data"]}}),
        json!({}),
    );
    assert_eq!(
        decide_on(&m, "read_file", json!({"path": "/data/a"})),
        Reason::Ok
    );
    assert_eq!(
        decide_on(&m, "write_file", json!({"path": "/data/a"})),
        Reason::FsDeny
    );
    assert_eq!(
        decide_on(&m, "write_file", json!({"path": "a"})),
        Reason::FsDeny
    );
}

#[test]
fn without_any_root_paths_are_not_checked() {
    // Aegis's packs declare `read_file` with no `fs` section and expect its
    // calls allowed (BS-002): no root at all keeps rule 7 off.
    let m = compile(json!({"tools": ["read_file", "write_file"]}), json!({}));
    assert_eq!(
        decide_on(&m, "read_file", json!({"path": "/etc/shadow"})),
        Reason::Ok
    );
    assert_eq!(
        decide_on(&m, "write_file", json!({"path": "/etc/x"})),
        Reason::Ok
    );
}

#[test]
fn earlier_rules_still_win() {
    let m = rooted();
    assert_eq!(
        decide_on(&m, "delete_file", json!({"path": "/etc/shadow"})),
        Reason::PermissionUndeclared
    );
    let args = json!({"path": "/etc/shadow"});
    let proposal = Proposal {
        tool_name: "write_file",
        args: &args,
        sanitizer_key: None,
        args_digest: None,
    };
    let tainted = SessionFacts {
        is_tainted: true,
        ..SessionFacts::default()
    };
    assert_eq!(
        decide(&proposal, &tainted, &m).reason,
        Reason::TaintedToHighRisk
    );
}
