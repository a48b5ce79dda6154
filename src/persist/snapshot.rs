//! Snapshots: the whole table as one Arrow IPC file, opaque `extra` bytes beside it, and
//! a manifest that commits them. See the [module docs](super) for the layout.
//!
//! The data files get names no earlier attempt used (seq plus a nonce), so writing never
//! overwrites anything a committed manifest points to, even when a snapshot is redone at
//! the same seq. The manifest (`snap-<seq>.manifest`) is written to a temporary name and
//! renamed over: until that rename is durable the previous snapshot is the latest one.
//! Manifest text: one line of JSON, then `crc32 <8 hex digits of that line>`. Its `format`
//! is the [record format](super::record) of the `extra` bytes: 1 for the first release's
//! JSON, 2 and later for `segd.log.v1` protobuf.
//!
//! One writer per directory at a time: pruning removes files no kept manifest names.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use arrow_array::RecordBatch;
use arrow_ipc::reader::FileReader;
use arrow_ipc::writer::FileWriter;
use arrow_schema::SchemaRef;
use serde::{Deserialize, Serialize};

use super::{io_err, sync_dir, PersistError};

use super::record::{FORMAT, LEGACY_FORMAT};

/// Snapshots kept after a successful write: the newest, and one to fall back on when the
/// newest is found incomplete (never when it is found corrupt: see [`read_latest_snapshot`]).
const KEEP: usize = 2;

