//! The writer thread: the only code that writes the database or the session table.
//!
//! Group commit: it blocks for one command, then takes every command already
//! queued (up to `max_batch`) and commits all their appends in one
//! transaction. Callers are answered only after that commit, so `(seq, hash)`
//! in hand means durable (to the configured `synchronous` level).
//!
//! It never waits for a batch to fill: waiting up to 50–200 µs for more
//! appends was measured (an A/B run, in bench/README.md) to
//! double batch sizes yet not raise throughput — the cost is per row, not per
//! commit — and to cost 20–40 % at 8 appenders.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use rusqlite::{Connection, TransactionBehavior, params};
use tokio::sync::{mpsc, oneshot};

use super::approvals;
use super::checkpoint::{CheckpointPolicy, Checkpointer, Step, WalFrames};
use super::files::Files;
use super::rebuild::{self, load_session};
use super::{CheckpointBy, Command, LedgerObserver};
use crate::append::{
    AppendError, AppendRequest, Appended, Head, Origin, Seal, SessionKind, now_unix_ms,
};
use crate::approval::Change;
use crate::digest::Digest;
use crate::envelope::Preimage;
use crate::event::EventType;
use crate::session::{Effect, Observation, SessionRules, SessionState};
use crate::table::{SessionEntry, SessionTable};

const INSERT: &str = "INSERT INTO envelopes \
    (tenant_id, session_id, seq, user_id, ts_unix_ms, event_type, tool_name, payload, prev_hash, hash, origin) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";

type Reply = oneshot::Sender<Result<Appended, AppendError>>;

/// What the writer needs of one append: the fields it stores and hashes, and
/// the reducer's view of it — computed by the caller, without the parsed
/// payload (which stays, and is freed, on the caller's thread).
#[derive(Debug)]
pub(super) struct Entry {
    tenant_id: String,
    user_id: String,
    session_id: String,
    ts_unix_ms: i64,
    event_type: EventType,
    payload_text: String,
    payload_canonical: Vec<u8>,
    tool_name: Option<String>,
    pub(super) seal: Seal,
    origin: Origin,
    effect: Effect,
    /// What it does to an approval, if anything.
    approval: Option<Change>,
}

impl Entry {
    pub(super) fn new(request: AppendRequest) -> Entry {
        let AppendRequest {
            event,
            seal,
            origin,
        } = request;
        // (The seq is not known yet, and no effect holds it; an opened call
        // holds its decision's time, as a rebuild gives it.)
        let effect =
            Observation::new(0, event.ts_unix_ms, event.event_type, event.payload.value()).effect;
        let approval = Change::of(origin, event.event_type, event.payload.value());
        let tool_name = event.payload.tool_name().map(str::to_owned);
        let (payload_text, payload_canonical) = event.payload.into_parts();
        Entry {
            tenant_id: event.tenant_id,
            user_id: event.user_id,
            session_id: event.session_id,
            ts_unix_ms: event.ts_unix_ms,
            event_type: event.event_type,
            payload_text,
            payload_canonical,
            tool_name,
            seal,
            origin,
            effect,
            approval,
        }
    }

    fn preimage<'a>(&'a self, seq: u64, prev_hash: Option<&'a Digest>) -> Preimage<'a> {
        Preimage {
            tenant_id: &self.tenant_id,
            user_id: &self.user_id,
            session_id: &self.session_id,
            seq,
            ts_unix_ms: self.ts_unix_ms,
            event_type: self.event_type.as_str(),
            payload: &self.payload_canonical,
            prev_hash,
        }
    }
}

pub(super) struct Writer {
    conn: Connection,
    sessions: Arc<SessionTable>,
    detector: Arc<dyn SessionRules>,
    observer: Arc<dyn LedgerObserver>,
    max_batch: usize,
    /// Envelopes between a session's stored summaries (0: none stored).
    summary_every: u64,
    checkpoints: Option<Checkpoints>,
    files: Files,
    /// Why the last commit or probe could not record, until one succeeds.
    fault: Option<String>,
}

/// The WAL's upkeep (see `checkpoint`).
struct Checkpoints {
    thread: Checkpointer,
    frames: WalFrames,
    policy: CheckpointPolicy,
    claim: Claim,
}

/// Where the writer's claim on the current cycle stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    None,
    /// Claimed, but the thread was checkpointing: tried again after the
    /// next batch.
    Waiting,
    /// Checkpointed: released after the next commit, which restarts the WAL.
    Done,
}

