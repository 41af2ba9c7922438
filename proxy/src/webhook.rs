//! The approval webhook (`approval.webhook_url`): a JSON POST when an
//! approval is requested and when it is decided (approved, denied or
//! expired), so a team can route it to chat or paging (`README.md`,
//! "Approvals").
//!
//! It never holds up a call: events go into a bounded queue (a full queue
//! drops the event, counted), and one task delivers them in order, each
//! with a timeout and retried with backoff (1, 2, 4, 8 s) before it is
//! given up on (counted, logged). The body is `{"type": "approval.requested"
//! | "approval.decided", "approval": {...}}`, the approval as
//! `GET /v1/approvals/{id}` shows it, read when the event is delivered.

use std::time::Duration;

use aegis_ledger::{LedgerReader, now_unix_ms};
use bytes::Bytes;
use http::{Method, Request, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use prometheus::IntCounterVec;
use serde_json::json;
use tokio::sync::{mpsc, watch};

/// Events waiting for delivery; more are dropped (and counted).
const QUEUE: usize = 1024;
/// One attempt: connect, send, answer.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Waits between attempts; one more attempt than waits.
const BACKOFF: [Duration; 4] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
];

/// What happened to an approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Requested,
    Decided,
}

impl Event {
    fn as_str(self) -> &'static str {
        match self {
            Event::Requested => "approval.requested",
            Event::Decided => "approval.decided",
        }
    }
}

/// Where events are sent; cheap to clone. [`Webhook::off`] sends nothing.
#[derive(Debug, Clone)]
pub struct Webhook {
    queue: Option<mpsc::Sender<(Event, String)>>,
    /// `aegis_approval_webhooks_total{result}`.
    results: Option<IntCounterVec>,
}

impl Webhook {
    /// No webhook configured.
    pub fn off() -> Webhook {
        Webhook {
            queue: None,
            results: None,
        }
    }

    /// Starts delivering to `url` until `shutdown`; `results` counts
    /// `delivered`, `failed` and `dropped`.
    pub fn start(
        url: Uri,
        reader: LedgerReader,
        results: IntCounterVec,
        shutdown: watch::Receiver<bool>,
    ) -> Webhook {
        let (tx, rx) = mpsc::channel(QUEUE);
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(ATTEMPT_TIMEOUT));
        http.enforce_http(false);
        let tls = crate::tls::client_config(crate::tls::webpki_root_store(), None)
            .expect("a client configuration without a certificate always builds");
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        tokio::spawn(deliver(
            Delivery {
                url,
                reader,
                client,
                results: results.clone(),
            },
            rx,
            shutdown,
        ));
        Webhook {
            queue: Some(tx),
            results: Some(results),
        }
    }

    /// Queues `event` for approval `id`; never waits.
    pub fn send(&self, event: Event, id: &str) {
        let Some(queue) = &self.queue else {
            return;
        };
        if queue.try_send((event, id.to_owned())).is_err() {
            if let Some(results) = &self.results {
                results.with_label_values(&["dropped"]).inc();
            }
            tracing::warn!(
                approval_id = id,
                event = event.as_str(),
                "approval webhook queue full: event dropped"
            );
        }
    }
}

struct Delivery {
    url: Uri,
    reader: LedgerReader,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    results: IntCounterVec,
}

async fn deliver(
    delivery: Delivery,
    mut queue: mpsc::Receiver<(Event, String)>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (event, id) = tokio::select! {
            next = queue.recv() => match next {
                Some(next) => next,
                None => return,
            },
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let reader = delivery.reader.clone();
        let lookup = id.clone();
        let approval = match tokio::task::spawn_blocking(move || reader.approval(&lookup)).await {
            Ok(Ok(Some(approval))) => approval,
            _ => {
                tracing::warn!(approval_id = %id, "approval webhook: the approval could not be read");
                delivery.results.with_label_values(&["failed"]).inc();
                continue;
            }
        };
        let body = json!({
            "type": event.as_str(),
            "approval": crate::gate::approval::to_json(&approval, now_unix_ms()),
        })
        .to_string();
        let mut delivered = false;
        for wait in std::iter::once(None).chain(BACKOFF.iter().map(Some)) {
            if let Some(wait) = wait {
                tokio::select! {
                    () = tokio::time::sleep(*wait) => {}
                    _ = shutdown.wait_for(|stop| *stop) => return,
                }
            }
            match attempt(&delivery, &body).await {
                Ok(()) => {
                    delivered = true;
                    break;
                }
                Err(e) => {
                    tracing::debug!(approval_id = %id, error = %e, "approval webhook attempt failed")
                }
            }
        }
        let result = if delivered { "delivered" } else { "failed" };
        delivery.results.with_label_values(&[result]).inc();
        if !delivered {
            tracing::warn!(approval_id = %id, event = event.as_str(), url = %delivery.url, "approval webhook: gave up after every retry");
        }
    }
}

/// One POST; `Ok` on a 2xx answer.
async fn attempt(delivery: &Delivery, body: &str) -> Result<(), String> {
    let request = Request::builder()
        .method(Method::POST)
        .uri(delivery.url.clone())
        .header(header::CONTENT_TYPE, "application/json")
        .header(
            header::USER_AGENT,
            concat!("aegis-proxy/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(Bytes::from(body.to_owned())))
        .map_err(|e| e.to_string())?;
    let exchange = async {
        let response = delivery
            .client
            .request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        // Read (and drop) the answer so the connection can be reused.
        let _ = response.into_body().collect().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {status}"))
        }
    };
    tokio::time::timeout(ATTEMPT_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer within {ATTEMPT_TIMEOUT:?}"))?
}
