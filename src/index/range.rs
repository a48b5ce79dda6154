//! Exact range predicates at any threshold, for integer, date and float columns.
//!
//! Values are cut into at most [`MAX_BUCKETS`] buckets (one per distinct value when there
//! are no more than that, else by quantiles of a sample). Each bucket keeps a bitmap of its
//! rows (equality-encoded, ~2 bytes a row in total) and the actual min and max of its
//! values. Every [`STRIDE`] buckets a cumulative bitmap ("rows in buckets below k") is kept
//! (range-encoded), so any run of whole buckets costs two dense container reads plus at
//! most `STRIDE / 2` bucket bitmaps on each side. Buckets that straddle a bound (at most
//! two per predicate, ~N/256 rows each) are refined against the raw Arrow values, which
//! makes `total_spend_eur >= 1234.56` exact. A bucket holding one heavy value (0.0 for the
//! 18% who never bought) has min == max, so it is never straddled.
//!
//! Why not the alternatives (BENCHMARKS.md has the measured comparison with a plain scan of
//! the Arrow values): a bit-sliced index reads one dense slice per bit of the value (16+
//! for a 2-byte rank) for every predicate; a cumulative bitmap for every bucket would cost
//! 1.25 MB per bucket at 10M rows.

use std::ops::Bound;

use rayon::prelude::*;

use super::container::{build_chunk, zeroed, Container, Words};
use super::Postings;

pub const MAX_BUCKETS: usize = 256;
pub const STRIDE: usize = 16;
/// Values sampled per chunk to choose quantile bucket bounds.
const SAMPLE_PER_CHUNK: usize = 1024;

/// A comparable column value: i64 (integers, dates, timestamps) or f64 (floats, NaN-free).
pub trait Key: Copy + PartialOrd + Send + Sync + std::fmt::Debug + 'static {
    /// The next value up, so a heavy value can have a bucket `[v, v.successor())` of its own.
    fn successor(self) -> Self;
}
impl Key for i64 {
    fn successor(self) -> Self {
        self.saturating_add(1)
    }
}
impl Key for f64 {
    fn successor(self) -> Self {
        self.next_up()
    }
}

/// An interval of values; the predicate `lo < / <= x < / <= hi`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RangeSpec<K> {
    pub lo: Bound<K>,
    pub hi: Bound<K>,
}

impl<K: Key> RangeSpec<K> {
    #[inline]
    pub fn contains(&self, v: K) -> bool {
        (match self.lo {
            Bound::Unbounded => true,
            Bound::Included(l) => v >= l,
            Bound::Excluded(l) => v > l,
        }) && (match self.hi {
            Bound::Unbounded => true,
            Bound::Included(h) => v <= h,
            Bound::Excluded(h) => v < h,
        })
    }

    /// Whether every value in `[min, max]` satisfies the spec.
    fn covers(&self, min: K, max: K) -> bool {
        self.contains(min) && self.contains(max)
    }

    /// Whether no value in `[min, max]` can satisfy the spec.
    fn misses(&self, min: K, max: K) -> bool {
        let below = match self.lo {
            Bound::Unbounded => false,
            Bound::Included(l) => max < l,
            Bound::Excluded(l) => max <= l,
        };
        let above = match self.hi {
            Bound::Unbounded => false,
            Bound::Included(h) => min > h,
            Bound::Excluded(h) => min >= h,
        };
        below || above
    }
}

#[derive(Clone, Debug)]
pub struct RangeIndex<K> {
    /// `bounds[b]` is the smallest value bucket `b` may hold (bucket 0 also takes anything
    /// smaller); sorted and distinct.
    bounds: Vec<K>,
    fine: Vec<Postings>,
    /// Actual (min, max) of each bucket's values, None when empty.
    extent: Vec<Option<(K, K)>>,
    /// `cum[j]` = rows in buckets `< (j + 1) * STRIDE`; the last entry is every valued row.
    cum: Vec<Postings>,
    /// One bucket per distinct value.
    pub exact: bool,
}

