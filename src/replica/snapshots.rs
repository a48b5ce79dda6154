//! Snapshots in a JetStream object store, so a new replica needs neither the primary's
//! import nor the stream from its first record, and the stream can be trimmed.
//!
//! The primary uploads the newest snapshot of its data dir (the same files as on disk:
//! Arrow IPC data, metadata, manifest) to the bucket `<stream>-snapshots` as objects
//! `<seq>/<file>`, then the object `latest` naming them, so `latest` only ever names a
//! complete upload. Once a snapshot of sequence S is uploaded, the stream is purged below
//! the snapshot uploaded before it (one snapshot interval of margin for lagging replicas),
//! and older snapshots' objects are deleted.
//!
//! In a cluster (`--cluster`) every member uploads its own snapshots the same way: a
//! member never replaces `latest` by an older snapshot than the one it names, and trims
//! the stream only below both its own previous upload and the `latest` it replaced, so
//! the stream keeps every record after any snapshot `latest` has named since. (Members
//! uploading within the same moment may still race on `latest`; at worst a new member
//! then finds a gap behind it and stops, `segd_replica_stopped 1`, until restarted.)
//!
//! A replica whose data dir is empty downloads the snapshot `latest` names into its
//! `snapshots/` dir and starts its log at S + 1 ([`crate::persist::wal::create_empty`]),
//! then follows the stream from S + 1 like any replica.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream::object_store::{self, ObjectStore};
use async_nats::jetstream::{self, stream};
use tokio::io::AsyncReadExt;
use tokio_stream::StreamExt;

use crate::persist::{latest_snapshot_files, wal};

const LATEST: &str = "latest";

fn bucket_name(stream: &str) -> String {
    format!("{stream}-snapshots")
}

/// `latest`'s content: the sequence, then the file names (data first, manifest last).
fn parse_latest(text: &str) -> Option<(u64, Vec<String>)> {
    let mut lines = text.lines();
    let seq = lines.next()?.parse().ok()?;
    let names: Vec<String> = lines.map(str::to_string).collect();
    (!names.is_empty() && names.iter().all(|n| !n.is_empty() && !n.contains('/'))).then_some((seq, names))
}

async fn read_object(bucket: &ObjectStore, name: &str) -> Result<Vec<u8>, String> {
    let mut object = bucket.get(name).await.map_err(|e| format!("object '{name}': {e}"))?;
    let mut bytes = vec![];
    object.read_to_end(&mut bytes).await.map_err(|e| format!("reading object '{name}': {e}"))?;
    Ok(bytes)
}

/// The primary's uploader: every `every`, uploads the data dir's newest snapshot when it
/// is newer than the last one uploaded, then trims the stream and the bucket.
pub(super) async fn upload_loop(
    js: jetstream::Context,
    stream_name: String,
    snap_dir: PathBuf,
    every: Duration,
) {
    let bucket = loop {
        let config = object_store::Config {
            bucket: bucket_name(&stream_name),
            description: Some(format!("segd snapshots of stream {stream_name}")),
            storage: stream::StorageType::File,
            ..Default::default()
        };
        let got = match js.get_object_store(bucket_name(&stream_name)).await {
            Ok(b) => Ok(b),
            Err(_) => js.create_object_store(config).await.map_err(|e| e.to_string()),
        };
        match got {
            Ok(b) => break b,
            Err(e) => tracing::warn!(error = %e, "snapshot bucket unavailable; retrying"),
        }
        tokio::time::sleep(every).await;
    };
    let mut uploaded: Option<u64> = match read_object(&bucket, LATEST).await {
        Ok(text) => std::str::from_utf8(&text).ok().and_then(parse_latest).map(|(seq, _)| seq),
        Err(_) => None,
    };
    loop {
        match upload_newest(&js, &bucket, &stream_name, &snap_dir, uploaded).await {
            Ok(Some(seq)) => uploaded = Some(seq),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "uploading the snapshot failed; retrying later"),
        }
        tokio::time::sleep(every).await;
    }
}

