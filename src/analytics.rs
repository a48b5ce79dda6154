//! Segment analytics over the indexes: the schema a segment builder offers, a segment's
//! breakdown by one attribute, and pairwise overlaps of segments. No transport here: the
//! gRPC layer converts these results.

use std::borrow::Cow;
use std::collections::HashMap;

use rayon::prelude::*;

use crate::index::container::{zeroed, Words};
use crate::index::range::MAX_BUCKETS;
use crate::index::{AttrIndex, Postings, ValueIndex};
use crate::query::eval::materialize;
use crate::query::{Literal, Plan};
use crate::store::column::Column;
use crate::store::Dataset;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AnalyticsError {
    #[error("unknown attribute '{column}'; attributes are: {known}")]
    UnknownColumn { column: String, known: String },
    #[error(
        "cannot break down by '{column}': it is a {kind} attribute with more than {MAX_BUCKETS} distinct \
         values; use a bool, string, list or small-domain numeric attribute, or range segments"
    )]
    NotGroupable { column: String, kind: &'static str },
}

/// One attribute as the Schema RPC reports it.
#[derive(Clone, Debug)]
pub struct AttributeInfo {
    pub name: String,
    pub kind: &'static str,
    pub source_type: String,
    pub nullable: bool,
    pub null_count: u64,
    /// Distinct values (list elements for lists); a lower bound when `!distinct_exact`.
    pub distinct: u64,
    pub distinct_exact: bool,
    /// Each value with its count, largest first; empty unless `distinct <= max_values`.
    pub values: Vec<(Literal, u64)>,
}

/// Every attribute, listing the values of those with at most `max_values` of them.
pub fn describe(ds: &Dataset, max_values: usize) -> Vec<AttributeInfo> {
    let id_name = ds.id_column().name.clone();
    ds.columns
        .iter()
        .enumerate()
        .map(|(i, col)| {
            let (mut values, distinct, exact) = if col.name == id_name {
                // Ids are unique by construction: no need to ask the index.
                (vec![], ds.customers(), true)
            } else {
                domain(col, &ds.indexes[i])
            };
            if distinct > max_values as u64 || !exact {
                values.clear();
            }
            sort_groups(&mut values);
            AttributeInfo {
                name: col.name.clone(),
                kind: col.kind.name(),
                source_type: col.source_type.to_string(),
                nullable: col.nullable,
                null_count: ds.nulls[i].as_ref().map_or(0, |p| p.len),
                distinct,
                distinct_exact: exact,
                values,
            }
        })
        .collect()
}

/// (values with counts, distinct count, whether exact) from the index alone. A range index
/// is exact exactly when the column has at most `MAX_BUCKETS` distinct values.
fn domain(col: &Column, index: &AttrIndex) -> (Vec<(Literal, u64)>, u64, bool) {
    match index {
        AttrIndex::Values(v) => {
            let values: Vec<(Literal, u64)> = v
                .values
                .iter()
                .enumerate()
                .filter(|(_, p)| p.len > 0)
                .map(|(code, p)| (value_literal(col, code as u32), p.len))
                .collect();
            let n = values.len() as u64;
            (values, n, true)
        }
        AttrIndex::IntRange(r) => match r.exact_values() {
            Some(v) => {
                let n = v.len() as u64;
                (v.into_iter().map(|(x, c)| (Literal::Int(x), c)).collect(), n, true)
            }
            None => (vec![], MAX_BUCKETS as u64 + 1, false),
        },
        AttrIndex::FloatRange(r) => match r.exact_values() {
            Some(v) => {
                let n = v.len() as u64;
                (v.into_iter().map(|(x, c)| (Literal::Float(x), c)).collect(), n, true)
            }
            None => (vec![], MAX_BUCKETS as u64 + 1, false),
        },
    }
}

/// The literal of a value code of a Values-indexed column (bool codes: 0 false, 1 true).
fn value_literal(col: &Column, code: u32) -> Literal {
    match col.dict() {
        Some(d) => Literal::Str(d.value(code).to_string()),
        None => Literal::Bool(code == 1),
    }
}

/// Largest first; ties in value order so answers are deterministic.
fn sort_groups(v: &mut [(Literal, u64)]) {
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| literal_order(&a.0, &b.0)));
}