/// Which buckets a predicate takes whole and which it must refine.
#[derive(Clone, Debug, Default)]
pub struct RangePlan {
    /// Buckets `[full.0, full.1)` are wholly inside the range.
    pub full: (usize, usize),
    pub partial: Vec<usize>,
    /// Rows in the full buckets plus all rows of partial ones (an upper bound).
    pub max_rows: u64,
    pub min_rows: u64,
}

impl<K: Key> RangeIndex<K> {
    /// Builds from `values_of_chunk(c, f)`, which calls `f(offset, value)` for each valued
    /// row of chunk `c` (NULL and NaN rows are not passed).
    pub fn build(n_chunks: usize, values_of_chunk: impl Fn(usize, &mut dyn FnMut(u16, K)) + Sync) -> Self {
        let bounds_and_exact = choose_bounds(n_chunks, &values_of_chunk);
        let (bounds, exact) = bounds_and_exact;
        let nb = bounds.len().max(1);
        let n_cum = nb.div_ceil(STRIDE);
        type ChunkParts<K> = (Vec<Container>, Vec<Container>, Vec<Option<(K, K)>>);
        let per_chunk: Vec<ChunkParts<K>> = (0..n_chunks)
            .into_par_iter()
            .map(|c| {
                // One bucket search per value: (offset, bucket) pairs feed both of
                // build_chunk's passes, and the extents come from the same pass (the
                // searches were most of a 10M-row load's index time, measured with perf).
                let mut ext: Vec<Option<(K, K)>> = vec![None; nb];
                let mut filed: Vec<(u16, u16)> = Vec::new();
                values_of_chunk(c, &mut |o, v| {
                    let b = bucket_of(&bounds, v);
                    ext[b] = merge_extent(ext[b], Some((v, v)));
                    filed.push((o, b as u16));
                });
                let fine = build_chunk(nb, |f| filed.iter().for_each(|&(o, b)| f(o, b as usize)));
                let mut running = zeroed();
                let mut cum = Vec::with_capacity(n_cum);
                for (b, f) in fine.iter().enumerate() {
                    f.or_into(&mut running);
                    if (b + 1).is_multiple_of(STRIDE) || b + 1 == nb {
                        cum.push(Container::from_words(&running));
                    }
                }
                (fine, cum, ext)
            })
            .collect();
        let mut fine: Vec<Vec<Container>> = vec![Vec::with_capacity(n_chunks); nb];
        let mut cum: Vec<Vec<Container>> = vec![Vec::with_capacity(n_chunks); n_cum];
        let mut extent: Vec<Option<(K, K)>> = vec![None; nb];
        for (f, cu, ex) in per_chunk {
            for (b, cont) in f.into_iter().enumerate() {
                fine[b].push(cont);
            }
            for (j, cont) in cu.into_iter().enumerate() {
                cum[j].push(cont);
            }
            for (b, e) in ex.into_iter().enumerate() {
                extent[b] = merge_extent(extent[b], e);
            }
        }
        RangeIndex {
            bounds,
            fine: fine.into_iter().map(Postings::from_chunks).collect(),
            extent,
            cum: cum.into_iter().map(Postings::from_chunks).collect(),
            exact,
        }
    }

    /// The bucket a value belongs to (where an update files a changed row).
    pub fn bucket_of(&self, v: K) -> usize {
        if self.bounds.is_empty() {
            0
        } else {
            bucket_of(&self.bounds, v)
        }
    }

    /// Files a row's new value (incremental update).
    pub fn insert(&mut self, row: u32, v: K) {
        if self.fine.is_empty() {
            // A column that had no values at load: its first value opens the first bucket.
            self.bounds = vec![v];
            self.fine.push(Postings::default());
            self.extent.push(None);
            self.cum.push(Postings::default());
        }
        let b = self.bucket_of(v);
        self.fine[b].insert(row);
        self.extent[b] = merge_extent(self.extent[b], Some((v, v)));
        if matches!(self.extent[b], Some((lo, hi)) if lo != hi) {
            self.exact = false;
        }
        for cum in &mut self.cum[b / STRIDE..] {
            cum.insert(row);
        }
    }

