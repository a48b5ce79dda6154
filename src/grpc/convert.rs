//! proto <-> core. Every proto message is destructured field by field, so a field added
//! to the proto breaks the build here until someone decides what it means.

use crate::analytics::{AttributeInfo, Breakdown};
use crate::app::{AppError, NewDefinition, NewSegment, SegmentInfo, SegmentRef};
use crate::query::ast::CmpOp;
use crate::query::explain::ExplainNode;
use crate::query::{Expr, Limits, Literal, QueryError};
use crate::segments::{Change, Definition, SegmentEvent};
use crate::store::mutate::{CellValue, CustomerUpdate, NewAttribute};

use super::pb;
use super::pb::predicate::Node;
use super::pb::value::Kind;

/// Each request with a segment has its own generated oneof enum, all of the same shape.
macro_rules! segment_ref_from {
    ($($module:ident),*) => {$(
        impl TryFrom<pb::$module::Segment> for SegmentRef {
            type Error = QueryError;

            fn try_from(s: pb::$module::Segment) -> Result<SegmentRef, QueryError> {
                Ok(match s {
                    pb::$module::Segment::Where(w) => SegmentRef::Where(w),
                    pb::$module::Segment::Predicate(p) => SegmentRef::Tree(Expr::try_from(p)?),
                    pb::$module::Segment::SegmentId(id) => SegmentRef::Saved(id),
                })
            }
        }
    )*};
}
segment_ref_from!(
    segment,
    count_segment_request,
    is_member_request,
    stream_is_member_request,
    batch_is_member_request,
    explain_request,
    breakdown_request
);

/// A request's segment oneof, which must be set.
pub fn segment_ref<S>(s: Option<S>) -> Result<SegmentRef, AppError>
where
    SegmentRef: TryFrom<S, Error = QueryError>,
{
    Ok(SegmentRef::try_from(s.ok_or(AppError::MissingSegment)?)?)
}

/// A predicate tree -> the core's expression. The limits (depth, IN-list length) are the
/// application's to check; prost's decoder already bounds the nesting this recursion sees
/// (100 messages).
impl TryFrom<pb::Predicate> for Expr {
    type Error = QueryError;

    fn try_from(p: pb::Predicate) -> Result<Expr, QueryError> {
        tree(p)
    }
}

/// [`Expr::try_from`] then the limits: a tree as the service would accept it.
pub fn expr_of(p: pb::Predicate, limits: &Limits) -> Result<Expr, QueryError> {
    let e = Expr::try_from(p)?;
    crate::query::check_limits(&e, limits)?;
    Ok(e)
}

fn tree(p: pb::Predicate) -> Result<Expr, QueryError> {
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
        Node::Not(inner) => Expr::Not(Box::new(tree(*inner)?)),
        Node::And(pb::PredicateList { args }) => Expr::And(list(args, "and")?),
        Node::Or(pb::PredicateList { args }) => Expr::Or(list(args, "or")?),
    })
}

