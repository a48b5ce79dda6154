//! The on-disk side of the write-ahead log: the segment header, record encoding, segment
//! file names, and the start-up scan that replays every segment and cuts a torn tail.
//!
//! A segment starts with a [`FILE_HEADER`]-byte header, [`MAGIC`] then the record format
//! version (u32 LE), so a reader knows how to decode its records before reading one. A
//! segment without it was written by the first release (format 1, JSON records).
//!
//! A healthy log is contiguous: each segment is named by the seq of its first record,
//! records run `n, n+1, ...` inside it, and the next segment is named by the seq after
//! the previous one's last record. So besides checksums, a missing middle segment or a
//! replayed stale record is caught as a seq that is not the one expected.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use super::record::{FORMAT, LEGACY_FORMAT};
use super::wal::{Replay, TornTail};
use super::{io_err, PersistError};

/// `[len u32][crc32 u32][seq u64]` before each payload.
pub(crate) const HEADER: usize = 16;

/// The first bytes of every segment this version writes.
pub(crate) const MAGIC: &[u8; 8] = b"SEGDWAL\0";
/// [`MAGIC`] then the format version.
pub(crate) const FILE_HEADER: usize = 12;

/// The header of a new segment holding records of `format`.
pub(crate) fn file_header(format: u32) -> [u8; FILE_HEADER] {
    let mut h = [0; FILE_HEADER];
    h[..8].copy_from_slice(MAGIC);
    h[8..].copy_from_slice(&format.to_le_bytes());
    h
}

/// What a segment's first bytes say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    /// A header naming this format; records follow it.
    Headed(u32),
    /// The first release's layout: records from byte 0, format 1.
    Bare,
    /// Empty, or a header cut short by a crash while the segment was created: no records.
    Unwritten,
}

pub(crate) fn layout(data: &[u8]) -> Layout {
    if data.len() >= FILE_HEADER && data[..8] == MAGIC[..] {
        Layout::Headed(u32::from_le_bytes(data[8..FILE_HEADER].try_into().unwrap()))
    } else if data.len() < FILE_HEADER && data.iter().zip(file_header(0).iter()).take(8).all(|(a, b)| a == b)
    {
        Layout::Unwritten
    } else {
        Layout::Bare
    }
}

pub(crate) fn file_name(first_seq: u64) -> String {
    format!("wal-{first_seq:020}.log")
}

fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("wal-")?.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Segment files of `dir`, oldest first. Other files are left alone: the log may share
/// its directory with anything.
pub(crate) fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, PersistError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let entry = entry.map_err(io_err("list", dir))?;
        if let Some(seq) = entry.file_name().to_str().and_then(parse_name) {
            out.push((seq, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Fills in the length of a record laid out as `[header][payload]` in `rec` and returns
/// the payload's CRC. The seq is not known yet: the CRC (the expensive part) is computed
/// by the caller's thread, outside the log's lock; [`seal`] fills in the seq and folds it
/// into the checksum once the order is fixed.
pub(crate) fn prepare(rec: &mut [u8]) -> Result<crc32fast::Hasher, PersistError> {
    let n = rec.len() - HEADER;
    let len = u32::try_from(n).map_err(|_| PersistError::RecordTooLarge(n))?;
    rec[0..4].copy_from_slice(&len.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&rec[HEADER..]);
    Ok(crc)
}

pub(crate) fn seal(rec: &mut [u8], payload_crc: &crc32fast::Hasher, seq: u64) {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&seq.to_le_bytes());
    crc.combine(payload_crc);
    rec[4..8].copy_from_slice(&crc.finalize().to_le_bytes());
    rec[8..16].copy_from_slice(&seq.to_le_bytes());
}

fn checksum(seq: u64, payload: &[u8]) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&seq.to_le_bytes());
    crc.update(payload);
    crc.finalize()
}

/// Where the valid records of one segment end.
struct Scan {
    good_len: u64,
    next_seq: u64,
    damage: Option<String>,
}

