//! One exact ranking: sorted blocks of entries with a Fenwick tree over block sizes.
//!
//! # Cost (n entries, blocks of at most [`MAX_BLOCK`] entries)
//! - `set` / `add` / `remove`: a binary search over the blocks' last keys (O(log n),
//!   kept in their own vector so the search touches one cache line per step), a
//!   `memmove` inside one block (≤ 512 entries of 40 bytes), and a Fenwick update
//!   (O(log n)). A block that grows past `MAX_BLOCK` splits, which rebuilds the Fenwick
//!   tree (O(n / 256)); that happens at most once per 256 inserts, so the amortised cost
//!   stays a few hundred operations: well inside the 10 µs an event may take at
//!   100k events/s, even at 10M entries.
//! - `top(n, offset)`: a Fenwick descent to `offset` (O(log n)) then `n` steps.
//! - `rank_of`: the block search, a Fenwick prefix sum, and a binary search in a block.
//! - Scoped reads: see [`Board::top`], [`Board::rank_of`] and [`Board::count`]; the
//!   key bands behind a scoped rank ([`super::bands`]) add two bitmap edits and a few
//!   bit flips to each update.
//!
//! Memory: 40 bytes per entry in the blocks (blocks run 50–100% full), 48 bytes per row
//! in the slot table (dense over row ids), the member bitmap (≤ 1.25 MB at 10M rows) and
//! the bands (~60 MB at 10M): about 1.1 GB for a board holding all of 10M customers.

use std::cmp::Ordering;

use super::bands::{Bands, MIN_BAND};
use super::{BoardError, Ranked, Scope};
use crate::index::container::Words;
use crate::index::Postings;

/// Entries per block before it splits in two.
pub const MAX_BLOCK: usize = 512;

/// The ranking key. Ordering: higher score first; then who reached the score first
/// (`reached_at_ms`, then the logged sequence number, exact even within one
/// millisecond); then the lower customer id; then the lower row (only if a caller
/// ever gave two rows one customer id).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    pub score: i64,
    pub reached_at_ms: i64,
    pub seq: u64,
    pub customer_id: u64,
    pub row: u32,
}

