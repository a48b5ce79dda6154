//! One 2^16-row chunk of a bitmap, and the dense word buffer queries are evaluated in.
//!
//! roaring-rs 0.12 gives no access to its containers, and evaluating a segment as a chain
//! of whole-bitmap roaring operators materialises every intermediate bitmap (q12 at 10M rows:
//! ~12 ms). Owning the container layer lets the evaluator fuse a whole predicate tree into
//! one pass per chunk over a 1024-word buffer that stays in L1 (see BENCHMARKS.md).
//! The two encodings are roaring's: a sorted `u16` array up to 4096 members, 1024 dense
//! words above that; `Full` saves 8 KiB for chunks where every row matches.

use std::sync::Arc;

/// Rows per chunk: row id `r` lives in chunk `r >> 16` at offset `r & 0xffff`.
pub const CHUNK_ROWS: usize = 1 << 16;
/// 64-bit words in a dense chunk.
pub const WORDS: usize = CHUNK_ROWS / 64;
/// Above this many members a sorted array is larger than the dense form.
pub const ARRAY_MAX: usize = 4096;

/// A dense chunk: bit `i` of word `i / 64` is row offset `i`.
pub type Words = [u64; WORDS];

/// A fresh zeroed dense buffer on the heap (8 KiB is too large for comfortable stack use
/// inside deeply nested evaluation).
pub fn zeroed() -> Box<Words> {
    Box::new([0u64; WORDS])
}

/// A zeroed dense chunk for a container. Shared (`Arc`) so a published state and the next
/// one being written share every chunk the write leaves alone; a write copies the chunks it
/// changes (`Arc::make_mut`).
pub fn shared_words(fill: u64) -> Arc<Words> {
    Arc::new([fill; WORDS])
}

/// Members of one chunk of a bitmap.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Container {
    #[default]
    Empty,
    /// Sorted, distinct offsets; 1..=ARRAY_MAX of them. Shared like the dense form: a
    /// version cloned for a write shares it, and an edit builds a new one.
    Array(Arc<[u16]>),
    /// Dense words with their cached cardinality (ARRAY_MAX < card < CHUNK_ROWS).
    Bitmap(Arc<Words>, u32),
    /// All 65,536 offsets.
    Full,
}

/// `a` with `x` inserted at `pos` (`Some`), or with `a[pos]` removed (`None`), copied
/// straight into a new shared array: one allocation, two `memcpy`s.
fn spliced(a: &[u16], pos: usize, x: Option<u16>) -> Arc<[u16]> {
    let (head, tail) = match x {
        Some(_) => (&a[..pos], &a[pos..]),
        None => (&a[..pos], &a[pos + 1..]),
    };
    let mut out = Arc::<[u16]>::new_uninit_slice(head.len() + usize::from(x.is_some()) + tail.len());
    let dst = Arc::get_mut(&mut out).expect("fresh");
    // Element loops over plain copies: LLVM turns each into a memcpy.
    let (d_head, rest) = dst.split_at_mut(head.len());
    let (d_x, d_tail) = rest.split_at_mut(usize::from(x.is_some()));
    for (d, &v) in d_head.iter_mut().zip(head) {
        d.write(v);
    }
    for (d, &v) in d_tail.iter_mut().zip(tail) {
        d.write(v);
    }
    if let (Some(d), Some(x)) = (d_x.first_mut(), x) {
        d.write(x);
    }
    // SAFETY: every element was written just above (head, then x if any, then tail, which
    // together cover the whole slice).
    unsafe { out.assume_init() }
}

impl Container {
    /// Builds the smallest encoding from sorted, distinct offsets.
    pub fn from_sorted(offsets: &[u16]) -> Container {
        match offsets.len() {
            0 => Container::Empty,
            n if n <= ARRAY_MAX => Container::Array(offsets.into()),
            CHUNK_ROWS => Container::Full,
            n => {
                let mut w = shared_words(0);
                set_offsets(Arc::get_mut(&mut w).expect("fresh"), offsets);
                Container::Bitmap(w, n as u32)
            }
        }
    }