/// A verified snapshot: the table as of `seq` (every log record up to `seq` applied).
/// Batches are decoded as they are read, so loading 10M customers never holds the file and
/// the decoded table at once.
pub struct Snapshot {
    pub seq: u64,
    pub schema: SchemaRef,
    pub batches: Box<dyn Iterator<Item = Result<RecordBatch, PersistError>> + Send>,
    pub extra: Vec<u8>,
    /// The record format `extra` is in.
    pub format: u32,
    pub manifest: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct Manifest {
    format: u32,
    seq: u64,
    arrow: FileEntry,
    extra: FileEntry,
}

#[derive(Serialize, Deserialize)]
struct FileEntry {
    name: String,
    len: u64,
    crc32: u32,
}

fn manifest_name(seq: u64) -> String {
    format!("snap-{seq:020}.manifest")
}

/// The seq of any file this module writes (data, manifest, or a leftover temporary).
fn file_seq(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("snap-")?.get(..20)?;
    digits.bytes().all(|b| b.is_ascii_digit()).then(|| digits.parse().ok())?
}

/// Writes a snapshot of the state after log record `seq` and returns its manifest's path.
/// When this returns, the snapshot is durable and the log may be truncated before `seq + 1`.
pub fn write_snapshot(
    dir: &Path,
    seq: u64,
    schema: SchemaRef,
    batches: impl IntoIterator<Item = RecordBatch>,
    extra: &[u8],
) -> Result<PathBuf, PersistError> {
    fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let nonce =
        format!("{:x}{:x}-{}", nanos.as_nanos(), std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
    let stem = format!("snap-{seq:020}-{nonce}");

    let arrow_name = format!("{stem}.arrow");
    let arrow_path = dir.join(&arrow_name);
    let file = create(&arrow_path)?;
    let mut writer = FileWriter::try_new(Tally::new(BufWriter::new(file)), &schema)?;
    // Batches are taken one at a time so a caller can produce them lazily: a snapshot of
    // 10M customers then never holds a second copy of the table.
    for batch in batches {
        writer.write(&batch)?;
    }
    writer.finish()?;
    let tally = writer.into_inner()?;
    let file = tally.inner.into_inner().map_err(|e| io_err("write", &arrow_path)(e.into_error()))?;
    file.sync_all().map_err(io_err("fsync", &arrow_path))?;
    let arrow = FileEntry { name: arrow_name, len: tally.len, crc32: tally.crc.finalize() };

    let extra_name = format!("{stem}.extra");
    write_synced(&dir.join(&extra_name), extra)?;
    let extra = FileEntry { name: extra_name, len: extra.len() as u64, crc32: crc32fast::hash(extra) };
    // The data files' names must be durable before a manifest can point at them.
    sync_dir(dir)?;

    let body =
        serde_json::to_string(&Manifest { format: FORMAT, seq, arrow, extra }).expect("manifest serializes");
    let text = format!("{body}\ncrc32 {:08x}\n", crc32fast::hash(body.as_bytes()));
    let path = dir.join(manifest_name(seq));
    let tmp = dir.join(format!("{}.tmp", manifest_name(seq)));
    write_synced(&tmp, text.as_bytes())?;
    fs::rename(&tmp, &path).map_err(io_err("rename", &tmp))?;
    sync_dir(dir)?;

    // The snapshot is committed; a failure to tidy up must not report it as failed.
    if let Err(e) = prune(dir) {
        tracing::warn!(error = %e, dir = %dir.display(), "could not delete old snapshots");
    }
    Ok(path)
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("seq", &self.seq)
            .field("manifest", &self.manifest)
            .finish_non_exhaustive()
    }
}

/// Loads the newest snapshot whose manifest exists, or `None` if there is none. If that
/// snapshot does not match its manifest, this fails rather than fall back to an older one:
/// the log may already be truncated past it, so the older one would silently lose data.
pub fn read_latest_snapshot(dir: &Path) -> Result<Option<Snapshot>, PersistError> {
    if !dir.exists() {
        return Ok(None);
    }
    let Some(&seq) = manifests(dir)?.last() else { return Ok(None) };
    let path = dir.join(manifest_name(seq));
    let corrupt =
        |path: &Path, reason: String| PersistError::CorruptSnapshot { path: path.to_path_buf(), reason };
    let m = read_manifest(&path, seq).map_err(|reason| corrupt(&path, reason))?;
    // The whole file is checked against the manifest before a byte of it is decoded.
    verify_entry(dir, &m.arrow).map_err(|reason| corrupt(&path, reason))?;
    let extra = read_entry(dir, &m.extra).map_err(|reason| corrupt(&path, reason))?;
    let arrow_path = dir.join(&m.arrow.name);
    let file = File::open(&arrow_path).map_err(|e| corrupt(&arrow_path, format!("cannot open: {e}")))?;
    let reader = FileReader::try_new(std::io::BufReader::with_capacity(1 << 20, file), None)
        .map_err(|e| corrupt(&arrow_path, format!("not a readable Arrow IPC file: {e}")))?;
    let schema = reader.schema();
    let batches = Box::new(reader.map(move |b| {
        b.map_err(|e| PersistError::CorruptSnapshot {
            path: arrow_path.clone(),
            reason: format!("unreadable record batch: {e}"),
        })
    }));
    Ok(Some(Snapshot { seq, schema, batches, extra, format: m.format, manifest: path }))
}

/// The newest snapshot's files, its data first and its manifest last, with its sequence:
/// what a copy of it elsewhere needs (replicas seeded from an object store).
pub fn latest_snapshot_files(dir: &Path) -> Result<Option<(u64, Vec<PathBuf>)>, PersistError> {
    if !dir.exists() {
        return Ok(None);
    }
    let Some(&seq) = manifests(dir)?.last() else { return Ok(None) };
    let path = dir.join(manifest_name(seq));
    let m = read_manifest(&path, seq)
        .map_err(|reason| PersistError::CorruptSnapshot { path: path.clone(), reason })?;
    Ok(Some((seq, vec![dir.join(&m.arrow.name), dir.join(&m.extra.name), path])))
}

fn read_manifest(path: &Path, seq: u64) -> Result<Manifest, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("cannot read manifest: {e}"))?;
    let (body, sum) = text.split_once('\n').ok_or("manifest has no checksum line")?;
    let sum = sum.trim_end().strip_prefix("crc32 ").ok_or("manifest checksum line malformed")?;
    if u32::from_str_radix(sum, 16).ok() != Some(crc32fast::hash(body.as_bytes())) {
        return Err("manifest checksum mismatch".into());
    }
    let m: Manifest = serde_json::from_str(body).map_err(|e| format!("manifest malformed: {e}"))?;
    if !(LEGACY_FORMAT..=FORMAT).contains(&m.format) {
        return Err(format!(
            "manifest format {} is not one this version reads ({LEGACY_FORMAT} to {FORMAT}); was it written by a newer segd?",
            m.format
        ));
    }
    if m.seq != seq {
        return Err(format!("manifest says seq {} but is named for {seq}", m.seq));
    }
    Ok(m)
}

/// Checks a file's length and CRC against its manifest entry, reading 1 MiB at a time.
fn verify_entry(dir: &Path, entry: &FileEntry) -> Result<(), String> {
    use std::io::Read;
    if file_seq(&entry.name).is_none() || entry.name.contains(['/', '\\']) {
        return Err(format!("manifest names an unexpected file {:?}", entry.name));
    }
    let mut f = File::open(dir.join(&entry.name)).map_err(|e| format!("cannot read {}: {e}", entry.name))?;
    let (mut crc, mut len, mut buf) = (crc32fast::Hasher::new(), 0u64, vec![0u8; 1 << 20]);
    loop {
        let n = f.read(&mut buf).map_err(|e| format!("cannot read {}: {e}", entry.name))?;
        if n == 0 {
            break;
        }
        crc.update(&buf[..n]);
        len += n as u64;
    }
    if len != entry.len {
        return Err(format!("{} is {len} bytes, manifest says {}", entry.name, entry.len));
    }
    let crc = crc.finalize();
    if crc != entry.crc32 {
        return Err(format!("{} has crc32 {crc:08x}, manifest says {:08x}", entry.name, entry.crc32));
    }
    Ok(())
}