/// Appends the records of `data` from byte `off` to `out` while they are whole,
/// checksummed and carry exactly the seq expected next.
fn scan(data: &[u8], mut off: usize, mut expected: u64, out: &mut Vec<(u64, Vec<u8>)>) -> Scan {
    let damage = loop {
        let rest = &data[off..];
        if rest.is_empty() {
            break None;
        }
        if rest.len() < HEADER {
            break Some(format!("short record header ({} of {HEADER} bytes)", rest.len()));
        }
        let len = u32::from_le_bytes(rest[0..4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(rest[4..8].try_into().unwrap());
        let seq = u64::from_le_bytes(rest[8..16].try_into().unwrap());
        if rest.len() - HEADER < len {
            break Some(format!("short payload ({} of {len} bytes)", rest.len() - HEADER));
        }
        let payload = &rest[HEADER..HEADER + len];
        if checksum(seq, payload) != crc {
            break Some(format!("checksum mismatch in record of {len} bytes"));
        }
        if seq != expected {
            break Some(format!("record has seq {seq} where {expected} was expected"));
        }
        out.push((seq, payload.to_vec()));
        off += HEADER + len;
        expected += 1;
    };
    Scan { good_len: off as u64, next_seq: expected, damage }
}

/// What start-up found: the segments kept (oldest first), their records, and the seq the
/// next append gets.
pub(crate) struct Recovered {
    pub segments: Vec<(u64, PathBuf)>,
    /// The newest segment's layout (`Unwritten` when there is none).
    pub last_layout: Layout,
    pub replay: Replay,
    pub next_seq: u64,
}

/// Replays every segment of `dir`. Damage in the newest segment is what a crash during
/// an append leaves (the unacknowledged tail of a write), so it is cut off durably and
/// reported; damage in an older one cannot come from a crash (a segment is fsync'd
/// before the next is created), so it is refused.
pub(crate) fn recover(dir: &Path) -> Result<Recovered, PersistError> {
    let segments = list(dir)?;
    let mut records = Vec::new();
    let mut formats = Vec::new();
    let mut last_layout = Layout::Unwritten;
    let mut truncated = None;
    let mut expected = segments.first().map_or(1, |s| s.0);
    for (i, (first, path)) in segments.iter().enumerate() {
        let is_last = i + 1 == segments.len();
        if *first != expected {
            return Err(PersistError::Corrupt {
                file: path.clone(),
                offset: 0,
                reason: format!(
                    "segment starts at seq {first} but {expected} was expected: a segment is missing"
                ),
            });
        }
        let data = fs::read(path).map_err(io_err("read", path))?;
        last_layout = layout(&data);
        let (format, start) = match last_layout {
            Layout::Headed(v) => (v, FILE_HEADER),
            Layout::Bare => (LEGACY_FORMAT, 0),
            Layout::Unwritten => continue,
        };
        if !(LEGACY_FORMAT..=FORMAT).contains(&format) {
            return Err(PersistError::Corrupt {
                file: path.clone(),
                offset: 8,
                reason: format!(
                    "record format {format} is not one this version reads ({LEGACY_FORMAT} to {FORMAT}); \
                     was it written by a newer segd?"
                ),
            });
        }
        formats.push((*first, format));
        let scan = scan(&data, start, expected, &mut records);
        expected = scan.next_seq;
        let Some(reason) = scan.damage else { continue };
        if !is_last {
            return Err(PersistError::Corrupt { file: path.clone(), offset: scan.good_len, reason });
        }
        let file = OpenOptions::new().write(true).open(path).map_err(io_err("open", path))?;
        file.set_len(scan.good_len).map_err(io_err("truncate", path))?;
        file.sync_all().map_err(io_err("fsync", path))?;
        let dropped_bytes = data.len() as u64 - scan.good_len;
        tracing::warn!(
            file = %path.display(),
            offset = scan.good_len,
            dropped_bytes,
            reason = %reason,
            "write-ahead log tail was torn or corrupt; cut at the last good record"
        );
        truncated = Some(TornTail { file: path.clone(), offset: scan.good_len, dropped_bytes, reason });
    }
    Ok(Recovered {
        segments,
        last_layout,
        replay: Replay { records, formats, truncated },
        next_seq: expected,
    })
}
