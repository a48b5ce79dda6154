//! The write-ahead log: appends with group commit, segment rotation, truncation after a
//! snapshot. Record format, file naming and guarantees: see the [module docs](super).
//!
//! Group commit: an appender encodes its records, takes the next seqs and queues the
//! bytes under a short lock. If no write is in progress it becomes the leader: it takes
//! the whole queue, writes it with one `write_all`, `fsync`s once, then publishes the
//! highest seq written and wakes everyone. Appenders that queued meanwhile wait; the
//! first to wake with its seq still pending leads the next round. So the number of
//! `fsync`s follows the disk's speed, not the number of writers.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex, MutexGuard};

use super::record::FORMAT;
use super::segment::{self, seal, Layout};
use super::{io_err, sync_dir, PersistError};

/// When an append is acknowledged relative to `fsync`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SyncMode {
    /// `fsync` before acknowledging: nothing acknowledged is lost, even on power loss.
    #[default]
    Always,
    /// Acknowledge once written; a background thread `fsync`s at this interval. A power
    /// loss may lose up to one interval of acknowledged records. A process crash (even
    /// SIGKILL) loses nothing: written data is in the kernel's page cache already.
    Interval(Duration),
}

#[derive(Clone, Debug)]
pub struct WalOptions {
    pub sync: SyncMode,
    /// A segment is closed and a new one started once it would exceed this size (a
    /// single group commit is never split, so a segment can exceed it by one batch).
    pub segment_bytes: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions { sync: SyncMode::Always, segment_bytes: 64 << 20 }
    }
}

/// What [`Wal::open`] found on disk.
#[derive(Debug, Default)]
pub struct Replay {
    /// Every intact record, `(seq, payload)`, in seq order.
    pub records: Vec<(u64, Vec<u8>)>,
    /// `(first seq, record format)` of each segment that held records, in seq order.
    pub formats: Vec<(u64, u32)>,
    /// Set when the newest segment ended in a torn or corrupt record that was cut off.
    pub truncated: Option<TornTail>,
}

impl Replay {
    /// The record format of record `seq` (see [`super::record`]).
    pub fn format_of(&self, seq: u64) -> u32 {
        self.formats.iter().rev().find(|(first, _)| *first <= seq).map_or(FORMAT, |&(_, f)| f)
    }
}

/// A cut tail: `file` now ends at `offset`; the `dropped_bytes` after it were lost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub file: PathBuf,
    pub offset: u64,
    pub dropped_bytes: u64,
    pub reason: String,
}

/// An open write-ahead log; share it between threads with an `Arc`.
pub struct Wal {
    shared: Arc<Shared>,
    /// Dropping the sender stops the interval syncer, which then syncs one last time.
    syncer: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
}

struct Shared {
    dir: PathBuf,
    opts: WalOptions,
    queue: Mutex<Queue>,
    flushed: Condvar,
    /// Held by the leader while writing, by the syncer and by `truncate_before`. Never
    /// taken while waiting on `queue`, so appenders only ever contend on the short lock.
    log: Mutex<Log>,
}

struct Queue {
    next_seq: u64,
    pending: Vec<u8>,
    /// Highest seq written (and `fsync`'d in `Always` mode): what has been acknowledged.
    acked: u64,
    leader_active: bool,
    /// Group commits done since open: appends per commit is the batching achieved.
    commits: u64,
    poisoned: Option<String>,
}

struct Log {
    file: File,
    len: u64,
    written: u64,
    /// Written since the syncer last started an fsync (interval mode only).
    dirty: bool,
    segments: Vec<(u64, PathBuf)>,
}

