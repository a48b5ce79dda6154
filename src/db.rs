//! Durable state: the [`Engine`] behind a reader-writer lock, fed by one committer thread
//! that logs each group of mutations to the write-ahead log before applying it.
//!
//! Commit path: callers [`Db::submit`] a mutation with a completion callback. The committer
//! takes every queued mutation (a group), checks each against the current state (a bad
//! one is answered at once and never logged), appends the valid ones to the log in one
//! write + fsync (group commit), applies them in log order to a copy of the published state
//! (a cheap clone that shares every column, index and container; the apply copies only
//! what it changes), publishes the copy with one pointer swap, then answers. So an
//! acknowledged mutation is durable and visible, readers see a whole group or none of it,
//! and a reader never waits for a write: it holds the version it started with, and the
//! swap holds the lock only to replace one `Arc`.
//!
//! Replication: with [`DbOptions::replicate`] the group's records also go to a replicated
//! log (`sink`) after the local log and before the apply, and are acknowledged there
//! before the group's callers are answered.
//!
//! Cluster: with [`DbOptions::shared`] (`--cluster`) the committer of `cluster.rs` runs
//! instead: a write is stored in the shared log first (only as the log's next record after
//! this node's applied sequence), then logged here and applied; other nodes' records come
//! in through [`Db::submit_replicated`], in the log's order.
//!
//! Events: the group's segment events are appended to the event log only after its version
//! is published, so a watcher never sees an event of a sequence a read cannot see yet.
//!
//! Failure: a group that fails to apply after it was logged (a panic, or a checked
//! mutation that does not apply) is dropped with its clone; its callers get
//! [`DbError::ApplyFailed`], later writes [`DbError::Poisoned`], [`Db::health`] turns, reads
//! go on from the published version (see `guard`).
//!
//! Start-up: the newest snapshot (Arrow IPC columns + saved segments), then every logged
//! mutation after it. An empty data dir is bulk-loaded from the caller's import (Parquet
//! or the demo) and snapshotted at once. A record that fails to replay stops start-up
//! with [`DbError::Replay`] naming it; [`DbOptions::skip_sequences`] skips it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Mutex, RwLock};

mod cluster;
mod guard;
mod replay;
mod sink;

pub use cluster::{PublishFailure, Published, SharedLog};
pub use guard::Fault;
use guard::{apply_guarded, locate};
use replay::{replay_log, ReplayError};
pub use sink::GroupSink;

use crate::engine::{Engine, EngineError, Mutation, Outcome};
use crate::persist::record::{self, SegmentMeta, SnapshotMeta};
use crate::persist::{read_latest_snapshot, write_snapshot, PersistError, SyncMode, Wal, WalOptions};
use crate::segments::Definition;
use crate::store::{Dataset, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Rejected(#[from] EngineError),
    #[error("durability: {0}")]
    Persist(#[from] PersistError),
    #[error("loading: {0}")]
    Store(#[from] StoreError),
    #[error("corrupt state: {0}")]
    Corrupt(String),
    #[error("the database is shutting down")]
    Closed,
    #[error("data dir {0} is in use by another segd process (lock held on its LOCK file)")]
    Locked(String),
    /// Applying the caller's commit group failed after it was logged (a bug): the group is
    /// not visible, and whether it takes effect after a restart depends on the record
    /// that failed (see [`DbError::Replay`]). The database refuses writes from now on.
    #[error(
        "internal error: {0}; the write is logged but not applied, reads stay at sequence \
         {published}, and this server refuses writes until it is restarted",
        published = .0.published
    )]
    ApplyFailed(Arc<Fault>),
    /// A write after an apply failure.
    #[error(
        "writes are refused since {0}; reads still answer from sequence {published}; restart segd",
        published = .0.published
    )]
    Poisoned(Arc<Fault>),
    /// Start-up: a logged record does not apply (or decode). Nothing after it can be
    /// applied as it was live, so start-up stops rather than crash-loop or guess.
    #[error(
        "log record {sequence} ({mutation}) cannot be replayed: {reason}. Start-up stopped. \
         To drop that record, restart with `segd serve --skip-sequence {sequence}`: it is \
         logged (warn) and skipped, and a snapshot taken at once makes the skip permanent"
    )]
    Replay { sequence: u64, mutation: String, reason: String },
    /// The replicated log (`--replicate`, see `sink`) could not be opened or reconciled.
    #[error("replicated log: {0}")]
    Replication(String),
    /// A record larger than the replicated log takes; refused before it is logged.
    #[error(
        "the write's log record is {bytes} bytes, more than the replicated log takes ({limit} bytes: \
         the NATS server's max_payload less room for headers); send fewer customers per request"
    )]
    ReplicaRecordTooLarge { bytes: usize, limit: usize },
    /// A cluster member's write the shared log did not confirm (see `cluster`): not applied
    /// here; it may still be in the log (an acknowledgement lost), and then every node,
    /// this one included, applies it when it follows the log.
    #[error(
        "the shared log did not confirm the write ({0}); it is not applied here, but if it reached the log \
         after all, every node applies it"
    )]
    NotShared(String),
}

