//! A read replica's follower (`segd serve --replica-of nats://… --stream NAME`): consumes
//! the primary's stream in order with a durable pull consumer and applies each record
//! through this node's own committer (`Db::submit`: check, local log, the same guarded
//! group apply as replay, publication of the version and its events), so a replica is a
//! data dir like any other: it restarts from its own snapshot and log.
//!
//! Ordering and exactly-once apply: the replica's local log assigns the same sequences
//! as the stream (both start from the same import and take every record in order, and a
//! replica takes no other write), and the follower checks it record by record:
//! - a stream sequence at or below the applied one (a redelivery) is skipped;
//! - one above the next expected is a gap (records purged from the stream): the follower
//!   stops, it never applies past a hole;
//! - a record whose `Nats-Msg-Id` is not its stream sequence, that does not decode, is
//!   refused by this node's check, or is logged here under another sequence: the follower
//!   stops (the replica diverged; its data dir must be rebuilt).
//!
//! The consumer is (re)created at each start at the replica's own applied sequence + 1:
//! the data dir, not the consumer's ack floor, is what says what was applied, so a
//! replica restored from an older snapshot still gets every record after it. Acks (all
//! up to a message) follow the local commit.
//!
//! Pulls (`super::pull`) are bounded by records and bytes, and one is read ahead while the
//! previous batch applies, so a node catching up from a snapshot is never waiting on the
//! network. Each pull expires on the server: an answer with no record is an idle stream
//! (normal, nothing done), and only a pull unanswered past its expiry restarts the
//! consumer. The lag reported is the stream's last sequence (from each delivery's pending
//! count, and the stream's info at least every second) less the applied one.
//!
//! A stopped follower leaves the replica serving reads at the sequence it reached, with
//! health NOT_SERVING and `segd_replica_stopped 1`; connection trouble is retried.
//!
//! A cluster member's follower (`--cluster`, [`Follower::member`]) is the same, but hands
//! each record to the committer as a record of the shared log
//! ([`Db::submit_replicated`]): the member's own writes are already applied when they
//! come back, and are acknowledged without a second apply. Message ids are then
//! `<sequence>@<member>`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::{self, stream};
use tokio::sync::oneshot;

use super::pull::{Ask, Pull};
use super::{block_on, ReplicaError, Runtime};
use crate::app::replica::ReplicaStatus;
use crate::db::{Db, DbError};
use crate::persist::record;

/// Most records pulled and applied as one batch (submitted together, so the committer
/// groups them).
const BATCH: usize = 512;

/// Most bytes pulled as one batch (raised to twice the server's `max_payload` when that
/// is larger): a batch of large records is bounded in memory and in delivery time.
const BATCH_BYTES: usize = 8 << 20;

/// How long the server holds a pull that finds no new record. An idle follower sends one
/// pull per LONG_POLL; a record stored meanwhile is sent at once.
const LONG_POLL: Duration = Duration::from_secs(1);

/// How often, at least, the follower asks the stream for its last sequence (the lag).
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// See the consumer's config in [`follow`].
const ACK_WAIT: Duration = Duration::from_secs(120);

/// Why following stopped.
enum Stop {
    /// Connection trouble: start over from the applied sequence after a pause.
    Retry(String),
    /// The replica cannot apply the stream any further: stop for good.
    Fatal(String),
}

fn retry(e: impl std::fmt::Display) -> Stop {
    Stop::Retry(e.to_string())
}

/// A replica's connection to the primary's stream, not following yet.
pub struct Follower {
    rt: Runtime,
    js: jetstream::Context,
    stream: String,
    consumer: String,
    status: Arc<ReplicaStatus>,
    /// A cluster member's follower (see the module doc).
    member: bool,
}

/// A running follower; dropping it stops it.
pub struct Following {
    _rt: Runtime,
}

impl Follower {
    /// Connects to the stream (which must exist: the primary creates it) as the durable
    /// consumer `consumer`. The primary is named from the stream's description.
    pub fn connect(url: &str, stream: &str, consumer: &str) -> Result<Follower, ReplicaError> {
        Follower::open(url, stream, consumer, false)
    }

    /// A cluster member's follower: `consumer` is the member's name (unique in the
    /// cluster). The member takes writes itself (its status says so).
    pub fn member(url: &str, stream: &str, consumer: &str) -> Result<Follower, ReplicaError> {
        Follower::open(url, stream, consumer, true)
    }

