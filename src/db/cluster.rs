//! A cluster member's committer (`segd serve --cluster`): every node follows one shared
//! log (a JetStream stream), and any node takes writes.
//!
//! The shared log is the log of record; each node's own write-ahead log is a copy of it
//! under the same sequences (so a node restarts from its own snapshot and log, then
//! follows the shared log from there). A node's write:
//! 1. is checked against the node's published version, at sequence `after`;
//! 2. is stored in the shared log as record `after + 1` only if that is still the log's
//!    next record ([`SharedLog::publish`]: JetStream's expected last sequence). So every
//!    record in the log was checked against exactly the state before it, and applies the
//!    same way on every node;
//! 3. if another node's record took that place first ([`PublishFailure::Behind`]), the
//!    write waits here (the committer goes on applying what the follower delivers) until
//!    this node has applied the records that beat it, and is checked and tried again: a
//!    write that is no longer valid then (two nodes raced for one segment id) gets its
//!    error, and only the writer's client sees it;
//! 4. once stored, it is logged here and applied at once, so the client's answer comes
//!    after its own node's apply reached that sequence (read-your-writes on that node).
//!
//! The follower delivers every record of the log in order through
//! [`super::Db::submit_replicated`], this node's own included: a record at or below the
//! applied sequence is acknowledged without applying it again; the next one is checked,
//! logged and applied; a gap or a record this node's check refuses stops writes (the
//! node diverged: rebuild its data dir).
//!
//! A write the log did not confirm within its patience is answered
//! [`DbError::NotShared`]: nothing of it is applied or logged here, and nothing is left to
//! reconcile (unlike the primary's log-then-publish path, `super::sink`). If the record
//! was in fact stored (an acknowledgement lost), every node applies it when it follows.

use std::collections::VecDeque;
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Committed, Committer, DbError, Done, Fault, Item, Replicated, Rounds};
use crate::engine::{Engine, Mutation, Outcome};
use crate::persist::record;

/// The log every cluster member follows and writes to.
pub trait SharedLog: Send + Sync + std::fmt::Debug {
    /// At start-up, before anything is applied: Err when the log cannot be this data dir's
    /// (it ends before `last`, the data dir's last sequence: another log, or one reset).
    fn open(&self, last: u64) -> Result<(), String>;
    /// Largest record it can store, in bytes: a bigger one is refused before it is logged.
    fn max_record_bytes(&self) -> usize;
    /// Stores `records` as the log's records `after + 1`, `after + 2`, …, in order, each
    /// only if the log's last record is its predecessor (sequence `after` for the first,
    /// this node's previous record for the others): a record another node stored first
    /// is [`PublishFailure::Behind`], never an interleaving. A retry never stores a record
    /// twice.
    fn publish(&self, after: u64, records: &[&[u8]]) -> Published;
    /// How long a write waits for its turn behind other nodes' records.
    fn patience(&self) -> Duration;
}

/// What [`SharedLog::publish`] did: the first `stored` records are in the log.
#[derive(Debug, PartialEq)]
pub struct Published {
    pub stored: usize,
    /// Why the rest are not (None when all are).
    pub failure: Option<PublishFailure>,
}

#[derive(Debug, PartialEq)]
pub enum PublishFailure {
    /// The log holds records this node has not applied yet.
    Behind,
    /// Not stored (the log unreachable for its patience, or refusing): the reason.
    Failed(String),
}

/// How long a write that lost a race waits for the records that beat it before it is
/// tried again anyway (the follower may be slower than the next attempt).
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// Since when this node's oldest waiting write has been losing races.
struct Behind {
    since: Instant,
    /// The applied sequence at the last attempt: a new one is worth trying.
    at: u64,
    tried: Instant,
}