#[derive(Clone, Debug)]
pub struct DbOptions {
    pub data_dir: PathBuf,
    pub sync: SyncMode,
    /// Take a snapshot (and cut the log) after this many logged customer changes (a
    /// customer upserted or deleted; any other mutation counts one). Bounds start-up replay.
    pub snapshot_every: u64,
    pub max_segments: usize,
    pub event_capacity: usize,
    /// Most mutations committed in one group.
    pub max_group: usize,
    /// Logged records not to apply at start-up (`--skip-sequence`): the operator's escape
    /// hatch for a record that fails to replay. Each skipped record is logged.
    pub skip_sequences: Vec<u64>,
    /// Test hook: applying the record of this sequence panics, live and at replay.
    #[doc(hidden)]
    pub fail_apply_at: Option<u64>,
    /// A replicated log every commit group is also stored in before it is applied and
    /// acknowledged (`--replicate`); None: the local log only.
    pub replicate: Option<Arc<dyn GroupSink>>,
    /// Cluster member (`--cluster`): writes are stored in this shared log first, then
    /// logged here and applied; records other nodes stored arrive through
    /// [`Db::submit_replicated`]. Exclusive with `replicate`.
    pub shared: Option<Arc<dyn SharedLog>>,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions {
            data_dir: PathBuf::from("segd-data"),
            sync: SyncMode::Always,
            snapshot_every: 2_000_000,
            max_segments: 1_000,
            event_capacity: 1_000_000,
            max_group: 1_024,
            skip_sequences: vec![],
            fail_apply_at: None,
            replicate: None,
            shared: None,
        }
    }
}

/// What a committed mutation returned.
#[derive(Clone, Debug, PartialEq)]
pub struct Committed {
    pub sequence: u64,
    pub outcome: Outcome,
}

/// Most customer updates replayed as one group at start-up (bounds the memory of decoded
/// log records held at once).
const REPLAY_GROUP: u64 = 250_000;

type Done = Box<dyn FnOnce(Result<Committed, DbError>) + Send>;

/// What the committer takes from its queue.
enum Item {
    /// A write of this node's caller.
    Write(Mutation, Done),
    /// A record of the shared log (cluster mode), in the log's order.
    Replicated(Replicated),
}

/// A record already stored in the shared log at `seq`: applied here unless it already is.
struct Replicated {
    seq: u64,
    /// Its bytes in the log, logged here as they are.
    bytes: Vec<u8>,
    mutation: Mutation,
    /// Ok once applied (or when it already was: a node's own writes are applied when
    /// the log confirms them, before the follower delivers them back).
    done: Box<dyn FnOnce(Result<(), DbError>) + Send>,
}

pub struct Db {
    /// The published version. Its lock is held only to clone or replace the `Arc`.
    engine: Arc<RwLock<Arc<Engine>>>,
    queue: Mutex<Option<mpsc::Sender<Item>>>,
    committer: Mutex<Option<std::thread::JoinHandle<()>>>,
    wal: Arc<Wal>,
    opts: DbOptions,
    /// Sequence of the newest snapshot: a close with nothing newer writes none.
    snapshotted: Arc<AtomicU64>,
    /// Set once, when applying a logged group fails: writes are refused from then on.
    fault: Arc<tokio::sync::watch::Sender<Option<Arc<Fault>>>>,
    /// Held for the Db's life: an exclusive lock on the data dir.
    _lock: std::fs::File,
}