fn literal_order(a: &Literal, b: &Literal) -> std::cmp::Ordering {
    match (a, b) {
        (Literal::Int(x), Literal::Int(y)) => x.cmp(y),
        (Literal::Float(x), Literal::Float(y)) => x.total_cmp(y),
        (Literal::Str(x), Literal::Str(y)) => x.cmp(y),
        (Literal::Bool(x), Literal::Bool(y)) => x.cmp(y),
        _ => std::cmp::Ordering::Equal,
    }
}

/// A segment's counts grouped by one attribute.
#[derive(Clone, Debug, Default)]
pub struct Breakdown {
    pub segment_count: u64,
    /// The `top_n` largest groups, largest first.
    pub groups: Vec<(Literal, u64)>,
    pub null_count: u64,
    /// Sum of the groups beyond `top_n`.
    pub other_count: u64,
    /// Groups with at least one member.
    pub distinct_groups: u64,
}

/// A segment's members: evaluated from a plan, or already materialised (a saved segment).
#[derive(Clone, Copy)]
pub enum Members<'a> {
    Plan(&'a Plan),
    Saved(&'a Postings),
}

impl<'a> Members<'a> {
    fn postings(self, ds: &Dataset) -> Cow<'a, Postings> {
        match self {
            Members::Plan(p) => Cow::Owned(materialize(ds, p)),
            Members::Saved(p) => Cow::Borrowed(p),
        }
    }
}

/// Counts of the segment's customers per value of `attribute` (per element for lists,
/// where one customer counts in several groups).
pub fn breakdown(
    ds: &Dataset,
    plan: &Plan,
    attribute: &str,
    top_n: usize,
) -> Result<Breakdown, AnalyticsError> {
    breakdown_of(ds, Members::Plan(plan), attribute, top_n)
}

/// [`breakdown`] of a plan or of a saved segment's members.
pub fn breakdown_of(
    ds: &Dataset,
    members: Members<'_>,
    attribute: &str,
    top_n: usize,
) -> Result<Breakdown, AnalyticsError> {
    let i = ds.column_index(attribute).ok_or_else(|| AnalyticsError::UnknownColumn {
        column: attribute.to_string(),
        known: ds.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", "),
    })?;
    let col = &ds.columns[i];
    let not_groupable = || AnalyticsError::NotGroupable { column: col.name.clone(), kind: col.kind.name() };
    // Reject before the (costly) materialisation.
    let groups_of: GroupFn = match &*ds.indexes[i] {
        AttrIndex::Values(_) => GroupFn::Postings,
        AttrIndex::IntRange(r) => GroupFn::Ints(r.exact_values().ok_or_else(not_groupable)?),
        AttrIndex::FloatRange(r) => GroupFn::Floats(r.exact_values().ok_or_else(not_groupable)?),
    };
    let seg = members.postings(ds);
    let mut groups: Vec<(Literal, u64)> = match (groups_of, &*ds.indexes[i]) {
        (GroupFn::Postings, AttrIndex::Values(v)) => {
            let counts = intersect_each(ds, &seg, v);
            counts.into_iter().enumerate().map(|(code, n)| (value_literal(col, code as u32), n)).collect()
        }
        (GroupFn::Ints(vals), _) => {
            let at: HashMap<i64, usize> = vals.iter().enumerate().map(|(k, &(x, _))| (x, k)).collect();
            let counts = scan_counts(ds, &seg, col, vals.len(), |c, o| at.get(&col.ints(c).get(o)).copied());
            vals.iter().zip(counts).map(|(&(x, _), n)| (Literal::Int(x), n)).collect()
        }
        (GroupFn::Floats(vals), _) => {
            // -0.0 and 0.0 are one value, as in the index; NaN is in no group.
            let at: HashMap<u64, usize> =
                vals.iter().enumerate().map(|(k, &(x, _))| ((x + 0.0).to_bits(), k)).collect();
            let counts = scan_counts(ds, &seg, col, vals.len(), |c, o| {
                at.get(&(col.floats(c).get(o) + 0.0).to_bits()).copied()
            });
            vals.iter().zip(counts).map(|(&(x, _), n)| (Literal::Float(x), n)).collect()
        }
        (GroupFn::Postings, _) => unreachable!("chosen from this index above"),
    };
    groups.retain(|g| g.1 > 0);
    sort_groups(&mut groups);
    let distinct_groups = groups.len() as u64;
    let other_count = groups.iter().skip(top_n).map(|g| g.1).sum();
    groups.truncate(top_n);
    let null_count = ds.nulls[i].as_ref().map_or(0, |n| intersect_count(ds, &seg, n));
    Ok(Breakdown { segment_count: seg.len, groups, null_count, other_count, distinct_groups })
}

