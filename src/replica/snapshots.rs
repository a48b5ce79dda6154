//! Snapshots in a JetStream object store, so a new replica needs neither the primary's
//! import nor the stream from its first record, and the stream can be trimmed.
//!
//! The primary uploads the newest snapshot of its data dir (the same files as on disk:
//! Arrow IPC data, metadata, manifest) to the bucket `<stream>-snapshots` as objects
//! `<seq>/<file>`, then points `latest` at them (the last message of the stream
//! `<stream>-snapshot-pointer`), so `latest` only ever names a complete upload.
//! Once a snapshot of sequence S is uploaded, the stream is purged below the snapshot
//! uploaded before it (one snapshot interval of margin for lagging replicas), and older
//! snapshots' objects are deleted.
//!
//! In a cluster (`--cluster`) every member uploads its own snapshots the same way, and two
//! may do so at the same moment: `latest` is moved by compare-and-set on the pointer
//! stream's last sequence (`Nats-Expected-Last-Sequence`), and only to a higher log
//! sequence, so it never goes back, whatever the interleaving (a member whose snapshot
//! lost to a newer one leaves the pointer and the stream alone). A member trims the stream
//! only below both its own previous upload and the `latest` it replaced, so the stream
//! keeps every record after any snapshot `latest` has named since.
//!
//! A replica whose data dir is empty downloads the snapshot `latest` names into its
//! `snapshots/` dir and starts its log at S + 1 ([`crate::persist::wal::create_empty`]),
//! then follows the stream from S + 1 like any replica. (Uploads before the pointer stream
//! kept `latest` as an object of the snapshot bucket: read when the stream is not there.)

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::object_store::{self, ObjectStore};
use async_nats::jetstream::{self, stream};
use tokio::io::AsyncReadExt;
use tokio_stream::StreamExt;

use crate::persist::{latest_snapshot_files, wal};

const LATEST: &str = "latest";

fn bucket_name(stream: &str) -> String {
    format!("{stream}-snapshots")
}

/// The pointer's stream (its own, one subject: its last message is `latest`).
fn pointer_name(stream: &str) -> String {
    format!("{stream}-snapshot-pointer")
}

fn pointer_subject(stream: &str) -> String {
    format!("segd.{stream}.snapshot-pointer")
}

/// The messages the pointer's stream keeps: `latest` and the snapshots it named before.
const POINTER_HISTORY: i64 = 64;

/// `latest`: the last message of a stream of its own, moved by compare-and-set on that
/// stream's last sequence (`Nats-Expected-Last-Sequence`).
struct Pointer {
    js: jetstream::Context,
    stream: stream::Stream,
    subject: String,
}

impl Pointer {
    /// The pointer of `stream_name`'s snapshots; created (with `create`'s copy count) when
    /// missing if `create` is Some, else None.
    async fn open(
        js: &jetstream::Context,
        stream_name: &str,
        create: Option<usize>,
    ) -> Result<Option<Pointer>, String> {
        let name = pointer_name(stream_name);
        let subject = pointer_subject(stream_name);
        let stream = match js.get_stream(&name).await {
            Ok(s) => s,
            Err(_) if create.is_none() => return Ok(None),
            Err(_) => {
                let config = stream::Config {
                    name: name.clone(),
                    subjects: vec![subject.clone()],
                    description: Some(format!(
                        "segd: the newest snapshot of stream {stream_name} in bucket {}",
                        bucket_name(stream_name)
                    )),
                    storage: stream::StorageType::File,
                    max_messages: POINTER_HISTORY,
                    num_replicas: create.unwrap_or(1),
                    ..Default::default()
                };
                match js.create_stream(config).await {
                    Ok(s) => s,
                    // Another member created it meanwhile.
                    Err(e) => {
                        js.get_stream(&name).await.map_err(|_| format!("creating stream '{name}': {e}"))?
                    }
                }
            }
        };
        let pointer = Pointer { js: js.clone(), stream, subject };
        // An expected last sequence of 0 is not checked by JetStream: a first, empty
        // message (one, whoever sends it, by its message id) makes every move a checked one.
        // Only a writer sends it: a reader may find the stream another member has just
        // created and whose copies are not ready to take a message yet.
        if create.is_some() && pointer.last_sequence().await? == 0 {
            pointer
                .publish(PublishMessage::build().message_id("start"))
                .await
                .map_err(|e| format!("starting the snapshot pointer: {e}"))?;
        }
        Ok(Some(pointer))
    }

    async fn last_sequence(&self) -> Result<u64, String> {
        let info = self.stream.get_info().await.map_err(|e| format!("the snapshot pointer's stream: {e}"))?;
        Ok(info.state.last_sequence)
    }