impl Db {
    /// Opens (or creates) the data dir. `import` is called only when it holds no snapshot.
    /// `on_commit(sequence)` runs after each applied group (wakes watchers).
    pub fn open(
        opts: DbOptions,
        import: impl FnOnce() -> Result<Dataset, DbError>,
        on_commit: impl Fn(u64) + Send + 'static,
    ) -> Result<Db, DbError> {
        let t = Instant::now();
        let lock = lock_dir(&opts.data_dir)?;
        let snap_dir = opts.data_dir.join("snapshots");
        let (wal, replay) =
            Wal::open(&opts.data_dir.join("wal"), WalOptions { sync: opts.sync, ..WalOptions::default() })?;
        if let Some(torn) = &replay.truncated {
            tracing::warn!(file = %torn.file.display(), offset = torn.offset, dropped = torn.dropped_bytes,
                reason = %torn.reason, "write-ahead log tail was torn or corrupt and has been cut");
        }
        if let Some(sink) = &opts.replicate {
            sink.open(wal.last_seq(), &replay).map_err(DbError::Replication)?;
        }
        if let Some(shared) = &opts.shared {
            if opts.replicate.is_some() {
                return Err(DbError::Replication("a cluster member has no separate replicated log".into()));
            }
            shared.open(wal.last_seq()).map_err(DbError::Replication)?;
        }
        let wal = Arc::new(wal);
        // Whether anything was read in an older record format: then a snapshot is written
        // at once, so it is read only this once.
        let mut legacy_read = false;
        let mut engine = match load_snapshot(&snap_dir, &opts)? {
            Some((engine, format)) => {
                legacy_read |= format != record::FORMAT;
                engine
            }
            None => {
                let data = import()?;
                let engine = Engine::new(data, opts.max_segments, opts.event_capacity);
                // Snapshot the import at once: a restart must not need the import again.
                let seq = wal.last_seq();
                snapshot(&engine, &snap_dir, seq)?;
                let mut engine = engine;
                engine.restored_at(seq);
                engine
            }
        };
        // What the newest snapshot holds: a close after replaying the log must write a new one.
        let mut snapshot_seq = engine.sequence();
        let (replayed, skipped) = match replay_log(&mut engine, &replay, &opts, None) {
            Ok(r) => r,
            Err(ReplayError::Db(e)) => return Err(e),
            Err(ReplayError::Failed { first, last, mutation, reason }) => {
                // Which record of the group: replay again from the snapshot, that group one
                // record at a time (the happy path keeps no copy to roll back to).
                drop(engine);
                let again = match load_snapshot(&snap_dir, &opts)? {
                    Some((mut engine, _)) => replay_log(&mut engine, &replay, &opts, Some(first)),
                    None => Err(ReplayError::Failed { first, last, mutation, reason: reason.clone() }),
                };
                let err = match again {
                    Err(ReplayError::Db(e)) => e,
                    Err(ReplayError::Failed { first, mutation, reason, .. }) => {
                        DbError::Replay { sequence: first, mutation, reason }
                    }
                    Ok(_) => DbError::Replay {
                        sequence: first,
                        mutation: format!("the group {first}..={last}"),
                        reason: format!("{reason} (no record of it failed when replayed alone)"),
                    },
                };
                tracing::error!(error = %err, "start-up stopped");
                return Err(err);
            }
        };
        engine.boards_replayed();
        for seq in &opts.skip_sequences {
            if !skipped.contains(seq) {
                tracing::warn!(
                    sequence = seq,
                    snapshot = snapshot_seq,
                    last = replay.records.last().map_or(0, |r| r.0),
                    "--skip-sequence: no such record after the snapshot; nothing skipped"
                );
            }
        }
        legacy_read |= replay
            .records
            .iter()
            .any(|(seq, _)| *seq > snapshot_seq && replay.format_of(*seq) != record::FORMAT);
        if !skipped.is_empty() || legacy_read {
            // Make a skip permanent (the skipped records are cut with the log, so a later
            // restart neither needs the flag nor replays them), and read an older record
            // format only this once.
            snapshot(&engine, &snap_dir, engine.sequence())?;
            wal.truncate_before(engine.sequence() + 1)?;
            snapshot_seq = engine.sequence();
            if legacy_read {
                tracing::info!(
                    sequence = engine.sequence(),
                    "data dir upgraded to record format {}",
                    record::FORMAT
                );
            }
        }
        release_free_memory();
        // Events before the snapshot are not kept across a restart: a watcher must not
        // resume from before it. Replayed ones are kept: they are a function of the log.
        engine.forget_events_through(snapshot_seq);
        tracing::info!(
            sequence = engine.sequence(),
            replayed,
            ms = t.elapsed().as_millis() as u64,
            "data dir opened"
        );
        let snapshotted = Arc::new(AtomicU64::new(snapshot_seq));
        let engine = Arc::new(RwLock::new(Arc::new(engine)));
        let (tx, rx) = mpsc::channel::<Item>();
        let fault = Arc::new(tokio::sync::watch::Sender::new(None));
        let committer = {
            let c = Committer {
                engine: engine.clone(),
                wal: wal.clone(),
                opts: opts.clone(),
                snap_dir: snap_dir.clone(),
                snapshotted: snapshotted.clone(),
                fault: fault.clone(),
            };
            let loop_ = move || match c.opts.shared.clone() {
                Some(shared) => cluster::cluster_loop(rx, c, shared, on_commit),
                None => commit_loop(rx, c, on_commit),
            };
            std::thread::Builder::new().name("segd-commit".into()).spawn(loop_).expect("spawn committer")
        };
        Ok(Db {
            engine,
            fault,
            queue: Mutex::new(Some(tx)),
            committer: Mutex::new(Some(committer)),
            wal,
            opts,
            snapshotted,
            _lock: lock,
        })
    }