    /// Moves a row from its old value to its new one, touching only the cumulative bitmaps
    /// between the two buckets (a row's cumulative memberships are a suffix of levels).
    pub fn update(&mut self, row: u32, old: Option<K>, new: Option<K>) {
        let (Some(o), Some(n)) = (old, new) else {
            if let Some(o) = old {
                self.remove(row, o);
            }
            if let Some(n) = new {
                self.insert(row, n);
            }
            return;
        };
        if self.fine.is_empty() {
            return self.insert(row, n);
        }
        let (bo, bn) = (self.bucket_of(o), self.bucket_of(n));
        self.extent[bn] = merge_extent(self.extent[bn], Some((n, n)));
        if matches!(self.extent[bn], Some((lo, hi)) if lo != hi) {
            self.exact = false;
        }
        if bo == bn {
            return;
        }
        self.fine[bo].remove(row);
        self.fine[bn].insert(row);
        let (lo, hi) = (bo / STRIDE, bn / STRIDE);
        if hi < lo {
            for cum in &mut self.cum[hi..lo] {
                cum.insert(row);
            }
        } else {
            for cum in &mut self.cum[lo..hi] {
                cum.remove(row);
            }
        }
    }

    /// Unfiles a row's old value. Extents are not shrunk: a wider extent only makes a
    /// bucket be refined where it need not be, never a wrong answer.
    pub fn remove(&mut self, row: u32, v: K) {
        if self.fine.is_empty() {
            return;
        }
        let b = self.bucket_of(v);
        self.fine[b].remove(row);
        for cum in &mut self.cum[b / STRIDE..] {
            cum.remove(row);
        }
    }

    pub fn buckets(&self) -> usize {
        self.fine.len()
    }

    /// Distinct values when exact (the Schema RPC lists small domains).
    pub fn exact_values(&self) -> Option<Vec<(K, u64)>> {
        self.exact.then(|| {
            self.extent.iter().zip(&self.fine).filter_map(|(e, p)| e.map(|(v, _)| (v, p.len))).collect()
        })
    }

    pub fn heap_bytes(&self) -> usize {
        self.fine.iter().chain(&self.cum).map(Postings::heap_bytes).sum()
    }

    /// The buckets of `spec`.
    pub fn plan(&self, spec: &RangeSpec<K>) -> RangePlan {
        let mut plan = RangePlan { full: (0, 0), ..Default::default() };
        let mut first_full = None;
        let mut last_full = 0;
        for (b, e) in self.extent.iter().enumerate() {
            let Some((min, max)) = *e else { continue };
            if spec.covers(min, max) {
                first_full.get_or_insert(b);
                last_full = b + 1;
                plan.min_rows += self.fine[b].len;
                plan.max_rows += self.fine[b].len;
            } else if !spec.misses(min, max) {
                plan.partial.push(b);
                plan.max_rows += self.fine[b].len;
            }
        }
        if let Some(f) = first_full {
            plan.full = (f, last_full);
        }
        plan
    }

    /// Writes the rows of chunk `c` that satisfy the planned spec into `out`.
    /// `ok(offset)` tests a row's raw value; it is called only for rows in partial buckets
    /// (and, when `mask` is given, only for rows in `mask`).
    pub fn eval_chunk(
        &self,
        plan: &RangePlan,
        c: usize,
        out: &mut Words,
        tmp: &mut Words,
        mask: Option<&Words>,
        ok: impl Fn(usize) -> bool,
    ) {
        let (fa, fb) = plan.full;
        if fb - fa <= STRIDE / 2 {
            out.fill(0);
            for f in &self.fine[fa..fb] {
                f.chunk(c).or_into(out);
            }
        } else {
            self.write_cum(fb, c, out);
            if fa > 0 {
                self.write_cum(fa, c, tmp);
                super::container::andnot_words(out, tmp);
            }
        }
        for &b in &plan.partial {
            self.fine[b].chunk(c).for_each(|o| {
                let (i, bit) = ((o >> 6) as usize, 1u64 << (o & 63));
                if mask.is_none_or(|m| m[i] & bit != 0) && ok(o as usize) {
                    out[i] |= bit;
                }
            });
        }
    }

