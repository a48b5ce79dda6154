//! Limits and tuning of the application: every field is a `segd serve` flag.

use std::time::Duration;

use crate::query::Limits;

#[derive(Clone, Debug)]
pub struct Config {
    /// Segment text bytes, predicate depth, IN-list length.
    pub limits: Limits,
    /// Largest request message a transport will decode (OUT_OF_RANGE above it).
    pub max_request_bytes: usize,
    pub max_batch_ids: usize,
    pub max_overlap_segments: usize,
    pub max_top_n: usize,
    /// Compiled `where` texts kept (0 disables the cache).
    pub plan_cache_entries: usize,
    /// Memoise the count of a cached `where` text (per state of the data: every commit
    /// starts afresh).
    pub cache_counts: bool,
    /// Most customers (or ids) in one write request: larger batches are INVALID_ARGUMENT
    /// before any work.
    pub max_upsert_batch: usize,
    /// Events buffered per watch subscription.
    pub watch_buffer: usize,
    /// A watcher whose buffer stays full this long is ended with "consumer too slow".
    pub slow_consumer: Duration,
    /// Set on a read replica (`--replica-of`): writes are refused naming the primary, and
    /// the follower reports its applied sequence and lag here.
    pub replica: Option<std::sync::Arc<super::replica::ReplicaStatus>>,
    /// How often a server looks at the gamification agenda (`--tick-interval`): a tick is
    /// logged only when something is due, so this bounds how late expiry, pending points
    /// and downgrades land, not how much the log grows.
    pub tick_every: Duration,
    /// Longest a read with a `min_sequence` waits for this node to apply it.
    pub min_sequence_wait: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            limits: Limits::default(),
            max_request_bytes: 4 << 20,
            max_batch_ids: 100_000,
            max_overlap_segments: 16,
            max_top_n: 1000,
            plan_cache_entries: 4096,
            cache_counts: true,
            max_upsert_batch: 100_000,
            watch_buffer: 1024,
            slow_consumer: Duration::from_secs(5),
            replica: None,
            tick_every: super::gamify::TICK_EVERY,
            min_sequence_wait: Duration::from_secs(2),
        }
    }
}