impl Writer {
    pub(super) fn new(
        conn: Connection,
        sessions: Arc<SessionTable>,
        detector: Arc<dyn SessionRules>,
        observer: Arc<dyn LedgerObserver>,
        max_batch: usize,
        summary_every: u64,
        files: Files,
    ) -> Writer {
        Writer {
            conn,
            sessions,
            detector,
            observer,
            max_batch: max_batch.max(1),
            summary_every,
            checkpoints: None,
            files,
            fault: None,
        }
    }

    /// The files check before a commit; a failure is the fault.
    fn check_files(&mut self) -> Result<(), String> {
        let checked = self.files.check();
        if let Err(reason) = &checked {
            set_fault(&mut self.fault, &*self.observer, Some(reason.clone()));
        }
        checked
    }

    /// Readiness: the files are the ones opened and a one-row commit
    /// succeeds now.
    fn probe(&mut self) -> Result<(), String> {
        self.check_files()?;
        let written = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .and_then(|tx| {
                tx.execute(
                    "INSERT INTO probe (id, at_unix_ms) VALUES (1, ?1) \
                     ON CONFLICT (id) DO UPDATE SET at_unix_ms = excluded.at_unix_ms",
                    params![now_unix_ms()],
                )?;
                tx.commit()
            });
        match written {
            Ok(()) => {
                set_fault(&mut self.fault, &*self.observer, None);
                Ok(())
            }
            Err(e) => {
                let reason = format!("ledger is not writable: {e}");
                set_fault(&mut self.fault, &*self.observer, Some(reason.clone()));
                Err(reason)
            }
        }
    }

    /// Keeps the WAL short: `frames` must watch this writer's connection.
    pub(super) fn with_checkpoints(
        mut self,
        thread: Checkpointer,
        frames: WalFrames,
        policy: CheckpointPolicy,
    ) -> Writer {
        self.checkpoints = Some(Checkpoints {
            thread,
            frames,
            policy,
            claim: Claim::None,
        });
        self
    }

    pub(super) fn run(mut self, mut inbox: mpsc::Receiver<Command>) {
        let mut batch = Vec::with_capacity(self.max_batch);
        while let Some(first) = inbox.blocking_recv() {
            batch.push(first);
            self.drain(&mut inbox, &mut batch);
            if batch.iter().any(|c| matches!(c, Command::Shutdown)) {
                // Refuse new commands; those already queued are still served.
                inbox.close();
            }
            let committed = self.process(&mut batch);
            self.upkeep(committed);
        }
        // Stop the background thread first: TRUNCATE needs its lock.
        self.checkpoints.take();
        // Fold the whole WAL back in: a stopped ledger is one file.
        if let Err(e) = self.conn.pragma_update(None, "wal_checkpoint", "TRUNCATE") {
            tracing::warn!(error = %e, "ledger checkpoint at shutdown failed");
        }
        tracing::debug!("ledger writer stopped");
    }

