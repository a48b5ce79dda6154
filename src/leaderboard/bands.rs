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

    /// Rebuilds from the board's keys in rank order; `n_rows` bounds their rows. The key
    /// at rank `i` is in band `i / target`, so the bands come from one walk of the keys
    /// (a sort per band), not from a pass over every row of the table: a board much
    /// smaller than the table (a new board, a week's) rebuilds in time of its own size.
    pub fn rebuild<'a>(&mut self, keys: impl Iterator<Item = &'a Key>, n_rows: usize, len: u64) {
        let target = (len / NBANDS as u64).max(MIN_BAND);
        self.target = target;
        let mut pivots = Vec::new();
        let mut bands: Vec<Vec<u32>> = vec![Vec::new()];
        for (i, k) in keys.enumerate() {
            if i > 0 && (i as u64).is_multiple_of(target) {
                pivots.push(*k);
                bands.push(Vec::with_capacity(target as usize));
            }
            bands.last_mut().expect("one band at least").push(k.row);
        }
        self.pivots = pivots;
        let nb = bands.len();
        let ncum = nb.div_ceil(STRIDE);
        let n_chunks = n_rows.div_ceil(CHUNK_ROWS);
        let band_chunks: Vec<Vec<Container>> = bands
            .into_iter()
            .map(|mut rows| {
                rows.sort_unstable();
                by_chunk(&rows, n_chunks)
            })
            .collect();
        let mut cum_chunks: Vec<Vec<Container>> = vec![Vec::with_capacity(n_chunks); ncum + 1];
        let mut words: Box<Words> = container::zeroed();
        for c in 0..n_chunks {
            words.fill(0);
            let mut any = false;
            let snap =
                |words: &Words, any: bool| if any { Container::from_words(words) } else { Container::Empty };
            for (b, chunks) in band_chunks.iter().enumerate() {
                if b.is_multiple_of(STRIDE) {
                    cum_chunks[b / STRIDE].push(snap(&words, any));
                }
                if !chunks[c].is_empty() {
                    chunks[c].or_into(&mut words);
                    any = true;
                }
            }
            if nb.is_multiple_of(STRIDE) {
                cum_chunks[ncum].push(snap(&words, any));
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

/// Sorted rows as one container per chunk (`n_chunks` of them, empty where no row is).
fn by_chunk(rows: &[u32], n_chunks: usize) -> Vec<Container> {
    let mut out = vec![Container::Empty; n_chunks];
    let mut offs: Vec<u16> = Vec::new();
    let mut i = 0;
    while i < rows.len() {
        let c = (rows[i] as usize) / CHUNK_ROWS;
        offs.clear();
        while i < rows.len() && (rows[i] as usize) / CHUNK_ROWS == c {
            offs.push(rows[i] as u16);
            i += 1;
        }
        if c >= out.len() {
            out.resize(c + 1, Container::Empty);
        }
        out[c] = Container::from_sorted(&offs);
    }
    out
}
