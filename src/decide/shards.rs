//! A map from customer or decision ids, split in shards behind `Arc`s, so that cloning the
//! decision state for a copy-on-write version copies 256 pointers, and a write copies only
//! the shards it touches (as `crate::store` does for column chunks).

use std::collections::HashMap;
use std::sync::Arc;

const SHARDS: usize = 256;

#[derive(Clone, Debug, PartialEq)]
pub struct Sharded<V> {
    shards: Vec<Arc<HashMap<u64, V>>>,
    len: usize,
}

impl<V> Default for Sharded<V> {
    fn default() -> Self {
        Sharded { shards: (0..SHARDS).map(|_| Arc::new(HashMap::new())).collect(), len: 0 }
    }
}

/// The shard of a key: the top byte of a Fibonacci hash, so consecutive ids spread out.
fn shard(k: u64) -> usize {
    (k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as usize
}

impl<V: Clone> Sharded<V> {
    pub fn get(&self, k: u64) -> Option<&V> {
        self.shards[shard(k)].get(&k)
    }

    pub fn contains_key(&self, k: u64) -> bool {
        self.shards[shard(k)].contains_key(&k)
    }

    /// The value, copying its shard first if a published version shares it.
    pub fn get_mut(&mut self, k: u64) -> Option<&mut V> {
        let s = &mut self.shards[shard(k)];
        if !s.contains_key(&k) {
            return None;
        }
        Arc::make_mut(s).get_mut(&k)
    }

    pub fn get_or_default(&mut self, k: u64) -> &mut V
    where
        V: Default,
    {
        let s = Arc::make_mut(&mut self.shards[shard(k)]);
        if !s.contains_key(&k) {
            self.len += 1;
        }
        s.entry(k).or_default()
    }

    pub fn insert(&mut self, k: u64, v: V) -> Option<V> {
        let old = Arc::make_mut(&mut self.shards[shard(k)]).insert(k, v);
        self.len += old.is_none() as usize;
        old
    }

    pub fn remove(&mut self, k: u64) -> Option<V> {
        let s = &mut self.shards[shard(k)];
        if !s.contains_key(&k) {
            return None;
        }
        let old = Arc::make_mut(s).remove(&k);
        self.len -= old.is_some() as usize;
        old
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Entries in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &V)> {
        self.shards.iter().flat_map(|s| s.iter().map(|(k, v)| (*k, v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Agrees with a plain HashMap, and a clone is not changed by writes to the original.
    #[test]
    fn behaves_as_a_map_and_clones_are_independent() {
        let mut m: Sharded<u32> = Sharded::default();
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
    }
}