impl Ord for Key {
    fn cmp(&self, o: &Self) -> Ordering {
        o.score
            .cmp(&self.score)
            .then(self.reached_at_ms.cmp(&o.reached_at_ms))
            .then(self.seq.cmp(&o.seq))
            .then(self.customer_id.cmp(&o.customer_id))
            .then(self.row.cmp(&o.row))
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// A ranking over rows. Rows absent from the board are not ranked at all.
#[derive(Clone, Debug, Default)]
pub struct Board {
    /// Sorted, non-empty blocks, in rank order.
    blocks: Vec<Vec<Key>>,
    /// The last key of each block, for the search.
    lasts: Vec<Key>,
    /// Fenwick tree over block lengths (1-based).
    fenwick: Vec<u64>,
    /// The current key per row, if on the board.
    slots: Vec<Option<Key>>,
    members: Postings,
    len: u64,
    bands: Bands,
}

impl Board {
    pub fn new() -> Self {
        Self::default()
    }

    /// Entries on the board.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The rows on the board.
    pub fn members(&self) -> &Postings {
        &self.members
    }

    /// The row's current entry.
    pub fn entry(&self, row: u32) -> Option<Key> {
        self.slots.get(row as usize).copied().flatten()
    }

    /// Sets a row's score. An unchanged score keeps the instant it was first reached
    /// (re-affirming a score must not cost a customer their place).
    pub fn set(&mut self, row: u32, customer_id: u64, score: i64, at_ms: i64, seq: u64) {
        if let Some(old) = self.entry(row) {
            if old.score == score && old.customer_id == customer_id {
                return;
            }
        }
        self.place(Key { score, reached_at_ms: at_ms, seq, customer_id, row });
    }

    /// Puts `key` on the board as its row's entry, in place of the one it holds.
    fn place(&mut self, key: Key) {
        let row = key.row;
        let mut from = None;
        if let Some(old) = self.entry(row) {
            from = Some(self.bands.band_of(&old));
            self.remove_entry(old);
        }
        self.insert_key(key);
        if self.slots.len() <= row as usize {
            self.slots.resize(row as usize + 1, None);
        }
        self.slots[row as usize] = Some(key);
        self.members.insert(row);
        self.len += 1;
        if self.bands.shift(row, from, Some(self.bands.band_of(&key)), self.len) {
            self.bands.rebuild(self.blocks.iter().flatten(), self.slots.len(), self.len);
        }
    }

    /// Adds `delta` to a row's score (absent rows start at 0) and returns the new score.
    pub fn add(
        &mut self,
        row: u32,
        customer_id: u64,
        delta: i64,
        at_ms: i64,
        seq: u64,
    ) -> Result<i64, BoardError> {
        let old = self.entry(row).map_or(0, |k| k.score);
        let new = old.checked_add(delta).ok_or(BoardError::Overflow { row, score: old, delta })?;
        if self.entry(row).is_some() && delta == 0 {
            return Ok(new);
        }
        self.set(row, customer_id, new, at_ms, seq);
        Ok(new)
    }

    /// Several [`Board::add`]s to one row, `(customer_id, delta, at_ms, seq)` in order,
    /// with the entry they leave moved once: the same entry (score, instant and sequence
    /// it was reached at) as adding them one by one, without taking the row out of the
    /// ranking and putting it back per add. Returns the adds that would overflow (each
    /// left out, as [`Board::add`] leaves the score where it was).
    pub fn add_all(
        &mut self,
        row: u32,
        adds: impl IntoIterator<Item = (u64, i64, i64, u64)>,
    ) -> Vec<BoardError> {
        let start = self.entry(row);
        let mut cur = start;
        let mut errors = vec![];
        for (customer_id, delta, at_ms, seq) in adds {
            let old = cur.map_or(0, |k| k.score);
            let Some(new) = old.checked_add(delta) else {
                errors.push(BoardError::Overflow { row, score: old, delta });
                continue;
            };
            // What `add` and `set` leave alone: a zero delta on the board, the same score.
            match cur {
                Some(_) if delta == 0 => continue,
                Some(k) if k.score == new && k.customer_id == customer_id => continue,
                _ => {}
            }
            cur = Some(Key { score: new, reached_at_ms: at_ms, seq, customer_id, row });
        }
        if let Some(key) = cur.filter(|&k| Some(k) != start) {
            self.place(key);
        }
        errors
    }

    /// Takes a row off the board; false if it was not on it.
    pub fn remove(&mut self, row: u32) -> bool {
        let Some(key) = self.entry(row) else { return false };
        let band = self.bands.band_of(&key);
        self.remove_entry(key);
        self.bands.shift(row, Some(band), None, self.len);
        true
    }

    /// Removes a key from the blocks, the slots and the members (not the bands).
    fn remove_entry(&mut self, key: Key) {
        let row = key.row;
        let b = self.block_of(&key);
        let i = self.blocks[b].binary_search(&key).expect("slot and block agree");
        self.blocks[b].remove(i);
        if self.blocks[b].is_empty() {
            self.blocks.remove(b);
            self.lasts.remove(b);
            self.rebuild_fenwick();
        } else {
            self.lasts[b] = *self.blocks[b].last().expect("non-empty");
            self.fenwick_add(b, -1);
        }
        self.slots[row as usize] = None;
        self.members.remove(row);
        self.len -= 1;
    }

    /// The first block whose last key is ≥ `key` (the last block if none is).
    fn block_of(&self, key: &Key) -> usize {
        self.lasts.partition_point(|l| l < key).min(self.blocks.len().saturating_sub(1))
    }

    fn insert_key(&mut self, key: Key) {
        if self.blocks.is_empty() {
            self.blocks.push(vec![key]);
            self.lasts.push(key);
            self.rebuild_fenwick();
            return;
        }
        let b = self.block_of(&key);
        let block = &mut self.blocks[b];
        let i = block.partition_point(|k| k < &key);
        block.insert(i, key);
        self.lasts[b] = *block.last().expect("non-empty");
        if block.len() > MAX_BLOCK {
            let tail = block.split_off(block.len() / 2);
            self.lasts[b] = *block.last().expect("non-empty");
            self.lasts.insert(b + 1, *tail.last().expect("non-empty"));
            self.blocks.insert(b + 1, tail);
            self.rebuild_fenwick();
        } else {
            self.fenwick_add(b, 1);
        }
    }

    fn rebuild_fenwick(&mut self) {
        let n = self.blocks.len();
        self.fenwick = vec![0; n + 1];
        for (i, b) in self.blocks.iter().enumerate() {
            self.fenwick[i + 1] += b.len() as u64;
            let j = (i + 1) + ((i + 1) & (i + 1).wrapping_neg());
            if j <= n {
                self.fenwick[j] += self.fenwick[i + 1];
            }
        }
    }

    fn fenwick_add(&mut self, b: usize, d: i64) {
        let mut i = b + 1;
        while i < self.fenwick.len() {
            self.fenwick[i] = (self.fenwick[i] as i64 + d) as u64;
            i += i & i.wrapping_neg();
        }
    }

    /// Entries in blocks before `b`.
    fn before_block(&self, b: usize) -> u64 {
        let (mut i, mut s) = (b, 0);
        while i > 0 {
            s += self.fenwick[i];
            i &= i - 1;
        }
        s
    }

    /// The (block, index) of global position `pos` (0-based), if `pos < len`.
    fn locate(&self, pos: u64) -> Option<(usize, usize)> {
        if pos >= self.len {
            return None;
        }
        let n = self.blocks.len();
        let (mut b, mut rest) = (0usize, pos);
        let mut step = n.next_power_of_two();
        while step > 0 {
            if b + step <= n && self.fenwick[b + step] <= rest {
                b += step;
                rest -= self.fenwick[b];
            }
            step >>= 1;
        }
        Some((b, rest as usize))
    }

    /// 0-based global position of a row.
    fn position(&self, row: u32) -> Option<u64> {
        let key = self.entry(row)?;
        let b = self.block_of(&key);
        let i = self.blocks[b].binary_search(&key).ok()?;
        Some(self.before_block(b) + i as u64)
    }

    /// 0-based position of the first key ≥ `key`.
    fn lower_bound(&self, key: &Key) -> u64 {
        if self.blocks.is_empty() {
            return 0;
        }
        let b = self.block_of(key);
        self.before_block(b) + self.blocks[b].partition_point(|k| k < key) as u64
    }

    /// Keys from global position `pos` on, in rank order.
    fn iter_from(&self, pos: u64) -> impl Iterator<Item = &Key> + '_ {
        let (b, i) = self.locate(pos).unwrap_or((self.blocks.len(), 0));
        self.blocks
            .iter()
            .skip(b)
            .enumerate()
            .flat_map(move |(j, blk)| blk[if j == 0 { i } else { 0 }..].iter())
    }

    /// Keys before global position `pos`, nearest first.
    fn iter_back_from(&self, pos: u64) -> impl Iterator<Item = &Key> + '_ {
        let (b, i) = self.locate(pos).unwrap_or((self.blocks.len(), 0));
        let first = self.blocks.get(b).map_or(&[][..], |blk| &blk[..i]);
        first
            .iter()
            .rev()
            .chain(self.blocks[..b.min(self.blocks.len())].iter().rev().flat_map(|blk| blk.iter().rev()))
    }

