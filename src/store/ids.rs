//! External customer id -> dense row id.

use std::collections::HashMap;

/// A direct table for ids close to a range (the usual case: 4 bytes per id, one load per
/// lookup) plus a hash map for ids outside it (sparse id spaces, customers added later).
#[derive(Clone, Debug, Default)]
pub struct IdMap {
    base: u64,
    dense: Vec<u32>,
    sparse: HashMap<u64, u32>,
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
                m.dense = vec![ABSENT; (max - min + 1) as usize];
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

    #[inline]
    pub fn row_of(&self, id: u64) -> Option<u32> {
        match id.checked_sub(self.base).and_then(|i| self.dense.get(i as usize)) {
            Some(&r) => (r != ABSENT).then_some(r),
            None => self.sparse.get(&id).copied(),
        }
    }

    /// Maps `id` to `row` (replacing any previous row).
    pub fn insert(&mut self, id: u64, row: u32) {
        match id.checked_sub(self.base).and_then(|i| self.dense.get_mut(i as usize)) {
            Some(slot) => *slot = row,
            None => {
                self.sparse.insert(id, row);
            }
        }
    }

    /// Unmaps `id`, returning the row it had.
    pub fn remove(&mut self, id: u64) -> Option<u32> {
        match id.checked_sub(self.base).and_then(|i| self.dense.get_mut(i as usize)) {
            Some(slot) => Some(std::mem::replace(slot, ABSENT)).filter(|&r| r != ABSENT),
            None => self.sparse.remove(&id),
        }
    }

    pub fn heap_bytes(&self) -> usize {
        self.dense.capacity() * 4 + self.sparse.capacity() * 16
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
    fn duplicates_name_both_rows() {
        let Err(Duplicate(id, a, b)) = IdMap::build(&[7, 8, 7]) else { panic!() };
        assert_eq!((id, a, b), (7, 0, 2));
    }
}