    /// Builds the smallest encoding from dense words.
    pub fn from_words(words: &Words) -> Container {
        let card = popcount(words);
        match card {
            0 => Container::Empty,
            n if n as usize <= ARRAY_MAX => {
                let mut v = Vec::with_capacity(n as usize);
                for_each_set(words, |o| v.push(o));
                Container::Array(v.into())
            }
            n if n as usize == CHUNK_ROWS => Container::Full,
            n => Container::Bitmap(Arc::new(*words), n),
        }
    }

    pub fn len(&self) -> u32 {
        match self {
            Container::Empty => 0,
            Container::Array(a) => a.len() as u32,
            Container::Bitmap(_, n) => *n,
            Container::Full => CHUNK_ROWS as u32,
        }
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, Container::Empty)
    }

    pub fn contains(&self, offset: u16) -> bool {
        match self {
            Container::Empty => false,
            Container::Array(a) => a.binary_search(&offset).is_ok(),
            Container::Bitmap(w, _) => w[(offset >> 6) as usize] & (1u64 << (offset & 63)) != 0,
            Container::Full => true,
        }
    }

    /// Heap bytes held (for the memory report).
    pub fn heap_bytes(&self) -> usize {
        match self {
            Container::Array(a) => a.len() * 2,
            Container::Bitmap(..) => WORDS * 8,
            _ => 0,
        }
    }

    /// `out = self`.
    pub fn write_to(&self, out: &mut Words) {
        match self {
            Container::Empty => out.fill(0),
            Container::Full => out.fill(!0),
            Container::Bitmap(w, _) => out.copy_from_slice(&w[..]),
            Container::Array(a) => {
                out.fill(0);
                set_offsets(out, a);
            }
        }
    }

    /// `out |= self`.
    pub fn or_into(&self, out: &mut Words) {
        match self {
            Container::Empty => {}
            Container::Full => out.fill(!0),
            Container::Bitmap(w, _) => {
                for (o, x) in out.iter_mut().zip(w.iter()) {
                    *o |= x;
                }
            }
            Container::Array(a) => set_offsets(out, a),
        }
    }

    /// `out &= self`.
    pub fn and_into(&self, out: &mut Words) {
        match self {
            Container::Empty => out.fill(0),
            Container::Full => {}
            Container::Bitmap(w, _) => {
                for (o, x) in out.iter_mut().zip(w.iter()) {
                    *o &= x;
                }
            }
            Container::Array(a) => {
                // Keep only the array's members that are set: cheaper than building the
                // array's dense form and AND-ing 1024 words when the array is short.
                let mut keep = zeroed();
                for &o in a.iter() {
                    let (i, b) = ((o >> 6) as usize, 1u64 << (o & 63));
                    keep[i] |= out[i] & b;
                }
                *out = *keep;
            }
        }
    }

    /// `out &= !self`.
    pub fn andnot_into(&self, out: &mut Words) {
        match self {
            Container::Empty => {}
            Container::Full => out.fill(0),
            Container::Bitmap(w, _) => {
                for (o, x) in out.iter_mut().zip(w.iter()) {
                    *o &= !x;
                }
            }
            Container::Array(a) => {
                for &o in a.iter() {
                    out[(o >> 6) as usize] &= !(1u64 << (o & 63));
                }
            }
        }
    }

    /// `|self & words|` without materialising the intersection.
    pub fn and_count(&self, words: &Words) -> u32 {
        match self {
            Container::Empty => 0,
            Container::Full => popcount(words),
            Container::Bitmap(w, _) => w.iter().zip(words.iter()).map(|(a, b)| (a & b).count_ones()).sum(),
            Container::Array(a) => {
                a.iter().filter(|&&o| words[(o >> 6) as usize] & (1u64 << (o & 63)) != 0).count() as u32
            }
        }
    }

    /// Calls `f` with each member in ascending order.
    pub fn for_each(&self, mut f: impl FnMut(u16)) {
        match self {
            Container::Empty => {}
            Container::Array(a) => a.iter().for_each(|&o| f(o)),
            Container::Bitmap(w, _) => for_each_set(w, f),
            Container::Full => (0..CHUNK_ROWS).for_each(|o| f(o as u16)),
        }
    }

    /// Adds `add` and removes `remove` (each sorted, disjoint) in one pass: many edits of
    /// one container cost one copy, where `insert` / `remove` on an array rebuild it per
    /// offset. Returns the change in cardinality.
    pub fn edit(&mut self, add: &[u16], remove: &[u16]) -> i64 {
        if add.is_empty() && remove.is_empty() {
            return 0;
        }
        let before = self.len() as i64;
        if let Container::Bitmap(w, n) = self {
            let words = Arc::make_mut(w);
            for &o in add {
                words[(o >> 6) as usize] |= 1u64 << (o & 63);
            }
            for &o in remove {
                words[(o >> 6) as usize] &= !(1u64 << (o & 63));
            }
            let card = popcount(words);
            *n = card;
            if card as usize <= ARRAY_MAX || card as usize == CHUNK_ROWS {
                *self = Container::from_words(words);
            }
        } else if let Container::Array(a) = self {
            if a.len() + add.len() <= ARRAY_MAX {
                // Merge: the result stays an array. Edits are few beside the array (a
                // write's rows spread over every segment's containers), so the runs between
                // two edited offsets are found by binary search and copied whole: an
                // element-by-element merge was ~15% of a commit group's instructions.
                let mut v = Vec::with_capacity(a.len() + add.len());
                let mut rest: &[u16] = a;
                let (mut j, mut k) = (0, 0);
                loop {
                    // The next edited offset (`add` and `remove` are disjoint).
                    let (o, adding) = match (add.get(j), remove.get(k)) {
                        (Some(&x), Some(&y)) if x < y => (x, true),
                        (_, Some(&y)) => (y, false),
                        (Some(&x), None) => (x, true),
                        (None, None) => break,
                    };
                    if adding {
                        j += 1;
                    } else {
                        k += 1;
                    }
                    let p = rest.partition_point(|&x| x < o);
                    v.extend_from_slice(&rest[..p]);
                    rest = &rest[p..];
                    if rest.first() == Some(&o) {
                        rest = &rest[1..];
                    }
                    if adding {
                        v.push(o);
                    }
                }
                v.extend_from_slice(rest);
                *self = Container::from_sorted(&v);
            } else {
                self.edit_dense(add, remove);
            }
        } else {
            self.edit_dense(add, remove);
        }
        self.len() as i64 - before
    }

    /// `edit` through a dense buffer (any encoding in, the smallest out).
    fn edit_dense(&mut self, add: &[u16], remove: &[u16]) {
        let mut words = zeroed();
        self.write_to(&mut words);
        set_offsets(&mut words, add);
        for &o in remove {
            words[(o >> 6) as usize] &= !(1u64 << (o & 63));
        }
        *self = Container::from_words(&words);
    }

    /// Adds one offset; returns whether it was absent. Used by incremental updates.
    pub fn insert(&mut self, offset: u16) -> bool {
        match self {
            Container::Empty => {
                *self = Container::Array(Arc::new([offset]));
                true
            }
            Container::Full => false,
            Container::Array(a) => match a.binary_search(&offset) {
                Ok(_) => false,
                Err(pos) if a.len() < ARRAY_MAX => {
                    // One allocation and one copy: an edit is the hot path of index and
                    // leaderboard-band upkeep under writes.
                    *self = Container::Array(spliced(a, pos, Some(offset)));
                    true
                }
                Err(pos) => {
                    let mut v = a.to_vec();
                    v.insert(pos, offset);
                    *self = Container::from_sorted(&v);
                    true
                }
            },
            Container::Bitmap(w, n) => {
                let (i, b) = ((offset >> 6) as usize, 1u64 << (offset & 63));
                if w[i] & b != 0 {
                    return false;
                }
                Arc::make_mut(w)[i] |= b;
                *n += 1;
                if *n as usize == CHUNK_ROWS {
                    *self = Container::Full;
                }
                true
            }
        }
    }

    /// Removes one offset; returns whether it was present.
    pub fn remove(&mut self, offset: u16) -> bool {
        match self {
            Container::Empty => false,
            Container::Array(a) => match a.binary_search(&offset) {
                Err(_) => false,
                Ok(_) if a.len() == 1 => {
                    *self = Container::Empty;
                    true
                }
                Ok(pos) => {
                    *self = Container::Array(spliced(a, pos, None));
                    true
                }
            },
            Container::Bitmap(w, n) => {
                let (i, b) = ((offset >> 6) as usize, 1u64 << (offset & 63));
                if w[i] & b == 0 {
                    return false;
                }
                Arc::make_mut(w)[i] &= !b;
                *n -= 1;
                if *n as usize <= ARRAY_MAX {
                    *self = Container::from_words(w);
                }
                true
            }
            Container::Full => {
                let mut w = shared_words(!0);
                Arc::get_mut(&mut w).expect("fresh")[(offset >> 6) as usize] &= !(1u64 << (offset & 63));
                *self = Container::Bitmap(w, CHUNK_ROWS as u32 - 1);
                true
            }
        }
    }
}

