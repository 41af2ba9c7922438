//! The ready file: the bound listeners' addresses, written once the sidecar
//! serves and removed when it stops.

use std::net::SocketAddr;
use std::path::Path;

use crate::config::Config;

pub(super) fn remove_ready_file(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove the ready file")
        }
    }
}

/// The bound listeners' addresses, for the ready file.
pub(super) struct ReadyAddrs {
    pub admin: SocketAddr,
    pub metrics: Option<SocketAddr>,
    pub mcp: Option<SocketAddr>,
    pub forward: Option<SocketAddr>,
}

/// Writes `{"admin": "ip:port", "metrics": "ip:port"|null, "mcp":
/// "ip:port"|null, "forward": "ip:port"|null, "pid": n, "ledger": "path"}`
/// atomically (temporary file, then rename), so a reader never sees half a
/// file.
pub(super) fn write_ready_file(
    path: &Path,
    addrs: &ReadyAddrs,
    config: &Config,
) -> std::io::Result<()> {
    let body = serde_json::json!({
        "admin": addrs.admin.to_string(),
        "metrics": addrs.metrics.map(|a| a.to_string()),
        "mcp": addrs.mcp.map(|a| a.to_string()),
        "forward": addrs.forward.map(|a| a.to_string()),
        "pid": std::process::id(),
        "ledger": config.ledger.path.display().to_string(),
    });
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{body}\n"))?;
    std::fs::rename(&tmp, path)
}