    /// The current version, for reading. Holding it never delays a writer; a held version
    /// keeps only what later writes replaced alive.
    pub fn read(&self) -> Arc<Engine> {
        self.engine.read().clone()
    }

    /// Why writes are refused, once applying a logged group has failed (None while healthy).
    pub fn fault(&self) -> Option<Arc<Fault>> {
        self.fault.borrow().clone()
    }

    /// The health signal: `None` while writes are taken, then the [`Fault`] that stopped
    /// them (it never goes back: only a restart clears it). The server reports
    /// NOT_SERVING on its health service when it turns.
    pub fn health(&self) -> tokio::sync::watch::Receiver<Option<Arc<Fault>>> {
        self.fault.subscribe()
    }

    /// Queues a mutation; `done` is called once it is durable and applied, or rejected.
    pub fn submit(&self, m: Mutation, done: impl FnOnce(Result<Committed, DbError>) + Send + 'static) {
        let q = self.queue.lock();
        match q.as_ref() {
            Some(tx) => {
                if let Err(mpsc::SendError(Item::Write(_, done))) = tx.send(Item::Write(m, Box::new(done))) {
                    done(Err(DbError::Closed));
                }
            }
            None => done(Err(DbError::Closed)),
        }
    }

    /// Cluster member: queues record `seq` of the shared log (`bytes`, decoded as `m`), to
    /// be logged here under the same sequence and applied, in the log's order; `done` is
    /// Ok once it is applied (or already was). Records must come in the log's order.
    pub fn submit_replicated(
        &self,
        seq: u64,
        bytes: Vec<u8>,
        m: Mutation,
        done: impl FnOnce(Result<(), DbError>) + Send + 'static,
    ) {
        let item = Item::Replicated(Replicated { seq, bytes, mutation: m, done: Box::new(done) });
        let q = self.queue.lock();
        let unsent = match q.as_ref() {
            Some(tx) => tx.send(item).err().map(|e| e.0),
            None => Some(item),
        };
        if let Some(Item::Replicated(r)) = unsent {
            (r.done)(Err(DbError::Closed));
        }
    }

    /// Commits and waits (for tests and tools; the service uses `submit`).
    pub fn commit(&self, m: Mutation) -> Result<Committed, DbError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(m, move |r| {
            let _ = tx.send(r);
        });
        rx.recv().unwrap_or(Err(DbError::Closed))
    }

    /// Stops taking mutations, finishes the queued ones, and writes a final snapshot.
    pub fn close(&self) -> Result<(), DbError> {
        self.queue.lock().take();
        if let Some(h) = self.committer.lock().take() {
            let _ = h.join();
        }
        let engine = self.read();
        let seq = engine.sequence();
        if self.snapshotted.load(Ordering::Acquire) == seq {
            return Ok(());
        }
        snapshot(&engine, &self.opts.data_dir.join("snapshots"), seq)?;
        self.snapshotted.store(seq, Ordering::Release);
        self.wal.truncate_before(seq + 1)?;
        Ok(())
    }
}

