//! The primary's side (`segd serve --replicate nats://…`): each commit group's records
//! published to a JetStream stream and acknowledged by it before the committer applies
//! and acknowledges the group (see `crate::db::GroupSink`).
//!
//! One message per log record, the same `persist::record` bytes as the local log, so the
//! stream's sequence IS segd's sequence (the stream belongs to one primary from its first
//! record). Each message carries:
//! - `Nats-Msg-Id: <sequence>`: a publish retried after a lost acknowledgement is found in
//!   the stream's duplicate window and acknowledged with its first sequence, not stored
//!   twice;
//! - `Nats-Expected-Last-Sequence: <sequence − 1>`: JetStream stores the record only
//!   directly after its predecessor, so a gap (a lost record) or a second writer is refused
//!   by the stream itself, never stored out of order.
//!
//! And every acknowledgement is checked: stream name and stream sequence must equal the
//! record's; anything else is an error that stops writes, never a silent divergence.
//!
//! A cluster member (`segd serve --cluster`, [`JetStreamLog::member`]) stores its writes
//! the same way, as the shared log of `crate::db::SharedLog`, with two differences: the
//! message id is `<sequence>@<member>` (two members' records for one sequence are never
//! taken for duplicates of each other), and each record after the first of a group also
//! carries `Nats-Expected-Last-Msg-Id: <its predecessor's id>`, so when another member's
//! record takes the first one's place, the rest of the group is refused too instead of
//! being stored behind it. A refusal for a wrong last sequence or message id is not an
//! error there but [`PublishFailure::Behind`]: the member catches up and tries again.

use std::time::{Duration, Instant};

use async_nats::jetstream::context::{CreateStreamErrorKind, PublishErrorKind, RequestErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, stream};

use super::{block_on, subject_of, ReplicaError, Runtime};
use crate::db::{GroupSink, PublishFailure, Published, SharedLog};
use crate::persist::{record, Replay};

/// Room left for headers below the server's `max_payload` (headers count against it).
const HEADER_ROOM: usize = 1024;

/// A JetStream stream as the primary's replicated log, or a cluster member's shared log.
pub struct JetStreamLog {
    rt: Runtime,
    js: jetstream::Context,
    stream: String,
    subject: String,
    max_payload: usize,
    /// A cluster member's name (in its message ids); None for a primary.
    member: Option<String>,
    /// How long a group is retried (a NATS server restarting, a leader election) before
    /// the committer gives up and stops writes.
    patience: Duration,
}

impl std::fmt::Debug for JetStreamLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JetStreamLog(stream {}, subject {})", self.stream, self.subject)
    }
}

impl JetStreamLog {
    /// Connects and creates the stream when missing (file storage, `replicas` copies on
    /// the NATS cluster). `primary` (this node's gRPC address) is written into the stream's
    /// description: replicas name it when they refuse a write. A group not acknowledged
    /// within `patience` stops writes. With `snapshots` (the data dir's snapshot dir), the
    /// newest snapshot is uploaded to the object store and the stream trimmed (see
    /// `snapshots`).
    pub fn connect(
        url: &str,
        stream: &str,
        replicas: usize,
        primary: &str,
        patience: Duration,
        snapshots: Option<std::path::PathBuf>,
    ) -> Result<JetStreamLog, ReplicaError> {
        let description = format!("{}{primary}", super::PRIMARY_PREFIX);
        JetStreamLog::open(url, stream, replicas, description, None, patience, snapshots)
    }

    /// A cluster member's shared log (`--cluster`): like [`JetStreamLog::connect`], but the
    /// stream is described as a cluster's (a primary refuses it, and a member refuses a
    /// primary's) and `member` (unique in the cluster) goes into the message ids.
    pub fn member(
        url: &str,
        stream: &str,
        replicas: usize,
        member: &str,
        patience: Duration,
        snapshots: Option<std::path::PathBuf>,
    ) -> Result<JetStreamLog, ReplicaError> {
        let description = super::CLUSTER_DESCRIPTION.to_string();
        JetStreamLog::open(url, stream, replicas, description, Some(member.to_string()), patience, snapshots)
    }

