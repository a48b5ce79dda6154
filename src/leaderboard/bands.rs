//! Key bands with cumulative bitmaps: how a scoped rank counts the scope's members ahead
//! of a customer without a pass over the scope or the board.
//!
//! The key space is cut at pivot keys into at most [`NBANDS`] bands of about `len /
//! NBANDS` entries. Each band keeps a bitmap of its rows, and every [`STRIDE`] bands a
//! cumulative bitmap holds the rows of all bands before it (the range encoding of
//! `index::range`, over ranking keys instead of values). The scope members ahead of a key
//! in band `b` are then: one AND-count with the nearest cumulative bitmap, at most
//! `STRIDE / 2` AND-counts with band bitmaps (added or subtracted), and a walk of the
//! part of band `b` ahead of the key (≤ 2 × len / NBANDS entries). At 10M entries and a
//! 1M-member scope that is ~150 dense chunk reads + ~4 × 39k array lookups + ≤ 78k
//! membership tests: a few hundred µs, independent of the scope's size.
//!
//! An update moves a row between two bands: two band-bitmap edits and one bit flip in
//! each cumulative bitmap between them. When a band grows past twice its target, all
//! bands are rebuilt from the rows in row order (O(n): sorted appends into arrays and one
//! dense pass per chunk); that needs at least `len / NBANDS` updates into one band, so
//! it costs at most a few hundred operations per update amortised, paid as one pause
//! (~tens of ms at 10M) on the update that triggers it.
//!
//! Memory at 10M entries: band bitmaps ~2 bytes a row (20 MB), 31 cumulative bitmaps of
//! ~1.25 MB (~40 MB).

use super::board::Key;
use crate::index::container::{self, Container, Words, CHUNK_ROWS};
use crate::index::Postings;

pub const NBANDS: usize = 256;
pub const STRIDE: usize = 8;
/// The smallest band target: below it a walk is as cheap as the bitmaps. Small under
/// test, so the proptests cross many bands.
pub const MIN_BAND: u64 = if cfg!(test) { 3 } else { 4096 };

#[derive(Clone, Debug, Default)]
pub struct Bands {
    /// `pivots[j]` is the first key of band `j + 1`.
    pivots: Vec<Key>,
    rows: Vec<Postings>,
    /// `cum[i]`: rows of bands `< i * STRIDE`, for `i` in `1..=bands / STRIDE`
    /// (`cum[0]` is empty and kept only for indexing).
    cum: Vec<Postings>,
    target: u64,
}

impl Bands {
    pub fn band_of(&self, key: &Key) -> usize {
        self.pivots.partition_point(|p| p <= key)
    }

    /// The first key of band `b` (None for band 0: the top of the board).
    pub fn band_start(&self, b: usize) -> Option<&Key> {
        b.checked_sub(1).map(|i| &self.pivots[i])
    }

    fn ensure(&mut self) {
        if self.rows.is_empty() {
            self.rows.push(Postings::default());
            self.cum.push(Postings::default());
        }
    }

    /// Moves a row between bands (`None`: off the board). Returns whether the target band
    /// has outgrown its target, so the caller rebuilds.
    pub fn shift(&mut self, row: u32, from: Option<usize>, to: Option<usize>, len: u64) -> bool {
        self.ensure();
        if from == to {
            return false;
        }
        if let Some(a) = from {
            self.rows[a].remove(row);
        }
        if let Some(b) = to {
            self.rows[b].insert(row);
        }
        // The row is in cum[i] iff its band < i * STRIDE.
        let first_cum = |band: Option<usize>| band.map_or(self.cum.len(), |b| b / STRIDE + 1);
        let (was, now) = (first_cum(from), first_cum(to));
        for i in now.min(was)..now.max(was) {
            if i >= self.cum.len() {
                break;
            }
            if now < was {
                self.cum[i].insert(row);
            } else {
                self.cum[i].remove(row);
            }
        }
        to.is_some_and(|b| self.rows[b].len > 2 * self.target.max(len / NBANDS as u64).max(MIN_BAND))
    }

    /// Rebuilds from the board's keys in rank order and its per-row keys.
    pub fn rebuild<'a>(&mut self, keys: impl Iterator<Item = &'a Key>, slots: &[Option<Key>], len: u64) {
        let target = (len / NBANDS as u64).max(MIN_BAND);
        self.target = target;
        self.pivots = keys
            .enumerate()
            .filter(|(i, _)| *i > 0 && (*i as u64).is_multiple_of(target))
            .map(|(_, k)| *k)
            .collect();
        let nb = self.pivots.len() + 1;
        let ncum = nb.div_ceil(STRIDE);
        let n_chunks = slots.len().div_ceil(CHUNK_ROWS);
        let mut band_chunks: Vec<Vec<Container>> = vec![Vec::with_capacity(n_chunks); nb];
        let mut cum_chunks: Vec<Vec<Container>> = vec![Vec::with_capacity(n_chunks); ncum + 1];
        let mut offs: Vec<Vec<u16>> = vec![Vec::new(); nb];
        let mut words: Box<Words> = container::zeroed();
        for c in 0..n_chunks {
            offs.iter_mut().for_each(Vec::clear);
            let lo = c * CHUNK_ROWS;
            for (o, slot) in slots[lo..(lo + CHUNK_ROWS).min(slots.len())].iter().enumerate() {
                if let Some(k) = slot {
                    offs[self.band_of(k)].push(o as u16);
                }
            }
            words.fill(0);
            for (b, o) in offs.iter().enumerate() {
                if b.is_multiple_of(STRIDE) {
                    cum_chunks[b / STRIDE].push(Container::from_words(&words));
                }
                container::set_offsets(&mut words, o);
                band_chunks[b].push(Container::from_sorted(o));
            }
            if nb.is_multiple_of(STRIDE) {
                cum_chunks[ncum].push(Container::from_words(&words));
            }
        }
        if !nb.is_multiple_of(STRIDE) {
            cum_chunks.pop();
        }
        self.rows = band_chunks.into_iter().map(Postings::from_chunks).collect();
        self.cum = cum_chunks.into_iter().map(Postings::from_chunks).collect();
    }

    pub fn band_count(&self) -> usize {
        self.rows.len()
    }

    /// Members of `scope` in bands before `b`.
    pub fn count_before(&self, b: usize, scope: &Postings) -> u64 {
        // The nearest cumulative bitmap, then whole bands up or down to `b`.
        let mut i = (b + STRIDE / 2) / STRIDE;
        if i >= self.cum.len() {
            i = b / STRIDE;
        }
        let base = i * STRIDE;
        let (plus, minus): (Vec<&Postings>, Vec<&Postings>) = if base <= b {
            (std::iter::once(&self.cum[i]).chain(&self.rows[base..b]).collect(), vec![])
        } else {
            (vec![&self.cum[i]], self.rows[b..base].iter().collect())
        };
        let mut words: Box<Words> = container::zeroed();
        let mut total: i64 = 0;
        for c in 0..scope.chunks.len() {
            let s = scope.chunk(c);
            if s.is_empty() {
                continue;
            }
            s.write_to(&mut words);
            total += plus.iter().map(|p| p.chunk(c).and_count(&words) as i64).sum::<i64>();
            total -= minus.iter().map(|p| p.chunk(c).and_count(&words) as i64).sum::<i64>();
        }
        total as u64
    }
}