/// The newest snapshot as an engine, or None when the data dir has none.
/// The newest snapshot as an engine, with the record format its metadata was in.
fn load_snapshot(snap_dir: &std::path::Path, opts: &DbOptions) -> Result<Option<(Engine, u32)>, DbError> {
    let Some(snap) = read_latest_snapshot(snap_dir)? else { return Ok(None) };
    let format = snap.format;
    let extra = record::decode_snapshot_meta(format, &snap.extra)
        .map_err(|e| DbError::Corrupt(format!("snapshot {}: {e}", snap.manifest.display())))?;
    let data = Dataset::from_batches(
        snap.schema,
        snap.batches.map(|b| b.map_err(|e| StoreError::Arrow(e.to_string()))),
        &extra.id_column,
    )?;
    let mut engine = Engine::new(data, opts.max_segments, opts.event_capacity);
    restore_segments(&mut engine, extra.segments)?;
    let decide = crate::persist::decide::decode_state(&extra.decide).map_err(|e| {
        DbError::Corrupt(format!("snapshot {}: next-best-offer state: {e}", snap.manifest.display()))
    })?;
    engine.restore_decide(decide);
    engine.restore_gamify(&extra.gamify).map_err(|e| DbError::Corrupt(format!("gamification state: {e}")))?;
    engine.restore_boards(&extra.leaderboards).map_err(|e| DbError::Corrupt(format!("leaderboards: {e}")))?;
    engine.restored_at(snap.seq);
    tracing::info!(sequence = snap.seq, "snapshot loaded");
    Ok(Some((engine, format)))
}

