//! Evaluating a plan: one fused pass per 2^16-row chunk over dense words, chunks in
//! parallel with rayon; and row-level membership for single customers.
//!
//! A chunk's result never leaves its 8 KiB buffer unless the caller asks for the bitmap,
//! so a count allocates nothing per node and reads each container once.

use rayon::prelude::*;

use super::plan::{Leaf, Node, Plan, Test};
use crate::index::container::{self as ct, zeroed, Container, Words};
use crate::index::{write_valued, AttrIndex, Postings};
use crate::store::column::{split, CodeSlice, ColumnData};
use crate::store::{bool_at, Dataset};

/// Dense buffers for one worker: one per tree level, reused across chunks.
pub struct Scratch(Vec<Box<Words>>);

impl Scratch {
    pub fn new() -> Self {
        Scratch(Vec::new())
    }

    fn level(&mut self, depth: usize) -> &mut Words {
        while self.0.len() <= depth {
            self.0.push(zeroed());
        }
        &mut self.0[depth]
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

/// Rows matching the plan.
pub fn count(ds: &Dataset, plan: &Plan) -> u64 {
    // IN on a single-valued column is a sum of cardinalities, and so is one value of a
    // list column (a row is in a value's postings once).
    if let Node::Leaf(Leaf { col, negated: false, test: Test::Codes(codes), .. }) = &plan.root {
        if let AttrIndex::Values(v) = &*ds.indexes[*col] {
            if v.single_valued || codes.len() == 1 {
                return codes.iter().filter_map(|&c| v.values.get(c as usize)).map(|p| p.len).sum();
            }
        }
    }
    count_node(ds, &plan.root)
}

/// Rows matching one node (also used by Explain for per-node actual counts).
pub fn count_node(ds: &Dataset, node: &Node) -> u64 {
    (0..ds.n_chunks())
        .into_par_iter()
        .map_init(Scratch::new, |s, c| {
            let mut out = std::mem::replace(s.level(0), [0; ct::WORDS]);
            eval_chunk(ds, node, c, &mut out, s, 1, None);
            let n = ct::popcount(&out);
            *s.level(0) = out;
            n as u64
        })
        .sum()
}

/// The matching rows as a bitmap (for saved segments and overlap analytics).
pub fn materialize(ds: &Dataset, plan: &Plan) -> Postings {
    let chunks = (0..ds.n_chunks())
        .into_par_iter()
        .map_init(Scratch::new, |s, c| {
            let mut out = zeroed();
            eval_chunk(ds, &plan.root, c, &mut out, s, 1, None);
            Container::from_words(&out)
        })
        .collect();
    Postings::from_chunks(chunks)
}

/// Writes the TRUE set of `node` in chunk `c` into `out`. Rows outside `mask` (when given)
/// may be left out: an AND passes its running result so refinement skips dead rows.
/// `depth` picks this level's scratch buffer.
pub fn eval_chunk(
    ds: &Dataset,
    node: &Node,
    c: usize,
    out: &mut Words,
    s: &mut Scratch,
    depth: usize,
    mask: Option<&Words>,
) {
    match node {
        Node::Const(true) => ds.live.chunk(c).write_to(out),
        Node::Const(false) => out.fill(0),
        Node::Segment { members, negated: false, .. } => members.chunk(c).write_to(out),
        Node::Segment { members, negated: true, .. } => {
            ds.live.chunk(c).write_to(out);
            members.chunk(c).andnot_into(out);
        }
        Node::Leaf(l) => eval_leaf(ds, l, c, out, s, depth, mask),
        Node::Or(kids) => {
            eval_chunk(ds, &kids[0], c, out, s, depth + 1, mask);
            let mut tmp = std::mem::replace(s.level(depth), [0; ct::WORDS]);
            for k in &kids[1..] {
                eval_chunk(ds, k, c, &mut tmp, s, depth + 1, mask);
                ct::or_words(out, &tmp);
            }
            *s.level(depth) = tmp;
        }
        Node::And(kids) => {
            eval_chunk(ds, &kids[0], c, out, s, depth + 1, mask);
            let mut tmp = std::mem::replace(s.level(depth), [0; ct::WORDS]);
            for k in &kids[1..] {
                if ct::is_zero(out) {
                    break;
                }
                if !and_in_place(ds, k, c, out) {
                    eval_chunk(ds, k, c, &mut tmp, s, depth + 1, Some(out));
                    ct::and_words(out, &tmp);
                }
            }
            *s.level(depth) = tmp;
        }
    }
}

/// `out &= leaf` straight from one container when the leaf is a single code: saves the
/// 8 KiB write and re-read of a temporary. Returns false when not applicable.
fn and_in_place(ds: &Dataset, node: &Node, c: usize, out: &mut Words) -> bool {
    let Node::Leaf(Leaf { col, negated, test: Test::Codes(codes), .. }) = node else { return false };
    let AttrIndex::Values(v) = &*ds.indexes[*col] else { return false };
    match (codes.as_slice(), negated) {
        ([code], false) => v.values[*code as usize].chunk(c).and_into(out),
        // `out` holds live rows only; with no NULLs in the column, live & !x == valued & !x.
        (codes, true) if ds.nulls[*col].is_none() => {
            for &code in codes {
                v.values[code as usize].chunk(c).andnot_into(out);
            }
        }
        _ => return false,
    }
    true
}

fn eval_leaf(
    ds: &Dataset,
    l: &Leaf,
    c: usize,
    out: &mut Words,
    s: &mut Scratch,
    depth: usize,
    mask: Option<&Words>,
) {
    let nulls = ds.nulls[l.col].as_ref();
    if l.negated {
        // valued & !test
        let mut t = std::mem::replace(s.level(depth), [0; ct::WORDS]);
        eval_test(ds, l, c, &mut t, s, depth + 1, mask);
        write_valued(&ds.live, nulls, c, out);
        ct::andnot_words(out, &t);
        *s.level(depth) = t;
    } else {
        eval_test(ds, l, c, out, s, depth + 1, mask);
    }
}

fn eval_test(
    ds: &Dataset,
    l: &Leaf,
    c: usize,
    out: &mut Words,
    s: &mut Scratch,
    depth: usize,
    mask: Option<&Words>,
) {
    let col = &ds.columns[l.col];
    match (&l.test, &*ds.indexes[l.col]) {
        (Test::IsNull, _) => match ds.nulls[l.col].as_ref() {
            Some(n) => n.chunk(c).write_to(out),
            None => out.fill(0),
        },
        (Test::Codes(codes), AttrIndex::Values(v)) => {
            out.fill(0);
            for &code in codes {
                v.values[code as usize].chunk(c).or_into(out);
            }
        }
        (Test::Int(spec, plan), AttrIndex::IntRange(ix)) => {
            let vals = col.ints(c);
            let tmp = s.level(depth);
            ix.eval_chunk(plan, c, out, tmp, mask, |o| spec.contains(vals.get(o)));
        }
        (Test::Float(spec, plan), AttrIndex::FloatRange(ix)) => {
            let vals = col.floats(c);
            let tmp = s.level(depth);
            ix.eval_chunk(plan, c, out, tmp, mask, |o| spec.contains(vals.get(o) + 0.0));
        }
        _ => unreachable!("a leaf's test matches its column's index"),
    }
}

/// Whether one row matches, read from its values: no chunk is evaluated.
pub fn matches_row(ds: &Dataset, node: &Node, row: u32) -> bool {
    match node {
        Node::Const(b) => *b,
        Node::Segment { members, negated, .. } => members.contains(row) != *negated,
        Node::And(kids) => kids.iter().all(|k| matches_row(ds, k, row)),
        Node::Or(kids) => kids.iter().any(|k| matches_row(ds, k, row)),
        Node::Leaf(l) => match test_row(ds, l, row) {
            None => false,
            Some(t) => t != l.negated,
        },
    }
}

/// The test's value at a row: None when the column is NULL there (UNKNOWN).
fn test_row(ds: &Dataset, l: &Leaf, row: u32) -> Option<bool> {
    let col = &ds.columns[l.col];
    if let Test::IsNull = l.test {
        return Some(col.is_null(row));
    }
    if col.is_null(row) {
        return None;
    }
    let (c, o) = split(row);
    Some(match &l.test {
        Test::IsNull => unreachable!(),
        Test::Codes(codes) => match &col.data {
            ColumnData::Bool(_) => codes.contains(&(bool_at(col, row)? as u32)),
            ColumnData::Str { chunks, .. } => codes.contains(&CodeSlice::of(chunks[c].as_ref()).get(o)),
            ColumnData::List { chunks, .. } => {
                let l = &chunks[c];
                let values = CodeSlice::of(l.values().as_ref());
                let offs = l.value_offsets();
                (offs[o] as usize..offs[o + 1] as usize).any(|i| codes.contains(&values.get(i)))
            }
            _ => false,
        },
        Test::Int(spec, _) => spec.contains(col.ints(c).get(o)),
        Test::Float(spec, _) => {
            let v = col.floats(c).get(o);
            !v.is_nan() && spec.contains(v + 0.0)
        }
    })
}

/// Membership of one customer id: None when the id is not held.
pub fn is_member(ds: &Dataset, plan: &Plan, customer_id: u64) -> Option<bool> {
    ds.row_of(customer_id).map(|row| matches_row(ds, &plan.root, row))
}

/// Membership of many customer ids, answers in request order (None: id not held).
pub fn is_member_batch(ds: &Dataset, plan: &Plan, customer_ids: &[u64]) -> Vec<Option<bool>> {
    membership_batch(ds, customer_ids, |row| matches_row(ds, &plan.root, row))
}

/// The one batch membership: `member(row)` of each id's row, in request order (None: id
/// not held). Large batches are split across the rayon pool.
pub fn membership_batch(
    ds: &Dataset,
    customer_ids: &[u64],
    member: impl Fn(u32) -> bool + Sync,
) -> Vec<Option<bool>> {
    // Pieces of 1k ids: enough work per task to pay for it, and a batch of a few
    // thousand ids still spreads over every core.
    const SPLIT: usize = 1024;
    let one = |&id: &u64| ds.row_of(id).map(&member);
    if customer_ids.len() <= SPLIT {
        return customer_ids.iter().map(one).collect();
    }
    customer_ids.par_chunks(SPLIT).flat_map_iter(|ids| ids.iter().map(one)).collect()
}