/// Uploads the newest snapshot if newer than `uploaded`; Some(its sequence) when it did.
async fn upload_newest(
    js: &jetstream::Context,
    bucket: &ObjectStore,
    stream_name: &str,
    snap_dir: &Path,
    uploaded: Option<u64>,
) -> Result<Option<u64>, String> {
    let Some((seq, files)) = latest_snapshot_files(snap_dir).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    if uploaded.is_some_and(|u| u >= seq) {
        return Ok(None);
    }
    // Another cluster member may have uploaded a newer one: `latest` never goes back.
    let current = match read_object(bucket, LATEST).await {
        Ok(text) => std::str::from_utf8(&text).ok().and_then(parse_latest).map(|(s, _)| s),
        Err(_) => None,
    };
    if current.is_some_and(|c| c >= seq) {
        return Ok(Some(seq));
    }
    let mut names = vec![];
    for path in &files {
        // A snapshot replaced meanwhile may be gone: the next round uploads the newer one.
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let name = path.file_name().and_then(|n| n.to_str()).ok_or("snapshot file name")?.to_string();
        bucket
            .put(format!("{seq}/{name}").as_str(), &mut bytes.as_slice())
            .await
            .map_err(|e| format!("uploading {name}: {e}"))?;
        names.push(name);
    }
    let latest = format!("{seq}\n{}", names.join("\n"));
    bucket.put(LATEST, &mut latest.as_bytes()).await.map_err(|e| format!("uploading '{LATEST}': {e}"))?;
    tracing::info!(sequence = seq, bucket = bucket_name(stream_name), "snapshot uploaded");
    if let Some(prev) = uploaded.map(|u| current.map_or(u, |c| c.min(u))) {
        // Records up to the previous snapshot are no longer needed by a new replica.
        let s = js.get_stream(stream_name).await.map_err(|e| e.to_string())?;
        let purged = s.purge().sequence(prev + 1).await.map_err(|e| format!("trimming the stream: {e}"))?;
        tracing::info!(
            before = prev + 1,
            purged = purged.purged,
            "stream trimmed before the previous snapshot"
        );
        // Objects of snapshots older than the previous one.
        let mut list = bucket.list().await.map_err(|e| e.to_string())?;
        let mut old = vec![];
        while let Some(info) = list.next().await {
            let info = info.map_err(|e| e.to_string())?;
            if let Some((s, _)) = info.name.split_once('/') {
                if s.parse::<u64>().is_ok_and(|s| s < prev) {
                    old.push(info.name);
                }
            }
        }
        for name in old {
            let _ = bucket.delete(&name).await;
        }
    }
    Ok(Some(seq))
}

/// A replica's empty data dir seeded from the bucket's latest snapshot: Some(its
/// sequence), or None when the data dir is not empty or the bucket holds none.
pub(super) async fn seed(
    js: &jetstream::Context,
    stream_name: &str,
    data_dir: &Path,
) -> Result<Option<u64>, String> {
    let snap_dir = data_dir.join("snapshots");
    let wal_dir = data_dir.join("wal");
    let holds = |d: &Path| std::fs::read_dir(d).is_ok_and(|mut r| r.next().is_some());
    if holds(&snap_dir) || holds(&wal_dir) {
        return Ok(None);
    }
    let Ok(bucket) = js.get_object_store(bucket_name(stream_name)).await else { return Ok(None) };
    let Ok(latest) = read_object(&bucket, LATEST).await else { return Ok(None) };
    let (seq, names) = std::str::from_utf8(&latest)
        .ok()
        .and_then(parse_latest)
        .ok_or_else(|| format!("object '{LATEST}' of bucket '{}' is malformed", bucket_name(stream_name)))?;
    std::fs::create_dir_all(&snap_dir).map_err(|e| format!("{}: {e}", snap_dir.display()))?;
    // The manifest comes last, each file under a temporary name first: an interrupted
    // download leaves no manifest, so nothing that looks like a snapshot.
    for name in &names {
        let bytes = read_object(&bucket, &format!("{seq}/{name}")).await?;
        let tmp = snap_dir.join(format!("{name}.download"));
        std::fs::write(&tmp, &bytes).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, snap_dir.join(name)).map_err(|e| format!("{}: {e}", tmp.display()))?;
    }
    wal::create_empty(&wal_dir, seq + 1).map_err(|e| e.to_string())?;
    Ok(Some(seq))
}
