//! A map from customer or decision ids that versions share: cloning it for a copy-on-write
//! version is O(1), and a write copies only the path to the entry it touches.
//!
//! It is a persistent B-tree (`imbl::OrdMap`, nodes of 64 keys) of `Arc`ed values. A write
//! to a map shared with a published version copies the root-to-leaf path (about
//! log64(n) nodes of at most 64 keys + `Arc`s: 4 nodes at 10M entries) and the one value
//! written; every other node and value stays shared. So a commit group touching `k`
//! customers copies O(k · log n) pointers and `k` values, whatever `n` is. The previous
//! layout (256 `Arc`ed hash maps) copied every shard a group touched: a group touching
//! 10k random customers copied all of them, the whole history per group.
//!
//! Iteration is in key order, so encoding the map (snapshots) needs no sort.

use std::sync::Arc;

use imbl::OrdMap;

#[derive(Clone, Debug)]
pub struct IdMap<V> {
    map: OrdMap<u64, Arc<V>>,
}

impl<V> Default for IdMap<V> {
    fn default() -> Self {
        IdMap { map: OrdMap::new() }
    }
}

impl<V: PartialEq> PartialEq for IdMap<V> {
    fn eq(&self, other: &Self) -> bool {
        self.map.len() == other.map.len()
            && self.map.iter().zip(other.map.iter()).all(|((a, x), (b, y))| a == b && x == y)
    }
}

impl<V: Clone> IdMap<V> {
    pub fn get(&self, k: u64) -> Option<&V> {
        self.map.get(&k).map(|v| &**v)
    }

    pub fn contains_key(&self, k: u64) -> bool {
        self.map.contains_key(&k)
    }

    /// The value, copying it (and its path) first if a published version shares it.
    pub fn get_mut(&mut self, k: u64) -> Option<&mut V> {
        self.map.get_mut(&k).map(Arc::make_mut)
    }

    pub fn get_or_default(&mut self, k: u64) -> &mut V
    where
        V: Default,
    {
        Arc::make_mut(self.map.entry(k).or_default())
    }

    pub fn insert(&mut self, k: u64, v: V) -> Option<V> {
        self.map.insert(k, Arc::new(v)).map(unwrap_or_clone)
    }

    pub fn remove(&mut self, k: u64) -> Option<V> {
        self.map.remove(&k).map(unwrap_or_clone)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Entries in ascending key order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &V)> {
        self.map.iter().map(|(k, v)| (*k, &**v))
    }
}

fn unwrap_or_clone<V: Clone>(v: Arc<V>) -> V {
    Arc::try_unwrap(v).unwrap_or_else(|shared| (*shared).clone())
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::collections::HashMap;

    use super::*;

    /// Agrees with a plain HashMap, and a clone is not changed by writes to the original.
    #[test]
    fn behaves_as_a_map_and_clones_are_independent() {
        let mut m: IdMap<u32> = IdMap::default();
        let mut oracle: HashMap<u64, u32> = HashMap::new();
        let mut x = 7u64;
        let mut snapshot = None;
        for i in 0..5_000u32 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let k = x >> 54;
            match i % 4 {
                0 => assert_eq!(m.insert(k, i), oracle.insert(k, i)),
                1 => assert_eq!(m.remove(k), oracle.remove(&k)),
                2 => *m.get_or_default(k) += 1,
                _ => {
                    if let Some(v) = m.get_mut(k) {
                        *v += 2;
                    }
                }
            }
            if i % 4 == 2 {
                *oracle.entry(k).or_default() += 1;
            }
            if i % 4 == 3 {
                if let Some(v) = oracle.get_mut(&k) {
                    *v += 2;
                }
            }
            if i == 2_500 {
                snapshot = Some((m.clone(), oracle.clone()));
            }
            assert_eq!(m.len(), oracle.len());
        }
        let got: HashMap<u64, u32> = m.iter().map(|(k, v)| (k, *v)).collect();
        assert_eq!(got, oracle);
        let (m2, o2) = snapshot.unwrap();
        assert_eq!(m2.iter().map(|(k, v)| (k, *v)).collect::<HashMap<_, _>>(), o2);
        assert!(m.contains_key(*oracle.keys().next().unwrap()) && m.get(u64::MAX).is_none());
        let keys: Vec<u64> = m.iter().map(|(k, _)| k).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "iteration is in key order");
    }

    thread_local! {
        static CLONES: Cell<usize> = const { Cell::new(0) };
    }

    /// A value that counts its deep copies (what a version's write pays per value).
    #[derive(Debug, Default, PartialEq)]
    struct Counted(Vec<u64>);

    impl Clone for Counted {
        fn clone(&self) -> Self {
            CLONES.with(|c| c.set(c.get() + 1));
            Counted(self.0.clone())
        }
    }

    /// The cost the committer pays per commit group, measured in copies rather than time:
    /// cloning a version of 200k entries and writing 1,000 random ones of them deep-copies
    /// exactly those 1,000 values (the rest stay shared with the published version, which
    /// keeps its own), and a second write to the same entry in the same version copies
    /// nothing. With 256 hash-map shards, the same writes copied every shard: all 200k.
    #[test]
    fn a_version_write_copies_only_the_values_it_touches() {
        let n = 200_000u64;
        let mut published: IdMap<Counted> = IdMap::default();
        for k in 0..n {
            published.insert(k * 7, Counted(vec![k]));
        }
        CLONES.with(|c| c.set(0));
        let mut next = published.clone();
        assert_eq!(CLONES.with(Cell::get), 0, "cloning a version copies no value");
        let mut x = 1u64;
        let mut touched = std::collections::HashSet::new();
        while touched.len() < 1_000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let k = (x >> 33) % n * 7;
            if touched.insert(k) {
                next.get_mut(k).unwrap().0.push(1);
            }
        }
        assert_eq!(CLONES.with(Cell::get), touched.len(), "one copy per value written, none per shard");
        for &k in &touched {
            next.get_mut(k).unwrap().0.push(2);
        }
        assert_eq!(CLONES.with(Cell::get), touched.len(), "a value copied once per version");
        // The published version is untouched.
        assert!(touched.iter().all(|&k| published.get(k).unwrap().0 == [k / 7]));
        assert!(touched.iter().all(|&k| next.get(k).unwrap().0 == [k / 7, 1, 2]));
    }
}
