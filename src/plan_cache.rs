//! A bounded cache of compiled ad-hoc `where` texts: thousands of callers asking IsMember
//! with the same segment text parse and plan it once, and a repeated CountSegment counts
//! it once.
//!
//! Invalidation: a plan binds dictionary codes and range buckets of the data it was
//! compiled against, and a count is of one state of the data. So every entry carries the
//! data version (the engine's commit sequence) it was compiled at, and a lookup at another
//! version is a miss: a reader never uses a plan or count of other data than the state it
//! holds, however its lookup races a commit. [`PlanCache::clear`] (called after every
//! commit) drops the stale entries' memory and bumps the generation; an entry compiled
//! under an older generation is never inserted afterwards.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::query::Plan;

/// A compiled segment and, once counted, its count.
#[derive(Debug)]
pub struct Cached {
    pub plan: Plan,
    /// The data version the plan was compiled at.
    pub version: u64,
    /// `NOT_COUNTED` until first counted. An atomic rather than a `OnceLock`: counts run on
    /// the rayon pool, where a thread blocked in `OnceLock` init could be handed (by work
    /// stealing) another job initialising the same lock and deadlock. Two racing callers
    /// both count instead; the answer is the same.
    count: AtomicU64,
}

const NOT_COUNTED: u64 = u64::MAX;

impl Cached {
    pub fn new(plan: Plan, version: u64) -> Self {
        Cached { plan, version, count: AtomicU64::new(NOT_COUNTED) }
    }

    /// The memoised count, if any.
    pub fn count(&self) -> Option<u64> {
        let n = self.count.load(Ordering::Relaxed);
        (n != NOT_COUNTED).then_some(n)
    }

    pub fn set_count(&self, n: u64) {
        self.count.store(n, Ordering::Relaxed);
    }
}

pub struct PlanCache {
    // Reads (the hot path) share the lock; the write lock is taken only on a miss.
    map: RwLock<HashMap<Box<str>, Arc<Cached>>>,
    capacity: usize,
    generation: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl PlanCache {
    pub fn new(capacity: usize) -> Self {
        PlanCache {
            map: RwLock::new(HashMap::new()),
            capacity,
            generation: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The cached entry for `text` at data `version`, compiling (outside any lock) on a
    /// miss. Errors are not cached: a bad text fails fast in the parser anyway.
    pub fn get_or_compile<E>(
        &self,
        text: &str,
        version: u64,
        compile: impl FnOnce(&str) -> Result<Plan, E>,
    ) -> Result<Arc<Cached>, E> {
        if let Some(e) = self.map.read().get(text).filter(|e| e.version == version) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(e.clone());
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let generation = self.generation();
        let entry = Arc::new(Cached::new(compile(text)?, version));
        if self.capacity == 0 {
            return Ok(entry);
        }
        let mut map = self.map.write();
        if self.generation() != generation {
            // Compiled against data that has since changed: serve it to this caller only.
            return Ok(entry);
        }
        match map.get(text) {
            Some(e) if e.version == version => return Ok(e.clone()),
            // Newer than ours: keep it, serve ours to this caller only.
            Some(e) if e.version > version => return Ok(entry),
            _ => {}
        }
        if map.len() >= self.capacity && !map.contains_key(text) {
            // Evict an arbitrary entry (the map's iteration order): O(1) and no recency
            // bookkeeping on the read path. Segment texts in use are few; a caller cycling
            // through more than `capacity` of them pays a compile per call either way.
            if let Some(k) = map.keys().next().cloned() {
                map.remove(&k);
            }
        }
        map.insert(text.into(), entry.clone());
        Ok(entry)
    }

    /// Drops every entry: the hook for data changes.
    pub fn clear(&self) {
        let mut map = self.map.write();
        self.generation.fetch_add(1, Ordering::SeqCst);
        map.clear();
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    pub fn len(&self) -> usize {
        self.map.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// (hits, misses) since start.
    pub fn stats(&self) -> (u64, u64) {
        (self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::plan::Node;

    fn plan() -> Result<Plan, ()> {
        Ok(Plan { root: Node::Const(true) })
    }

    #[test]
    fn bounded_and_cleared() {
        let c = PlanCache::new(2);
        for t in ["a", "b", "c", "a"] {
            c.get_or_compile(t, 0, |_| plan()).unwrap();
        }
        assert!(c.len() <= 2);
        let g = c.generation();
        c.clear();
        assert!(c.is_empty());
        assert_eq!(c.generation(), g + 1);
        assert!(c.get_or_compile("x", 0, |_| Err::<Plan, _>("bad")).is_err());
        assert!(c.is_empty(), "errors are not cached");
    }

    #[test]
    fn counts_are_memoised() {
        let c = PlanCache::new(4);
        let e = c.get_or_compile("a", 0, |_| plan()).unwrap();
        assert_eq!(e.count(), None);
        e.set_count(7);
        assert_eq!(c.get_or_compile("a", 0, |_| plan()).unwrap().count(), Some(7));
        assert_eq!(c.stats(), (1, 1));
    }

    #[test]
    fn other_versions_miss() {
        let c = PlanCache::new(4);
        c.get_or_compile("a", 1, |_| plan()).unwrap().set_count(7);
        let newer = c.get_or_compile("a", 2, |_| plan()).unwrap();
        assert_eq!((newer.version, newer.count()), (2, None));
        // An older reader compiles its own and does not replace the newer entry.
        assert_eq!(c.get_or_compile("a", 1, |_| plan()).unwrap().version, 1);
        assert_eq!(c.get_or_compile("a", 2, |_| plan()).unwrap().version, 2);
        assert_eq!(c.len(), 1);
    }
}
