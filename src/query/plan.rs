//! Binding an [`Expr`] to the table: columns resolved, literals typed, NOT pushed down to
//! the leaves, children ordered by estimated cardinality.
//!
//! Three-valued logic is settled here. NOT is pushed to the leaves by De Morgan (which
//! holds in SQL's Kleene logic), and a negated leaf means "the column has a value and the
//! test is false". After that only the TRUE set of each node matters, so UNKNOWN behaves as
//! FALSE everywhere below: `NOT (x >= 180)` excludes rows where x is NULL, as SQL does.

use std::ops::Bound;
use std::sync::Arc;

use chrono::{NaiveDate, NaiveDateTime};

use super::ast::{CmpOp, Expr, Literal};
use super::error::QueryError;
use crate::index::{AttrIndex, Postings, RangePlan, RangeSpec};
use crate::store::build::unit_per_second;
use crate::store::column::{Column, Kind, Temporal};
use crate::store::Dataset;

/// A bound, planned segment.
#[derive(Clone, Debug)]
pub struct Plan {
    pub root: Node,
}

#[derive(Clone, Debug)]
pub enum Node {
    And(Vec<Node>),
    Or(Vec<Node>),
    Leaf(Leaf),
    /// TRUE (every customer) or FALSE / UNKNOWN (none).
    Const(bool),
    /// A saved segment's members as they were when the plan was bound (plans are rebound
    /// after writes); negated: every live customer not in it.
    Segment {
        id: String,
        members: Arc<Postings>,
        negated: bool,
    },
}

#[derive(Clone, Debug)]
pub struct Leaf {
    pub col: usize,
    /// TRUE set is "column has a value and `test` is false".
    pub negated: bool,
    pub test: Test,
    /// Estimated rows in this leaf's TRUE set.
    pub est: u64,
    /// The predicate as written back in SQL, for Explain.
    pub label: String,
}

#[derive(Clone, Debug)]
pub enum Test {
    /// The value (any element, for lists) is one of these dictionary / bool codes.
    Codes(Vec<u32>),
    Int(RangeSpec<i64>, RangePlan),
    Float(RangeSpec<f64>, RangePlan),
    IsNull,
}

impl Node {
    /// Estimated rows of the TRUE set (exact for most leaves; an upper bound for AND).
    pub fn estimate(&self, ds: &Dataset) -> u64 {
        match self {
            Node::Leaf(l) => l.est,
            Node::Const(true) => ds.customers(),
            Node::Const(false) => 0,
            Node::Segment { members, negated: false, .. } => members.len,
            Node::Segment { members, negated: true, .. } => ds.customers().saturating_sub(members.len),
            Node::And(v) => v.iter().map(|n| n.estimate(ds)).min().unwrap_or(0),
            Node::Or(v) => v.iter().map(|n| n.estimate(ds)).sum::<u64>().min(ds.customers()),
        }
    }
}

/// Looks up a saved segment's members for `in_segment`.
pub type Segments<'a> = &'a dyn Fn(&str) -> Option<Arc<Postings>>;

/// Binds and plans (no saved segments: `in_segment` is an unknown segment).
pub fn bind(ds: &Dataset, e: &Expr) -> Result<Plan, QueryError> {
    bind_in(ds, e, &|_| None)
}

/// Binds and plans, resolving `in_segment` through `segs`.
pub fn bind_in(ds: &Dataset, e: &Expr, segs: Segments<'_>) -> Result<Plan, QueryError> {
    let root = simplify(ds, bind_node(ds, e, false, segs)?);
    Ok(Plan { root })
}