    fn open(
        url: &str,
        stream: &str,
        replicas: usize,
        description: String,
        member: Option<String>,
        patience: Duration,
        snapshots: Option<std::path::PathBuf>,
    ) -> Result<JetStreamLog, ReplicaError> {
        let rt = Runtime::new()?;
        let subject = subject_of(stream);
        let (js, max_payload, copies) = block_on(&rt, async {
            let client = super::connect(url).await?;
            let max_payload = client.server_info().max_payload;
            let mut js = jetstream::new(client);
            js.set_timeout(patience.min(Duration::from_secs(5)));
            let config = stream::Config {
                name: stream.to_string(),
                subjects: vec![subject.clone()],
                storage: stream::StorageType::File,
                num_replicas: replicas,
                description: Some(description.clone()),
                // The log is append-only: a record is never removed from its middle.
                deny_delete: true,
                ..Default::default()
            };
            // A NATS cluster that has just started (or lost a server) answers late or
            // "temporarily unavailable" until its JetStream leaders are elected: that is
            // waited out for `patience`, like a publish, rather than failing the start.
            let start = Instant::now();
            let mut s = loop {
                match js.get_or_create_stream(config.clone()).await {
                    Ok(s) => break s,
                    Err(e) if start.elapsed() < patience && not_ready_yet(e.kind()) => {
                        tracing::warn!(error = %e, stream, "JetStream not ready: retrying in 200 ms");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(e) => return Err(ReplicaError::Nats(format!("creating stream '{stream}': {e}"))),
                }
            };
            // Its first info can time out the same way while a new stream's copies elect a
            // leader: waited out within the same patience.
            let info = loop {
                match s.info().await {
                    Ok(info) => break info.clone(),
                    Err(e)
                        if start.elapsed() < patience && matches!(e.kind(), RequestErrorKind::TimedOut) =>
                    {
                        tracing::warn!(error = %e, stream, "JetStream not ready: retrying in 200 ms");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(e) => return Err(ReplicaError::Nats(format!("stream '{stream}': {e}"))),
                }
            };
            if info.config.subjects != [subject.clone()] {
                return Err(ReplicaError::Config(format!(
                    "stream '{stream}' takes subjects {:?}; segd needs it to take exactly '{subject}'",
                    info.config.subjects
                )));
            }
            let cluster = info.config.description.as_deref() == Some(super::CLUSTER_DESCRIPTION);
            if cluster != member.is_some() {
                return Err(ReplicaError::Config(if cluster {
                    format!("stream '{stream}' is a cluster's shared log (--cluster): a primary needs its own stream")
                } else {
                    format!(
                        "stream '{stream}' is written by a primary (--replicate): cluster members need a stream of \
                         their own"
                    )
                }));
            }
            if info.config.description.as_deref() != Some(description.as_str()) {
                let mut config = info.config.clone();
                config.description = Some(description.clone());
                js.update_stream(config).await.map_err(|e| {
                    ReplicaError::Nats(format!("naming the primary on stream '{stream}': {e}"))
                })?;
            }
            Ok((js, max_payload, info.config.num_replicas))
        })?;
        tracing::info!(url, stream, subject, max_payload, "replicating the log to JetStream");
        if let Some(dir) = snapshots {
            let every = Duration::from_secs(1);
            // The snapshots get the log's copy count: a fresh member needs them once the
            // stream is trimmed, so losing them with one server would lose the log's head.
            let upload = super::snapshots::upload_loop(js.clone(), stream.to_string(), copies, dir, every);
            rt.handle().spawn(upload);
        }
        Ok(JetStreamLog { rt, js, stream: stream.to_string(), subject, max_payload, member, patience })
    }

    /// The `Nats-Msg-Id` of record `seq`.
    fn message_id(&self, seq: u64) -> String {
        match &self.member {
            None => seq.to_string(),
            Some(m) => format!("{seq}@{m}"),
        }
    }

    /// The stream's last sequence now.
    pub fn stream_last(&self) -> Result<u64, ReplicaError> {
        block_on(&self.rt, self.last_sequence()).map_err(ReplicaError::Nats)
    }

    async fn last_sequence(&self) -> Result<u64, String> {
        let s =
            self.js.get_stream(&self.stream).await.map_err(|e| format!("stream '{}': {e}", self.stream))?;
        let info = s.get_info().await.map_err(|e| format!("stream '{}': {e}", self.stream))?;
        Ok(info.state.last_sequence)
    }

    /// Publishes `records` pipelined (each sent before the first acknowledgement is
    /// awaited); returns how many were confirmed, in order, and if not all, why the next
    /// one was not.
    async fn publish_from(&self, records: &[(u64, &[u8])]) -> (usize, Option<(Refusal, String)>) {
        let mut acks = Vec::with_capacity(records.len());
        for (i, &(seq, bytes)) in records.iter().enumerate() {
            let mut msg = PublishMessage::build()
                .payload(bytes.to_vec().into())
                .message_id(self.message_id(seq))
                .expected_last_sequence(seq - 1);
            if self.member.is_some() && i > 0 {
                msg = msg.expected_last_message_id(self.message_id(seq - 1));
            }
            match self.js.send_publish(self.subject.clone(), msg).await {
                Ok(ack) => acks.push(Pending::Sent(ack)),
                Err(e) => {
                    acks.push(Pending::Failed(e.kind(), e.to_string()));
                    break;
                }
            }
        }
        let mut confirmed = 0;
        for (ack, &(seq, _)) in acks.into_iter().zip(records) {
            let ack = match ack {
                Pending::Sent(ack) => ack.await.map_err(|e| (e.kind(), e.to_string())),
                Pending::Failed(kind, msg) => Err((kind, msg)),
            };
            match ack {
                Ok(ack) if ack.stream == self.stream && ack.sequence == seq => {
                    if ack.duplicate {
                        tracing::info!(sequence = seq, "record was already in the stream (a retried publish)");
                    }
                    confirmed += 1;
                }
                Ok(ack) => {
                    return (
                        confirmed,
                        Some((
                            Refusal::Final,
                            format!(
                                "record {seq} was stored as sequence {} of stream '{}' (expected {seq} of '{}'): \
                                 the stream and this node's log disagree",
                                ack.sequence, ack.stream, self.stream
                            ),
                        )),
                    )
                }
                Err((kind, msg)) => {
                    let refusal = match kind {
                        // No responders (what the client reports as StreamNotFound) is
                        // also what a clustered stream answers until its leader is elected.
                        PublishErrorKind::TimedOut
                        | PublishErrorKind::BrokenPipe
                        | PublishErrorKind::Other
                        | PublishErrorKind::MaxAckPending
                        | PublishErrorKind::StreamNotFound => Refusal::Retry,
                        PublishErrorKind::WrongLastSequence | PublishErrorKind::WrongLastMessageId => {
                            Refusal::Behind
                        }
                        PublishErrorKind::MaxPayloadExceeded => Refusal::Final,
                    };
                    let why = match kind {
                        PublishErrorKind::WrongLastSequence => format!(
                            "stream '{}' refused record {seq}: its last sequence is not {} (another writer, or \
                             records lost from the stream)",
                            self.stream,
                            seq - 1
                        ),
                        _ => format!("publishing record {seq} to stream '{}': {msg}", self.stream),
                    };
                    return (confirmed, Some((refusal, why)));
                }
            }
        }
        (confirmed, None)
    }

    /// Publishes `records` (in sequence order), retrying what was not confirmed until
    /// `patience` has passed.
    async fn publish_all(&self, records: &[(u64, &[u8])]) -> Result<(), String> {
        let start = Instant::now();
        let mut done = 0;
        let mut pause = Duration::from_millis(50);
        loop {
            let (confirmed, failed) = self.publish_from(&records[done..]).await;
            done += confirmed;
            match failed {
                None => return Ok(()),
                Some((Refusal::Retry, why)) if start.elapsed() < self.patience => {
                    tracing::warn!(error = %why, "retrying the publish");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                Some((_, why)) => return Err(why),
            }
        }
    }

    /// A cluster member's publish: like [`JetStreamLog::publish_all`], but another
    /// member's record in the way is [`PublishFailure::Behind`].
    async fn publish_member(&self, records: &[(u64, &[u8])]) -> Published {
        let start = Instant::now();
        let mut done = 0;
        let mut pause = Duration::from_millis(50);
        loop {
            let (confirmed, failed) = self.publish_from(&records[done..]).await;
            done += confirmed;
            let failure = match failed {
                None => None,
                Some((Refusal::Behind, _)) => Some(PublishFailure::Behind),
                Some((Refusal::Retry, why)) if start.elapsed() < self.patience => {
                    tracing::warn!(error = %why, "retrying the publish");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                    continue;
                }
                Some((Refusal::Retry | Refusal::Final, why)) => Some(PublishFailure::Failed(why)),
            };
            return Published { stored: done, failure };
        }
    }
}

/// Whether creating a stream failed only because JetStream is not ready yet (no answer,
/// no JetStream, or its "temporarily unavailable" while leaders are elected).
fn not_ready_yet(kind: CreateStreamErrorKind) -> bool {
    match kind {
        CreateStreamErrorKind::TimedOut | CreateStreamErrorKind::JetStreamUnavailable => true,
        CreateStreamErrorKind::JetStream(e) => e.code() == 503,
        CreateStreamErrorKind::EmptyStreamName
        | CreateStreamErrorKind::InvalidStreamName
        | CreateStreamErrorKind::DomainAndExternalSet
        | CreateStreamErrorKind::Response
        | CreateStreamErrorKind::NotFound
        | CreateStreamErrorKind::ResponseParse => false,
    }
}

/// Why a record was not stored.
#[derive(Clone, Copy, Debug)]
enum Refusal {
    /// Connection trouble, a timeout: a retry may store it.
    Retry,
    /// Another record is where it was to go (a wrong last sequence or message id).
    Behind,
    /// Anything else: no retry stores it.
    Final,
}

/// A publish sent (its acknowledgement to come) or refused before it was sent.
enum Pending {
    Sent(jetstream::context::PublishAckFuture),
    Failed(PublishErrorKind, String),
}

impl GroupSink for JetStreamLog {
    fn open(&self, last: u64, local: &Replay) -> Result<(), String> {
        block_on(&self.rt, async {
            let stream_last = self.last_sequence().await?;
            if stream_last > last {
                return Err(format!(
                    "stream '{}' holds records up to sequence {stream_last}, this data dir only up to {last}: \
                     it is behind the replicated log (another primary wrote to it, or this data dir is older). \
                     Start this node with --replica-of to follow the stream, or give the primary a new stream",
                    self.stream
                ));
            }
            if stream_last == last {
                return Ok(());
            }
            // Logged here, never confirmed there (the primary stopped in between): publish
            // them now, before anything is applied or acknowledged.
            let missing: Vec<(u64, &[u8])> = local
                .records
                .iter()
                .filter(|(seq, _)| *seq > stream_last)
                .map(|(seq, bytes)| (*seq, bytes.as_slice()))
                .collect();
            let contiguous = missing.first().map(|r| r.0) == Some(stream_last + 1)
                && missing.windows(2).all(|w| w[1].0 == w[0].0 + 1)
                && missing.last().map(|r| r.0) == Some(last);
            if !contiguous {
                return Err(format!(
                    "stream '{}' ends at sequence {stream_last}, this data dir's log at {last}, and the records \
                     between are no longer in the local log (cut after a snapshot): the stream cannot be \
                     completed. Give the primary a new stream (and start its replicas afresh)",
                    self.stream
                ));
            }
            if let Some(&(seq, _)) = missing.iter().find(|(seq, _)| local.format_of(*seq) != record::FORMAT) {
                return Err(format!(
                    "record {seq} is in an older record format; start once without --replicate so the data \
                     dir is upgraded, then again with it"
                ));
            }
            tracing::warn!(
                from = stream_last + 1,
                to = last,
                "publishing logged records the stream does not hold yet"
            );
            self.publish_all(&missing).await
        })
    }

    fn max_record_bytes(&self) -> usize {
        self.max_payload.saturating_sub(HEADER_ROOM)
    }

    fn append(&self, records: &[(u64, &[u8])]) -> Result<(), String> {
        block_on(&self.rt, self.publish_all(records))
    }
}

impl SharedLog for JetStreamLog {
    fn open(&self, last: u64) -> Result<(), String> {
        block_on(&self.rt, async {
            let stream_last = self.last_sequence().await?;
            if stream_last < last {
                return Err(format!(
                    "stream '{}' ends at sequence {stream_last}, this data dir's log at {last}: it is not this \
                     data dir's shared log (deleted and created again?). Start this member on an empty data dir \
                     (it starts from the stream's newest snapshot), or give the cluster a new stream",
                    self.stream
                ));
            }
            Ok(())
        })
    }

    fn max_record_bytes(&self) -> usize {
        self.max_payload.saturating_sub(HEADER_ROOM)
    }

    fn publish(&self, after: u64, records: &[&[u8]]) -> Published {
        let records: Vec<(u64, &[u8])> =
            records.iter().enumerate().map(|(i, bytes)| (after + 1 + i as u64, *bytes)).collect();
        block_on(&self.rt, self.publish_member(&records))
    }

    fn patience(&self) -> Duration {
        self.patience
    }
}