    fn open(url: &str, stream: &str, consumer: &str, member: bool) -> Result<Follower, ReplicaError> {
        if consumer.is_empty() || consumer.chars().any(|c| c.is_whitespace() || ".*>/\\".contains(c)) {
            return Err(ReplicaError::Config(format!(
                "--replica-name '{consumer}' is not a valid JetStream consumer name (no spaces, '.', '*', '>', '/')"
            )));
        }
        let rt = Runtime::new()?;
        let (js, description) = block_on(&rt, async {
            let js = jetstream::new(super::connect(url).await?);
            let s: stream::Stream = js.get_stream(stream).await.map_err(|e| {
                ReplicaError::Nats(format!(
                    "stream '{stream}' on {url}: {e} (start the primary with --replicate {url} --stream {stream} first)"
                ))
            })?;
            let description = s.cached_info().config.description.clone();
            Ok::<_, ReplicaError>((js, description))
        })?;
        let primary = description.as_deref().and_then(|d| d.strip_prefix(super::PRIMARY_PREFIX)).map_or_else(
            || format!("the primary writing stream '{stream}'"),
            |a| format!("the primary at {a}"),
        );
        let status = if member {
            Arc::new(ReplicaStatus::member(format!("stream '{stream}' on {url}")))
        } else {
            Arc::new(ReplicaStatus::new(format!("{primary} (stream '{stream}' on {url})")))
        };
        Ok(Follower { rt, js, stream: stream.to_string(), consumer: consumer.to_string(), status, member })
    }

    /// Seeds an empty data dir with the newest snapshot in the stream's object store:
    /// Some(its sequence), or None (a data dir of its own, or no snapshot uploaded yet:
    /// then it imports like the primary did and follows the stream from its start).
    pub fn seed(&self, data_dir: &std::path::Path) -> Result<Option<u64>, ReplicaError> {
        block_on(&self.rt, super::snapshots::seed(&self.js, &self.stream, data_dir))
            .map_err(ReplicaError::Nats)
    }

    /// What the application reports and refuses writes with; `max_lag` is
    /// `--max-serving-lag`.
    pub fn status(&self, max_lag: u64) -> Arc<ReplicaStatus> {
        self.status.set_max_lag(max_lag);
        self.status.clone()
    }

    /// Follows the stream into `db` on the follower's own thread until dropped.
    pub fn start(self, db: Arc<Db>) -> Following {
        let Follower { rt, js, stream, consumer, status, member } = self;
        rt.handle().spawn(async move {
            loop {
                match follow(&js, &stream, &consumer, &db, &status, member).await {
                    Ok(()) => return,
                    Err(Stop::Retry(why)) => {
                        tracing::warn!(error = %why, stream, "following the primary's stream: retrying in 1 s");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(Stop::Fatal(why)) => {
                        tracing::error!(
                            error = %why,
                            applied = db.read().sequence(),
                            "the replica stopped following the primary: reads answer from the sequence reached; \
                             rebuild this replica's data dir to follow again"
                        );
                        status.stop(why);
                        return;
                    }
                }
            }
        });
        Following { _rt: rt }
    }
}

/// Applies the stream from the replica's applied sequence on, until the database closes
/// (Ok) or something stops it.
async fn follow(
    js: &jetstream::Context,
    stream_name: &str,
    consumer_name: &str,
    db: &Db,
    status: &ReplicaStatus,
    member: bool,
) -> Result<(), Stop> {
    let stream = js.get_stream(stream_name).await.map_err(retry)?;
    let applied = db.read().sequence();
    let info = stream.get_info().await.map_err(retry)?;
    if info.state.messages > 0 && info.state.first_sequence > applied + 1 {
        return Err(Stop::Fatal(format!(
            "stream '{stream_name}' starts at sequence {}, this replica has applied up to {applied}: the records \
             between are gone from the stream",
            info.state.first_sequence
        )));
    }
    if info.state.last_sequence < applied {
        return Err(Stop::Fatal(format!(
            "stream '{stream_name}' ends at sequence {}, this replica has applied up to {applied}: it is not the \
             stream this replica followed",
            info.state.last_sequence
        )));
    }
    let mut stream_known = info.state.last_sequence;
    status.progress(applied, stream_known);
    // The data dir says what was applied: a consumer left from before starts over there.
    let _ = stream.delete_consumer(consumer_name).await;
    let consumer: jetstream::consumer::PullConsumer = stream
        .create_consumer(pull::Config {
            durable_name: Some(consumer_name.to_string()),
            deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: applied + 1 },
            ack_policy: AckPolicy::All,
            // Set, not left to the server's default (1000): a pull stalls once this many
            // records are delivered and not acknowledged, and two batches are (see `Ask`).
            max_ack_pending: (2 * BATCH) as i64,
            // Long enough for a batch's apply on a busy host: a record redelivered meanwhile
            // would only be skipped, but is sent twice for nothing.
            ack_wait: ACK_WAIT,
            description: Some("a segd read replica".into()),
            ..Default::default()
        })
        .await
        .map_err(retry)?;
    // The server may cap max_ack_pending (account limits): pulls stay within half of it.
    let max_ack_pending = consumer.cached_info().config.max_ack_pending;
    let batch = if max_ack_pending > 0 { BATCH.min((max_ack_pending as usize / 2).max(1)) } else { BATCH };
    // A record is at most the server's max_payload: a pull's bytes always fit one.
    let max_payload = js.client().server_info().max_payload;
    let mut ask = Ask { batch, max_bytes: BATCH_BYTES.max(2 * max_payload), expires: LONG_POLL };
    tracing::info!(
        stream = stream_name,
        consumer = consumer_name,
        from = applied + 1,
        batch,
        max_bytes = ask.max_bytes,
        "following the primary's stream"
    );
    let mut next = applied + 1;
    let mut looked = Instant::now();
    let mut pulling = Pull::send(js, &consumer, ask).await.map_err(Stop::Retry)?;
    loop {
        // Silence past the pull's expiry starts over from the applied sequence with a new
        // consumer; an empty answer is an idle stream.
        let pulled = pulling.receive().await.map_err(Stop::Retry)?;
        if pulled.too_small {
            ask.max_bytes *= 2;
            tracing::warn!(
                max_bytes = ask.max_bytes,
                "a record of the stream is larger than a pull's bytes: doubled"
            );
        }
        // The next pull goes out before this batch is applied: its records arrive meanwhile.
        pulling = Pull::send(js, &consumer, ask).await.map_err(Stop::Retry)?;
        let messages = pulled.messages;
        // The last delivery's pending count: the stream's records after it that the
        // consumer had not delivered (as of its delivery).
        let delivered_last = match messages.last() {
            Some(last) => last.info().map(|i| i.stream_sequence + i.pending).map_err(retry)?,
            None => 0,
        };
        if let Some(last) = messages.last() {
            if !apply(&messages, &mut next, stream_name, db, member).await? {
                return Ok(());
            }
            // Everything up to it is durable here: the consumer need not deliver it again.
            last.ack().await.map_err(retry)?;
        }
        // The stream's own word after a batch's apply when a second has gone by, and on
        // every idle answer: a pending count taken at delivery goes stale while a long
        // batch applies (the bench's member b reported lag 0 when 3,500 records behind).
        if messages.is_empty() || looked.elapsed() >= LOOK_EVERY {
            stream_known = stream.get_info().await.map_err(retry)?.state.last_sequence;
            looked = Instant::now();
        }
        status.progress(db.read().sequence().max(next - 1), stream_known.max(delivered_last));
    }
}

