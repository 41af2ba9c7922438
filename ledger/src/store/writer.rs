//! The writer thread: the only code that writes the database or the session table.
//!
//! Group commit: it blocks for one command, then takes every command already
//! queued (up to `max_batch`) and commits all their appends in one
//! transaction. Callers are answered only after that commit, so `(seq, hash)`
//! in hand means durable (to the configured `synchronous` level).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use rusqlite::{Connection, TransactionBehavior, params};
use tokio::sync::{mpsc, oneshot};

use super::reader::load_session;
use super::{Command, LedgerObserver};
use crate::append::{AppendError, AppendRequest, Appended, Head, Seal};
use crate::event::EventType;
use crate::session::{Effect, LoopDetector, Observation, SessionState};
use crate::table::{SessionEntry, SessionTable};

const INSERT: &str = "INSERT INTO envelopes \
    (tenant_id, session_id, seq, user_id, ts_unix_ms, event_type, tool_name, payload, prev_hash, hash) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";

type SessionKey = (Box<str>, Box<str>);

type Reply = oneshot::Sender<Result<Appended, AppendError>>;

/// An append taken off the queue.
type Queued = (Box<AppendRequest>, Effect, Reply);

/// An append placed in the chain and inserted, waiting for the commit.
struct Placed {
    key: SessionKey,
    appended: Appended,
    observation: Observation,
    event_type: EventType,
    reply: oneshot::Sender<Result<Appended, AppendError>>,
}

pub(super) struct Writer {
    conn: Connection,
    sessions: Arc<SessionTable>,
    detector: Arc<dyn LoopDetector>,
    observer: Arc<dyn LedgerObserver>,
    max_batch: usize,
}

impl Writer {
    pub(super) fn new(
        conn: Connection,
        sessions: Arc<SessionTable>,
        detector: Arc<dyn LoopDetector>,
        observer: Arc<dyn LedgerObserver>,
        max_batch: usize,
    ) -> Writer {
        Writer {
            conn,
            sessions,
            detector,
            observer,
            max_batch,
        }
    }

    pub(super) fn run(mut self, mut inbox: mpsc::Receiver<Command>) {
        let mut batch = Vec::with_capacity(self.max_batch);
        while let Some(first) = inbox.blocking_recv() {
            batch.push(first);
            while batch.len() < self.max_batch {
                match inbox.try_recv() {
                    Ok(command) => batch.push(command),
                    Err(_) => break,
                }
            }
            if batch.iter().any(|c| matches!(c, Command::Shutdown)) {
                // Refuse new commands; those already queued are still served.
                inbox.close();
            }
            self.process(&mut batch);
        }
        if let Err(e) = self.conn.pragma_update(None, "wal_checkpoint", "TRUNCATE") {
            tracing::warn!(error = %e, "ledger checkpoint at shutdown failed");
        }
        tracing::debug!("ledger writer stopped");
    }

    fn process(&mut self, batch: &mut Vec<Command>) {
        let started = Instant::now();
        let mut pings = Vec::new();
        let mut appends = Vec::with_capacity(batch.len());
        for command in batch.drain(..) {
            match command {
                Command::Append {
                    request,
                    effect,
                    reply,
                } => appends.push((request, effect, reply)),
                Command::Ping(reply) => pings.push(reply),
                Command::Shutdown => {}
            }
        }
        if !appends.is_empty() {
            self.commit(appends, started);
        }
        if !pings.is_empty() {
            let status = self.check_writable();
            for reply in pings {
                let _ = reply.send(status.clone());
            }
        }
    }