fn list(args: Vec<pb::Predicate>, op: &str) -> Result<Vec<Expr>, QueryError> {
    if args.is_empty() {
        return Err(QueryError::BadTree(format!("'{op}' needs at least one argument")));
    }
    args.into_iter().map(tree).collect()
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

// ---------------------------------------------------------------------------------------
// Customers, saved segments, events

/// A client's attribute value. Errors name the customer and the attribute.
pub fn cell_of(v: pb::customer::Value, customer_id: u64, attribute: &str) -> Result<CellValue, AppError> {
    use pb::customer::value::Kind as K;
    let pb::customer::Value { kind } = v;
    Ok(match kind {
        None => {
            return Err(AppError::Invalid {
                field: "attributes",
                msg: format!(
                    "customer {customer_id}: attribute '{attribute}' has no value: set one of bool_value, \
                     int_value, float_value, string_value, list_value, null_value"
                ),
            })
        }
        Some(K::BoolValue(b)) => CellValue::Bool(b),
        Some(K::IntValue(i)) => CellValue::Int(i),
        Some(K::FloatValue(x)) => CellValue::Float(x),
        Some(K::StringValue(s)) => CellValue::Str(s),
        Some(K::ListValue(pb::StringList { values })) => CellValue::List(values),
        Some(K::NullValue(_)) => CellValue::Null,
    })
}

pub fn cell_pb(c: CellValue) -> pb::customer::Value {
    use pb::customer::value::Kind as K;
    let kind = match c {
        CellValue::Null => K::NullValue(true),
        CellValue::Bool(b) => K::BoolValue(b),
        CellValue::Int(i) => K::IntValue(i),
        CellValue::Float(x) => K::FloatValue(x),
        CellValue::Str(s) => K::StringValue(s),
        CellValue::List(values) => K::ListValue(pb::StringList { values }),
    };
    pb::customer::Value { kind: Some(kind) }
}

/// A proto customer -> a partial update (attributes sorted by name: the log is
/// deterministic).
impl TryFrom<pb::Customer> for CustomerUpdate {
    type Error = AppError;

    fn try_from(c: pb::Customer) -> Result<CustomerUpdate, AppError> {
        customer_update(c)
    }
}

fn customer_update(c: pb::Customer) -> Result<CustomerUpdate, AppError> {
    let pb::Customer { customer_id, attributes } = c;
    let mut attrs = attributes
        .into_iter()
        .map(|(name, v)| {
            let cell = cell_of(v, customer_id, &name)?;
            Ok((name, cell))
        })
        .collect::<Result<Vec<_>, AppError>>()?;
    attrs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(CustomerUpdate { customer_id, attributes: attrs })
}

pub fn customer_pb(customer_id: u64, attributes: Vec<(String, CellValue)>) -> pb::Customer {
    pb::Customer { customer_id, attributes: attributes.into_iter().map(|(k, v)| (k, cell_pb(v))).collect() }
}

pub fn attribute_type(t: i32) -> Result<NewAttribute, AppError> {
    use pb::AttributeType as T;
    let bad = || AppError::Invalid {
        field: "type",
        msg: format!(
            "{t} is not an attribute type: use ATTRIBUTE_TYPE_BOOL, _INT, _FLOAT, _STRING, _STRING_LIST, \
             _DATE or _TIMESTAMP"
        ),
    };
    Ok(match T::try_from(t).map_err(|_| bad())? {
        T::Unspecified => return Err(bad()),
        T::Bool => NewAttribute::Bool,
        T::Int => NewAttribute::Int,
        T::Float => NewAttribute::Float,
        T::String => NewAttribute::String,
        T::StringList => NewAttribute::StringList,
        T::Date => NewAttribute::Date,
        T::Timestamp => NewAttribute::Timestamp,
    })
}

/// An expression back to a predicate tree (the inverse of [`expr_of`] on its image; None
/// for shapes a tree cannot spell, which [`expr_of`] never produces).
pub fn predicate_of(e: &Expr) -> Option<pb::Predicate> {
    let node = |n| Some(pb::Predicate { node: Some(n) });
    let list = |v: &[Expr]| v.iter().map(predicate_of).collect::<Option<Vec<_>>>();
    match e {
        Expr::And(v) => node(Node::And(pb::PredicateList { args: list(v)? })),
        Expr::Or(v) => node(Node::Or(pb::PredicateList { args: list(v)? })),
        Expr::Not(inner) => node(Node::Not(Box::new(predicate_of(inner)?))),
        Expr::Cmp { col, op, value } => {
            let v = Some(value_of(value));
            let column = col.clone();
            match op {
                CmpOp::Eq => node(Node::Eq(pb::Eq { column, value: v })),
                CmpOp::Ne => node(Node::Not(Box::new(pb::Predicate {
                    node: Some(Node::Eq(pb::Eq { column, value: v })),
                }))),
                CmpOp::Gt => node(Node::Range(pb::Range { column, gt: v, ..Default::default() })),
                CmpOp::Ge => node(Node::Range(pb::Range { column, gte: v, ..Default::default() })),
                CmpOp::Lt => node(Node::Range(pb::Range { column, lt: v, ..Default::default() })),
                CmpOp::Le => node(Node::Range(pb::Range { column, lte: v, ..Default::default() })),
            }
        }
        Expr::In { col, values, negated } => {
            let p = pb::Predicate {
                node: Some(Node::In(pb::In {
                    column: col.clone(),
                    values: values.iter().map(value_of).collect(),
                })),
            };
            if *negated {
                node(Node::Not(Box::new(p)))
            } else {
                Some(p)
            }
        }
        Expr::IsNull { col, negated } => {
            node(Node::IsNull(pb::IsNull { column: col.clone(), negated: *negated }))
        }
        Expr::Contains { col, value } => {
            node(Node::Contains(pb::Contains { column: col.clone(), value: Some(value_of(value)) }))
        }
        Expr::Column(_) | Expr::Const(_) | Expr::InSegment(_) => None,
    }
}

pub fn saved_segment(s: SegmentInfo) -> pb::SavedSegment {
    use pb::saved_segment::Definition as D;
    let SegmentInfo { id, description, definition, count } = s;
    let definition = match definition {
        Definition::Sql(text) => Some(D::Where(text)),
        Definition::Tree(e) => predicate_of(&e).map(D::Predicate),
        Definition::Static => Some(D::Static(true)),
    };
    pb::SavedSegment { segment_id: id, description, definition, count }
}

impl TryFrom<pb::CreateSegmentRequest> for NewSegment {
    type Error = AppError;

    fn try_from(r: pb::CreateSegmentRequest) -> Result<NewSegment, AppError> {
        use pb::create_segment_request::Definition as D;
        let pb::CreateSegmentRequest { segment_id, definition, description } = r;
        let definition = match definition {
            None => {
                return Err(AppError::Invalid {
                    field: "definition",
                    msg: "set one of 'where', 'predicate' or 'static_members'".into(),
                })
            }
            Some(D::Where(text)) => NewDefinition::Where(text),
            Some(D::Predicate(p)) => NewDefinition::Tree(Expr::try_from(p)?),
            Some(D::StaticMembers(pb::StaticMembers { customer_ids })) => NewDefinition::Static(customer_ids),
        };
        Ok(NewSegment { id: segment_id, description, definition })
    }
}

pub fn event_pb(e: SegmentEvent) -> pb::SegmentEvent {
    let SegmentEvent { segment_id, customer_id, change, sequence } = e;
    let change = match change {
        Change::Entered => pb::Change::Entered,
        Change::Left => pb::Change::Left,
    };
    pb::SegmentEvent { segment_id: segment_id.to_string(), customer_id, change: change as i32, sequence }
}