/// Applies a batch of the stream's records in order from `next` (redeliveries below it
/// skipped), submitting them all before waiting, so the committer groups them; `next`
/// ends after the last one applied. Ok(false) when the database closed meanwhile.
async fn apply(
    messages: &[jetstream::Message],
    next: &mut u64,
    stream_name: &str,
    db: &Db,
    member: bool,
) -> Result<bool, Stop> {
    let mut waits = Vec::with_capacity(messages.len());
    for m in messages {
        let seq = m.info().map_err(retry)?.stream_sequence;
        if seq < *next {
            continue;
        }
        if seq > *next {
            return Err(Stop::Fatal(format!(
                "stream '{stream_name}' delivered sequence {seq} where {} was due: records are missing",
                *next
            )));
        }
        let id = m.message.headers.as_ref().and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID));
        // `<seq>` (a primary's) or `<seq>@<member>` (a cluster member's).
        let id_seq = id.map(|v| v.as_str().split_once('@').map_or(v.as_str(), |(s, _)| s));
        if id_seq != Some(seq.to_string().as_str()) {
            return Err(Stop::Fatal(format!(
                "stream sequence {seq} carries segd record {:?}: the stream was not written by one segd primary \
                 from its first record",
                id.map(|v| v.as_str().to_string())
            )));
        }
        let mutation = record::decode_mutation(record::FORMAT, &m.message.payload).map_err(|e| {
            Stop::Fatal(format!("record {seq} of stream '{stream_name}' does not decode: {e}"))
        })?;
        // Answers the sequence it was logged under here.
        let (tx, rx) = oneshot::channel::<Result<u64, DbError>>();
        if member {
            db.submit_replicated(seq, m.message.payload.to_vec(), mutation, move |r| {
                let _ = tx.send(r.map(|()| seq));
            });
        } else {
            db.submit(mutation, move |r| {
                let _ = tx.send(r.map(|c| c.sequence));
            });
        }
        waits.push((seq, rx));
        *next += 1;
    }
    for (seq, rx) in waits {
        match rx.await {
            Ok(Ok(logged)) if logged == seq => {}
            Ok(Ok(logged)) => {
                return Err(Stop::Fatal(format!(
                    "record {seq} of the stream was logged here as sequence {logged}: this replica diverged"
                )))
            }
            Ok(Err(DbError::Closed)) | Err(_) => return Ok(false),
            Ok(Err(e)) => {
                return Err(Stop::Fatal(format!(
                    "record {seq} of the stream does not apply on this replica: {e}"
                )))
            }
        }
    }
    Ok(true)
}