    /// Entries ranked `offset + 1 ..= offset + n` within the scope.
    ///
    /// Everyone: O(log n + n). A bitmap scope walks the global order and keeps members:
    /// O((offset + n) / density) membership tests, e.g. ~1,000 for the top 100 of a 10%
    /// segment, so no copy of the board per segment exists.
    pub fn top(&self, n: usize, offset: u64, scope: Scope<'_>) -> Vec<Ranked> {
        match scope {
            Scope::Everyone => self
                .iter_from(offset)
                .take(n)
                .enumerate()
                .map(|(i, k)| Ranked::new(k, offset + 1 + i as u64))
                .collect(),
            Scope::Rows(p) => self
                .iter_from(0)
                .filter(|k| p.contains(k.row))
                .enumerate()
                .skip(offset as usize)
                .take(n)
                .map(|(i, k)| Ranked::new(k, 1 + i as u64))
                .collect(),
        }
    }

    /// The 1-based rank of a row within the scope (None if it is not on the board or not
    /// in the scope).
    ///
    /// Everyone: O(log n). A bitmap scope: near the top (position < 2 × `MIN_BAND`) a walk
    /// of the order; elsewhere the key bands ([`super::bands`]): one cumulative-bitmap and
    /// a few band-bitmap AND-counts with the scope, plus a walk of the row's band ahead of
    /// it. A few hundred µs at 10M entries whatever the scope's size.
    pub fn rank_of(&self, row: u32, scope: Scope<'_>) -> Option<u64> {
        let pos = self.position(row)?;
        match scope {
            Scope::Everyone => Some(pos + 1),
            Scope::Rows(p) => {
                if !p.contains(row) {
                    return None;
                }
                let ahead = if pos < 2 * MIN_BAND {
                    self.iter_back_from(pos).filter(|k| p.contains(k.row)).count() as u64
                } else {
                    let key = self.entry(row)?;
                    let b = self.bands.band_of(&key);
                    let start = self.bands.band_start(b).map_or(0, |k| self.lower_bound(k));
                    let in_band =
                        self.iter_from(start).take((pos - start) as usize).filter(|k| p.contains(k.row));
                    self.bands.count_before(b, p) + in_band.count() as u64
                };
                Some(ahead + 1)
            }
        }
    }