enum GroupFn {
    Postings,
    Ints(Vec<(i64, u64)>),
    Floats(Vec<(f64, u64)>),
}

/// `|seg & values[v]|` for every value, one pass over chunks: each segment chunk is made
/// dense once and every value's container counted against it.
fn intersect_each(ds: &Dataset, seg: &Postings, v: &ValueIndex) -> Vec<u64> {
    let n = v.values.len();
    per_chunk_sum(ds, seg, n, |c, words, acc| {
        for (k, p) in v.values.iter().enumerate() {
            acc[k] += p.chunk(c).and_count(words) as u64;
        }
    })
}

fn intersect_count(ds: &Dataset, seg: &Postings, other: &Postings) -> u64 {
    per_chunk_sum(ds, seg, 1, |c, words, acc| acc[0] += other.chunk(c).and_count(words) as u64)[0]
}

/// Runs `f(chunk, dense segment chunk, counters)` over the non-empty chunks of `seg` in
/// parallel and sums the `n` counters.
fn per_chunk_sum(
    ds: &Dataset,
    seg: &Postings,
    n: usize,
    f: impl Fn(usize, &Words, &mut [u64]) + Sync,
) -> Vec<u64> {
    (0..ds.n_chunks())
        .into_par_iter()
        .filter(|&c| !seg.chunk(c).is_empty())
        .fold(
            || (zeroed(), vec![0u64; n]),
            |(mut words, mut acc), c| {
                seg.chunk(c).write_to(&mut words);
                f(c, &words, &mut acc);
                (words, acc)
            },
        )
        .map(|(_, acc)| acc)
        .reduce(|| vec![0u64; n], |a, b| a.iter().zip(&b).map(|(x, y)| x + y).collect())
}

/// Counts per group by reading the values of the segment's rows (numeric small domains:
/// the range index keeps no per-value bitmap accessible here).
fn scan_counts(
    ds: &Dataset,
    seg: &Postings,
    col: &Column,
    n: usize,
    group_of: impl Fn(usize, usize) -> Option<usize> + Sync,
) -> Vec<u64> {
    (0..ds.n_chunks())
        .into_par_iter()
        .filter(|&c| !seg.chunk(c).is_empty())
        .fold(
            || vec![0u64; n],
            |mut acc, c| {
                let arr = col.chunk(c);
                seg.chunk(c).for_each(|o| {
                    let o = o as usize;
                    if arr.is_valid(o) {
                        if let Some(k) = group_of(c, o) {
                            acc[k] += 1;
                        }
                    }
                });
                acc
            },
        )
        .reduce(|| vec![0u64; n], |a, b| a.iter().zip(&b).map(|(x, y)| x + y).collect())
}

/// `m[i][j] = |segment i & segment j|`; the diagonal holds each segment's count.
pub fn overlap(ds: &Dataset, plans: &[&Plan]) -> Vec<Vec<u64>> {
    overlap_of(ds, &plans.iter().map(|p| Members::Plan(p)).collect::<Vec<_>>())
}

/// [`overlap`] of plans and / or saved segments' members.
pub fn overlap_of(ds: &Dataset, members: &[Members<'_>]) -> Vec<Vec<u64>> {
    let segs: Vec<Cow<'_, Postings>> = members.iter().map(|m| m.postings(ds)).collect();
    let n = segs.len();
    // Upper triangle flattened; each chunk makes segment i dense once and counts every
    // j > i against it.
    let upper = (0..ds.n_chunks())
        .into_par_iter()
        .fold(
            || (zeroed(), vec![0u64; n * n]),
            |(mut words, mut acc), c| {
                for i in 0..n {
                    let ci = segs[i].chunk(c);
                    if ci.is_empty() {
                        continue;
                    }
                    ci.write_to(&mut words);
                    for j in i + 1..n {
                        acc[i * n + j] += segs[j].chunk(c).and_count(&words) as u64;
                    }
                }
                (words, acc)
            },
        )
        .map(|(_, acc)| acc)
        .reduce(|| vec![0u64; n * n], |a, b| a.iter().zip(&b).map(|(x, y)| x + y).collect());
    (0..n)
        .map(|i| {
            (0..n)
                .map(|j| match i.cmp(&j) {
                    std::cmp::Ordering::Equal => segs[i].len,
                    std::cmp::Ordering::Less => upper[i * n + j],
                    std::cmp::Ordering::Greater => upper[j * n + i],
                })
                .collect()
        })
        .collect()
}
