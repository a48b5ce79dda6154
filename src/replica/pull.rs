//! One pull request of the follower's consumer, its answers read off an inbox of its own,
//! so the follower can tell an idle stream from a dead consumer.
//!
//! A pull asks for at most `batch` records and `max_bytes` bytes, `no_wait` with an
//! expiry. JetStream then always answers, and within the expiry: it sends what the stream
//! holds now and ends the pull at the stream's end (408); when nothing is there, it holds
//! the pull and sends the first records stored meanwhile, or ends it empty at the expiry
//! (408); it ends it early on a record that would pass `max_bytes` (409 "Message Size
//! Exceeds MaxBytes"). So an idle stream is a pull answered empty, and only silence past
//! the expiry (plus [`GRACE`]) means the consumer's leader or the connection is gone.
//!
//! Why by hand and not `fetch()`: a fetch without an expiry is one the server never times
//! out, and one that stalls (a 1024-record fetch of a consumer whose `max_ack_pending` was
//! the server's default 1000, acknowledged only after the whole batch, stalls at record
//! 1000 for ever: the bug bench-cluster.sh found) looks to the client exactly like a dead
//! consumer; and the client's own expiry timer ends a batch silently, like a server's 408.

use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::pull::BatchConfig;
use async_nats::jetstream::{self, consumer::PullConsumer};
use async_nats::StatusCode;
use tokio_stream::StreamExt;

/// How long past its expiry a pull may go unanswered (no record, no status) before the
/// follower takes the consumer for dead: the server sends its 408 at the expiry, so only a
/// lost pull (its server killed, the consumer between leaders) or a very busy host waits
/// longer.
pub(super) const GRACE: Duration = Duration::from_secs(4);

/// What a pull asks for.
#[derive(Clone, Copy, Debug)]
pub(super) struct Ask {
    /// Most records (at most half the consumer's `max_ack_pending`: one pull is read
    /// ahead while the previous one is applied and not acknowledged yet).
    pub batch: usize,
    /// Most bytes (records, headers, subjects: the server's count).
    pub max_bytes: usize,
    /// How long the server holds a pull that finds nothing (the long poll).
    pub expires: Duration,
}

/// A pull sent, its answers not read yet.
pub(super) struct Pull {
    answers: async_nats::Subscriber,
    context: jetstream::Context,
    ask: Ask,
    /// By when the server must have ended the pull.
    due: Instant,
}

/// What a pull brought.
pub(super) struct Pulled {
    /// Records, in stream order.
    pub messages: Vec<jetstream::Message>,
    /// The server ended the pull on a record larger than `max_bytes` left room for, before
    /// any record: `max_bytes` is too small for that record.
    pub too_small: bool,
}

impl Pull {
    /// Sends a pull for `ask` to `consumer`; its answers queue up while the caller does
    /// other work (the previous batch's apply).
    pub(super) async fn send(
        context: &jetstream::Context,
        consumer: &PullConsumer,
        ask: Ask,
    ) -> Result<Pull, String> {
        let client = context.client();
        let inbox = client.new_inbox();
        // Subscribed before the request goes out (one connection keeps the order).
        let answers =
            client.subscribe(inbox.clone()).await.map_err(|e| format!("subscribing a pull's inbox: {e}"))?;
        let request = BatchConfig {
            batch: ask.batch,
            max_bytes: ask.max_bytes,
            expires: Some(ask.expires),
            no_wait: true,
            ..Default::default()
        };
        let sent = Instant::now();
        consumer.request_batch(request, inbox.into()).await.map_err(|e| format!("sending a pull: {e}"))?;
        Ok(Pull { answers, context: context.clone(), ask, due: sent + ask.expires })
    }

    /// Reads the pull's answers until the server ends it (or it brought `batch` records):
    /// Ok, possibly empty (an idle stream); Err when it went unanswered past its expiry and
    /// [`GRACE`], or the server refused it (the consumer deleted, a leader change, no
    /// consumer leader): then the follower starts over.
    pub(super) async fn receive(mut self) -> Result<Pulled, String> {
        let mut messages = Vec::new();
        // The server's count (subject, reply, headers, payload: the client's `length`): a
        // record that uses up `max_bytes` exactly ends the pull with no status after it.
        let mut bytes = 0;
        loop {
            let wait = self.due.saturating_duration_since(Instant::now()) + GRACE;
            let answer = match tokio::time::timeout(wait, self.answers.next()).await {
                Ok(Some(m)) => m,
                Ok(None) => return Err("the NATS connection dropped a pull's inbox".into()),
                Err(_) => {
                    return Err(format!(
                        "a pull of the consumer went unanswered {:?} past its {:?} expiry (its NATS server gone, \
                         or a leader election)",
                        GRACE, self.ask.expires
                    ))
                }
            };
            match answer.status {
                None | Some(StatusCode::OK) => {
                    bytes += answer.length;
                    messages.push(jetstream::Message { message: answer, context: self.context.clone() });
                    if messages.len() == self.ask.batch || bytes >= self.ask.max_bytes {
                        return Ok(Pulled { messages, too_small: false });
                    }
                }
                // The pull ended: at the stream's end, at its expiry, or with nothing there.
                Some(StatusCode::TIMEOUT) | Some(StatusCode::NOT_FOUND) => {
                    return Ok(Pulled { messages, too_small: false })
                }
                Some(StatusCode::IDLE_HEARTBEAT) => {}
                Some(StatusCode::REQUEST_TERMINATED)
                    if answer
                        .description
                        .as_deref()
                        .is_some_and(|d| d.starts_with("Message Size Exceeds MaxBytes")) =>
                {
                    let too_small = messages.is_empty();
                    return Ok(Pulled { messages, too_small });
                }
                Some(StatusCode::NO_RESPONDERS) => {
                    return Err("no responders to a pull: the consumer has no leader (a NATS server \
                                restarting, or the consumer gone)"
                        .into())
                }
                Some(status) => {
                    return Err(format!(
                        "the server ended a pull: {status} {}",
                        answer.description.as_deref().unwrap_or("(no description)")
                    ))
                }
            }
        }
    }
}
