//! A read replica's or a cluster member's role and progress, as the application sees it:
//! a read replica refuses writes naming the primary (a member takes them), and the
//! follower (`crate::replica`, which applies the replicated log through the database's
//! committer) reports here how far it got. No transport and no NATS here: metrics, health
//! and `GetReplicaStatus` read it.

use std::sync::atomic::{AtomicU64, Ordering};

use std::collections::HashSet;

use tokio::sync::watch;

use crate::engine::{AchievementEvent, Gone};
use crate::segments::SegmentEvent;

use super::{App, AppError};

#[derive(Debug)]
pub struct ReplicaStatus {
    /// How to reach the primary (named in the refusal of a write); for a cluster member,
    /// the shared log it follows.
    pub primary: String,
    /// A cluster member (`--cluster`): writes are taken here.
    pub takes_writes: bool,
    /// Last sequence of the replicated log applied (and logged) on this replica.
    applied: AtomicU64,
    /// Last sequence the replicated log held when the follower last looked.
    stream_last: AtomicU64,
    /// Why the follower stopped for good (a gap, a record that does not apply): then this
    /// replica answers from a state that no longer advances, and health says NOT_SERVING.
    stopped: watch::Sender<Option<String>>,
    /// Most records of the replicated log this node may be behind and still report
    /// SERVING (`--max-serving-lag`).
    max_lag: AtomicU64,
    /// True while the lag is beyond `max_lag`, and until the follower's first look at the
    /// log (a node started on an old data dir is not known to be current before it).
    catching_up: watch::Sender<bool>,
}

/// `--max-serving-lag`'s default: a node this many records behind (a few seconds of a
/// busy writer's groups) stops advertising itself until it has caught up.
pub const DEFAULT_MAX_SERVING_LAG: u64 = 1000;

impl ReplicaStatus {
    /// A read replica of `primary`.
    pub fn new(primary: String) -> ReplicaStatus {
        ReplicaStatus { takes_writes: false, ..ReplicaStatus::member(primary) }
    }

    /// A cluster member following `log`.
    pub fn member(log: String) -> ReplicaStatus {
        ReplicaStatus {
            primary: log,
            takes_writes: true,
            applied: AtomicU64::new(0),
            stream_last: AtomicU64::new(0),
            stopped: watch::channel(None).0,
            max_lag: AtomicU64::new(DEFAULT_MAX_SERVING_LAG),
            catching_up: watch::channel(true).0,
        }
    }

    /// Sets the lag beyond which this node reports NOT_SERVING (`--max-serving-lag`).
    pub fn set_max_lag(&self, max_lag: u64) {
        self.max_lag.store(max_lag, Ordering::Release);
    }

    pub fn max_lag(&self) -> u64 {
        self.max_lag.load(Ordering::Acquire)
    }

    /// The follower's progress: `applied` is durable and visible here.
    pub fn progress(&self, applied: u64, stream_last: u64) {
        self.applied.store(applied, Ordering::Release);
        self.stream_last.store(stream_last.max(applied), Ordering::Release);
        let behind = stream_last.saturating_sub(applied) > self.max_lag();
        self.catching_up.send_if_modified(|c| std::mem::replace(c, behind) != behind);
    }

    /// Whether this node is further behind the log than `--max-serving-lag` (or has not
    /// looked at the log yet): health is NOT_SERVING meanwhile.
    pub fn catching_up(&self) -> bool {
        *self.catching_up.borrow()
    }

    /// Changes whenever [`ReplicaStatus::catching_up`] does (health watches it).
    pub fn subscribe_catching_up(&self) -> watch::Receiver<bool> {
        self.catching_up.subscribe()
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

/// A node's part in replication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Its own log only, or a primary (`--replicate`).
    Standalone,
    /// A read replica (`--replica-of`).
    Replica,
    /// A cluster member (`--cluster`).
    Member,
}

/// Where a node stands ([`App::replica_status`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaReport {
    pub role: Role,
    /// Last sequence applied and visible here.
    pub applied: u64,
    /// Last sequence of the replicated log as last seen (at least `applied`).
    pub stream_last: u64,
    pub takes_writes: bool,
    /// Why the follower stopped for good, if it did.
    pub stopped: Option<String>,
    /// Further behind the log than `--max-serving-lag` (health NOT_SERVING).
    pub catching_up: bool,
}

impl App {
    /// Where this node stands: applied sequence, the log's last, role.
    pub fn replica_status(&self) -> ReplicaReport {
        let applied = self.read().sequence();
        match &self.0.config.replica {
            None => ReplicaReport {
                role: Role::Standalone,
                applied,
                stream_last: applied,
                takes_writes: self.db().is_some(),
                stopped: None,
                catching_up: false,
            },
            Some(r) => ReplicaReport {
                role: if r.takes_writes { Role::Member } else { Role::Replica },
                applied,
                stream_last: r.stream_last().max(applied),
                takes_writes: r.takes_writes,
                stopped: r.stopped(),
                catching_up: r.catching_up(),
            },
        }
    }

    /// The last sequence applied and visible here.
    pub fn applied_sequence(&self) -> u64 {
        self.read().sequence()
    }

    /// Up to `max` retained segment events and up to `max` achievements with sequences
    /// from `from` on, in commit order (`crate::replica::events` publishes them).
    pub fn events_from(
        &self,
        from: u64,
        max: usize,
    ) -> Result<(Vec<SegmentEvent>, Vec<AchievementEvent>), Gone> {
        let eng = self.read();
        let everyone = HashSet::new();
        Ok((eng.events_since(from, &everyone, max)?, eng.achievements_since(from, &HashSet::new(), max)?))
    }

    /// Resolves once this node has applied `min_sequence` (a read then sees every write
    /// up to it), or fails [`AppError::NotApplied`] after `Config::min_sequence_wait`.
    pub async fn wait_applied(&self, min_sequence: u64) -> Result<(), AppError> {
        let mut commits = self.0.commits.subscribe();
        if self.read().sequence() >= min_sequence {
            return Ok(());
        }
        let wait = self.0.config.min_sequence_wait;
        let reached = tokio::time::timeout(wait, commits.wait_for(|&s| s >= min_sequence)).await;
        match reached {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) | Err(_) => Err(AppError::NotApplied {
                min_sequence,
                applied: self.read().sequence(),
                waited_ms: wait.as_millis() as u64,
            }),
        }
    }
}

#[cfg(test)]
#[path = "replica_tests.rs"]
mod tests;
