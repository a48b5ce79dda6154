//! `WatchSegments`: one task per stream reads the engine's bounded event log from its
//! position under a brief read lock, pushes what it found into a bounded channel towards
//! the client, and sleeps until the next commit when it has caught up.
//!
//! Memory is bounded twice: the event log keeps a fixed number of recent events (a
//! position older than that is OUT_OF_RANGE), and each stream buffers at most
//! `watch_buffer` events. A consumer that leaves that buffer full for `slow_consumer`
//! is ended with RESOURCE_EXHAUSTED ("consumer too slow") after the events already
//! buffered.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::SendTimeoutError;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::Status;

use crate::engine::Gone;

use super::convert;
use super::pb;
use super::service::State;
use super::status::{status_of, ServiceError};

/// Events read from the log per lock.
const READ_MAX: usize = 4096;

pub type EventStream = Pin<Box<dyn Stream<Item = Result<pb::SegmentEvent, Status>> + Send + 'static>>;

/// Checks the request (unknown segment: NOT_FOUND; position not retained: OUT_OF_RANGE)
/// and starts the stream's task.
pub fn start(
    st: Arc<State>,
    segment_ids: Vec<String>,
    from_sequence: u64,
) -> Result<EventStream, ServiceError> {
    let ids: HashSet<String> = segment_ids.into_iter().collect();
    let start = {
        let eng = st.read();
        for id in &ids {
            eng.segments.get(id)?;
        }
        let start = if from_sequence == 0 { eng.sequence + 1 } else { from_sequence };
        // Events are not persisted: nothing at or before the sequence the state was opened
        // at is retained, whatever the (empty) log says.
        if start <= st.opened_at {
            return Err(Gone { asked: start, oldest: st.opened_at + 1 }.into());
        }
        eng.events.lock().since(start, &ids, 0)?;
        start
    };
    let (tx, rx) = mpsc::channel(st.config.watch_buffer.max(1));
    // The terminal status travels separately, so it is never stuck behind a full buffer.
    let (end_tx, end_rx) = mpsc::channel(1);
    tokio::spawn(async move {
        if let Err(e) = pump(&st, &ids, start, &tx).await {
            tracing::debug!(error = %e, "watch stream ended");
            drop(tx);
            let _ = end_tx.try_send(Err(status_of(e)));
        }
    });
    Ok(Box::pin(ReceiverStream::new(rx).chain(ReceiverStream::new(end_rx))))
}

/// Delivers events from `seq` on until the client goes away (Ok) or the stream must end
/// with a status (Err).
async fn pump(
    st: &State,
    ids: &HashSet<String>,
    mut seq: u64,
    tx: &mpsc::Sender<Result<pb::SegmentEvent, Status>>,
) -> Result<(), ServiceError> {
    let mut commits = st.commits.clone();
    let mut closing = st.closing.subscribe();
    // Events of sequence `seq` already sent (one commit's events can span reads).
    let mut skip = 0usize;
    loop {
        if *closing.borrow_and_update() {
            return Err(ServiceError::ShuttingDown);
        }
        // Mark the current commit seen before reading, so a commit after the read wakes us.
        commits.borrow_and_update();
        let events = {
            let events = st.read().events.clone();
            let got = events.lock().since(seq, ids, skip + READ_MAX);
            got?
        };
        if events.len() <= skip {
            tokio::select! {
                changed = commits.changed() => {
                    if changed.is_err() {
                        return Err(ServiceError::ShuttingDown);
                    }
                }
                _ = closing.changed() => {}
                _ = tx.closed() => return Ok(()),
            }
            continue;
        }
        for e in events.into_iter().skip(skip) {
            if e.sequence == seq {
                skip += 1;
            } else {
                seq = e.sequence;
                skip = 1;
            }
            match tx.send_timeout(Ok(convert::event_pb(e)), st.config.slow_consumer).await {
                Ok(()) => {}
                Err(SendTimeoutError::Closed(_)) => return Ok(()),
                Err(SendTimeoutError::Timeout(_)) => {
                    return Err(ServiceError::SlowConsumer(format!(
                        "{} events were buffered unread for {:?}; resume with from_sequence {seq}",
                        st.config.watch_buffer, st.config.slow_consumer
                    )))
                }
            }
        }
    }
}