fn read_entry(dir: &Path, entry: &FileEntry) -> Result<Vec<u8>, String> {
    if file_seq(&entry.name).is_none() || entry.name.contains(['/', '\\']) {
        return Err(format!("manifest names an unexpected file {:?}", entry.name));
    }
    let bytes = fs::read(dir.join(&entry.name)).map_err(|e| format!("cannot read {}: {e}", entry.name))?;
    if bytes.len() as u64 != entry.len {
        return Err(format!("{} is {} bytes, manifest says {}", entry.name, bytes.len(), entry.len));
    }
    let crc = crc32fast::hash(&bytes);
    if crc != entry.crc32 {
        return Err(format!("{} has crc32 {crc:08x}, manifest says {:08x}", entry.name, entry.crc32));
    }
    Ok(bytes)
}

/// Seqs that have a manifest, ascending.
fn manifests(dir: &Path) -> Result<Vec<u64>, PersistError> {
    let mut seqs: Vec<u64> =
        names(dir)?.iter().filter_map(|n| file_seq(n).filter(|&s| *n == manifest_name(s))).collect();
    seqs.sort_unstable();
    Ok(seqs)
}

fn names(dir: &Path) -> Result<Vec<String>, PersistError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let entry = entry.map_err(io_err("list", dir))?;
        out.extend(entry.file_name().to_str().map(str::to_owned));
    }
    Ok(out)
}

/// Keeps the newest [`KEEP`] snapshots and the files their manifests name; deletes the
/// rest of this module's files (older snapshots, leftovers of interrupted writes). A kept
/// manifest that cannot be read protects every file of its seq.
fn prune(dir: &Path) -> Result<(), PersistError> {
    let seqs = manifests(dir)?;
    let kept = &seqs[seqs.len().saturating_sub(KEEP)..];
    let mut keep_names = HashSet::new();
    let mut keep_seqs = HashSet::new();
    for &seq in kept {
        keep_names.insert(manifest_name(seq));
        match read_manifest(&dir.join(manifest_name(seq)), seq) {
            Ok(m) => keep_names.extend([m.arrow.name, m.extra.name]),
            Err(_) => _ = keep_seqs.insert(seq),
        }
    }
    let mut removed = false;
    for name in names(dir)? {
        let Some(seq) = file_seq(&name) else { continue };
        if keep_names.contains(&name) || keep_seqs.contains(&seq) {
            continue;
        }
        let path = dir.join(&name);
        fs::remove_file(&path).map_err(io_err("remove", &path))?;
        removed = true;
    }
    if removed {
        sync_dir(dir)?;
    }
    Ok(())
}

fn create(path: &Path) -> Result<File, PersistError> {
    File::options().write(true).create_new(true).open(path).map_err(io_err("create", path))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), PersistError> {
    // A leftover temporary from a crashed attempt is ours to replace.
    let mut f = File::create(path).map_err(io_err("create", path))?;
    f.write_all(bytes).map_err(io_err("write", path))?;
    f.sync_all().map_err(io_err("fsync", path))
}

/// Checksums the IPC stream as it is written, so the file need not be read back.
struct Tally<W> {
    inner: W,
    crc: crc32fast::Hasher,
    len: u64,
}

impl<W> Tally<W> {
    fn new(inner: W) -> Self {
        Tally { inner, crc: crc32fast::Hasher::new(), len: 0 }
    }
}