fn bind_node(ds: &Dataset, e: &Expr, neg: bool, segs: Segments<'_>) -> Result<Node, QueryError> {
    Ok(match e {
        Expr::InSegment(id) => Node::Segment {
            id: id.clone(),
            members: segs(id).ok_or_else(|| QueryError::UnknownSegment(id.clone()))?,
            negated: neg,
        },
        Expr::And(v) | Expr::Or(v) => {
            let kids = v.iter().map(|x| bind_node(ds, x, neg, segs)).collect::<Result<Vec<_>, _>>()?;
            // De Morgan: under negation AND becomes OR and vice versa.
            if matches!(e, Expr::And(_)) != neg {
                Node::And(kids)
            } else {
                Node::Or(kids)
            }
        }
        Expr::Not(x) => bind_node(ds, x, !neg, segs)?,
        Expr::Const(Literal::Bool(b)) => Node::Const(*b != neg),
        Expr::Const(Literal::Null) => Node::Const(false),
        Expr::Const(l) => return Err(QueryError::Unsupported { construct: format!("a bare literal {l}") }),
        Expr::Column(name) => {
            let (ci, col) = column(ds, name)?;
            if col.kind != Kind::Bool {
                return Err(QueryError::TypeMismatch {
                    column: name.clone(),
                    kind: col.kind.name(),
                    literal: "TRUE (a bare column must be boolean)".into(),
                });
            }
            leaf(ds, ci, neg, Test::Codes(vec![1]), name.clone())
        }
        Expr::IsNull { col, negated } => {
            let (ci, _) = column(ds, col)?;
            leaf(ds, ci, neg != *negated, Test::IsNull, format!("{col} IS NULL"))
        }
        Expr::Contains { col, value } => {
            let (ci, c) = column(ds, col)?;
            if c.kind != Kind::StrList {
                return Err(QueryError::BadOperator {
                    column: col.clone(),
                    kind: c.kind.name(),
                    op: "list_contains".into(),
                });
            }
            match value {
                Literal::Null => Node::Const(false),
                Literal::Str(s) => {
                    let codes = c.dict().and_then(|d| d.code(s)).into_iter().collect();
                    leaf(ds, ci, neg, Test::Codes(codes), format!("list_contains({col}, {value})"))
                }
                l => return Err(mismatch(col, c, l)),
            }
        }
        Expr::In { col, values, negated } => {
            let neg = neg != *negated;
            if values.is_empty() {
                return Err(QueryError::Syntax(format!("empty IN list for column '{col}'")));
            }
            let (ci, c) = column(ds, col)?;
            if values.contains(&Literal::Null) && neg {
                // x NOT IN (.., NULL) is never TRUE: each row is FALSE or UNKNOWN.
                return Ok(Node::Const(false));
            }
            let values: Vec<&Literal> = values.iter().filter(|v| **v != Literal::Null).collect();
            if values.is_empty() {
                // x IN (NULL) is UNKNOWN on every row.
                return Ok(Node::Const(false));
            }
            match c.kind {
                Kind::Str | Kind::Bool => {
                    let mut codes = vec![];
                    for v in &values {
                        codes.extend(eq_code(c, v).map_err(|l| mismatch(col, c, &l))?);
                    }
                    codes.sort_unstable();
                    codes.dedup();
                    let label = format!("{col} IN ({})", join(&values));
                    leaf(ds, ci, neg, Test::Codes(codes), label)
                }
                _ => {
                    let eqs = values
                        .iter()
                        .map(|v| {
                            bind_node(
                                ds,
                                &Expr::Cmp { col: col.clone(), op: CmpOp::Eq, value: (*v).clone() },
                                neg,
                                segs,
                            )
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    if neg {
                        Node::And(eqs)
                    } else {
                        Node::Or(eqs)
                    }
                }
            }
        }
        Expr::Cmp { col, op, value } => {
            let (ci, c) = column(ds, col)?;
            if *value == Literal::Null {
                return Ok(Node::Const(false));
            }
            // x <> v has the truth table of NOT (x = v), NULLs included.
            let (op, neg) = if *op == CmpOp::Ne { (CmpOp::Eq, !neg) } else { (*op, neg) };
            let label = format!("{col} {} {value}", op.symbol());
            let test = match c.kind {
                Kind::Bool | Kind::Str if op == CmpOp::Eq => {
                    Test::Codes(eq_code(c, value).map_err(|l| mismatch(col, c, &l))?.into_iter().collect())
                }
                Kind::Str => {
                    let Literal::Str(s) = value else { return Err(mismatch(col, c, value)) };
                    let d = c.dict().expect("string column has a dictionary");
                    Test::Codes(
                        (0..d.len() as u32)
                            .filter(|&code| cmp_holds(d.value(code), op, s.as_str()))
                            .collect(),
                    )
                }
                Kind::Bool => {
                    return Err(QueryError::BadOperator {
                        column: col.clone(),
                        kind: "bool",
                        op: op.symbol().into(),
                    })
                }
                Kind::Int(t) => {
                    let spec = int_spec(op, &int_literal(t, value).ok_or_else(|| mismatch(col, c, value))?);
                    let AttrIndex::IntRange(ix) = &*ds.indexes[ci] else {
                        unreachable!("int column has a range index")
                    };
                    Test::Int(spec, ix.plan(&spec))
                }
                Kind::Float => {
                    let v = match value {
                        Literal::Int(i) => *i as f64,
                        Literal::Float(f) => *f,
                        l => return Err(mismatch(col, c, l)),
                    };
                    let spec = spec_of(op, v);
                    let AttrIndex::FloatRange(ix) = &*ds.indexes[ci] else {
                        unreachable!("float column has a range index")
                    };
                    Test::Float(spec, ix.plan(&spec))
                }
                Kind::StrList => {
                    return Err(QueryError::BadOperator {
                        column: col.clone(),
                        kind: c.kind.name(),
                        op: format!("{} (use list_contains({col}, 'x') or 'x' = ANY({col}))", op.symbol()),
                    })
                }
            };
            leaf(ds, ci, neg, test, label)
        }
    })
}

fn join(values: &[&Literal]) -> String {
    values.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ")
}

fn column<'a>(ds: &'a Dataset, name: &str) -> Result<(usize, &'a Column), QueryError> {
    ds.column_index(name).map(|i| (i, &*ds.columns[i])).ok_or_else(|| QueryError::UnknownColumn {
        column: name.into(),
        known: ds.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", "),
    })
}

