//! External customer id -> dense row id.

use std::collections::HashMap;

/// Dense when ids are close to a permutation of a range (the usual case: a direct table of
/// 4 bytes per id, one load per lookup), a hash map otherwise.
#[derive(Clone, Debug)]
pub enum IdMap {
    Dense { base: u64, rows: Vec<u32> },
    Sparse(HashMap<u64, u32>),
}

const ABSENT: u32 = u32::MAX;

/// A repeated id: (id, first row, second row).
#[derive(Debug)]
pub struct Duplicate(pub u64, pub u32, pub u32);

impl IdMap {
    pub fn build(ids: &[u64]) -> Result<IdMap, Duplicate> {
        let (Some(&min), Some(&max)) = (ids.iter().min(), ids.iter().max()) else {
            return Ok(IdMap::Dense { base: 0, rows: vec![] });
        };
        if max - min < 2 * ids.len() as u64 + 1024 {
            let mut rows = vec![ABSENT; (max - min + 1) as usize];
            for (r, &id) in ids.iter().enumerate() {
                let slot = &mut rows[(id - min) as usize];
                if *slot != ABSENT {
                    return Err(Duplicate(id, *slot, r as u32));
                }
                *slot = r as u32;
            }
            return Ok(IdMap::Dense { base: min, rows });
        }
        let mut map = HashMap::with_capacity(ids.len());
        for (r, &id) in ids.iter().enumerate() {
            if let Some(prev) = map.insert(id, r as u32) {
                return Err(Duplicate(id, prev, r as u32));
            }
        }
        Ok(IdMap::Sparse(map))
    }

    #[inline]
    pub fn row_of(&self, id: u64) -> Option<u32> {
        match self {
            IdMap::Dense { base, rows } => {
                id.checked_sub(*base).and_then(|i| rows.get(i as usize)).copied().filter(|&r| r != ABSENT)
            }
            IdMap::Sparse(m) => m.get(&id).copied(),
        }
    }

    pub fn heap_bytes(&self) -> usize {
        match self {
            IdMap::Dense { rows, .. } => rows.capacity() * 4,
            IdMap::Sparse(m) => m.capacity() * 16,
        }
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
    fn duplicates_name_both_rows() {
        let Err(Duplicate(id, a, b)) = IdMap::build(&[7, 8, 7]) else { panic!() };
        assert_eq!((id, a, b), (7, 0, 2));
    }
}
