//! Per-attribute bitmap indexes, built at load in parallel.
//!
//! - [`Postings`]: one bitmap (a container per 2^16-row chunk).
//! - [`ValueIndex`]: a bitmap per distinct value of a bool, string or list-of-string column
//!   (per element for lists).
//! - [`RangeIndex`]: exact range predicates at any threshold for numeric and date columns.
//! - Every nullable column also has a bitmap of its NULL rows.

pub mod container;
pub mod range;

use std::sync::Arc;

use rayon::prelude::*;

use container::{Container, Words, CHUNK_ROWS};
pub use range::{Key, RangeIndex, RangePlan, RangeSpec};

/// One bitmap over row ids, a container per chunk.
///
/// Cloning is cheap (the chunk list is shared): a write copies the list on its first change
/// and then only the containers it changes, so a published state and the next one share
/// everything a batch does not touch.
#[derive(Clone, Debug, Default)]
pub struct Postings {
    pub chunks: Arc<Vec<Container>>,
    /// Total members, kept so planning needs no pass over the containers.
    pub len: u64,
}

impl Postings {
    pub fn from_chunks(chunks: Vec<Container>) -> Self {
        let len = chunks.iter().map(|c| c.len() as u64).sum();
        Postings { chunks: Arc::new(chunks), len }
    }

    pub fn empty(n_chunks: usize) -> Self {
        Postings { chunks: Arc::new(vec![Container::Empty; n_chunks]), len: 0 }
    }

    /// Rows `0..rows`, all present.
    pub fn all(rows: usize) -> Self {
        let chunks = (0..rows.div_ceil(CHUNK_ROWS))
            .map(|c| {
                let n = (rows - c * CHUNK_ROWS).min(CHUNK_ROWS);
                let offs: Vec<u16> = (0..n).map(|o| o as u16).collect();
                Container::from_sorted(&offs)
            })
            .collect();
        Postings { chunks: Arc::new(chunks), len: rows as u64 }
    }

    pub fn chunk(&self, c: usize) -> &Container {
        static EMPTY: Container = Container::Empty;
        self.chunks.get(c).unwrap_or(&EMPTY)
    }

    pub fn contains(&self, row: u32) -> bool {
        self.chunk((row >> 16) as usize).contains(row as u16)
    }

    pub fn heap_bytes(&self) -> usize {
        self.chunks.iter().map(|c| c.heap_bytes()).sum::<usize>()
            + self.chunks.capacity() * std::mem::size_of::<Container>()
    }

    /// Rows in ascending order (tests and small exports).
    pub fn rows(&self) -> Vec<u32> {
        let mut v = Vec::with_capacity(self.len as usize);
        for (c, cont) in self.chunks.iter().enumerate() {
            cont.for_each(|o| v.push(((c as u32) << 16) | o as u32));
        }
        v
    }

    pub fn insert(&mut self, row: u32) -> bool {
        let c = (row >> 16) as usize;
        if self.chunk(c).contains(row as u16) {
            return false;
        }
        let chunks = Arc::make_mut(&mut self.chunks);
        if chunks.len() <= c {
            chunks.resize(c + 1, Container::Empty);
        }
        let added = chunks[c].insert(row as u16);
        self.len += added as u64;
        added
    }

    /// Adds and removes offsets of chunk `c` (each sorted, disjoint) in one pass.
    pub fn edit_chunk(&mut self, c: usize, add: &[u16], remove: &[u16]) {
        if add.is_empty() && remove.is_empty() {
            return;
        }
        let chunks = Arc::make_mut(&mut self.chunks);
        if chunks.len() <= c {
            chunks.resize(c + 1, Container::Empty);
        }
        let delta = chunks[c].edit(add, remove);
        self.len = (self.len as i64 + delta) as u64;
    }

    pub fn remove(&mut self, row: u32) -> bool {
        let c = (row >> 16) as usize;
        if !self.chunk(c).contains(row as u16) {
            return false;
        }
        let removed = Arc::make_mut(&mut self.chunks)[c].remove(row as u16);
        self.len -= removed as u64;
        removed
    }
}

/// A bitmap per value code.
#[derive(Clone, Debug, Default)]
pub struct ValueIndex {
    pub values: Vec<Postings>,
    /// Whether no row holds two values (false for lists): then `IN` is a sum of counts.
    pub single_valued: bool,
}

impl ValueIndex {
    /// Builds from a function giving, for chunk `c`, each row offset's value codes.
    /// Chunks are indexed in parallel, then transposed to per-value postings.
    pub fn build(
        n_chunks: usize,
        n_values: usize,
        single_valued: bool,
        codes_of_chunk: impl Fn(usize, &mut dyn FnMut(u16, u32)) + Sync,
    ) -> Self {
        let per_chunk: Vec<Vec<Container>> = (0..n_chunks)
            .into_par_iter()
            .map(|c| {
                container::build_chunk(n_values, |f| codes_of_chunk(c, &mut |o, code| f(o, code as usize)))
            })
            .collect();
        let mut values: Vec<Vec<Container>> = (0..n_values).map(|_| Vec::with_capacity(n_chunks)).collect();
        for chunk in per_chunk {
            for (v, cont) in chunk.into_iter().enumerate() {
                values[v].push(cont);
            }
        }
        ValueIndex { values: values.into_iter().map(Postings::from_chunks).collect(), single_valued }
    }

    pub fn heap_bytes(&self) -> usize {
        self.values.iter().map(Postings::heap_bytes).sum()
    }
}

/// The index of one attribute.
#[derive(Clone, Debug)]
pub enum AttrIndex {
    Values(ValueIndex),
    IntRange(RangeIndex<i64>),
    FloatRange(RangeIndex<f64>),
}

impl AttrIndex {
    pub fn heap_bytes(&self) -> usize {
        match self {
            AttrIndex::Values(v) => v.heap_bytes(),
            AttrIndex::IntRange(r) => r.heap_bytes(),
            AttrIndex::FloatRange(r) => r.heap_bytes(),
        }
    }
}

/// Builds a NULL bitmap from a per-chunk predicate.
pub fn null_postings(n_chunks: usize, nulls_of_chunk: impl Fn(usize) -> Vec<u16> + Sync) -> Postings {
    Postings::from_chunks(
        (0..n_chunks).into_par_iter().map(|c| Container::from_sorted(&nulls_of_chunk(c))).collect(),
    )
}

/// Writes `live & !nulls` of chunk `c`: the rows where a column has a value.
pub fn write_valued(live: &Postings, nulls: Option<&Postings>, c: usize, out: &mut Words) {
    live.chunk(c).write_to(out);
    if let Some(n) = nulls {
        n.chunk(c).andnot_into(out);
    }
}