fn mismatch(col: &str, c: &Column, l: &Literal) -> QueryError {
    QueryError::TypeMismatch { column: col.into(), kind: c.kind.name(), literal: l.to_string() }
}

/// The code a value equals, None when the value does not occur; Err for a wrong type.
fn eq_code(c: &Column, v: &Literal) -> Result<Option<u32>, Literal> {
    match (c.kind, v) {
        (Kind::Bool, Literal::Bool(b)) => Ok(Some(*b as u32)),
        (Kind::Str, Literal::Str(s)) => Ok(c.dict().and_then(|d| d.code(s))),
        _ => Err(v.clone()),
    }
}

fn cmp_holds<T: PartialOrd + ?Sized>(a: &T, op: CmpOp, b: &T) -> bool {
    match op {
        CmpOp::Eq => a == b,
        CmpOp::Ne => a != b,
        CmpOp::Lt => a < b,
        CmpOp::Le => a <= b,
        CmpOp::Gt => a > b,
        CmpOp::Ge => a >= b,
    }
}

/// An integer column's literal: an exact integer, a float (compared numerically), or for
/// date / timestamp columns a date or timestamp string.
enum IntLit {
    Int(i64),
    Float(f64),
}

fn int_literal(t: Temporal, v: &Literal) -> Option<IntLit> {
    match (t, v) {
        (_, Literal::Int(i)) => Some(IntLit::Int(*i)),
        (Temporal::None, Literal::Float(f)) => Some(IntLit::Float(*f)),
        (Temporal::None, _) => None,
        (t, Literal::Str(s)) => temporal(t, s).map(IntLit::Int),
        _ => None,
    }
}

