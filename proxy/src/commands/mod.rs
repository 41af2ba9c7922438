//! The offline commands: `verify` and `events export`. They open the ledger
//! file read-only and never touch a running sidecar. The policy commands
//! (`manifest validate`, `decide`, `conformance run`) are in [`policy`].

use std::io::{BufWriter, Write};
use std::ops::ControlFlow;
use std::process::ExitCode;

use aegis_ledger::{LedgerReader, SessionReport};
use serde_json::json;

use crate::cli::{ExportArgs, VerifyArgs};

pub mod approvals;
pub mod demo;
pub mod policy;
mod remote;

/// Exit code: every chain verifies / the export is complete.
pub const EXIT_OK: u8 = 0;
/// Exit code: a chain does not verify, or there was nothing to verify or export.
pub const EXIT_INVALID: u8 = 1;
/// Exit code: bad usage, or the ledger could not be read at all.
pub const EXIT_USAGE: u8 = 2;

/// `aegis-proxy verify`: recomputes every chain (or one tenant's, or one session's).
pub fn verify(args: &VerifyArgs, out: &mut dyn Write) -> ExitCode {
    let reader = match LedgerReader::open_offline(&args.ledger) {
        Ok(reader) => reader,
        Err(e) => {
            eprintln!(
                "aegis-proxy verify: cannot read {}: {e}",
                args.ledger.display()
            );
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let mut invalid: Vec<SessionReport> = Vec::new();
    let (sessions, envelopes) = match (&args.tenant, &args.session) {
        (Some(tenant), Some(session)) => match reader.verify_session(tenant, session) {
            Ok(Some(report)) => {
                let n = report.envelopes;
                if !report.is_valid() {
                    invalid.push(report);
                }
                (1, n)
            }
            Ok(None) => (0, 0),
            Err(e) => return read_failed(&e),
        },
        (tenant, _) => match reader.verify_all(tenant.as_deref(), |r| {
            if !r.is_valid() {
                invalid.push(r);
            }
        }) {
            Ok(summary) => (summary.sessions, summary.envelopes),
            Err(e) => return read_failed(&e),
        },
    };
    // Asking for a tenant or session that has nothing is a failed check: a
    // whole chain can have been deleted.
    let missing = sessions == 0 && args.tenant.is_some();
    let valid = invalid.is_empty() && !missing;
    let written = if args.json {
        let invalid: Vec<_> = invalid
            .iter()
            .map(|r| {
                let f = r.failure.as_ref();
                json!({
                    "tenant_id": r.tenant_id, "session_id": r.session_id, "envelopes": r.envelopes,
                    "first_bad_seq": f.map(|f| f.seq), "error": f.map(|f| f.reason.as_str()),
                })
            })
            .collect();
        writeln!(
            out,
            "{}",
            json!({"valid": valid, "sessions": sessions, "envelopes": envelopes, "invalid": invalid,
                   "error": missing.then_some("no envelopes match the given tenant/session")})
        )
    } else {
        let mut text = String::new();
        for r in &invalid {
            if let Some(f) = &r.failure {
                text.push_str(&format!(
                    "INVALID tenant={:?} session={:?} first_bad_seq={}: {}\n",
                    r.tenant_id, r.session_id, f.seq, f.reason
                ));
            }
        }
        if missing {
            text.push_str("INVALID no envelopes match the given tenant/session\n");
        }
        text.push_str(&format!(
            "{}: {sessions} session(s), {envelopes} envelope(s), {} invalid\n",
            if valid { "OK" } else { "FAILED" },
            invalid.len()
        ));
        out.write_all(text.as_bytes())
    };
    if let Err(e) = written {
        eprintln!("aegis-proxy verify: cannot write the report: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    ExitCode::from(if valid { EXIT_OK } else { EXIT_INVALID })
}

fn read_failed(e: &aegis_ledger::StoreError) -> ExitCode {
    eprintln!("aegis-proxy verify: cannot read the ledger: {e}");
    ExitCode::from(EXIT_USAGE)
}

/// `aegis-proxy events export`: one session as NDJSON in wire form, in seq order.
pub fn export(args: &ExportArgs, out: &mut dyn Write) -> ExitCode {
    let reader = match LedgerReader::open_offline(&args.ledger) {
        Ok(reader) => reader,
        Err(e) => {
            eprintln!(
                "aegis-proxy events export: cannot read {}: {e}",
                args.ledger.display()
            );
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let mut out = BufWriter::new(out);
    let mut count = 0u64;
    let mut write_error = None;
    let scanned = reader.for_each_in_session(&args.tenant, &args.session, |row| {
        let line = row.to_wire_json();
        match writeln!(out, "{}", line.get()) {
            Ok(()) => {
                count += 1;
                ControlFlow::Continue(())
            }
            Err(e) => {
                write_error = Some(e);
                ControlFlow::Break(())
            }
        }
    });
    if let Err(e) = scanned {
        eprintln!("aegis-proxy events export: cannot read the ledger: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    if let Some(e) = write_error.or_else(|| out.flush().err()) {
        eprintln!("aegis-proxy events export: cannot write: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    if count == 0 {
        eprintln!(
            "aegis-proxy events export: no envelopes for tenant {:?} session {:?}",
            args.tenant, args.session
        );
        return ExitCode::from(EXIT_INVALID);
    }
    ExitCode::from(EXIT_OK)
}