impl Wal {
    /// Opens (creating if needed) the log in `dir`, replaying what it holds. A torn tail
    /// is cut and reported in [`Replay::truncated`]; other damage is an error.
    pub fn open(dir: &Path, opts: WalOptions) -> Result<(Wal, Replay), PersistError> {
        std::fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
        let rec = segment::recover(dir)?;
        let mut segments = rec.segments;
        if rec.last_layout != Layout::Headed(FORMAT) {
            // Appends go to a segment of the current format: an older one (or one whose
            // header a crash cut short) is left as it is, or replaced when it holds no
            // record (it is named by the next seq, like the one that replaces it).
            if let Some((first, path)) = segments.last() {
                if *first == rec.next_seq {
                    std::fs::remove_file(path).map_err(io_err("remove", path))?;
                    segments.pop();
                }
            }
            // An empty segment named by the next seq is also how the numbering survives a
            // restart when every record has been truncated away.
            segments.push(create_segment(dir, rec.next_seq)?);
        }
        let path = &segments.last().unwrap().1;
        let file = OpenOptions::new().append(true).open(path).map_err(io_err("open", path))?;
        let len = file.metadata().map_err(io_err("stat", path))?.len();
        let last = rec.next_seq - 1;
        let log = Log { file, len, written: last, dirty: false, segments };
        let queue = Queue {
            next_seq: rec.next_seq,
            pending: Vec::new(),
            acked: last,
            leader_active: false,
            commits: 0,
            poisoned: None,
        };
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            opts: opts.clone(),
            queue: Mutex::new(queue),
            flushed: Condvar::new(),
            log: Mutex::new(log),
        });
        let syncer = match opts.sync {
            SyncMode::Always => None,
            SyncMode::Interval(every) => {
                let (tx, rx) = mpsc::channel();
                let shared = Arc::clone(&shared);
                let every = every.max(Duration::from_millis(1));
                let handle = std::thread::Builder::new()
                    .name("wal-sync".into())
                    .spawn(move || run_syncer(&shared, &rx, every))
                    .map_err(io_err("spawn syncer for", dir))?;
                Some((tx, handle))
            }
        };
        Ok((Wal { shared, syncer }, rec.replay))
    }

    /// Appends one record; returns its seq once it is durable per [`SyncMode`].
    pub fn append(&self, payload: &[u8]) -> Result<u64, PersistError> {
        Ok(self.append_batch(&[payload])?[0])
    }

    /// [`Wal::append_batch`] of `items`, each encoded by `encode` (which appends its
    /// payload to the buffer it is given) straight into the group's one buffer, after
    /// room for its record header: no payload is copied before it is queued.
    pub fn append_encoded<T>(
        &self,
        items: impl IntoIterator<Item = T>,
        mut encode: impl FnMut(T, &mut Vec<u8>),
    ) -> Result<Vec<u64>, PersistError> {
        let mut buf = Vec::new();
        let mut recs = Vec::new();
        for item in items {
            let start = buf.len();
            buf.extend_from_slice(&[0; segment::HEADER]);
            encode(item, &mut buf);
            recs.push((start, segment::prepare(&mut buf[start..])?));
        }
        self.queue_records(&buf, &recs)
    }

    /// Appends records with consecutive seqs in one commit. Each record is still its own
    /// unit of atomicity: a crash can keep a prefix of them, so a logical change that
    /// must be all-or-nothing belongs in one record.
    pub fn append_batch(&self, payloads: &[&[u8]]) -> Result<Vec<u64>, PersistError> {
        if payloads.is_empty() {
            return Ok(Vec::new());
        }
        let mut buf = Vec::with_capacity(payloads.iter().map(|p| segment::HEADER + p.len()).sum());
        let mut recs = Vec::with_capacity(payloads.len());
        for p in payloads {
            let start = buf.len();
            buf.extend_from_slice(&[0; segment::HEADER]);
            buf.extend_from_slice(p);
            recs.push((start, segment::prepare(&mut buf[start..])?));
        }
        self.queue_records(&buf, &recs)
    }

    /// Queues records laid out in `buf` (`(offset, payload CRC)` each, header not yet
    /// sealed) and waits until they are durable.
    fn queue_records(
        &self,
        buf: &[u8],
        recs: &[(usize, crc32fast::Hasher)],
    ) -> Result<Vec<u64>, PersistError> {
        if recs.is_empty() {
            return Ok(Vec::new());
        }
        let mut q = self.shared.queue.lock();
        if let Some(why) = &q.poisoned {
            return Err(PersistError::Poisoned(why.clone()));
        }
        let first = q.next_seq;
        let base = q.pending.len();
        q.pending.extend_from_slice(buf);
        for (i, (start, crc)) in recs.iter().enumerate() {
            seal(&mut q.pending[base + start..], crc, first + i as u64);
        }
        q.next_seq += recs.len() as u64;
        let last = q.next_seq - 1;
        self.shared.wait_durable(&mut q, last)?;
        Ok((first..=last).collect())
    }

    /// The highest acknowledged seq (0 for a log that never held a record).
    pub fn last_seq(&self) -> u64 {
        self.shared.queue.lock().acked
    }

    /// Group commits (one write, and in `Always` mode one `fsync`, each) since open.
    pub fn commits(&self) -> u64 {
        self.shared.queue.lock().commits
    }

    /// Forces an `fsync` now (useful at shutdown in interval mode; a no-op otherwise).
    pub fn sync(&self) -> Result<(), PersistError> {
        self.shared.sync_now()
    }

    /// Deletes the segments whose records are all below `seq`: call it once a snapshot
    /// covering `seq - 1` is durable. Returns how many segment files were removed.
    pub fn truncate_before(&self, seq: u64) -> Result<usize, PersistError> {
        let shared = &self.shared;
        let mut log = shared.log.lock();
        if log.len > segment::FILE_HEADER as u64 && log.written < seq {
            // Start a new segment so the current one, wholly covered, can go too.
            let next = log.written + 1;
            log.rotate(&shared.dir, next).inspect_err(|e| shared.poison(e))?;
        }
        // Segment i holds seqs up to the next one's first seq - 1; the last is kept always.
        let n = log.segments.windows(2).take_while(|w| w[1].0 <= seq).count();
        let victims: Vec<_> = log.segments.drain(..n).collect();
        drop(log);
        for (_, path) in &victims {
            std::fs::remove_file(path).map_err(io_err("remove", path))?;
            // One directory fsync per file keeps deletions in order: a power loss must not
            // leave a hole in the middle of the log, which start-up would refuse.
            sync_dir(&shared.dir)?;
        }
        Ok(victims.len())
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        if let Some((tx, handle)) = self.syncer.take() {
            drop(tx);
            let _ = handle.join();
        }
    }
}

