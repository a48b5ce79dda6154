//! proto <-> core. Every proto message is destructured field by field, so a field added
//! to the proto breaks the build here until someone decides what it means.

use crate::analytics::{AttributeInfo, Breakdown};
use crate::query::ast::CmpOp;
use crate::query::explain::ExplainNode;
use crate::query::{Expr, Limits, Literal, QueryError};

use super::pb;
use super::pb::predicate::Node;
use super::pb::value::Kind;

/// A segment as a request names it, whichever request it came in.
#[derive(Clone, Debug)]
pub enum Spec {
    Where(String),
    Predicate(pb::Predicate),
    Id(String),
}

/// Each request with a segment has its own generated oneof enum, all of the same shape.
macro_rules! spec_from {
    ($($module:ident),*) => {$(
        impl From<pb::$module::Segment> for Spec {
            fn from(s: pb::$module::Segment) -> Spec {
                match s {
                    pb::$module::Segment::Where(w) => Spec::Where(w),
                    pb::$module::Segment::Predicate(p) => Spec::Predicate(p),
                    pb::$module::Segment::SegmentId(id) => Spec::Id(id),
                }
            }
        }
    )*};
}
spec_from!(
    segment,
    count_segment_request,
    is_member_request,
    batch_is_member_request,
    explain_request,
    breakdown_request
);

/// A predicate tree -> the core's expression, checking depth and IN-list limits as it
/// goes (before anything is planned).
pub fn expr_of(p: pb::Predicate, limits: &Limits) -> Result<Expr, QueryError> {
    tree(p, 1, limits)
}

fn tree(p: pb::Predicate, depth: usize, limits: &Limits) -> Result<Expr, QueryError> {
    if depth > limits.max_depth {
        return Err(QueryError::Limit { what: "predicate depth", got: depth, limit: limits.max_depth });
    }
    let pb::Predicate { node } = p;
    let node = node.ok_or_else(|| {
        QueryError::BadTree(
            "a predicate has no node: set one of eq, in, range, contains, is_null, not, and, or".into(),
        )
    })?;
    Ok(match node {
        Node::Eq(pb::Eq { column, value }) => {
            Expr::Cmp { col: column, op: CmpOp::Eq, value: required(value, "eq", "value")? }
        }
        Node::In(pb::In { column, values }) => {
            if values.len() > limits.max_in_list {
                return Err(QueryError::Limit {
                    what: "IN list length",
                    got: values.len(),
                    limit: limits.max_in_list,
                });
            }
            if values.is_empty() {
                return Err(QueryError::BadTree(format!("'in' on '{column}' needs at least one value")));
            }
            let values = values.into_iter().map(literal).collect::<Result<_, _>>()?;
            Expr::In { col: column, values, negated: false }
        }
        Node::Range(pb::Range { column, gt, gte, lt, lte }) => {
            let mut parts = vec![];
            for (bound, op) in [(gt, CmpOp::Gt), (gte, CmpOp::Ge), (lt, CmpOp::Lt), (lte, CmpOp::Le)] {
                if let Some(v) = bound {
                    parts.push(Expr::Cmp { col: column.clone(), op, value: literal(v)? });
                }
            }
            match parts.len() {
                0 => {
                    return Err(QueryError::BadTree(format!(
                        "'range' on '{column}' needs at least one of gt, gte, lt, lte"
                    )))
                }
                1 => parts.pop().expect("one part"),
                _ => Expr::And(parts),
            }
        }
        Node::Contains(pb::Contains { column, value }) => {
            Expr::Contains { col: column, value: required(value, "contains", "value")? }
        }
        Node::IsNull(pb::IsNull { column, negated }) => Expr::IsNull { col: column, negated },
        Node::Not(inner) => Expr::Not(Box::new(tree(*inner, depth + 1, limits)?)),
        Node::And(pb::PredicateList { args }) => Expr::And(list(args, "and", depth, limits)?),
        Node::Or(pb::PredicateList { args }) => Expr::Or(list(args, "or", depth, limits)?),
    })
}

fn list(args: Vec<pb::Predicate>, op: &str, depth: usize, limits: &Limits) -> Result<Vec<Expr>, QueryError> {
    if args.is_empty() {
        return Err(QueryError::BadTree(format!("'{op}' needs at least one argument")));
    }
    args.into_iter().map(|a| tree(a, depth + 1, limits)).collect()
}

fn required(v: Option<pb::Value>, op: &str, field: &str) -> Result<Literal, QueryError> {
    literal(v.ok_or_else(|| QueryError::BadTree(format!("'{op}' needs '{field}'")))?)
}

pub fn literal(v: pb::Value) -> Result<Literal, QueryError> {
    let pb::Value { kind } = v;
    Ok(match kind {
        None => return Err(QueryError::BadTree(
            "a value has no kind: set one of bool_value, int_value, float_value, string_value, null_value"
                .into(),
        )),
        Some(Kind::BoolValue(b)) => Literal::Bool(b),
        Some(Kind::IntValue(i)) => Literal::Int(i),
        Some(Kind::FloatValue(x)) => Literal::Float(x),
        Some(Kind::StringValue(s)) => Literal::Str(s),
        Some(Kind::NullValue(pb::Null {})) => Literal::Null,
    })
}

pub fn value_of(l: &Literal) -> pb::Value {
    let kind = match l {
        Literal::Null => Kind::NullValue(pb::Null {}),
        Literal::Bool(b) => Kind::BoolValue(*b),
        Literal::Int(i) => Kind::IntValue(*i),
        Literal::Float(x) => Kind::FloatValue(*x),
        Literal::Str(s) => Kind::StringValue(s.clone()),
    };
    pb::Value { kind: Some(kind) }
}

pub fn plan_node(e: ExplainNode) -> pb::PlanNode {
    let ExplainNode { op, estimated, actual, children } = e;
    pb::PlanNode { op, estimated, actual, children: children.into_iter().map(plan_node).collect() }
}

pub fn attribute(a: AttributeInfo) -> pb::Attribute {
    let AttributeInfo { name, kind, source_type, nullable, null_count, distinct, distinct_exact, values } = a;
    pb::Attribute {
        name,
        kind: kind.to_string(),
        source_type,
        nullable,
        null_count,
        distinct_values: distinct,
        distinct_exact,
        values: values_of(&values),
    }
}

pub fn values_of(groups: &[(Literal, u64)]) -> Vec<pb::ValueCount> {
    groups.iter().map(|(v, n)| pb::ValueCount { value: Some(value_of(v)), count: *n }).collect()
}

pub fn breakdown(b: Breakdown, server_time_us: u64) -> pb::BreakdownResponse {
    let Breakdown { segment_count, groups, null_count, other_count, distinct_groups } = b;
    pb::BreakdownResponse {
        segment_count,
        groups: values_of(&groups),
        null_count,
        other_count,
        distinct_groups,
        server_time_us,
    }
}
