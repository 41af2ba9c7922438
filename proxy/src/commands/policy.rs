//! The offline policy commands: `manifest validate`, `decide` and
//! `conformance run`. They read files, run the in-process engine
//! ([`aegis_policy`]) and never touch a running sidecar.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aegis_policy::Manifest;
use aegis_policy::conformance::{self, CaseResult, Pack};
use serde_json::{Value, json};

use super::{EXIT_INVALID, EXIT_OK, EXIT_USAGE};
use crate::cli::{ConformanceRunArgs, DecideArgs, ValidateArgs};

/// `aegis-proxy manifest validate`: `OK: name version (N tools)`, or every
/// problem, one `path: message` per line.
pub fn validate(args: &ValidateArgs, out: &mut dyn Write) -> ExitCode {
    let bytes = match std::fs::read(&args.file) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!(
                "aegis-proxy manifest validate: cannot read {}: {e}",
                args.file.display()
            );
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let (text, code) = match Manifest::parse(&bytes) {
        Ok(m) => (
            format!(
                "OK: {} {} ({} tools)\n",
                m.name,
                m.version,
                m.permissions.tools.len()
            ),
            EXIT_OK,
        ),
        Err(e) => (format!("{e}\n"), EXIT_INVALID),
    };
    if let Err(e) = out.write_all(text.as_bytes()) {
        eprintln!("aegis-proxy manifest validate: cannot write the report: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    ExitCode::from(code)
}

/// `aegis-proxy decide`: the Aegis decide request `{event, snapshot,
/// manifest}` built from files, answered as `{outcome, reason, constraints}`.
pub fn decide(args: &DecideArgs, out: &mut dyn Write) -> ExitCode {
    let request = match decide_request(args) {
        Ok(request) => request,
        Err(e) => {
            eprintln!("aegis-proxy decide: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let decision = match conformance::evaluate(&request) {
        Ok(decision) => decision,
        Err(e) => {
            eprintln!("aegis-proxy decide: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let constraints = match decision.constraints {
        Some(c) => json!({"max_output_bytes": c.max_output_bytes, "timeout_ms": c.timeout_ms}),
        None => json!({}),
    };
    let answer = json!({
        "outcome": decision.outcome.as_str(),
        "reason": decision.reason.as_str(),
        "constraints": constraints,
    });
    if let Err(e) = writeln!(out, "{answer}") {
        eprintln!("aegis-proxy decide: cannot write the answer: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    ExitCode::from(EXIT_OK)
}

/// Reads and checks the three inputs of `decide`; every problem with the
/// manifest is reported, one per line.
fn decide_request(args: &DecideArgs) -> Result<Value, String> {
    let bytes = read(&args.manifest)?;
    if let Err(e) = Manifest::parse(&bytes) {
        return Err(format!(
            "invalid manifest {}:\n{e}",
            args.manifest.display()
        ));
    }
    let manifest = manifest_value(&bytes)
        .map_err(|e| format!("invalid manifest {}: {e}", args.manifest.display()))?;
    let event = json_object(&args.event)?;
    if !event.get("event_type").is_some_and(Value::is_string) {
        return Err(format!(
            "invalid event {}: event_type must be a string",
            args.event.display()
        ));
    }
    let snapshot = match &args.snapshot {
        Some(path) => json_object(path)?,
        None => json!({}),
    };
    Ok(json!({"event": event, "snapshot": snapshot, "manifest": manifest}))
}

/// A manifest file's bytes as a JSON value, read the way
/// [`Manifest::parse`] reads them (JSON when it starts with `{`, YAML 1.2
/// booleans otherwise, a leading byte-order mark ignored).
fn manifest_value(bytes: &[u8]) -> Result<Value, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))
    } else {
        let mut options = serde_saphyr::Options::default();
        options.strict_booleans = true;
        options.with_snippet = false;
        serde_saphyr::from_str_with_options(text, options).map_err(|e| format!("invalid YAML: {e}"))
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// A JSON file holding one object.
fn json_object(path: &Path) -> Result<Value, String> {
    let value: Value = serde_json::from_slice(&read(path)?)
        .map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
    if !value.is_object() {
        return Err(format!("{} must hold a JSON object", path.display()));
    }
    Ok(value)
}

/// One loaded pack and where it came from.
struct Loaded {
    file: PathBuf,
    pack: Pack,
}

/// `aegis-proxy conformance run`: every test of every pack against the
/// in-process engine, or a server's `/v1/policy/decide` (`--server`); a table
/// per pack and `N of M passed`, or one JSON document.
pub fn conformance_run(args: &ConformanceRunArgs, out: &mut dyn Write) -> ExitCode {
    let (packs, errors) = load_packs(&args.paths);
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("aegis-proxy conformance run: {e}");
        }
        return ExitCode::from(EXIT_USAGE);
    }
    let server = match args
        .server
        .as_deref()
        .map(|base| super::remote::Server::new(base, args.token_file.as_deref()))
        .transpose()
    {
        Ok(server) => server,
        Err(e) => {
            eprintln!("aegis-proxy conformance run: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let results: Vec<(&Loaded, Vec<CaseResult>)> = packs
        .iter()
        .map(|loaded| {
            let results = loaded
                .pack
                .tests
                .iter()
                .map(|case| match &server {
                    Some(server) => {
                        conformance::run_case_with(case, |request| server.decide(request))
                    }
                    None => conformance::run_case(case),
                })
                .collect();
            (loaded, results)
        })
        .collect();
    let total: usize = results.iter().map(|(_, r)| r.len()).sum();
    let passed: usize = results
        .iter()
        .map(|(_, r)| r.iter().filter(|r| r.passed).count())
        .sum();
    let text = if args.json {
        json_report(&results, passed, total)
    } else {
        table_report(&results, passed, total)
    };
    if let Err(e) = out.write_all(text.as_bytes()) {
        eprintln!("aegis-proxy conformance run: cannot write the report: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    ExitCode::from(if passed == total {
        EXIT_OK
    } else {
        EXIT_INVALID
    })
}

/// Every pack named by `paths` (directories: their `*.yaml` / `*.yml` files
/// in name order), and every file that could not be read or parsed.
fn load_packs(paths: &[PathBuf]) -> (Vec<Loaded>, Vec<String>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        if path.is_dir() {
            match pack_files(path) {
                Ok(found) if found.is_empty() => errors.push(format!(
                    "{}: no *.yaml or *.yml files in the directory",
                    path.display()
                )),
                Ok(found) => files.extend(found),
                Err(e) => errors.push(format!("cannot read {}: {e}", path.display())),
            }
        } else {
            files.push(path.clone());
        }
    }
    let mut packs = Vec::new();
    for file in files {
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) => {
                errors.push(format!("cannot read {}: {e}", file.display()));
                continue;
            }
        };
        match conformance::parse_pack(&text) {
            Ok(pack) => packs.push(Loaded { file, pack }),
            Err(e) => errors.push(format!("invalid pack {}: {e}", file.display())),
        }
    }
    (packs, errors)
}

fn pack_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let is_yaml = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e == "yaml" || e == "yml");
        if is_yaml && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn table_report(results: &[(&Loaded, Vec<CaseResult>)], passed: usize, total: usize) -> String {
    let mut text = String::new();
    for (loaded, cases) in results {
        let ok = cases.iter().filter(|c| c.passed).count();
        text.push_str(&format!(
            "== {} ({}): {ok} of {} passed\n",
            loaded.pack.name,
            loaded.file.display(),
            cases.len()
        ));
        let header = ["ID", "RESULT", "EXPECTED", "GOT", "DESCRIPTION"];
        let rows: Vec<[&str; 5]> = cases
            .iter()
            .map(|c| {
                [
                    c.id.as_str(),
                    if c.passed { "PASS" } else { "FAIL" },
                    c.expected.as_str(),
                    c.got.as_str(),
                    c.description.as_str(),
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        for row in std::iter::once(&header).chain(&rows) {
            let mut line = String::new();
            for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<width$}  "));
                }
            }
            text.push_str(line.trim_end());
            text.push('\n');
        }
        text.push('\n');
    }
    let failed: Vec<&str> = results
        .iter()
        .flat_map(|(_, cases)| cases.iter().filter(|c| !c.passed).map(|c| c.id.as_str()))
        .collect();
    if !failed.is_empty() {
        text.push_str(&format!("failed: {}\n", failed.join(", ")));
    }
    text.push_str(&format!("{passed} of {total} passed\n"));
    text
}

fn json_report(results: &[(&Loaded, Vec<CaseResult>)], passed: usize, total: usize) -> String {
    let packs: Vec<Value> = results
        .iter()
        .map(|(loaded, cases)| {
            json!({
                "name": loaded.pack.name,
                "file": loaded.file.display().to_string(),
                "passed": cases.iter().filter(|c| c.passed).count(),
                "total": cases.len(),
            })
        })
        .collect();
    let all: Vec<Value> = results
        .iter()
        .flat_map(|(loaded, cases)| {
            cases.iter().map(|c| {
                json!({
                    "pack": loaded.pack.name,
                    "id": c.id,
                    "description": c.description,
                    "passed": c.passed,
                    "expected": c.expected,
                    "got": c.got,
                })
            })
        })
        .collect();
    let report = json!({
        "passed": passed,
        "total": total,
        "ok": passed == total,
        "packs": packs,
        "results": all,
    });
    format!("{report}\n")
}