impl Shared {
    /// Waits until `seq` is acknowledged, leading group commits while nobody else does.
    fn wait_durable(&self, q: &mut MutexGuard<'_, Queue>, seq: u64) -> Result<(), PersistError> {
        loop {
            if q.acked >= seq {
                return Ok(());
            }
            if let Some(why) = &q.poisoned {
                return Err(PersistError::Poisoned(why.clone()));
            }
            if q.leader_active {
                self.flushed.wait(q);
                continue;
            }
            q.leader_active = true;
            let batch = std::mem::take(&mut q.pending);
            let upto = q.next_seq - 1;
            let res = MutexGuard::unlocked(q, || self.write(&batch, upto));
            q.leader_active = false;
            match &res {
                Ok(()) => {
                    q.acked = upto;
                    q.commits += 1;
                }
                Err(e) => q.poisoned = Some(e.to_string()),
            }
            self.flushed.notify_all();
            // The leader reports the real I/O error; its followers see `Poisoned`.
            res?;
        }
    }

    fn write(&self, batch: &[u8], upto: u64) -> Result<(), PersistError> {
        let mut guard = self.log.lock();
        let log = &mut *guard;
        if log.len > segment::FILE_HEADER as u64 && log.len + batch.len() as u64 > self.opts.segment_bytes {
            log.rotate(&self.dir, log.written + 1)?;
        }
        let path = &log.segments.last().unwrap().1;
        log.file.write_all(batch).map_err(io_err("write", path))?;
        log.len += batch.len() as u64;
        log.written = upto;
        match self.opts.sync {
            SyncMode::Always => log.file.sync_data().map_err(io_err("fsync", path)),
            SyncMode::Interval(_) => {
                log.dirty = true;
                Ok(())
            }
        }
    }

    fn sync_now(&self) -> Result<(), PersistError> {
        let mut log = self.log.lock();
        if !log.dirty {
            return Ok(());
        }
        let path = log.segments.last().unwrap().1.clone();
        // fsync a duplicate handle so the leader can keep writing meanwhile. If the
        // leader rotates first, rotation syncs the old segment itself.
        let file = log.file.try_clone().map_err(io_err("dup", &path))?;
        log.dirty = false;
        drop(log);
        file.sync_data().map_err(io_err("fsync", &path)).inspect_err(|e| self.poison(e))
    }

    fn poison(&self, e: &PersistError) {
        let mut q = self.queue.lock();
        q.poisoned.get_or_insert_with(|| e.to_string());
        self.flushed.notify_all();
    }
}

impl Log {
    fn rotate(&mut self, dir: &Path, first_seq: u64) -> Result<(), PersistError> {
        // Unconditionally, even if the syncer just cleared `dirty` (its fsync may still be
        // running): an unsynced older segment could be torn by a power loss while a newer
        // one survives, and start-up refuses damage anywhere but the newest segment.
        let path = &self.segments.last().unwrap().1;
        self.file.sync_data().map_err(io_err("fsync", path))?;
        self.dirty = false;
        let (seq, path) = create_segment(dir, first_seq)?;
        self.file = OpenOptions::new().append(true).open(&path).map_err(io_err("open", &path))?;
        self.len = segment::FILE_HEADER as u64;
        self.segments.push((seq, path));
        Ok(())
    }
}

/// Starts an empty log in `dir` whose first record will be `next_seq`: a data dir seeded
/// with a snapshot of `next_seq - 1` copied from elsewhere. Fails if `dir` holds that
/// segment already.
pub fn create_empty(dir: &Path, next_seq: u64) -> Result<(), PersistError> {
    std::fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
    create_segment(dir, next_seq).map(|_| ())
}

fn create_segment(dir: &Path, first_seq: u64) -> Result<(u64, PathBuf), PersistError> {
    let path = dir.join(segment::file_name(first_seq));
    // create_new: a file already under this name would hold records we do not know of.
    let mut file =
        OpenOptions::new().write(true).create_new(true).open(&path).map_err(io_err("create", &path))?;
    file.write_all(&segment::file_header(FORMAT)).map_err(io_err("write", &path))?;
    file.sync_data().map_err(io_err("fsync", &path))?;
    sync_dir(dir)?;
    Ok((first_seq, path))
}

fn run_syncer(shared: &Shared, stop: &mpsc::Receiver<()>, every: Duration) {
    loop {
        let stopping = !matches!(stop.recv_timeout(every), Err(mpsc::RecvTimeoutError::Timeout));
        if let Err(e) = shared.sync_now() {
            tracing::error!(error = %e, "write-ahead log background fsync failed; log is now read-only");
        }
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
#[path = "wal_tests.rs"]
mod tests;
