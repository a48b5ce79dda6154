//! `WatchSegments`: one task per stream reads the engine's bounded event log from its
//! position under a brief read lock, pushes what it found into a bounded channel towards
//! the client, and sleeps until the next commit when it has caught up.
//!
//! Memory is bounded twice: the event log keeps a fixed number of recent events (a
//! position older than that is OUT_OF_RANGE), and each stream buffers at most
//! `watch_buffer` events. A consumer that leaves that buffer full for `slow_consumer`
//! is ended with RESOURCE_EXHAUSTED ("consumer too slow") after the events already
//! buffered.
//!
//! Events travel in batches (up to [`BATCH`] of what one read found): the response stream
//! yields a batch's events back to back, so tonic packs them into one HTTP/2 DATA frame.
//! Sent one per frame, a backlog becomes thousands of tiny frames, and a client that
//! reads slowly is then disconnected by its own HTTP/2 library (h2 answers a flood of
//! small unread DATA frames with GOAWAY ENHANCE_YOUR_CALM) instead of getting our status.

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
/// Most events per batch sent towards the client.
const BATCH: usize = 256;

type Batch = Vec<Result<pb::SegmentEvent, Status>>;

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
            eng.segments().get(id)?;
        }
        let start = if from_sequence == 0 { eng.sequence() + 1 } else { from_sequence };
        // Events are not persisted: nothing at or before the sequence the state was opened
        // at is retained, whatever the (empty) log says.
        if start <= st.opened_at {
            return Err(Gone { asked: start, oldest: st.opened_at + 1 }.into());
        }
        eng.events_since(start, &ids, 0)?;
        start
    };
    // The buffer holds `watch_buffer` events, in batches.
    let batch = BATCH.min(st.config.watch_buffer.max(1));
    let (tx, rx) = mpsc::channel::<Batch>(st.config.watch_buffer.div_ceil(batch).max(1));
    // The terminal status travels separately, so it is never stuck behind a full buffer.
    let (end_tx, end_rx) = mpsc::channel(1);
    tokio::spawn(async move {
        if let Err(e) = pump(&st, &ids, start, batch, &tx).await {
            tracing::debug!(error = %e, "watch stream ended");
            drop(tx);
            let _ = end_tx.try_send(Err(status_of(e)));
        }
    });
    let events = Flatten { rx, current: Vec::new().into_iter() };
    Ok(Box::pin(events.chain(ReceiverStream::new(end_rx))))
}

/// The events of each batch received, back to back (all ready at once, so tonic encodes
/// them into one frame).
struct Flatten {
    rx: mpsc::Receiver<Batch>,
    current: std::vec::IntoIter<Result<pb::SegmentEvent, Status>>,
}

impl Stream for Flatten {
    type Item = Result<pb::SegmentEvent, Status>;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        loop {
            if let Some(e) = self.current.next() {
                return std::task::Poll::Ready(Some(e));
            }
            match self.rx.poll_recv(cx) {
                std::task::Poll::Ready(Some(batch)) => self.current = batch.into_iter(),
                std::task::Poll::Ready(None) => return std::task::Poll::Ready(None),
                std::task::Poll::Pending => return std::task::Poll::Pending,
            }
        }
    }
}

/// Delivers events from `seq` on until the client goes away (Ok) or the stream must end
/// with a status (Err).
async fn pump(
    st: &State,
    ids: &HashSet<String>,
    mut seq: u64,
    batch: usize,
    tx: &mpsc::Sender<Batch>,
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
        let events = st.read().events_since(seq, ids, skip + READ_MAX)?;
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
        let mut out: Batch = Vec::with_capacity(batch);
        let mut fresh = events.into_iter().skip(skip).peekable();
        while fresh.peek().is_some() {
            out.clear();
            // A client told to resume must get this whole batch again.
            let resume = fresh.peek().map_or(seq, |e| e.sequence);
            for e in fresh.by_ref().take(batch) {
                if e.sequence == seq {
                    skip += 1;
                } else {
                    seq = e.sequence;
                    skip = 1;
                }
                out.push(Ok(convert::event_pb(e)));
            }
            match tx.send_timeout(std::mem::take(&mut out), st.config.slow_consumer).await {
                Ok(()) => {}
                Err(SendTimeoutError::Closed(_)) => return Ok(()),
                Err(SendTimeoutError::Timeout(_)) => {
                    return Err(ServiceError::SlowConsumer(format!(
                        "{} events were buffered unread for {:?}; resume with from_sequence {resume}",
                        st.config.watch_buffer, st.config.slow_consumer
                    )))
                }
            }
        }
    }
}