    /// Writes "rows in buckets `< k`" of chunk `c`, from the nearest cumulative bitmap.
    fn write_cum(&self, k: usize, c: usize, out: &mut Words) {
        let nb = self.fine.len();
        if k == 0 {
            out.fill(0);
            return;
        }
        // Cumulative boundaries sit at STRIDE, 2*STRIDE, ..., and nb.
        let below = k / STRIDE * STRIDE;
        let above = ((k.div_ceil(STRIDE)) * STRIDE).min(nb);
        if k - below <= above - k || above == k && below == k {
            if below == 0 {
                out.fill(0);
            } else {
                self.cum[below / STRIDE - 1].chunk(c).write_to(out);
            }
            for f in &self.fine[below..k] {
                f.chunk(c).or_into(out);
            }
        } else {
            self.cum[above.div_ceil(STRIDE) - 1].chunk(c).write_to(out);
            for f in &self.fine[k..above] {
                f.chunk(c).andnot_into(out);
            }
        }
    }
}

#[inline]
fn bucket_of<K: Key>(bounds: &[K], v: K) -> usize {
    // Buckets after the first start at their bound: count the bounds at or below v.
    bounds[1..].partition_point(|&b| b <= v)
}

fn merge_extent<K: Key>(a: Option<(K, K)>, b: Option<(K, K)>) -> Option<(K, K)> {
    match (a, b) {
        (None, x) | (x, None) => x,
        (Some((a0, a1)), Some((b0, b1))) => {
            Some((if b0 < a0 { b0 } else { a0 }, if b1 > a1 { b1 } else { a1 }))
        }
    }
}

