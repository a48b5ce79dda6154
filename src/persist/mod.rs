//! Durability without a transport: a write-ahead log of records and Arrow IPC snapshots,
//! both plain files in a data directory. Nothing here knows about gRPC or tokio. The log
//! and snapshot files carry opaque bytes; [`record`] alone defines what they hold (the
//! versioned `segd.log.v1` protobuf schema) and converts them to and from mutations.
//!
//! # Write-ahead log ([`wal`])
//! A directory of segment files `wal-<first seq, 20 digits>.log`, each a header naming
//! its [record format](record) then a run of records:
//!
//! ```text
//! ["SEGDWAL\0"][format u32 LE]
//! [len u32 LE][crc32 u32 LE of seq+payload][seq u64 LE][payload: len bytes] ...
//! ```
//!
//! (The first release wrote no header: such a segment holds format-1 records.)
//!
//! Guarantees:
//! - Sequence numbers are assigned by the log, strictly increasing in file order, and
//!   never reused across restarts (an emptied log keeps an empty segment named by the
//!   next seq, so the numbering survives [`Wal::truncate_before`]).
//! - With [`SyncMode::Always`] (the default), `append` returns only after its record is
//!   written and `fsync`'d; concurrent appenders share one write and one `fsync` (group
//!   commit). With [`SyncMode::Interval`], records are written before the ack but
//!   `fsync`'d by a background thread: a power loss may lose up to one interval, a
//!   process crash loses nothing acknowledged (the page cache survives it).
//! - One record is the unit of atomicity: after a crash a record is either replayed
//!   whole or not at all. A torn or corrupt tail of the newest segment (what a crash
//!   mid-write leaves) is cut at the last good record and reported; damage anywhere
//!   else is an error, because silently skipping it would lose acknowledged records.
//! - After a failed write or `fsync` the log refuses further appends: the state of the
//!   file is then unknown and retrying an `fsync` can falsely succeed.
//!
//! # Snapshots ([`snapshot`])
//! `snap-<seq>-<nonce>.arrow` (Arrow IPC file), `snap-<seq>-<nonce>.extra` (opaque
//! bytes), and `snap-<seq>.manifest` naming them with their lengths and CRC32s. Each is
//! written to a temporary name, `fsync`'d and renamed; the manifest's rename is the
//! commit point. A snapshot without a manifest never happened; one whose manifest exists
//! but whose files do not match it is refused, never half-loaded, and never silently
//! replaced by an older one (the log may already be truncated past the older one).
//!
//! # Start-up
//! Read the latest snapshot (seq `S`), open the log, apply the replayed records with
//! seq > `S`. After writing a snapshot at `S`, call `wal.truncate_before(S + 1)`.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

pub mod decide;
pub mod gamify;
pub mod leaderboard;
mod legacy;
pub mod record;
mod segment;
pub mod snapshot;
pub mod wal;

pub use snapshot::{latest_snapshot_files, read_latest_snapshot, write_snapshot, Snapshot};
pub use wal::{Replay, SyncMode, TornTail, Wal, WalOptions};

/// Everything that can go wrong in the durability layer.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Damage the log cannot repair by cutting its tail: starting anyway would lose
    /// acknowledged records.
    #[error(
        "write-ahead log segment {} is corrupt at byte {offset}: {reason}; it is not the newest \
         segment, so this is not a torn tail and start-up is refused",
        file.display()
    )]
    Corrupt { file: PathBuf, offset: u64, reason: String },
    #[error("snapshot {} is corrupt and was not loaded: {reason}", path.display())]
    CorruptSnapshot { path: PathBuf, reason: String },
    #[error("write-ahead log is unusable after an earlier I/O failure: {0}")]
    Poisoned(String),
    #[error("record payload of {0} bytes exceeds the 4 GiB record limit")]
    RecordTooLarge(usize),
    #[error("arrow IPC: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
}

/// Attaches the operation and path to an I/O error, so a start-up failure says which file.
pub(crate) fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> PersistError + 'a {
    move |source| PersistError::Io { op, path: path.to_path_buf(), source }
}

/// Makes creations, renames and deletions in `dir` durable: on Linux a new file's
/// directory entry is not persisted by fsyncing the file alone.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), PersistError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err("fsync directory", dir))
}
