//! External customer id -> dense row id.

use std::collections::HashMap;
use std::sync::Arc;

/// Ids per page of the direct table.
const PAGE: usize = 1 << 16;

/// A direct table for ids close to a range (the usual case: 4 bytes per id, one load per
/// lookup) plus a hash map for ids outside it (sparse id spaces).
///
/// The table is paged behind `Arc`s so a state copied for a write shares it and copies
/// only the pages the write changes; it grows at its end, so new customers with the next
/// ids (the usual way ids are handed out) stay in it.
#[derive(Clone, Debug, Default)]
pub struct IdMap {
    base: u64,
    pages: Vec<Arc<Vec<u32>>>,
    sparse: Arc<HashMap<u64, u32>>,
}

const ABSENT: u32 = u32::MAX;

/// A repeated id: (id, first row, second row).
#[derive(Debug)]
pub struct Duplicate(pub u64, pub u32, pub u32);

impl IdMap {
    pub fn build(ids: &[u64]) -> Result<IdMap, Duplicate> {
        let mut m = IdMap::default();
        if let (Some(&min), Some(&max)) = (ids.iter().min(), ids.iter().max()) {
            if max - min < 2 * ids.len() as u64 + 1024 {
                m.base = min;
                let n_pages = ((max - min) as usize + 1).div_ceil(PAGE);
                m.pages = (0..n_pages).map(|_| Arc::new(vec![ABSENT; PAGE])).collect();
            }
        }
        for (r, &id) in ids.iter().enumerate() {
            if let Some(prev) = m.row_of(id) {
                return Err(Duplicate(id, prev, r as u32));
            }
            m.insert(id, r as u32);
        }
        Ok(m)
    }

    /// The slot of `id` in the direct table, if it falls there.
    #[inline]
    fn slot(&self, id: u64) -> Option<(usize, usize)> {
        let i = id.checked_sub(self.base)?;
        let p = (i / PAGE as u64) as usize;
        (p < self.pages.len()).then_some((p, (i % PAGE as u64) as usize))
    }

    #[inline]
    pub fn row_of(&self, id: u64) -> Option<u32> {
        match self.slot(id) {
            Some((p, o)) => Some(self.pages[p][o]).filter(|&r| r != ABSENT),
            None => self.sparse.get(&id).copied(),
        }
    }

    /// Maps `id` to `row` (replacing any previous row).
    pub fn insert(&mut self, id: u64, row: u32) {
        // An id up to a page past the table's end extends it (ids handed out in order).
        if self.slot(id).is_none() && !self.pages.is_empty() && id >= self.base {
            let p = ((id - self.base) / PAGE as u64) as usize;
            if p == self.pages.len() {
                self.pages.push(Arc::new(vec![ABSENT; PAGE]));
            }
        }
        match self.slot(id) {
            Some((p, o)) => Arc::make_mut(&mut self.pages[p])[o] = row,
            None => {
                Arc::make_mut(&mut self.sparse).insert(id, row);
            }
        }
    }

    /// Unmaps `id`, returning the row it had.
    pub fn remove(&mut self, id: u64) -> Option<u32> {
        match self.slot(id) {
            Some((p, o)) => {
                let r = self.pages[p][o];
                if r == ABSENT {
                    return None;
                }
                Arc::make_mut(&mut self.pages[p])[o] = ABSENT;
                Some(r)
            }
            None if self.sparse.contains_key(&id) => Arc::make_mut(&mut self.sparse).remove(&id),
            None => None,
        }
    }

    pub fn heap_bytes(&self) -> usize {
        self.pages.len() * PAGE * 4 + self.sparse.capacity() * 16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_and_sparse_agree() {
        for ids in [vec![5u64, 3, 4, 9], vec![1, 1 << 40, 77]] {
            let m = IdMap::build(&ids).unwrap();
            for (r, id) in ids.iter().enumerate() {
                assert_eq!(m.row_of(*id), Some(r as u32));
            }
            assert_eq!(m.row_of(2), None);
            assert_eq!(m.row_of(u64::MAX), None);
        }
    }

    #[test]
    fn inserts_and_removes_in_and_out_of_the_dense_range() {
        let mut m = IdMap::build(&[10, 11, 12]).unwrap();
        m.insert(1 << 50, 3);
        assert_eq!(m.row_of(1 << 50), Some(3));
        assert!(m.remove(11).is_some());
        assert_eq!(m.row_of(11), None);
        assert!(m.remove(11).is_none());
        assert!(m.remove(1 << 50).is_some());
        assert_eq!(m.row_of(1 << 50), None);
    }

    #[test]
    fn the_next_ids_extend_the_table_and_copies_are_independent() {
        let ids: Vec<u64> = (100..100 + PAGE as u64).collect();
        let mut m = IdMap::build(&ids).unwrap();
        let before = m.clone();
        let next = 100 + PAGE as u64 + 5;
        m.insert(next, 7);
        assert_eq!(m.row_of(next), Some(7));
        assert!(m.sparse.is_empty(), "the next ids go to the direct table");
        assert_eq!(m.remove(100), Some(0));
        assert_eq!(before.row_of(100), Some(0), "a copy taken before is unchanged");
        assert_eq!(before.row_of(next), None);
    }

    #[test]
    fn duplicates_name_both_rows() {
        let Err(Duplicate(id, a, b)) = IdMap::build(&[7, 8, 7]) else { panic!() };
        assert_eq!((id, a, b), (7, 0, 2));
    }
}