/// Bucket lower bounds: every distinct value when there are at most MAX_BUCKETS of them,
/// else quantiles of a strided sample.
fn choose_bounds<K: Key>(
    n_chunks: usize,
    values_of_chunk: &(impl Fn(usize, &mut dyn FnMut(u16, K)) + Sync),
) -> (Vec<K>, bool) {
    let sort = |v: &mut Vec<K>| v.sort_by(|a, b| a.partial_cmp(b).expect("NaN-free keys"));
    let per_chunk: Vec<(Vec<K>, Option<Vec<K>>)> = (0..n_chunks)
        .into_par_iter()
        .map(|c| {
            let mut sample = Vec::with_capacity(SAMPLE_PER_CHUNK);
            let mut distinct: Option<Vec<K>> = Some(Vec::new());
            values_of_chunk(c, &mut |o, v| {
                if (o as usize).is_multiple_of(super::container::CHUNK_ROWS / SAMPLE_PER_CHUNK) {
                    sample.push(v);
                }
                if let Some(d) = distinct.as_mut() {
                    match d.binary_search_by(|x| x.partial_cmp(&v).expect("NaN-free keys")) {
                        Ok(_) => {}
                        Err(_) if d.len() == MAX_BUCKETS => distinct = None,
                        Err(p) => d.insert(p, v),
                    }
                }
            });
            (sample, distinct)
        })
        .collect();
    let mut distinct: Option<Vec<K>> = Some(Vec::new());
    let mut sample = Vec::new();
    for (s, d) in per_chunk {
        sample.extend(s);
        distinct = match (distinct, d) {
            (Some(mut a), Some(b)) => {
                a.extend(b);
                sort(&mut a);
                a.dedup();
                (a.len() <= MAX_BUCKETS).then_some(a)
            }
            _ => None,
        };
    }
    if let Some(d) = distinct {
        if d.is_empty() {
            return (vec![], true);
        }
        return (d, true);
    }
    sort(&mut sample);
    let quantiles: Vec<K> = (0..MAX_BUCKETS).map(|i| sample[i * sample.len() / MAX_BUCKETS]).collect();
    let mut bounds: Vec<K> = Vec::with_capacity(MAX_BUCKETS + 8);
    for (i, &q) in quantiles.iter().enumerate() {
        if bounds.last() != Some(&q) {
            bounds.push(q);
        }
        // A value filling two quantiles is heavy: close its bucket right after it, so the
        // bucket holds that one value and is never straddled by a bound.
        if i > 0 && quantiles[i - 1] == q && quantiles.get(i + 1) != Some(&q) {
            let next = q.successor();
            if quantiles.get(i + 1).is_none_or(|&n| next < n) {
                bounds.push(next);
            }
        }
    }
    (bounds, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::container::{for_each_set, CHUNK_ROWS};

    fn index(values: &[Option<f64>]) -> RangeIndex<f64> {
        let n_chunks = values.len().div_ceil(CHUNK_ROWS);
        RangeIndex::build(n_chunks, |c, f| {
            for (o, v) in values[c * CHUNK_ROWS..].iter().take(CHUNK_ROWS).enumerate() {
                if let Some(v) = v {
                    f(o as u16, *v);
                }
            }
        })
    }

    fn count(ix: &RangeIndex<f64>, values: &[Option<f64>], spec: RangeSpec<f64>) -> u64 {
        let plan = ix.plan(&spec);
        let (mut out, mut tmp) = (zeroed(), zeroed());
        let mut n = 0;
        for c in 0..values.len().div_ceil(CHUNK_ROWS) {
            ix.eval_chunk(&plan, c, &mut out, &mut tmp, None, |o| {
                values[c * CHUNK_ROWS + o].is_some_and(|v| spec.contains(v))
            });
            for_each_set(&out, |_| n += 1);
        }
        n
    }

    #[test]
    fn exact_at_every_threshold_for_high_cardinality_floats() {
        let values: Vec<Option<f64>> =
            (0..200_000u64).map(|i| (i % 7 != 0).then(|| ((i * 7919) % 100_003) as f64 / 3.0)).collect();
        let ix = index(&values);
        assert!(!ix.exact);
        for t in [0.0, 0.1, 5.0, 1234.56, 16_667.0, 33_333.0, 40_000.0] {
            for spec in [
                RangeSpec { lo: Bound::Included(t), hi: Bound::Unbounded },
                RangeSpec { lo: Bound::Excluded(t), hi: Bound::Excluded(t * 1.5 + 1.0) },
                RangeSpec { lo: Bound::Unbounded, hi: Bound::Included(t) },
            ] {
                let want = values.iter().flatten().filter(|&&v| spec.contains(v)).count() as u64;
                assert_eq!(count(&ix, &values, spec), want, "{spec:?}");
            }
        }
    }

    #[test]
    fn heavy_value_bucket_is_never_refined() {
        let values: Vec<Option<f64>> =
            (0..100_000u64).map(|i| Some(if i % 5 == 0 { 0.0 } else { i as f64 })).collect();
        let ix = index(&values);
        let plan = ix.plan(&RangeSpec { lo: Bound::Excluded(0.0), hi: Bound::Unbounded });
        assert!(plan.partial.iter().all(|&b| ix.fine[b].len < 20_000));
        assert_eq!(count(&ix, &values, RangeSpec { lo: Bound::Excluded(0.0), hi: Bound::Unbounded }), 80_000);
    }

    #[test]
    fn small_domains_are_exact() {
        let values: Vec<Option<f64>> = (0..70_000u64).map(|i| Some((i % 73) as f64)).collect();
        let ix = index(&values);
        assert!(ix.exact);
        assert_eq!(ix.buckets(), 73);
        let spec = RangeSpec { lo: Bound::Included(25.0), hi: Bound::Included(34.0) };
        assert!(ix.plan(&spec).partial.is_empty());
        let want = values.iter().flatten().filter(|&&v| spec.contains(v)).count() as u64;
        assert_eq!(count(&ix, &values, spec), want);
    }
}