impl<W: Write> Write for Tally<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("customer_id", DataType::Int64, false),
            Field::new("tier", DataType::Utf8, true),
        ]))
    }

    fn batch(from: i64, n: i64) -> RecordBatch {
        let ids = Int64Array::from_iter_values(from..from + n);
        let tiers =
            StringArray::from_iter((from..from + n).map(|i| (i % 3 != 0).then(|| format!("t{}", i % 5))));
        RecordBatch::try_new(schema(), vec![Arc::new(ids), Arc::new(tiers)]).unwrap()
    }

    fn write(dir: &Path, seq: u64) -> PathBuf {
        let batches = [batch(0, 100), batch(100, 37)];
        write_snapshot(dir, seq, schema(), batches.clone(), format!("extra@{seq}").as_bytes()).unwrap()
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut n = names(dir).unwrap();
        n.sort();
        n
    }

    fn data_file(dir: &Path, ext: &str) -> PathBuf {
        let name = files(dir).into_iter().rev().find(|n| n.ends_with(ext)).unwrap();
        dir.join(name)
    }

    fn refused(dir: &Path) -> String {
        match read_latest_snapshot(dir) {
            Err(e @ PersistError::CorruptSnapshot { .. }) => e.to_string(),
            other => panic!("expected CorruptSnapshot, got {other:?}"),
        }
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_latest_snapshot(&dir.path().join("absent")).unwrap().is_none());
        assert!(read_latest_snapshot(dir.path()).unwrap().is_none());
        let manifest = write(dir.path(), 42);
        let snap = read_latest_snapshot(dir.path()).unwrap().unwrap();
        assert_eq!((snap.seq, snap.manifest), (42, manifest));
        assert_eq!(snap.schema, schema());
        let got: Vec<RecordBatch> = snap.batches.map(Result::unwrap).collect();
        assert_eq!(got, vec![batch(0, 100), batch(100, 37)]);
        assert_eq!(snap.extra, b"extra@42");
        assert!(files(dir.path()).iter().all(|n| !n.ends_with(".tmp")));

        // An empty table is a valid snapshot too.
        write_snapshot(dir.path(), 43, schema(), [], b"").unwrap();
        let snap = read_latest_snapshot(dir.path()).unwrap().unwrap();
        assert_eq!((snap.seq, snap.batches.count(), snap.extra.len()), (43, 0, 0));
    }

    #[test]
    fn flipped_byte_in_arrow_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 1);
        write(dir.path(), 2);
        let arrow = data_file(dir.path(), ".arrow");
        let mut bytes = fs::read(&arrow).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        fs::write(&arrow, bytes).unwrap();
        let msg = refused(dir.path());
        assert!(msg.contains("crc32") && msg.contains("snap-00000000000000000002"), "{msg}");
    }

    #[test]
    fn short_extra_or_damaged_manifest_is_refused_not_skipped() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 1);
        write(dir.path(), 2);
        let extra = data_file(dir.path(), ".extra");
        let good = fs::read(&extra).unwrap();
        fs::write(&extra, &good[..good.len() - 1]).unwrap();
        assert!(refused(dir.path()).contains("bytes, manifest says"));
        fs::write(&extra, &good).unwrap();

        let manifest = dir.path().join(manifest_name(2));
        let text = fs::read_to_string(&manifest).unwrap();
        fs::write(&manifest, text.replacen("\"seq\":2", "\"seq\":3", 1)).unwrap();
        assert!(refused(dir.path()).contains("manifest checksum mismatch"));
        fs::write(&manifest, text.lines().next().unwrap()).unwrap();
        assert!(refused(dir.path()).contains("no checksum line"));
        fs::remove_file(&extra).unwrap();
        fs::write(&manifest, text).unwrap();
        assert!(refused(dir.path()).contains("cannot read"));
    }

    #[test]
    fn snapshot_without_manifest_falls_back_to_the_previous_one() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 5);
        let newest = write(dir.path(), 9);
        // A crash before the manifest's rename leaves the data files and a temporary.
        fs::rename(&newest, dir.path().join(format!("{}.tmp", manifest_name(9)))).unwrap();
        let snap = read_latest_snapshot(dir.path()).unwrap().unwrap();
        assert_eq!((snap.seq, snap.extra.as_slice()), (5, b"extra@5".as_slice()));

        // The next successful write clears the leftovers.
        write(dir.path(), 12);
        assert!(files(dir.path()).iter().all(|n| !n.contains("00000000000000000009")));
    }

    #[test]
    fn keeps_the_newest_two_and_redoes_a_seq_safely() {
        let dir = tempfile::tempdir().unwrap();
        for seq in [3, 6, 8, 11] {
            write(dir.path(), seq);
        }
        let left = files(dir.path());
        assert_eq!(left.len(), 6, "{left:?}");
        assert!(left
            .iter()
            .all(|n| n.contains("00000000000000000008") || n.contains("00000000000000000011")));

        write_snapshot(dir.path(), 11, schema(), [batch(7, 3)], b"again").unwrap();
        let snap = read_latest_snapshot(dir.path()).unwrap().unwrap();
        let got: Vec<RecordBatch> = snap.batches.map(Result::unwrap).collect();
        assert_eq!((snap.seq, got, snap.extra), (11, vec![batch(7, 3)], b"again".to_vec()));
        assert_eq!(files(dir.path()).len(), 6, "the overwritten attempt's files are gone");
    }
}