    async fn publish(&self, message: PublishMessage) -> Result<(), PublishError> {
        self.js.send_publish(self.subject.clone(), message).await?.await.map(|_| ())
    }

    /// The snapshot `latest` names (its sequence and files), or None, and the pointer
    /// stream's last sequence that answer was read at.
    async fn read(&self) -> Result<(Option<(u64, Vec<String>)>, u64), String> {
        let last = self.last_sequence().await?;
        if last == 0 {
            return Ok((None, 0));
        }
        let m = self.stream.get_raw_message(last).await.map_err(|e| format!("reading '{LATEST}': {e}"))?;
        if m.payload.is_empty() {
            return Ok((None, last));
        }
        let latest = std::str::from_utf8(&m.payload)
            .ok()
            .and_then(parse_latest)
            .ok_or_else(|| format!("'{LATEST}' (stream '{}', sequence {last}) is malformed", m.subject))?;
        Ok((Some(latest), last))
    }

    /// Points `latest` at snapshot `seq` (`names` its files) unless it names one at least
    /// as new; read again and retried when another member moved it in between.
    async fn advance(&self, seq: u64, names: &[String]) -> Result<Moved, String> {
        let value = format!("{seq}\n{}", names.join("\n"));
        loop {
            let (current, last) = self.read().await?;
            let current = current.map(|(c, _)| c);
            if let Some(c) = current.filter(|&c| c >= seq) {
                return Ok(Moved::Newer(c));
            }
            let message = PublishMessage::build().payload(value.clone().into()).expected_last_sequence(last);
            match self.publish(message).await {
                Ok(()) => return Ok(Moved::From(current)),
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {}
                Err(e) => return Err(format!("moving '{LATEST}': {e}")),
            }
        }
    }
}

/// What moving the pointer did.
#[derive(Debug, PartialEq, Eq)]
enum Moved {
    /// `latest` names the new snapshot now; it named this sequence before (None: nothing).
    From(Option<u64>),
    /// `latest` already named a snapshot at least as new (this sequence): left alone.
    Newer(u64),
}

/// The snapshot to start from: the pointer's, else (uploads from before it) the object's.
async fn newest(
    js: &jetstream::Context,
    stream_name: &str,
    bucket: &ObjectStore,
) -> Result<Option<(u64, Vec<String>)>, String> {
    if let Some(pointer) = Pointer::open(js, stream_name, None).await? {
        if let (Some(latest), _) = pointer.read().await? {
            return Ok(Some(latest));
        }
    }
    let Ok(latest) = read_object(bucket, LATEST).await else { return Ok(None) };
    std::str::from_utf8(&latest)
        .ok()
        .and_then(parse_latest)
        .map(Some)
        .ok_or_else(|| format!("object '{LATEST}' of bucket '{}' is malformed", bucket_name(stream_name)))
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
    copies: usize,
    snap_dir: PathBuf,
    every: Duration,
) {
    let (bucket, pointer) = loop {
        let config = object_store::Config {
            bucket: bucket_name(&stream_name),
            description: Some(format!("segd snapshots of stream {stream_name}")),
            storage: stream::StorageType::File,
            num_replicas: copies,
            ..Default::default()
        };
        let got = match js.get_object_store(bucket_name(&stream_name)).await {
            Ok(b) => Ok(b),
            Err(_) => js.create_object_store(config).await.map_err(|e| e.to_string()),
        };
        match (got, Pointer::open(&js, &stream_name, Some(copies)).await) {
            (Ok(b), Ok(Some(p))) => break (b, p),
            (Ok(_), Ok(None)) => {}
            (Err(e), _) | (_, Err(e)) => tracing::warn!(error = %e, "snapshot bucket unavailable; retrying"),
        }
        tokio::time::sleep(every).await;
    };
    let mut uploaded: Option<u64> =
        newest(&js, &stream_name, &bucket).await.ok().flatten().map(|(seq, _)| seq);
    loop {
        match upload_newest(&js, &bucket, &pointer, &stream_name, &snap_dir, uploaded).await {
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
    pointer: &Pointer,
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
    // Another cluster member may have uploaded a newer one: no need to upload this one.
    if pointer.read().await?.0.is_some_and(|(c, _)| c >= seq) {
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
    let current = match pointer.advance(seq, &names).await? {
        Moved::From(current) => current,
        // Lost to a newer one meanwhile: its uploader trims; these objects go with the
        // next trim below them.
        Moved::Newer(_) => return Ok(Some(seq)),
    };
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
    let Some((seq, names)) = newest(js, stream_name, &bucket).await? else { return Ok(None) };
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

#[cfg(test)]
#[path = "snapshots_tests.rs"]
mod tests;
