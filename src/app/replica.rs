//! A read replica's role and progress, as the application sees it: writes are refused
//! naming the primary, and the follower (`crate::replica`, which applies the primary's
//! replicated log through the database's committer) reports here how far it got. No
//! transport and no NATS here: metrics and health read it.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

#[derive(Debug)]
pub struct ReplicaStatus {
    /// How to reach the primary (named in the refusal of a write).
    pub primary: String,
    /// Last sequence of the replicated log applied (and logged) on this replica.
    applied: AtomicU64,
    /// Last sequence the replicated log held when the follower last looked.
    stream_last: AtomicU64,
    /// Why the follower stopped for good (a gap, a record that does not apply): then this
    /// replica answers from a state that no longer advances, and health says NOT_SERVING.
    stopped: watch::Sender<Option<String>>,
}

impl ReplicaStatus {
    pub fn new(primary: String) -> ReplicaStatus {
        ReplicaStatus {
            primary,
            applied: AtomicU64::new(0),
            stream_last: AtomicU64::new(0),
            stopped: watch::channel(None).0,
        }
    }

    /// The follower's progress: `applied` is durable and visible here.
    pub fn progress(&self, applied: u64, stream_last: u64) {
        self.applied.store(applied, Ordering::Release);
        self.stream_last.store(stream_last.max(applied), Ordering::Release);
    }

    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    pub fn stream_last(&self) -> u64 {
        self.stream_last.load(Ordering::Acquire)
    }

    /// Records of the replicated log not applied here yet (as of the follower's last look).
    pub fn lag(&self) -> u64 {
        self.stream_last().saturating_sub(self.applied())
    }

    /// The follower stopped for good, for `reason`.
    pub fn stop(&self, reason: String) {
        self.stopped.send_replace(Some(reason));
    }

    /// Why the follower stopped, if it did.
    pub fn stopped(&self) -> Option<String> {
        self.stopped.borrow().clone()
    }

    /// Changes once, when the follower stops for good (health watches it).
    pub fn subscribe_stopped(&self) -> watch::Receiver<Option<String>> {
        self.stopped.subscribe()
    }
}