/// Parses 'YYYY-MM-DD' or 'YYYY-MM-DD[ T]HH:MM:SS[.f]' into the column's encoding.
pub fn temporal(t: Temporal, s: &str) -> Option<i64> {
    let dt = NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .or_else(|| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").ok())
        .or_else(|| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").ok())?;
    let utc = dt.and_utc();
    // Checked: a far date in nanoseconds overflows i64, and must be refused, not wrapped.
    match t {
        Temporal::Date32 => Some(utc.timestamp().div_euclid(86_400)),
        Temporal::Date64 => Some(utc.timestamp_millis()),
        Temporal::Timestamp(u) => {
            let per = unit_per_second(u);
            utc.timestamp()
                .checked_mul(per)?
                .checked_add(utc.timestamp_subsec_nanos() as i64 / (1_000_000_000 / per))
        }
        Temporal::None => None,
    }
}

fn spec_of<K: Copy>(op: CmpOp, v: K) -> RangeSpec<K> {
    let (lo, hi) = match op {
        CmpOp::Eq => (Bound::Included(v), Bound::Included(v)),
        CmpOp::Lt => (Bound::Unbounded, Bound::Excluded(v)),
        CmpOp::Le => (Bound::Unbounded, Bound::Included(v)),
        CmpOp::Gt => (Bound::Excluded(v), Bound::Unbounded),
        CmpOp::Ge => (Bound::Included(v), Bound::Unbounded),
        CmpOp::Ne => unreachable!("<> is bound as NOT ="),
    };
    RangeSpec { lo, hi }
}

/// An integer range from a comparison; a float literal is rounded to the integers it admits.
fn int_spec(op: CmpOp, v: &IntLit) -> RangeSpec<i64> {
    match *v {
        IntLit::Int(i) => spec_of(op, i),
        IntLit::Float(f) => {
            let (fl, ce) = (f.floor() as i64, f.ceil() as i64);
            match op {
                CmpOp::Eq if f.fract() == 0.0 => spec_of(op, fl),
                CmpOp::Eq => RangeSpec { lo: Bound::Included(1), hi: Bound::Excluded(1) },
                CmpOp::Lt => spec_of(CmpOp::Lt, ce),
                CmpOp::Le => spec_of(CmpOp::Le, fl),
                CmpOp::Gt => spec_of(CmpOp::Gt, fl),
                CmpOp::Ge => spec_of(CmpOp::Ge, ce),
                CmpOp::Ne => unreachable!("<> is bound as NOT ="),
            }
        }
    }
}

fn leaf(ds: &Dataset, col: usize, negated: bool, test: Test, label: String) -> Node {
    let nulls = ds.nulls[col].as_ref().map_or(0, |n| n.len);
    let t = match (&test, &*ds.indexes[col]) {
        (Test::Codes(codes), AttrIndex::Values(v)) => {
            codes.iter().map(|&c| v.values.get(c as usize).map_or(0, |p| p.len)).sum::<u64>()
        }
        (Test::Int(_, p), _) => (p.min_rows + p.max_rows) / 2,
        (Test::Float(_, p), _) => (p.min_rows + p.max_rows) / 2,
        (Test::IsNull, _) => nulls,
        _ => 0,
    };
    let valued = ds.customers().saturating_sub(nulls);
    let est = if negated { valued.saturating_sub(t) } else { t };
    let label = if negated { format!("NOT ({label})") } else { label };
    Node::Leaf(Leaf { col, negated, test, est, label })
}

/// Folds constants, flattens nested AND/OR, merges same-column code leaves, and orders
/// AND children smallest first so evaluation can stop early on empty chunks.
fn simplify(ds: &Dataset, n: Node) -> Node {
    match n {
        Node::And(kids) if kids.is_empty() => Node::Const(true),
        Node::Or(kids) if kids.is_empty() => Node::Const(false),
        Node::And(kids) => {
            let mut out = vec![];
            for k in kids.into_iter().map(|k| simplify(ds, k)) {
                match k {
                    Node::Const(true) => {}
                    Node::Const(false) => return Node::Const(false),
                    Node::And(inner) => out.extend(inner),
                    k => out.push(k),
                }
            }
            let mut out = merge_ranges(ds, merge_codes(ds, out, true));
            out.sort_by_key(|k| k.estimate(ds));
            match out.len() {
                0 => Node::Const(true),
                1 => out.pop().expect("one"),
                _ => Node::And(out),
            }
        }
        Node::Or(kids) => {
            let mut out = vec![];
            for k in kids.into_iter().map(|k| simplify(ds, k)) {
                match k {
                    Node::Const(false) => {}
                    Node::Const(true) => return Node::Const(true),
                    Node::Or(inner) => out.extend(inner),
                    k => out.push(k),
                }
            }
            let mut out = merge_codes(ds, out, false);
            out.sort_by_key(|k| std::cmp::Reverse(k.estimate(ds)));
            match out.len() {
                0 => Node::Const(false),
                1 => out.pop().expect("one"),
                _ => Node::Or(out),
            }
        }
        n => n,
    }
}

/// `a = 'x' OR a = 'y'` -> `a IN ('x', 'y')`; `NOT a = 'x' AND NOT a = 'y'` likewise
/// (negated): one leaf reads the column's bitmaps once.
fn merge_codes(ds: &Dataset, nodes: Vec<Node>, under_and: bool) -> Vec<Node> {
    let mut out: Vec<Node> = vec![];
    for n in nodes {
        if let Node::Leaf(Leaf { col, negated, test: Test::Codes(codes), label, .. }) = &n {
            if *negated == under_and {
                let target = out.iter_mut().find_map(|o| match o {
                    Node::Leaf(l)
                        if l.col == *col && l.negated == *negated && matches!(l.test, Test::Codes(_)) =>
                    {
                        Some(l)
                    }
                    _ => None,
                });
                if let Some(l) = target {
                    let Test::Codes(have) = &mut l.test else { unreachable!() };
                    have.extend(codes);
                    have.sort_unstable();
                    have.dedup();
                    let merged_label =
                        format!("{}{}{label}", l.label, if under_and { " AND " } else { " OR " });
                    let Node::Leaf(new) = leaf(ds, *col, *negated, l.test.clone(), String::new()) else {
                        unreachable!()
                    };
                    *l = Leaf { label: merged_label, ..new };
                    continue;
                }
            }
        }
        out.push(n);
    }
    out
}

/// `age >= 25 AND age <= 34` -> one leaf `25 <= age <= 34`: one pass over the range index
/// instead of two wide ones (BETWEEN arrives as two comparisons).
fn merge_ranges(ds: &Dataset, nodes: Vec<Node>) -> Vec<Node> {
    let mut out: Vec<Node> = vec![];
    for n in nodes {
        if let Node::Leaf(Leaf { col, negated: false, test, label, .. }) = &n {
            let target = out.iter_mut().find_map(|o| match o {
                Node::Leaf(l) if l.col == *col && !l.negated => Some(l),
                _ => None,
            });
            let merged = target.and_then(|l| {
                let test = match (&l.test, test, &*ds.indexes[*col]) {
                    (Test::Int(a, _), Test::Int(b, _), AttrIndex::IntRange(ix)) => {
                        let spec = intersect(a, b);
                        Test::Int(spec, ix.plan(&spec))
                    }
                    (Test::Float(a, _), Test::Float(b, _), AttrIndex::FloatRange(ix)) => {
                        let spec = intersect(a, b);
                        Test::Float(spec, ix.plan(&spec))
                    }
                    _ => return None,
                };
                let Node::Leaf(new) = leaf(ds, *col, false, test, format!("{} AND {label}", l.label)) else {
                    unreachable!()
                };
                *l = new;
                Some(())
            });
            if merged.is_some() {
                continue;
            }
        }
        out.push(n);
    }
    out
}

/// The intersection of two intervals.
fn intersect<K: Copy + PartialOrd>(a: &RangeSpec<K>, b: &RangeSpec<K>) -> RangeSpec<K> {
    use Bound::*;
    let value = |x: &Bound<K>| match x {
        Included(v) | Excluded(v) => Some(*v),
        Unbounded => None,
    };
    // Of two lower bounds the larger wins (Excluded on a tie); of two upper, the smaller.
    let pick = |x: Bound<K>, y: Bound<K>, lower: bool| -> Bound<K> {
        match (value(&x), value(&y)) {
            (None, _) => y,
            (_, None) => x,
            (Some(p), Some(q)) if p == q => {
                if matches!(x, Excluded(_)) {
                    x
                } else {
                    y
                }
            }
            (Some(p), Some(q)) => {
                if (p > q) == lower {
                    x
                } else {
                    y
                }
            }
        }
    };
    RangeSpec { lo: pick(a.lo, b.lo, true), hi: pick(a.hi, b.hi, false) }
}