    /// Up to `k` entries on each side of a row, within the scope, with their ranks.
    pub fn around(&self, row: u32, k: usize, scope: Scope<'_>) -> Vec<Ranked> {
        let (Some(pos), Some(rank)) = (self.position(row), self.rank_of(row, scope)) else {
            return Vec::new();
        };
        let keep = |key: &&Key| match scope {
            Scope::Everyone => true,
            Scope::Rows(p) => p.contains(key.row),
        };
        let mut ahead: Vec<&Key> = self.iter_back_from(pos).filter(keep).take(k).collect();
        ahead.reverse();
        let first = rank - ahead.len() as u64;
        let mut out: Vec<Ranked> =
            ahead.into_iter().enumerate().map(|(i, key)| Ranked::new(key, first + i as u64)).collect();
        out.extend(
            self.iter_from(pos)
                .filter(keep)
                .take(k + 1)
                .enumerate()
                .map(|(i, key)| Ranked::new(key, rank + i as u64)),
        );
        out
    }

    /// Members of the scope on the board: one AND-count per 2^16-row chunk (~150 chunk
    /// operations at 10M rows, tens of µs).
    pub fn count(&self, scope: Scope<'_>) -> u64 {
        match scope {
            Scope::Everyone => self.len,
            Scope::Rows(p) => {
                let mut words: Box<Words> = crate::index::container::zeroed();
                let mut total = 0u64;
                for c in 0..self.members.chunks.len().min(p.chunks.len()) {
                    let (m, s) = (self.members.chunk(c), p.chunk(c));
                    if m.is_empty() || s.is_empty() {
                        continue;
                    }
                    s.write_to(&mut words);
                    total += m.and_count(&words) as u64;
                }
                total
            }
        }
    }

    /// Builds a board from keys in strictly ascending rank order with distinct rows, in
    /// O(n) (a restore must not pay n single inserts, each of which may rebuild the bands);
    /// None if the keys are out of order or a row repeats.
    pub fn from_sorted_keys(keys: Vec<Key>) -> Option<Board> {
        if keys.windows(2).any(|w| w[0] >= w[1]) {
            return None;
        }
        let mut b = Board::new();
        for k in &keys {
            let r = k.row as usize;
            if b.slots.len() <= r {
                b.slots.resize(r + 1, None);
            }
            if b.slots[r].replace(*k).is_some() {
                return None;
            }
            b.members.insert(k.row);
        }
        b.len = keys.len() as u64;
        // Three-quarter-full blocks leave room to grow before the first splits.
        for chunk in keys.chunks(MAX_BLOCK * 3 / 4) {
            b.blocks.push(chunk.to_vec());
            b.lasts.push(*chunk.last().expect("chunks are non-empty"));
        }
        b.rebuild_fenwick();
        b.bands.rebuild(b.blocks.iter().flatten(), b.slots.len(), b.len);
        Some(b)
    }

    /// Key bands in use (tests check that scoped ranks cross many of them).
    pub fn bands(&self) -> usize {
        self.bands.band_count()
    }

    /// All keys in rank order (records and tests).
    pub fn keys(&self) -> impl Iterator<Item = &Key> + '_ {
        self.blocks.iter().flatten()
    }
}
