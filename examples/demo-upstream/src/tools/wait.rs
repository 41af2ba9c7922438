//! `slow` and `progress`: tools that take time, and stop early when the
//! server shuts down or the SSE client goes away.

use std::time::Duration;

use serde::Serialize;
use serde_json::value::RawValue;

use super::{Run, ToolOutput};

/// The longest `slow` wait: a minute covers any timeout test.
const MAX_SLOW_MS: u64 = 60_000;
/// The most `progress` steps: twenty seconds of notifications.
const MAX_PROGRESS_STEPS: u32 = 1_000;
/// The pause after each progress notification, so each one arrives alone.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(20);

impl Run<'_> {
    /// `slow`: waits `ms`, then says so.
    pub(super) async fn slow(&self, ms: u64) -> ToolOutput<'static> {
        if ms > MAX_SLOW_MS {
            return ToolOutput::error(format!("ms must be at most {MAX_SLOW_MS}, not {ms}"));
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(ms)) => {
                ToolOutput::ok(format!("slept {ms} ms"))
            }
            why = self.interrupted() => ToolOutput::error(format!("slow: interrupted: {why}")),
        }
    }

    /// `progress`: with a progress token and an SSE answer, sends `steps`
    /// `notifications/progress` on this POST's stream before the result.
    pub(super) async fn progress(&self, steps: u32) -> ToolOutput<'static> {
        if steps > MAX_PROGRESS_STEPS {
            return ToolOutput::error(format!(
                "steps must be at most {MAX_PROGRESS_STEPS}, not {steps}"
            ));
        }
        // A token must be a string or a number (it goes into SSE data as is).
        let token = self.progress_token.filter(|t| is_token(t));
        if let (Some(events), Some(token)) = (self.events, token) {
            for step in 1..=steps {
                let params = ProgressParams {
                    progress_token: token,
                    progress: step,
                    total: steps,
                };
                if events
                    .notify("notifications/progress", &params)
                    .await
                    .is_err()
                {
                    return ToolOutput::error("progress: the client went away");
                }
                tokio::select! {
                    () = tokio::time::sleep(PROGRESS_INTERVAL) => {}
                    why = self.interrupted() => {
                        return ToolOutput::error(format!("progress: interrupted: {why}"));
                    }
                }
            }
        }
        ToolOutput::ok(format!("completed {steps} steps"))
    }

    /// Resolves when the server shuts down or this POST's SSE client leaves
    /// (a JSON client leaving drops the whole call instead).
    async fn interrupted(&self) -> &'static str {
        let mut shutdown = self.shutdown.clone();
        let stopping = async move {
            // An error means the server is gone: also a reason to stop.
            let _ = shutdown.wait_for(|stop| *stop).await;
        };
        match self.events {
            Some(events) => tokio::select! {
                () = stopping => "the server is shutting down",
                () = events.closed() => "the client went away",
            },
            None => {
                stopping.await;
                "the server is shutting down"
            }
        }
    }
}

fn is_token(token: &RawValue) -> bool {
    token
        .get()
        .as_bytes()
        .first()
        .is_some_and(|b| *b == b'"' || *b == b'-' || b.is_ascii_digit())
}

#[derive(Serialize)]
struct ProgressParams<'a> {
    #[serde(rename = "progressToken")]
    progress_token: &'a RawValue,
    progress: u32,
    total: u32,
}
