//! A bounded cache of compiled ad-hoc `where` texts: thousands of callers asking IsMember
//! with the same segment text parse and plan it once, and a repeated CountSegment counts
//! it once.
//!
//! Invalidation: [`PlanCache::clear`] drops every entry and bumps the generation. A plan
//! binds dictionary codes and range buckets of the data it was compiled against, so a
//! later data change (live updates, a reload) must call `clear` before serving the new
//! data; an entry compiled under an older generation is never inserted afterwards.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::query::Plan;

/// A compiled segment and, once counted, its count.
#[derive(Debug)]
pub struct Cached {
    pub plan: Plan,
    /// `NOT_COUNTED` until first counted. An atomic rather than a `OnceLock`: counts run on
    /// the rayon pool, where a thread blocked in `OnceLock` init could be handed (by work
    /// stealing) another job initialising the same lock and deadlock. Two racing callers
    /// both count instead; the answer is the same.
    count: AtomicU64,
}

const NOT_COUNTED: u64 = u64::MAX;

impl Cached {
    pub fn new(plan: Plan) -> Self {
        Cached { plan, count: AtomicU64::new(NOT_COUNTED) }
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

    /// The cached entry for `text`, compiling (outside any lock) on a miss. Errors are not
    /// cached: a bad text fails fast in the parser anyway.
    pub fn get_or_compile<E>(
        &self,
        text: &str,
        compile: impl FnOnce(&str) -> Result<Plan, E>,
    ) -> Result<Arc<Cached>, E> {
        if let Some(e) = self.map.read().get(text) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(e.clone());
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let generation = self.generation();
        let entry = Arc::new(Cached::new(compile(text)?));
        if self.capacity == 0 {
            return Ok(entry);
        }
        let mut map = self.map.write();
        if self.generation() != generation {
            // Compiled against data that has since changed: serve it to this caller only.
            return Ok(entry);
        }
        if let Some(e) = map.get(text) {
            return Ok(e.clone());
        }
        if map.len() >= self.capacity {
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
            c.get_or_compile(t, |_| plan()).unwrap();
        }
        assert!(c.len() <= 2);
        let g = c.generation();
        c.clear();
        assert!(c.is_empty());
        assert_eq!(c.generation(), g + 1);
        assert!(c.get_or_compile("x", |_| Err::<Plan, _>("bad")).is_err());
        assert!(c.is_empty(), "errors are not cached");
    }

    #[test]
    fn counts_are_memoised() {
        let c = PlanCache::new(4);
        let e = c.get_or_compile("a", |_| plan()).unwrap();
        assert_eq!(e.count(), None);
        e.set_count(7);
        assert_eq!(c.get_or_compile("a", |_| plan()).unwrap().count(), Some(7));
        assert_eq!(c.stats(), (1, 1));
    }
}
