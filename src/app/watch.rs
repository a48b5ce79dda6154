//! Subscriptions to saved segments' ENTERED / LEFT events: one task per subscription
//! reads the engine's bounded event log from its position under a brief read, pushes
//! what it found into a bounded channel, and sleeps until the next commit when it has
//! caught up.
//!
//! Memory is bounded twice: the event log keeps a fixed number of recent events (a
//! position older than that is [`AppError::Gone`]), and each subscription buffers at most
//! `watch_buffer` events. A consumer that leaves that buffer full for `slow_consumer` is
//! ended with [`AppError::SlowConsumer`] after the events already buffered.
//!
//! Events travel in batches (up to [`BATCH`] of what one read found), so a transport can
//! send a batch at once: sent one by one, a backlog becomes thousands of tiny HTTP/2
//! frames, and a client that reads slowly is then disconnected by its own HTTP/2 library
//! (h2 answers a flood of small unread DATA frames with GOAWAY ENHANCE_YOUR_CALM)
//! instead of getting our status.

use std::collections::HashSet;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::SendTimeoutError;
use tokio_stream::Stream;

use crate::engine::Gone;
use crate::segments::SegmentEvent;

use super::{App, AppError};

/// Events read from the log per read.
const READ_MAX: usize = 4096;
/// Most events per batch.
const BATCH: usize = 256;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchQuery {
    /// Saved segments to watch; all when empty.
    pub segment_ids: Vec<String>,
    /// First sequence to deliver; 0: from the next commit.
    pub from_sequence: u64,
}

/// Batches of events in commit order; after the last one, at most one error saying why
/// the subscription ended. Dropping it ends the subscription's task.
pub struct Subscription {
    batches: mpsc::Receiver<Vec<SegmentEvent>>,
    /// The terminal error travels separately, so it is never stuck behind a full buffer.
    end: mpsc::Receiver<AppError>,
}

impl Stream for Subscription {
    type Item = Result<Vec<SegmentEvent>, AppError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.batches.poll_recv(cx) {
            Poll::Ready(Some(b)) => Poll::Ready(Some(Ok(b))),
            Poll::Ready(None) => self.end.poll_recv(cx).map(|e| e.map(Err)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl App {
    /// Checks the query (unknown segment: [`crate::segments::SegmentError::NotFound`];
    /// position not retained: [`AppError::Gone`]) and starts the subscription's task on
    /// the current tokio runtime.
    pub fn watch(&self, q: WatchQuery) -> Result<Subscription, AppError> {
        let WatchQuery { segment_ids, from_sequence } = q;
        let ids: HashSet<String> = segment_ids.into_iter().collect();
        let start = {
            let eng = self.read();
            for id in &ids {
                eng.segments().get(id)?;
            }
            let start = if from_sequence == 0 { eng.sequence() + 1 } else { from_sequence };
            // Events are not persisted: nothing at or before the sequence the state was
            // opened at is retained, whatever the (empty) log says.
            let opened_at = self.0.opened_at;
            if start <= opened_at {
                return Err(Gone { asked: start, oldest: opened_at + 1 }.into());
            }
            eng.events_since(start, &ids, 0)?;
            start
        };
        let buffer = self.config().watch_buffer.max(1);
        let batch = BATCH.min(buffer);
        let (tx, batches) = mpsc::channel(buffer.div_ceil(batch).max(1));
        let (end_tx, end) = mpsc::channel(1);
        let app = self.clone();
        tokio::spawn(async move {
            if let Err(e) = app.pump(&ids, start, batch, &tx).await {
                tracing::debug!(error = %e, "watch ended");
                drop(tx);
                let _ = end_tx.try_send(e);
            }
        });
        Ok(Subscription { batches, end })
    }

    /// Delivers events from `seq` on until the subscriber goes away (Ok) or the
    /// subscription must end with an error.
    async fn pump(
        &self,
        ids: &HashSet<String>,
        mut seq: u64,
        batch: usize,
        tx: &mpsc::Sender<Vec<SegmentEvent>>,
    ) -> Result<(), AppError> {
        let mut commits = self.0.commits.subscribe();
        let mut closing = self.0.closing.subscribe();
        let config = self.config();
        // Events of sequence `seq` already sent (one commit's events can span reads).
        let mut skip = 0usize;
        loop {
            if *closing.borrow_and_update() {
                return Err(AppError::ShuttingDown);
            }
            // Mark the current commit seen before reading, so a commit after the read
            // wakes us.
            commits.borrow_and_update();
            let events = self.read().events_since(seq, ids, skip + READ_MAX)?;
            if events.len() <= skip {
                tokio::select! {
                    changed = commits.changed() => {
                        if changed.is_err() {
                            return Err(AppError::ShuttingDown);
                        }
                    }
                    _ = closing.changed() => {}
                    _ = tx.closed() => return Ok(()),
                }
                continue;
            }
            let mut fresh = events.into_iter().skip(skip).peekable();
            while fresh.peek().is_some() {
                // A client told to resume must get this whole batch again.
                let resume = fresh.peek().map_or(seq, |e| e.sequence);
                let mut out = Vec::with_capacity(batch);
                for e in fresh.by_ref().take(batch) {
                    if e.sequence == seq {
                        skip += 1;
                    } else {
                        seq = e.sequence;
                        skip = 1;
                    }
                    out.push(e);
                }
                match tx.send_timeout(out, config.slow_consumer).await {
                    Ok(()) => {}
                    Err(SendTimeoutError::Closed(_)) => return Ok(()),
                    Err(SendTimeoutError::Timeout(_)) => {
                        return Err(AppError::SlowConsumer(format!(
                            "{} events were buffered unread for {:?}; resume with from_sequence {resume}",
                            config.watch_buffer, config.slow_consumer
                        )))
                    }
                }
            }
        }
    }
}