/// Hands freed heap back to the OS. A load or snapshot frees ~1 GB of transient buffers
/// at 10M rows; glibc keeps much of it mapped otherwise (measured: RSS 2.2 GiB instead of
/// ~1.3 GiB for the same table).
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Takes an exclusive lock on `dir/LOCK` so two processes never write one data dir.
fn lock_dir(dir: &std::path::Path) -> Result<std::fs::File, DbError> {
    let io = |e: std::io::Error| {
        DbError::Persist(PersistError::Io { op: "lock", path: dir.join("LOCK"), source: e })
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("LOCK"))
        .map_err(io)?;
    // Released when the file is closed (flock on Unix).
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(DbError::Locked(dir.display().to_string())),
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

fn restore_segments(engine: &mut Engine, segments: Vec<SegmentMeta>) -> Result<(), DbError> {
    for s in segments {
        engine
            .restore_segment(&s.id, &s.description, s.definition, &s.members)
            .map_err(|e| DbError::Corrupt(format!("saved segment '{}': {e}", s.id)))?;
    }
    Ok(())
}

/// Writes the state as of `seq`.
fn snapshot(engine: &Engine, dir: &std::path::Path, seq: u64) -> Result<(), DbError> {
    let t = Instant::now();
    let data = engine.data();
    let segments = engine
        .segments()
        .in_creation_order()
        .map(|s| {
            let mut members = vec![];
            if s.definition == Definition::Static {
                members = s.members.rows().into_iter().map(|r| data.id_of(r)).collect();
                members.sort_unstable();
            }
            SegmentMeta {
                id: s.id.clone(),
                description: s.description.clone(),
                definition: s.definition.clone(),
                members,
            }
        })
        .collect();
    let decide = crate::persist::decide::encode_state(engine.decide());
    let extra = record::encode_snapshot_meta(&SnapshotMeta {
        id_column: data.id_column().name.clone(),
        segments,
        decide,
        gamify: engine.gamify_snapshot(),
        leaderboards: engine.boards_snapshot(),
    });
    let schema = data.export_schema();
    let batches = (0..data.n_chunks()).map(|c| data.export_chunk(&schema, c));
    write_snapshot(dir, seq, schema.clone(), batches, &extra)?;
    release_free_memory();
    tracing::info!(sequence = seq, ms = t.elapsed().as_millis() as u64, "snapshot written");
    Ok(())
}

/// What the committer thread works with.
struct Committer {
    engine: Arc<RwLock<Arc<Engine>>>,
    wal: Arc<Wal>,
    opts: DbOptions,
    snap_dir: PathBuf,
    snapshotted: Arc<AtomicU64>,
    fault: Arc<tokio::sync::watch::Sender<Option<Arc<Fault>>>>,
}

/// The committer's bookkeeping from one group to the next.
#[derive(Default)]
struct Rounds {
    /// Customer changes logged since the last snapshot was started.
    since_snapshot: u64,
    snapshotter: Option<std::thread::JoinHandle<()>>,
    /// Replaced versions still read by someone: freed here once the last reader is done, so
    /// freeing what a write replaced never lands on a reader's thread.
    retired: Vec<Arc<Engine>>,
}

impl Committer {
    /// Stops writes for good (until a restart) with `f`.
    fn stop(&self, f: Fault) -> Arc<Fault> {
        let f = Arc::new(f);
        self.fault.send_replace(Some(f.clone()));
        f
    }

    /// Applies the logged group `items` to a clone of `published` and publishes it (then
    /// its events); Err (writes stopped) when the apply fails.
    fn apply_logged(
        &self,
        rounds: &mut Rounds,
        published: Arc<Engine>,
        items: &[(u64, &Mutation)],
    ) -> Result<(Arc<Engine>, Vec<Outcome>), Arc<Fault>> {
        let mut next = Engine::clone(&published);
        let outcomes = match apply_guarded(&mut next, items, self.opts.fail_apply_at) {
            Ok(outcomes) => outcomes,
            Err(reason) => {
                // The group is logged but cannot be applied: drop the half-applied clone
                // (the published version is untouched), name the record, refuse writes.
                drop(next);
                let f = locate(&published, items, reason, self.opts.fail_apply_at);
                tracing::error!(
                    sequence = f.sequence,
                    mutation = %f.mutation,
                    reason = %f.reason,
                    group = format!("{}..={}", items[0].0, items[items.len() - 1].0),
                    published = f.published,
                    "applying a logged commit group failed: writes are refused from now on, reads \
                     go on from the published version; a restart replays the log and stops at \
                     this record if it fails again (see --skip-sequence)"
                );
                return Err(self.stop(f));
            }
        };
        let events = next.take_events();
        let next = Arc::new(next);
        let replaced = std::mem::replace(&mut *self.engine.write(), next.clone());
        drop(published);
        rounds.retired.push(replaced);
        // Only now, with the version that holds them readable: a watcher never sees an
        // event of a sequence a read cannot see yet.
        next.publish_events(events);
        Ok((next, outcomes))
    }

    /// Counts `changes` logged customer changes; starts a snapshot of `state` once
    /// `snapshot_every` have accumulated (and the previous one is done).
    fn maybe_snapshot(&self, rounds: &mut Rounds, state: Arc<Engine>, changes: u64) {
        rounds.since_snapshot += changes;
        if rounds.since_snapshot < self.opts.snapshot_every
            || !rounds.snapshotter.as_ref().is_none_or(|h| h.is_finished())
        {
            return;
        }
        rounds.since_snapshot = 0;
        if let Some(h) = rounds.snapshotter.take() {
            let _ = h.join();
        }
        // Written from the just-published version on a thread of its own: commits go
        // on meanwhile (the version only keeps alive what later writes replace).
        let (dir, wal, snapshotted) = (self.snap_dir.clone(), self.wal.clone(), self.snapshotted.clone());
        let spawned =
            std::thread::Builder::new().name("segd-snapshot".into()).spawn(move || {
                match snapshot(&state, &dir, state.sequence()) {
                    Ok(()) => {
                        snapshotted.store(state.sequence(), Ordering::Release);
                        if let Err(e) = wal.truncate_before(state.sequence() + 1) {
                            tracing::error!(error = %e, "log truncation after snapshot failed");
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "periodic snapshot failed; the log keeps everything")
                    }
                }
            });
        match spawned {
            Ok(h) => rounds.snapshotter = Some(h),
            Err(e) => tracing::error!(error = %e, "could not start the snapshot thread"),
        }
    }
}

impl Rounds {
    /// Closing: a snapshot in progress finishes before the final one.
    fn finish(&mut self) {
        if let Some(h) = self.snapshotter.take() {
            let _ = h.join();
        }
    }
}

/// A write from the queue; a replicated record is refused (only a cluster member's
/// committer takes them, see `cluster`).
fn write_only(item: Item) -> Option<(Mutation, Done)> {
    match item {
        Item::Write(m, done) => Some((m, done)),
        Item::Replicated(r) => {
            (r.done)(Err(DbError::Replication(format!(
                "record {} of a shared log offered to a database that is not a cluster member",
                r.seq
            ))));
            None
        }
    }
}

fn commit_loop(rx: mpsc::Receiver<Item>, c: Committer, on_commit: impl Fn(u64)) {
    let mut carry: Option<(Mutation, Done)> = None;
    let mut rounds = Rounds::default();
    loop {
        rounds.retired.retain(|v| Arc::strong_count(v) > 1);
        // A group: whatever is queued, up to max_group, ending after a schema change.
        let first = match carry.take() {
            Some(x) => x,
            None => match rx.recv() {
                Ok(item) => match write_only(item) {
                    Some(x) => x,
                    None => continue,
                },
                Err(_) => {
                    rounds.finish();
                    return;
                }
            },
        };
        let mut group = vec![first];
        while group.len() < c.opts.max_group && !group.last().is_some_and(|(m, _)| m.changes_schema()) {
            match rx.try_recv() {
                Ok(item) => group.extend(write_only(item)),
                Err(_) => break,
            }
        }
        if let Some(f) = c.fault.borrow().clone() {
            for (_, done) in group {
                done(Err(DbError::Poisoned(f.clone())));
            }
            continue;
        }
        let mut valid: Vec<(Mutation, Done)> = Vec::with_capacity(group.len());
        let published = c.engine.read().clone();
        for (m, done) in group {
            match published.check(&m) {
                Ok(()) => valid.push((m, done)),
                Err(e) => done(Err(e.into())),
            }
        }
        if valid.is_empty() {
            continue;
        }
        // With a replicated log the records are encoded once, for both logs.
        let encoded = c.opts.replicate.as_deref().map(|sink| sink::encode_checked(sink, &mut valid));
        if valid.is_empty() {
            continue;
        }
        let valid_changes: u64 = valid.iter().map(|(m, _)| m.changes()).sum();
        let appended = match &encoded {
            None => c.wal.append_encoded(valid.iter().map(|(m, _)| m), record::encode_mutation),
            Some(bytes) => c.wal.append_batch(&bytes.iter().map(Vec::as_slice).collect::<Vec<_>>()),
        };
        let seqs = match appended {
            Ok(s) => s,
            Err(e) => {
                let msg = e.to_string();
                for (_, done) in valid {
                    done(Err(DbError::Persist(PersistError::Poisoned(msg.clone()))));
                }
                continue;
            }
        };
        if let (Some(sink), Some(bytes)) = (&c.opts.replicate, &encoded) {
            let records: Vec<(u64, &[u8])> =
                seqs.iter().copied().zip(bytes.iter().map(Vec::as_slice)).collect();
            if let Err(reason) = sink.append(&records) {
                // Logged here but maybe not there: applying it would let this node run ahead
                // of the replicated log. Stop writes; a restart reconciles (`GroupSink::open`).
                let f = c.stop(Fault {
                    sequence: seqs[0],
                    mutation: valid[0].0.summary(),
                    reason,
                    published: published.sequence(),
                });
                tracing::error!(error = %f, "replicating a commit group failed: writes are refused from now on");
                for (_, done) in valid {
                    done(Err(DbError::ApplyFailed(f.clone())));
                }
                continue;
            }
        }
        let items: Vec<(u64, &Mutation)> = seqs.iter().copied().zip(valid.iter().map(|(m, _)| m)).collect();
        let (next, outcomes) = match c.apply_logged(&mut rounds, published, &items) {
            Ok(applied) => applied,
            Err(f) => {
                for (_, done) in valid {
                    done(Err(DbError::ApplyFailed(f.clone())));
                }
                continue;
            }
        };
        let last = *seqs.last().expect("non-empty group");
        // Wake watchers and invalidate caches before anyone is told the write is done, so
        // an acknowledged write is never followed by a stale answer.
        on_commit(last);
        for (((_, done), outcome), &sequence) in valid.into_iter().zip(outcomes).zip(&seqs) {
            done(Ok(Committed { sequence, outcome }));
        }
        c.maybe_snapshot(&mut rounds, next, valid_changes);
    }
}

#[cfg(test)]
mod tests;