/// Builds one chunk's containers for `n` sets. `visit(f)` must call `f(offset, set)` for
/// every member, offsets ascending within a set; it is called twice: to count, then to
/// fill containers allocated at their final size. Growing temporaries per value and
/// copying them would leave ~30% of the index heap as fragmentation (measured at 10M rows).
pub fn build_chunk(n: usize, visit: impl Fn(&mut dyn FnMut(u16, usize))) -> Vec<Container> {
    let mut counts = vec![0u32; n];
    visit(&mut |_, s| counts[s] += 1);
    enum Part {
        Arr(Vec<u16>),
        Dense(Arc<Words>),
    }
    let mut parts: Vec<Part> = counts
        .iter()
        .map(|&k| {
            if k as usize > ARRAY_MAX {
                Part::Dense(shared_words(0))
            } else {
                Part::Arr(Vec::with_capacity(k as usize))
            }
        })
        .collect();
    {
        // Borrowed once up front: an `Arc::get_mut` per member would cost two atomics each.
        enum Slot<'a> {
            Arr(&'a mut Vec<u16>),
            Dense(&'a mut Words),
        }
        let mut slots: Vec<Slot> = parts
            .iter_mut()
            .map(|p| match p {
                Part::Arr(v) => Slot::Arr(v),
                Part::Dense(w) => Slot::Dense(Arc::get_mut(w).expect("unshared while built")),
            })
            .collect();
        visit(&mut |o, s| match &mut slots[s] {
            Slot::Arr(v) => v.push(o),
            Slot::Dense(w) => w[(o >> 6) as usize] |= 1u64 << (o & 63),
        });
    }
    parts
        .into_iter()
        .zip(counts)
        .map(|(p, k)| match p {
            _ if k == 0 => Container::Empty,
            _ if k as usize == CHUNK_ROWS => Container::Full,
            Part::Arr(v) => Container::Array(v.into()),
            Part::Dense(w) => Container::Bitmap(w, k),
        })
        .collect()
}

/// Sets each offset of `offsets` in `out`.
#[inline]
pub fn set_offsets(out: &mut Words, offsets: &[u16]) {
    for &o in offsets {
        out[(o >> 6) as usize] |= 1u64 << (o & 63);
    }
}

#[inline]
pub fn popcount(words: &Words) -> u32 {
    words.iter().map(|w| w.count_ones()).sum()
}

#[inline]
pub fn is_zero(words: &Words) -> bool {
    words.iter().all(|&w| w == 0)
}

/// Calls `f` with each set offset in ascending order.
#[inline]
pub fn for_each_set(words: &Words, mut f: impl FnMut(u16)) {
    for (i, &w) in words.iter().enumerate() {
        let mut w = w;
        while w != 0 {
            let t = w.trailing_zeros();
            f(((i as u32) << 6 | t) as u16);
            w &= w - 1;
        }
    }
}

/// `out &= other`.
#[inline]
pub fn and_words(out: &mut Words, other: &Words) {
    for (o, x) in out.iter_mut().zip(other.iter()) {
        *o &= x;
    }
}

/// `out |= other`.
#[inline]
pub fn or_words(out: &mut Words, other: &Words) {
    for (o, x) in out.iter_mut().zip(other.iter()) {
        *o |= x;
    }
}

/// `out &= !other`.
#[inline]
pub fn andnot_words(out: &mut Words, other: &Words) {
    for (o, x) in out.iter_mut().zip(other.iter()) {
        *o &= !x;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use roaring::RoaringBitmap;

    fn container(offsets: &std::collections::BTreeSet<u16>) -> Container {
        let v: Vec<u16> = offsets.iter().copied().collect();
        Container::from_sorted(&v)
    }

    #[test]
    fn batched_edits_match_single_edits() {
        use rand::{Rng, SeedableRng};
        let mut r = rand::rngs::SmallRng::seed_from_u64(5);
        for n in [0usize, 1, 100, 4000, 4096, 5000, 60_000, 65_536] {
            for _ in 0..4 {
                let mut offs: Vec<u16> = (0..n).map(|_| r.random::<u16>()).collect();
                if n == CHUNK_ROWS {
                    offs = (0..=u16::MAX).collect();
                }
                offs.sort_unstable();
                offs.dedup();
                let start = Container::from_sorted(&offs);
                // Few edits (a write's usual case) and many.
                let k = if r.random_bool(0.5) { r.random_range(0..8) } else { r.random_range(0..3000) };
                let mut add: Vec<u16> = (0..k).map(|_| r.random()).collect();
                add.sort_unstable();
                add.dedup();
                let mut remove: Vec<u16> =
                    (0..k).map(|_| r.random()).filter(|o| add.binary_search(o).is_err()).collect();
                remove.sort_unstable();
                remove.dedup();
                let mut one = start.clone();
                for &o in &add {
                    one.insert(o);
                }
                for &o in &remove {
                    one.remove(o);
                }
                let mut batched = start.clone();
                let delta = batched.edit(&add, &remove);
                assert_eq!(batched, one, "n {n}, {} adds, {} removes", add.len(), remove.len());
                assert_eq!(delta, one.len() as i64 - start.len() as i64);
            }
        }
    }

    fn dense(set: &std::collections::BTreeSet<u16>) -> Box<Words> {
        // (test helper: a plain buffer)
        let mut w = zeroed();
        for &o in set {
            w[(o >> 6) as usize] |= 1 << (o & 63);
        }
        w
    }

    fn to_roaring(w: &Words) -> RoaringBitmap {
        let mut r = RoaringBitmap::new();
        for_each_set(w, |o| {
            r.insert(o as u32);
        });
        r
    }

    // Sets small enough to be arrays and large enough to be bitmaps.
    fn offsets() -> impl Strategy<Value = std::collections::BTreeSet<u16>> {
        prop_oneof![
            proptest::collection::btree_set(any::<u16>(), 0..100),
            proptest::collection::btree_set(any::<u16>(), 4000..6000),
        ]
    }

    proptest! {
        // Each fused operator agrees with roaring-rs's set algebra.
        #[test]
        fn operators_agree_with_roaring(a in offsets(), b in offsets()) {
            let (ca, wb) = (container(&a), dense(&b));
            let ra: RoaringBitmap = a.iter().map(|&x| x as u32).collect();
            let rb: RoaringBitmap = b.iter().map(|&x| x as u32).collect();
            let mut o = wb.clone(); ca.or_into(&mut o);
            prop_assert_eq!(to_roaring(&o), &ra | &rb);
            let mut o = wb.clone(); ca.and_into(&mut o);
            prop_assert_eq!(to_roaring(&o), &ra & &rb);
            let mut o = wb.clone(); ca.andnot_into(&mut o);
            prop_assert_eq!(to_roaring(&o), &rb - &ra);
            prop_assert_eq!(ca.and_count(&wb) as u64, ra.intersection_len(&rb));
            prop_assert_eq!(ca.len() as u64, ra.len());
        }

        #[test]
        fn round_trips_through_words(a in offsets()) {
            let c = container(&a);
            let mut w = zeroed();
            c.write_to(&mut w);
            prop_assert_eq!(Container::from_words(&w), c.clone());
            let mut seen = vec![];
            c.for_each(|o| seen.push(o));
            prop_assert_eq!(seen, a.iter().copied().collect::<Vec<_>>());
        }

        #[test]
        fn insert_and_remove_match_a_set(a in offsets(), x in any::<u16>()) {
            let mut c = container(&a);
            prop_assert_eq!(c.insert(x), !a.contains(&x));
            prop_assert!(c.contains(x));
            prop_assert_eq!(c.len() as usize, a.len() + usize::from(!a.contains(&x)));
            prop_assert!(c.remove(x));
            prop_assert!(!c.contains(x));
            prop_assert_eq!(c.len() as usize, a.len() - usize::from(a.contains(&x)));
        }
    }

    #[test]
    fn full_chunk_is_compact() {
        let all: Vec<u16> = (0..=u16::MAX).collect();
        assert_eq!(Container::from_sorted(&all), Container::Full);
        assert_eq!(Container::Full.heap_bytes(), 0);
    }
}
