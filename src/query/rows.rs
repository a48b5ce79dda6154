//! Row-level evaluation of many rows of one chunk at once: how saved segments are kept
//! current after a write (only the rows the write changed are re-evaluated).
//!
//! [`super::eval::matches_row`] resolves each column chunk (a downcast and a type match) per
//! row; a batch of 10,000 updates re-checked against 100 saved segments is a million such
//! rows, so here each leaf resolves its chunk once and then tests every offset in a tight
//! loop. Results are SQL's: a NULL value makes a leaf UNKNOWN, which is not TRUE.

use arrow_array::BooleanArray;

use super::plan::{Leaf, Node, Test};
use crate::store::column::{CodeSlice, ColumnData};
use crate::store::Dataset;

/// The current verdicts of saved segments for the same offsets, for `in_segment` leaves
/// naming a segment re-evaluated earlier in the same write (None: read its members).
pub type Overrides<'a> = &'a dyn Fn(&str) -> Option<&'a [bool]>;

/// Whether each row `(c << 16) | offs[i]` matches `node` (liveness is the caller's).
pub fn matches_rows(
    ds: &Dataset,
    node: &Node,
    c: usize,
    offs: &[u16],
    overrides: Overrides<'_>,
) -> Vec<bool> {
    match node {
        Node::Const(b) => vec![*b; offs.len()],
        Node::Segment { id, members, negated } => match overrides(id) {
            Some(v) => v.iter().map(|&m| m != *negated).collect(),
            None => {
                let cont = members.chunk(c);
                offs.iter().map(|&o| cont.contains(o) != *negated).collect()
            }
        },
        Node::And(kids) | Node::Or(kids) => {
            let and = matches!(node, Node::And(_));
            let mut acc = vec![and; offs.len()];
            for k in kids {
                let v = matches_rows(ds, k, c, offs, overrides);
                for (a, x) in acc.iter_mut().zip(v) {
                    *a = if and { *a && x } else { *a || x };
                }
            }
            acc
        }
        Node::Leaf(l) => leaf_rows(ds, l, c, offs),
    }
}

fn leaf_rows(ds: &Dataset, l: &Leaf, c: usize, offs: &[u16]) -> Vec<bool> {
    let col = &ds.columns[l.col];
    let chunk = col.chunk(c);
    let nulls = chunk.nulls().filter(|n| n.null_count() > 0);
    let null_at = |o: usize| nulls.is_some_and(|n| n.is_null(o));
    if let Test::IsNull = l.test {
        return offs.iter().map(|&o| null_at(o as usize) != l.negated).collect();
    }
    let neg = l.negated;
    match (&l.test, &col.data) {
        (Test::Codes(codes), ColumnData::Bool(chunks)) => {
            let a: &BooleanArray = &chunks[c];
            verdicts(offs, null_at, neg, |o| codes.contains(&(a.value(o) as u32)))
        }
        (Test::Codes(codes), ColumnData::Str { chunks, .. }) => match CodeSlice::of(chunks[c].as_ref()) {
            // One arm per code width, so the loop is monomorphic.
            CodeSlice::U8(v) => verdicts(offs, null_at, neg, |o| codes.contains(&(v[o] as u32))),
            CodeSlice::U16(v) => verdicts(offs, null_at, neg, |o| codes.contains(&(v[o] as u32))),
            CodeSlice::U32(v) => verdicts(offs, null_at, neg, |o| codes.contains(&v[o])),
        },
        (Test::Codes(codes), ColumnData::List { chunks, .. }) => {
            let list = &chunks[c];
            let values = CodeSlice::of(list.values().as_ref());
            let ends = list.value_offsets();
            verdicts(offs, null_at, neg, |o| {
                (ends[o] as usize..ends[o + 1] as usize).any(|i| codes.contains(&values.get(i)))
            })
        }
        (Test::Int(spec, _), ColumnData::Int(_)) => {
            let v = col.ints(c);
            verdicts(offs, null_at, neg, |o| spec.contains(v.get(o)))
        }
        (Test::Float(spec, _), ColumnData::Float(_)) => {
            let v = col.floats(c);
            verdicts(offs, null_at, neg, |o| {
                let x = v.get(o);
                !x.is_nan() && spec.contains(x + 0.0)
            })
        }
        _ => vec![false; offs.len()],
    }
}

/// `test` at each offset, negated when asked; UNKNOWN (NULL) is never TRUE either way.
#[inline]
fn verdicts(
    offs: &[u16],
    null_at: impl Fn(usize) -> bool,
    negated: bool,
    test: impl Fn(usize) -> bool,
) -> Vec<bool> {
    offs.iter()
        .map(|&o| {
            let o = o as usize;
            !null_at(o) && test(o) != negated
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::{compile_sql, eval, Limits};

    /// The batched evaluator agrees with the one-row evaluator on every row of a table with
    /// NULLs, lists, dates and floats.
    #[test]
    fn agrees_with_matches_row() {
        let batches = crate::gen::generate(3_000, 7).into_iter().map(Ok);
        let ds = Dataset::from_batches(crate::gen::schema(), batches, "customer_id").unwrap();
        let queries = [
            "age >= 30 AND gender = 'F'",
            "NOT (tier = 'NONE') OR total_spend_eur < 100",
            "last_purchase_days_ago IS NULL",
            "NOT (last_purchase_days_ago < 90) AND churn_risk > 0.5",
            "list_contains(categories_bought, 'books') AND email_opt_in",
            "NOT list_contains(badges, 'vip')",
            "country IN ('DE', 'FR') AND (age < 25 OR age > 60)",
            "TRUE",
            "FALSE",
        ];
        let offs: Vec<u16> = (0..3_000u16).step_by(7).collect();
        for q in queries {
            let plan = compile_sql(&ds, q, &Limits::default()).unwrap();
            let got = matches_rows(&ds, &plan.root, 0, &offs, &|_| None);
            for (i, &o) in offs.iter().enumerate() {
                assert_eq!(got[i], eval::matches_row(&ds, &plan.root, o as u32), "{q} at row {o}");
            }
        }
    }
}
