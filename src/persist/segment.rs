//! The on-disk side of the write-ahead log: record encoding, segment file names, and the
//! start-up scan that replays every segment and cuts a torn tail.
//!
//! A healthy log is contiguous: each segment is named by the seq of its first record,
//! records run `n, n+1, ...` inside it, and the next segment is named by the seq after
//! the previous one's last record. So besides checksums, a missing middle segment or a
//! replayed stale record is caught as a seq that is not the one expected.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use super::wal::{Replay, TornTail};
use super::{io_err, PersistError};

/// `[len u32][crc32 u32][seq u64]` before each payload.
pub(crate) const HEADER: usize = 16;

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

/// Encodes a record whose seq is not known yet: the payload's CRC (the expensive part)
/// is computed by the caller's thread, outside the log's lock; [`seal`] fills in the seq
/// and folds it into the checksum once the order is fixed.
pub(crate) fn encode_unsealed(payload: &[u8]) -> Result<(Vec<u8>, crc32fast::Hasher), PersistError> {
    let len = u32::try_from(payload.len()).map_err(|_| PersistError::RecordTooLarge(payload.len()))?;
    let mut rec = Vec::with_capacity(HEADER + payload.len());
    rec.extend_from_slice(&len.to_le_bytes());
    rec.extend_from_slice(&[0; 12]);
    rec.extend_from_slice(payload);
    let mut crc = crc32fast::Hasher::new();
    crc.update(payload);
    Ok((rec, crc))
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

/// Appends the records of `data` to `out` while they are whole, checksummed and carry
/// exactly the seq expected next.
fn scan(data: &[u8], mut expected: u64, out: &mut Vec<(u64, Vec<u8>)>) -> Scan {
    let mut off = 0;
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
        let scan = scan(&data, expected, &mut records);
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
    Ok(Recovered { segments, replay: Replay { records, truncated }, next_seq: expected })
}