    fn commit(&mut self, appends: Vec<Queued>, started: Instant) {
        // Heads as this batch moves them, and sessions loaded from disk.
        let mut heads: HashMap<SessionKey, Option<Head>> = HashMap::new();
        let mut loaded: HashMap<SessionKey, SessionEntry> = HashMap::new();
        let mut placed: Vec<Placed> = Vec::with_capacity(appends.len());

        let tx = match self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
        {
            Ok(tx) => tx,
            Err(e) => {
                let reason = e.to_string();
                return fail_all(&*self.observer, appends.into_iter().map(|a| a.2), &reason);
            }
        };
        let mut failure: Option<String> = None;
        let mut rest = appends.into_iter();
        for (request, effect, reply) in rest.by_ref() {
            let e = &request.event;
            let key: SessionKey = (e.tenant_id.as_str().into(), e.session_id.as_str().into());
            let head = match heads.get(&key) {
                Some(head) => *head,
                None => match self.sessions.head(&e.tenant_id, &e.session_id) {
                    Some(head) => Some(head),
                    None => match load_session(&tx, &e.tenant_id, &e.session_id, &*self.detector) {
                        Ok(Some(entry)) => {
                            let head = entry.head;
                            loaded.insert(key.clone(), entry);
                            Some(head)
                        }
                        Ok(None) => None,
                        Err(err) => {
                            let error = AppendError::Storage(err.to_string());
                            self.observer.rejected(&error);
                            let _ = reply.send(Err(error));
                            failure = Some(err.to_string());
                            break;
                        }
                    },
                },
            };
            let (seq, prev_hash) = match place(&request, head) {
                Ok(position) => position,
                Err(err) => {
                    self.observer.rejected(&err);
                    let _ = reply.send(Err(err));
                    heads.insert(key, head);
                    continue;
                }
            };
            let hash = match request.seal {
                Seal::Client { hash, .. } => hash,
                Seal::AtHead | Seal::Expect { .. } => {
                    request.preimage(seq, prev_hash.as_ref()).hash()
                }
            };
            let inserted = tx.prepare_cached(INSERT).and_then(|mut stmt| {
                stmt.execute(params![
                    e.tenant_id,
                    e.session_id,
                    i64::try_from(seq).unwrap_or(i64::MAX),
                    e.user_id,
                    e.ts_unix_ms,
                    e.event_type.as_str(),
                    e.payload.tool_name(),
                    e.payload.text(),
                    prev_hash.as_ref().map(|p| &p.0[..]),
                    &hash.0[..],
                ])
            });
            if let Err(err) = inserted {
                failure = Some(err.to_string());
                let _ = reply.send(Err(AppendError::Storage(err.to_string())));
                break;
            }
            heads.insert(key.clone(), Some(Head { seq, hash }));
            placed.push(Placed {
                key,
                appended: Appended { seq, hash },
                observation: Observation {
                    seq,
                    ts_unix_ms: e.ts_unix_ms,
                    effect,
                },
                event_type: e.event_type,
                reply,
            });
        }

        if failure.is_none() {
            if let Err(err) = tx.commit() {
                failure = Some(err.to_string());
            }
        } else {
            drop(tx); // rolls back
        }
        if let Some(reason) = failure {
            tracing::error!(error = %reason, "ledger commit failed; the batch was not recorded");
            // Our cached heads may no longer match the disk: reload on next use.
            self.sessions.lock().clear();
            fail_all(
                &*self.observer,
                placed.into_iter().map(|p| p.reply).chain(rest.map(|a| a.2)),
                &reason,
            );
            return;
        }

        {
            let mut tenants = self.sessions.lock();
            for (key, entry) in loaded {
                tenants.entry(key.0).or_default().insert(key.1, entry);
            }
            for p in &placed {
                let sessions = tenants.entry(p.key.0.clone()).or_default();
                let entry = sessions
                    .entry(p.key.1.clone())
                    .or_insert_with(|| SessionEntry {
                        head: p.appended.into(),
                        state: SessionState::new(&*self.detector),
                    });
                entry.head = p.appended.into();
                entry.state.apply(&p.observation, &*self.detector);
            }
        }
        let event_types: Vec<EventType> = placed.iter().map(|p| p.event_type).collect();
        self.observer.committed(&event_types, started.elapsed());
        for p in placed {
            let _ = p.reply.send(Ok(p.appended));
        }
    }

    /// Takes and releases the write lock: proves the file is writable now.
    fn check_writable(&self) -> Result<(), String> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE; ROLLBACK;")
            .map_err(|e| format!("ledger is not writable: {e}"))
    }
}

/// Answers every reply with the same storage failure.
fn fail_all(
    observer: &dyn LedgerObserver,
    replies: impl Iterator<Item = oneshot::Sender<Result<Appended, AppendError>>>,
    reason: &str,
) {
    let error = AppendError::Storage(reason.to_owned());
    for reply in replies {
        observer.rejected(&error);
        let _ = reply.send(Err(error.clone()));
    }
}

/// Where `request` goes in a chain whose head is `head`: its seq and prev_hash.
fn place(
    request: &AppendRequest,
    head: Option<Head>,
) -> Result<(u64, Option<crate::digest::Digest>), AppendError> {
    let next = head.map_or(0, |h| h.seq + 1);
    let head_hash = head.map(|h| h.hash);
    let (seq, prev_hash) = match request.seal {
        Seal::AtHead => return Ok((next, head_hash)),
        Seal::Expect { seq, prev_hash } | Seal::Client { seq, prev_hash, .. } => (seq, prev_hash),
    };
    if seq != next {
        let reason = match head {
            Some(h) => format!(
                "seq {seq} does not extend the chain: its head is seq {}, so the next seq is {next}",
                h.seq
            ),
            None => format!(
                "seq {seq} does not start the chain: the session has no envelopes, so the next seq is 0"
            ),
        };
        return Err(AppendError::Conflict { reason, head });
    }
    if let (Some(given), Some(expected)) = (prev_hash, head_hash)
        && given != expected
    {
        return Err(AppendError::Conflict {
            reason: format!(
                "prev_hash {given} is not the hash of seq {} ({expected})",
                seq - 1
            ),
            head,
        });
    }
    Ok((seq, head_hash))
}