    /// After a batch: wakes the checkpoint thread once the WAL has grown
    /// (and again to chase what was appended during its pass), copies the
    /// few pages it left once they are few, and past `checkpoint_pages`
    /// claims the cycle and copies whatever tail the thread has not
    /// reached; either way the next commit restarts the WAL (`committed`:
    /// this batch made one).
    fn upkeep(&mut self, committed: bool) {
        let Some(checkpoints) = &mut self.checkpoints else {
            return;
        };
        if committed && checkpoints.claim == Claim::Done {
            checkpoints.thread.release();
            checkpoints.claim = Claim::None;
        }
        let frames = checkpoints.frames.get();
        if checkpoints.policy.observe(frames) {
            checkpoints.thread.new_cycle(checkpoints.policy.cycle());
        }
        let backfill = checkpoints.thread.backfill(checkpoints.policy.cycle());
        let step = checkpoints.policy.step(frames, backfill, committed);
        if step != Step::Writer && checkpoints.claim == Claim::Waiting {
            checkpoints.thread.release();
            checkpoints.claim = Claim::None;
        }
        match step {
            Step::Nothing => {}
            Step::Background => checkpoints.thread.request(),
            Step::Writer => {
                let Some(_turn) = checkpoints.thread.claim() else {
                    // The thread is checkpointing; it starts no other now.
                    checkpoints.claim = Claim::Waiting;
                    return;
                };
                let started = Instant::now();
                match self
                    .conn
                    .wal_checkpoint_v2(None::<&str>, rusqlite::wal::CheckpointMode::PASSIVE)
                {
                    Ok((log, done)) => {
                        let took = started.elapsed();
                        self.observer.checkpointed(CheckpointBy::Writer, took);
                        tracing::debug!(
                            frames = log,
                            checkpointed = done,
                            took_us = took.as_micros(),
                            "ledger writer checkpointed the WAL's tail"
                        );
                    }
                    // Another process is checkpointing the same file.
                    Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) => {
                        tracing::debug!(error = %e, "ledger writer checkpoint skipped");
                    }
                    Err(e) => tracing::warn!(error = %e, "ledger writer checkpoint failed"),
                }
                checkpoints.policy.ran(frames);
                checkpoints.claim = Claim::Done;
            }
        }
    }

    fn drain(&self, inbox: &mut mpsc::Receiver<Command>, batch: &mut Vec<Command>) {
        while batch.len() < self.max_batch {
            match inbox.try_recv() {
                Ok(command) => batch.push(command),
                Err(_) => break,
            }
        }
    }

    /// Serves one batch; true when it committed a transaction.
    fn process(&mut self, batch: &mut Vec<Command>) -> bool {
        let started = Instant::now();
        let mut pings = Vec::new();
        let mut probes = Vec::new();
        let mut evictions = Vec::new();
        let mut entries = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        // Each entry's group, as (first, one past the last) entry index.
        let mut groups = Vec::with_capacity(batch.len());
        for command in batch.drain(..) {
            match command {
                Command::Append { entry, reply } => {
                    groups.push((entries.len(), entries.len() + 1));
                    entries.push(entry);
                    replies.push(Some(reply));
                }
                Command::AppendGroup(group) => {
                    let span = (entries.len(), entries.len() + group.len());
                    for (entry, reply) in group {
                        groups.push(span);
                        entries.push(entry);
                        replies.push(Some(reply));
                    }
                }
                Command::Ping(reply) => pings.push(reply),
                Command::Probe(reply) => probes.push(reply),
                Command::EvictIdle {
                    cutoff_unix_ms,
                    reply,
                } => evictions.push((cutoff_unix_ms, reply)),
                Command::Shutdown => {}
            }
        }
        let committed = !entries.is_empty();
        if committed {
            self.commit(&entries, &groups, &mut replies, started);
        }
        // After the batch's commit, so none of its sessions is evicted
        // between being placed and being updated.
        for (cutoff, reply) in evictions {
            let _ = reply.send(self.sessions.evict_idle(cutoff));
        }
        if !pings.is_empty() {
            let status = self.check_writable();
            for reply in pings {
                let _ = reply.send(status.clone());
            }
        }
        if !probes.is_empty() {
            let status = self.probe();
            for reply in probes {
                let _ = reply.send(status.clone());
            }
        }
        committed
    }

    fn commit(
        &mut self,
        entries: &[Box<Entry>],
        groups: &[(usize, usize)],
        replies: &mut [Option<Reply>],
        started: Instant,
    ) {
        // Heads (and kinds) as this batch moves them, and sessions loaded
        // from disk.
        let mut heads: HashMap<(&str, &str), Option<(Head, SessionKind)>> = HashMap::new();
        let mut loaded: Vec<(usize, SessionEntry)> = Vec::new();
        // (index into entries, what was appended)
        let mut placed: Vec<(usize, Appended)> = Vec::with_capacity(entries.len());
        // Sessions whose summary this batch stores, and its seq.
        let mut summarized: Vec<(usize, u64)> = Vec::new();
        let rules = self.detector.fingerprint();

        if let Err(reason) = self.check_files() {
            return fail_all(&*self.observer, replies, &reason);
        }
        let tx = match self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
        {
            Ok(tx) => tx,
            Err(e) => {
                set_fault(&mut self.fault, &*self.observer, Some(e.to_string()));
                return fail_all(&*self.observer, replies, &e.to_string());
            }
        };
        let mut failure: Option<String> = None;
        // Entries up to here belong to a group refused whole.
        let mut refused_until = 0;
        for (i, e) in entries.iter().enumerate() {
            if i < refused_until {
                continue;
            }
            let (first, end) = groups[i];
            if i == first
                && let Err(err) = check_approvals(&tx, &entries[first..end])
            {
                for reply in &mut replies[first..end] {
                    self.observer.rejected(&err);
                    if let Some(reply) = reply.take() {
                        let _ = reply.send(Err(err.clone()));
                    }
                }
                refused_until = end;
                continue;
            }
            let key = (e.tenant_id.as_str(), e.session_id.as_str());
            let current = match heads.get(&key) {
                Some(current) => *current,
                None => {
                    // The session's first envelope in this batch: its state
                    // as of its head, stored first if it is due a summary.
                    let every = self.summary_every;
                    let first = match self.sessions.batch_start(key, rules.as_ref(), every) {
                        Some(first) => Ok(Some(first)),
                        None => match load_session(&tx, key.0, key.1, &*self.detector) {
                            Ok(Some(entry)) => {
                                let first = entry.batch_start(rules.as_ref(), every);
                                loaded.push((i, entry));
                                Ok(Some(first))
                            }
                            Ok(None) => Ok(None),
                            Err(err) => Err(err.to_string()),
                        },
                    };
                    let first = first.and_then(|first| {
                        let Some(first) = first else { return Ok(None) };
                        if let Some((state, fingerprint)) = &first.summary {
                            rebuild::write(&tx, key.0, key.1, first.head, state, fingerprint)
                                .map_err(|e| e.to_string())?;
                            summarized.push((i, first.head.seq));
                        }
                        Ok(Some((first.head, first.kind)))
                    });
                    match first {
                        Ok(current) => current,
                        Err(err) => {
                            failure = Some(err);
                            break;
                        }
                    }
                }
            };
            let head = current.map(|(head, _)| head);
            let placed_at = admit(e, current.map(|(_, kind)| kind))
                .and_then(|kind| place(e.seal, head).map(|position| (kind, position)));
            let (kind, (seq, prev_hash)) = match placed_at {
                Ok(placed_at) => placed_at,
                Err(err) => {
                    self.observer.rejected(&err);
                    if let Some(reply) = replies[i].take() {
                        let _ = reply.send(Err(err));
                    }
                    heads.insert(key, current);
                    continue;
                }
            };
            let hash = match e.seal {
                Seal::Client { hash, .. } => hash,
                Seal::AtHead | Seal::Expect { .. } => e.preimage(seq, prev_hash.as_ref()).hash(),
            };
            let inserted = tx.prepare_cached(INSERT).and_then(|mut stmt| {
                stmt.execute(params![
                    e.tenant_id,
                    e.session_id,
                    i64::try_from(seq).unwrap_or(i64::MAX),
                    e.user_id,
                    e.ts_unix_ms,
                    e.event_type.as_str(),
                    e.tool_name,
                    e.payload_text,
                    prev_hash.as_ref().map(|p| &p.0[..]),
                    &hash.0[..],
                    e.origin.as_str(),
                ])
            });
            if let Err(err) = inserted {
                failure = Some(err.to_string());
                break;
            }
            if let Some(change) = &e.approval
                && let Err(err) = approvals::apply(&tx, key.0, key.1, seq, e.ts_unix_ms, change)
            {
                failure = Some(err.to_string());
                break;
            }
            heads.insert(key, Some((Head { seq, hash }, kind)));
            placed.push((i, Appended { seq, hash }));
        }

        if failure.is_none()
            && let Err(err) = tx.commit()
        {
            failure = Some(err.to_string());
        }
        // (On failure the transaction was dropped above: rolled back.)
        if let Some(reason) = failure {
            tracing::error!(error = %reason, "ledger commit failed; the batch was not recorded");
            // Our cached heads may no longer match the disk: reload on next use.
            self.sessions.lock().clear();
            set_fault(&mut self.fault, &*self.observer, Some(reason.clone()));
            return fail_all(&*self.observer, replies, &reason);
        }
        set_fault(&mut self.fault, &*self.observer, None);

        {
            let now = now_unix_ms();
            // Rules that changed during the batch: its states are mixed.
            let rules = rules.filter(|before| self.detector.fingerprint() == Some(*before));
            let mut tenants = self.sessions.lock();
            for (i, entry) in loaded {
                let e = &entries[i];
                tenants
                    .entry(e.tenant_id.as_str().into())
                    .or_default()
                    .insert(e.session_id.as_str().into(), entry);
            }
            for &(i, appended) in &placed {
                let e = &entries[i];
                // Allocate keys only for sessions not seen before.
                let sessions = match tenants.get_mut(e.tenant_id.as_str()) {
                    Some(sessions) => sessions,
                    None => tenants.entry(e.tenant_id.as_str().into()).or_default(),
                };
                let entry = match sessions.get_mut(e.session_id.as_str()) {
                    Some(entry) => entry,
                    None => sessions
                        .entry(e.session_id.as_str().into())
                        .or_insert_with(|| SessionEntry {
                            head: appended.into(),
                            kind: SessionKind::from_first(Some(e.origin)),
                            state: SessionState::new(&*self.detector),
                            last_used_unix_ms: now,
                            folded_under: rules,
                            summarized_seq: None,
                        }),
                };
                entry.head = appended.into();
                entry.last_used_unix_ms = now;
                if entry.folded_under != rules {
                    entry.folded_under = None;
                }
                let observation = Observation {
                    seq: appended.seq,
                    ts_unix_ms: e.ts_unix_ms,
                    effect: e.effect.clone(),
                };
                entry.state.apply(&observation, &*self.detector);
            }
            for (i, seq) in summarized {
                let e = &entries[i];
                if let Some(entry) = tenants
                    .get_mut(e.tenant_id.as_str())
                    .and_then(|s| s.get_mut(e.session_id.as_str()))
                {
                    entry.summarized_seq = Some(seq);
                }
            }
        }
        let event_types: Vec<EventType> =
            placed.iter().map(|&(i, _)| entries[i].event_type).collect();
        self.observer.committed(&event_types, started.elapsed());
        for (i, appended) in placed {
            if let Some(reply) = replies[i].take() {
                let _ = reply.send(Ok(appended));
            }
        }
    }

    /// Takes and releases the write lock: proves the file is writable now.
    fn check_writable(&self) -> Result<(), String> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE; ROLLBACK;")
            .map_err(|e| format!("ledger is not writable: {e}"))
    }
}