pub(super) fn cluster_loop(
    rx: mpsc::Receiver<Item>,
    c: Committer,
    log: Arc<dyn SharedLog>,
    on_commit: impl Fn(u64),
) {
    let mut rounds = Rounds::default();
    // This node's writes not in the log yet, oldest first.
    let mut waiting: VecDeque<(Mutation, Done)> = VecDeque::new();
    let mut behind: Option<Behind> = None;
    loop {
        rounds.retired.retain(|v| Arc::strong_count(v) > 1);
        // Blocks when there is nothing to do; waits a little for the follower when this
        // node's writes lost a race; takes what is queued when its writes can go now.
        let first = if waiting.is_empty() {
            match rx.recv() {
                Ok(item) => Some(item),
                Err(_) => break,
            }
        } else if behind.is_some() {
            match rx.recv_timeout(RETRY_PAUSE) {
                Ok(item) => Some(item),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match rx.try_recv() {
                Ok(item) => Some(item),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => break,
            }
        };
        let mut replicated = vec![];
        let mut taken = 0;
        let mut next = first;
        while let Some(item) = next {
            match item {
                Item::Write(m, done) => waiting.push_back((m, done)),
                Item::Replicated(r) => replicated.push(r),
            }
            taken += 1;
            next = if taken < c.opts.max_group { rx.try_recv().ok() } else { None };
        }
        if let Some(f) = c.fault.borrow().clone() {
            for r in replicated {
                (r.done)(Err(DbError::Poisoned(f.clone())));
            }
            for (_, done) in waiting.drain(..) {
                done(Err(DbError::Poisoned(f.clone())));
            }
            continue;
        }
        apply_replicated(&c, &mut rounds, replicated, &on_commit);
        if waiting.is_empty() {
            behind = None;
            continue;
        }
        if let Some(b) = &behind {
            let applied = c.engine.read().sequence();
            if b.since.elapsed() >= log.patience() {
                let why = format!(
                    "other nodes' records kept taking the shared log's next sequence for {:?}; this node has \
                     applied up to {applied} (is it following the log?)",
                    log.patience()
                );
                for (_, done) in waiting.drain(..) {
                    done(Err(DbError::NotShared(why.clone())));
                }
                behind = None;
                continue;
            }
            if applied == b.at && b.tried.elapsed() < RETRY_PAUSE {
                continue;
            }
        }
        let lost = write_round(&c, &mut rounds, &mut waiting, &*log, &on_commit);
        behind = match (lost, behind) {
            (None, _) => None,
            (Some(at), Some(b)) => Some(Behind { at, tried: Instant::now(), ..b }),
            (Some(at), None) => Some(Behind { since: Instant::now(), at, tried: Instant::now() }),
        };
    }
    for (_, done) in waiting {
        done(Err(DbError::Closed));
    }
    rounds.finish();
}

/// Stores one group of this node's waiting writes in the log, then logs and applies what
/// it stored. Some(the applied sequence) when another node's record came first: the
/// writes not stored are back at the front of `waiting`.
fn write_round(
    c: &Committer,
    rounds: &mut Rounds,
    waiting: &mut VecDeque<(Mutation, Done)>,
    log: &dyn SharedLog,
    on_commit: &dyn Fn(u64),
) -> Option<u64> {
    let published = c.engine.read().clone();
    let after = published.sequence();
    let limit = log.max_record_bytes();
    // A group ends after a schema change: the writes after it are checked against it.
    let mut valid: Vec<(Mutation, Done)> = vec![];
    let mut encoded: Vec<Vec<u8>> = vec![];
    while valid.len() < c.opts.max_group && !valid.last().is_some_and(|(m, _)| m.changes_schema()) {
        let Some((m, done)) = waiting.pop_front() else { break };
        if let Err(e) = published.check(&m) {
            done(Err(e.into()));
            continue;
        }
        let mut buf = vec![];
        record::encode_mutation(&m, &mut buf);
        if buf.len() > limit {
            done(Err(DbError::ReplicaRecordTooLarge { bytes: buf.len(), limit }));
            continue;
        }
        valid.push((m, done));
        encoded.push(buf);
    }
    if valid.is_empty() {
        return None;
    }
    let bytes: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
    let Published { stored, failure } = log.publish(after, &bytes);
    let stored = stored.min(valid.len());
    let rest = valid.split_off(stored);
    if stored > 0 {
        let seqs: Vec<u64> = (after + 1..=after + stored as u64).collect();
        let changes: u64 = valid.iter().map(|(m, _)| m.changes()).sum();
        let mutations: Vec<&Mutation> = valid.iter().map(|(m, _)| m).collect();
        match log_and_apply(c, rounds, published, &seqs, &bytes[..stored], &mutations) {
            Ok((next, outcomes)) => {
                on_commit(after + stored as u64);
                for (((_, done), outcome), &sequence) in valid.into_iter().zip(outcomes).zip(&seqs) {
                    done(Ok(Committed { sequence, outcome }));
                }
                c.maybe_snapshot(rounds, next, changes);
            }
            Err(f) => {
                for (_, done) in valid {
                    done(Err(DbError::ApplyFailed(f.clone())));
                }
            }
        }
    }
    match failure {
        None if rest.is_empty() => None,
        None => {
            for (_, done) in rest {
                done(Err(DbError::NotShared("the shared log confirmed only part of the group".into())));
            }
            None
        }
        Some(PublishFailure::Behind) => {
            for w in rest.into_iter().rev() {
                waiting.push_front(w);
            }
            Some(c.engine.read().sequence())
        }
        Some(PublishFailure::Failed(why)) => {
            for (_, done) in rest {
                done(Err(DbError::NotShared(why.clone())));
            }
            None
        }
    }
}

/// Applies the follower's records in order: the ones already applied are acknowledged,
/// the next ones logged and applied in groups (ending after a schema change, like a
/// write group), a gap refused.
fn apply_replicated(c: &Committer, rounds: &mut Rounds, batch: Vec<Replicated>, on_commit: &dyn Fn(u64)) {
    let mut run: Vec<Replicated> = vec![];
    for r in batch {
        if let Some(f) = c.fault.borrow().clone() {
            (r.done)(Err(DbError::Poisoned(f)));
            continue;
        }
        let applied = c.engine.read().sequence() + run.len() as u64;
        if r.seq <= applied {
            (r.done)(Ok(()));
            continue;
        }
        if r.seq != applied + 1 {
            flush(c, rounds, &mut run, on_commit);
            (r.done)(Err(DbError::Replication(format!(
                "record {} of the shared log came where {} was due: records are missing",
                r.seq,
                applied + 1
            ))));
            continue;
        }
        let ends = r.mutation.changes_schema();
        run.push(r);
        if ends || run.len() >= c.opts.max_group {
            flush(c, rounds, &mut run, on_commit);
        }
    }
    flush(c, rounds, &mut run, on_commit);
}

/// Checks, logs and applies `run` (consecutive records after the applied sequence).
fn flush(c: &Committer, rounds: &mut Rounds, run: &mut Vec<Replicated>, on_commit: &dyn Fn(u64)) {
    if run.is_empty() {
        return;
    }
    let run = std::mem::take(run);
    let published = c.engine.read().clone();
    if let Some((r, e)) = run.iter().find_map(|r| published.check(&r.mutation).err().map(|e| (r, e))) {
        // Its writer checked it against the same state: this node's state or limits differ.
        let f = c.stop(Fault {
            sequence: r.seq,
            mutation: r.mutation.summary(),
            reason: format!(
                "this node refuses a record of the shared log ({e}): it diverged from the log (a different \
                 --max-segments?); rebuild its data dir"
            ),
            published: published.sequence(),
        });
        tracing::error!(error = %f, "a record of the shared log does not apply here: writes are refused");
        for r in run {
            (r.done)(Err(DbError::ApplyFailed(f.clone())));
        }
        return;
    }
    let seqs: Vec<u64> = run.iter().map(|r| r.seq).collect();
    let changes: u64 = run.iter().map(|r| r.mutation.changes()).sum();
    let result = {
        let bytes: Vec<&[u8]> = run.iter().map(|r| r.bytes.as_slice()).collect();
        let mutations: Vec<&Mutation> = run.iter().map(|r| &r.mutation).collect();
        log_and_apply(c, rounds, published, &seqs, &bytes, &mutations)
    };
    match result {
        Ok((next, _)) => {
            on_commit(*seqs.last().expect("a run is not empty"));
            for r in run {
                (r.done)(Ok(()));
            }
            c.maybe_snapshot(rounds, next, changes);
        }
        Err(f) => {
            for r in run {
                (r.done)(Err(DbError::ApplyFailed(f.clone())));
            }
        }
    }
}

/// Logs records `seqs` of the shared log here (the local log must take them under the
/// same sequences) and applies them; Err (writes stopped) when either fails.
fn log_and_apply(
    c: &Committer,
    rounds: &mut Rounds,
    published: Arc<Engine>,
    seqs: &[u64],
    bytes: &[&[u8]],
    mutations: &[&Mutation],
) -> Result<(Arc<Engine>, Vec<Outcome>), Arc<Fault>> {
    let fault = |reason: String| Fault {
        sequence: seqs[0],
        mutation: mutations[0].summary(),
        reason,
        published: published.sequence(),
    };
    let local = match c.wal.append_batch(bytes) {
        Ok(local) => local,
        Err(e) => {
            let f = c.stop(fault(format!(
                "stored in the shared log but not in this node's log ({e}); restart this node"
            )));
            tracing::error!(error = %f, "logging records of the shared log failed: writes are refused");
            return Err(f);
        }
    };
    if local != seqs {
        let f = c.stop(fault(format!(
            "this node's log took records {}..={} of the shared log as {:?}: the data dir and the log disagree",
            seqs[0],
            seqs[seqs.len() - 1],
            local
        )));
        tracing::error!(error = %f, "this node's log and the shared log disagree: writes are refused");
        return Err(f);
    }
    let items: Vec<(u64, &Mutation)> = seqs.iter().copied().zip(mutations.iter().copied()).collect();
    c.apply_logged(rounds, published, &items)
}

#[cfg(test)]
#[path = "cluster_tests.rs"]
mod tests;
