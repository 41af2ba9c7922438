//! `GET /v1/manifest` and `POST /v1/manifest/reload`: the live manifest's
//! status, and a reload on demand.
//!
//! The status answer always has every key (`null` when no manifest is
//! configured or loaded); times are Unix epoch milliseconds. A failed reload
//! answers 422 so scripts notice; the old manifest stays live.

use aegis_policy::{ManifestStatus, ReloadOutcome};
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};

use super::error::json_response;
use super::{AdminState, ApiError};
use crate::metrics::Metrics;

/// `GET /v1/manifest`.
pub fn status(state: &AdminState) -> Response<Full<Bytes>> {
    json_response(StatusCode::OK, &status_json(&state.manifests.status()))
}

/// `POST /v1/manifest/reload`: `{"result": ..., ...status}`; 200 when the
/// manifest was reloaded or unchanged (or none is configured), 422 when the
/// new file is invalid or unreadable.
pub async fn reload(state: &AdminState) -> Result<Response<Full<Bytes>>, ApiError> {
    let store = state.manifests.clone();
    // Reading the file (and waiting for a reload in progress) blocks.
    let (outcome, status) = tokio::task::spawn_blocking(move || {
        let outcome = store.reload();
        (outcome, store.status())
    })
    .await
    .map_err(|e| ApiError::Internal(format!("reload task failed: {e}")))?;
    report(&outcome, &state.metrics, "api");
    let code = match outcome {
        ReloadOutcome::Failed(_) => StatusCode::UNPROCESSABLE_ENTITY,
        ReloadOutcome::Reloaded(_) | ReloadOutcome::Unchanged(_) | ReloadOutcome::NotConfigured => {
            StatusCode::OK
        }
    };
    let mut body = status_json(&status);
    body["result"] = json!(outcome.as_str());
    if let ReloadOutcome::Failed(error) = &outcome {
        body["error"] = json!(error);
    }
    Ok(json_response(code, &body))
}

/// Logs a reload attempt and records it in the metrics; `trigger` says what
/// asked for it (`watch`, `sighup`, `api`). The one place every reload path
/// reports through.
pub fn report(outcome: &ReloadOutcome, metrics: &Metrics, trigger: &'static str) {
    metrics.manifest.record_reload(outcome);
    match outcome {
        ReloadOutcome::Reloaded(live) => tracing::info!(
            trigger,
            generation = live.generation,
            sha256 = %live.sha256,
            path = %live.path.display(),
            "manifest reloaded"
        ),
        ReloadOutcome::Unchanged(live) => tracing::debug!(
            trigger,
            generation = live.generation,
            sha256 = %live.sha256,
            "manifest unchanged"
        ),
        ReloadOutcome::Failed(error) => tracing::warn!(
            trigger,
            error = %error,
            "manifest reload failed; the previous manifest stays live"
        ),
        ReloadOutcome::NotConfigured => {
            tracing::info!(trigger, "no manifest configured; nothing to reload")
        }
    }
}

fn status_json(status: &ManifestStatus) -> Value {
    json!({
        "path": status.path.as_ref().map(|p| p.display().to_string()),
        "sha256": status.sha256,
        "generation": status.generation,
        "loaded_at": status.loaded_at_unix_ms,
        "name": status.name,
        "version": status.version,
        "last_error": status.last_error,
        "last_result": status.last_result,
        "last_attempt_at": status.last_attempt_unix_ms,
        "last_attempt_sha256": status.last_attempt_sha256,
        "reloads_ok": status.reloads_ok,
        "reloads_unchanged": status.reloads_unchanged,
        "reloads_failed": status.reloads_failed,
    })
}