/// Refuses a group (or a lone append) whose approval changes break the
/// approvals' rules, before any of it is placed: none of it is recorded.
/// A release is checked against the proposal before it in its group.
fn check_approvals(tx: &Connection, group: &[Box<Entry>]) -> Result<(), AppendError> {
    for (k, e) in group.iter().enumerate() {
        let Some(change) = &e.approval else {
            continue;
        };
        let proposal = k
            .checked_sub(1)
            .map(|p| &group[p])
            .filter(|p| p.tenant_id == e.tenant_id && p.session_id == e.session_id)
            .and_then(|p| match &p.effect {
                Effect::Proposal {
                    tool_name,
                    args_digest,
                } => Some((&**tool_name, args_digest)),
                _ => None,
            });
        approvals::check(
            tx,
            &e.tenant_id,
            &e.session_id,
            e.ts_unix_ms,
            change,
            proposal,
        )
        .map_err(AppendError::Approval)?;
    }
    Ok(())
}

/// Records whether the writer can record, logging and reporting each
/// change once (not every refused batch).
fn set_fault(current: &mut Option<String>, observer: &dyn LedgerObserver, fault: Option<String>) {
    match (&*current, &fault) {
        (None, Some(reason)) => {
            tracing::error!(
                error = %reason,
                "the ledger cannot record: every call it would record is refused until it can"
            );
            observer.writable(false);
        }
        (Some(_), None) => {
            tracing::warn!("the ledger records again");
            observer.writable(true);
        }
        _ => {}
    }
    *current = fault;
}

/// Answers every reply not yet answered with the same storage failure.
fn fail_all(observer: &dyn LedgerObserver, replies: &mut [Option<Reply>], reason: &str) {
    let error = AppendError::Storage(reason.to_owned());
    for reply in replies.iter_mut().filter_map(Option::take) {
        observer.rejected(&error);
        let _ = reply.send(Err(error.clone()));
    }
}

/// Whether `e`'s origin may write its session, of `kind` (`None`: the
/// session has no envelopes yet, and `e` would start it); the session's kind
/// once `e` is in.
fn admit(e: &Entry, kind: Option<SessionKind>) -> Result<SessionKind, AppendError> {
    let session = || format!("session {:?} of tenant {:?}", e.session_id, e.tenant_id);
    match kind {
        Some(kind) if kind.admits(e.origin) => Ok(kind),
        None if e.origin != Origin::Operator => Ok(SessionKind::from_first(Some(e.origin))),
        None => Err(AppendError::WrongKind {
            reason: format!(
                "{} has no envelopes: there is no session to act on",
                session()
            ),
            kind: None,
        }),
        Some(kind) => Err(AppendError::WrongKind {
            reason: match e.origin {
                Origin::Client => format!(
                    "{} is {kind}: it is enforced inline, and only the sidecar records it; \
                     POST /v1/events appends only to client-recorded sessions",
                    session()
                ),
                Origin::Sidecar | Origin::Operator => format!(
                    "{} is {kind} (by /v1/events): the sidecar does not enforce into it; \
                     its calls need a session of their own",
                    session()
                ),
            },
            kind: Some(kind),
        }),
    }
}

/// Where an append sealed as `seal` goes in a chain whose head is `head`:
/// its seq and prev_hash.
fn place(seal: Seal, head: Option<Head>) -> Result<(u64, Option<Digest>), AppendError> {
    let next = head.map_or(0, |h| h.seq + 1);
    let head_hash = head.map(|h| h.hash);
    let (seq, prev_hash) = match seal {
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
