//! Format 1, read only: the first release logged serde_json of its in-memory types and
//! kept snapshot metadata the same way. The types below freeze that JSON layout (serde's
//! externally tagged enums, field names as they were), so the in-memory types are free
//! to change; a data dir in this format is read once and rewritten in the current one.

use serde::Deserialize;

use super::record::{DecodeError, SegmentMeta, SnapshotMeta};
use crate::engine::Mutation;
use crate::query::ast::{CmpOp, Expr, Literal};
use crate::segments::Definition;
use crate::store::mutate::{CellValue, CustomerUpdate, NewAttribute};

#[derive(Deserialize)]
enum V1Mutation {
    Upsert(Vec<V1Update>),
    Delete(Vec<u64>),
    AddAttribute { name: String, kind: V1Kind },
    CreateSegment { id: String, description: String, definition: V1Definition },
    DeleteSegment { id: String },
    EditMembers { id: String, customer_ids: Vec<u64>, add: bool },
}

#[derive(Deserialize)]
struct V1Update {
    customer_id: u64,
    attributes: Vec<(String, V1Cell)>,
}

/// A non-finite float was written as JSON `null` by format 1, which this (like that
/// release) refuses to decode: the value is lost, and guessing one would be worse.
#[derive(Deserialize)]
enum V1Cell {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<String>),
}

#[derive(Deserialize)]
enum V1Kind {
    Bool,
    Int,
    Float,
    String,
    StringList,
    Date,
    Timestamp,
}

#[derive(Deserialize)]
enum V1Definition {
    Sql(String),
    Tree(V1Expr),
    Static,
}

#[derive(Deserialize)]
enum V1Expr {
    And(Vec<V1Expr>),
    Or(Vec<V1Expr>),
    Not(Box<V1Expr>),
    Cmp { col: String, op: V1CmpOp, value: V1Literal },
    In { col: String, values: Vec<V1Literal>, negated: bool },
    IsNull { col: String, negated: bool },
    Contains { col: String, value: V1Literal },
    Column(String),
    Const(V1Literal),
    InSegment(String),
}

#[derive(Deserialize)]
enum V1CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Deserialize)]
enum V1Literal {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

#[derive(Deserialize)]
struct V1SnapshotExtra {
    id_column: String,
    segments: Vec<V1SegmentSnap>,
}

#[derive(Deserialize)]
struct V1SegmentSnap {
    id: String,
    description: String,
    definition: V1Definition,
    /// Static members in roaring's portable 64-bit treemap format.
    members: Vec<u8>,
}

pub(super) fn decode_mutation(bytes: &[u8]) -> Result<Mutation, DecodeError> {
    let m: V1Mutation = serde_json::from_slice(bytes).map_err(|e| DecodeError::Json(e.to_string()))?;
    Ok(match m {
        V1Mutation::Upsert(batch) => Mutation::Upsert(
            batch
                .into_iter()
                .map(|V1Update { customer_id, attributes }| CustomerUpdate {
                    customer_id,
                    attributes: attributes.into_iter().map(|(a, v)| (a, v.into())).collect(),
                })
                .collect(),
        ),
        V1Mutation::Delete(ids) => Mutation::Delete(ids),
        V1Mutation::AddAttribute { name, kind } => Mutation::AddAttribute { name, kind: kind.into() },
        // Format 1 created a static segment empty and logged its members separately.
        V1Mutation::CreateSegment { id, description, definition } => {
            Mutation::CreateSegment { id, description, definition: definition.into(), members: vec![] }
        }
        V1Mutation::DeleteSegment { id } => Mutation::DeleteSegment { id },
        V1Mutation::EditMembers { id, customer_ids, add } => Mutation::EditMembers { id, customer_ids, add },
    })
}

pub(super) fn decode_snapshot_meta(bytes: &[u8]) -> Result<SnapshotMeta, DecodeError> {
    let V1SnapshotExtra { id_column, segments } =
        serde_json::from_slice(bytes).map_err(|e| DecodeError::Json(e.to_string()))?;
    let segments = segments
        .into_iter()
        .map(|V1SegmentSnap { id, description, definition, members }| {
            let members = if members.is_empty() {
                vec![]
            } else {
                roaring::RoaringTreemap::deserialize_from(&members[..])
                    .map_err(|e| DecodeError::Json(format!("members of segment '{id}': {e}")))?
                    .iter()
                    .collect()
            };
            Ok(SegmentMeta { id, description, definition: definition.into(), members })
        })
        .collect::<Result<_, DecodeError>>()?;
    Ok(SnapshotMeta { id_column, segments, decide: vec![], gamify: vec![], leaderboards: vec![] })
}

impl From<V1Cell> for CellValue {
    fn from(v: V1Cell) -> Self {
        match v {
            V1Cell::Null => CellValue::Null,
            V1Cell::Bool(b) => CellValue::Bool(b),
            V1Cell::Int(i) => CellValue::Int(i),
            V1Cell::Float(x) => CellValue::Float(x),
            V1Cell::Str(s) => CellValue::Str(s),
            V1Cell::List(l) => CellValue::List(l),
        }
    }
}

impl From<V1Kind> for NewAttribute {
    fn from(k: V1Kind) -> Self {
        match k {
            V1Kind::Bool => NewAttribute::Bool,
            V1Kind::Int => NewAttribute::Int,
            V1Kind::Float => NewAttribute::Float,
            V1Kind::String => NewAttribute::String,
            V1Kind::StringList => NewAttribute::StringList,
            V1Kind::Date => NewAttribute::Date,
            V1Kind::Timestamp => NewAttribute::Timestamp,
        }
    }
}

impl From<V1Definition> for Definition {
    fn from(d: V1Definition) -> Self {
        match d {
            V1Definition::Sql(t) => Definition::Sql(t),
            V1Definition::Tree(e) => Definition::Tree(e.into()),
            V1Definition::Static => Definition::Static,
        }
    }
}

impl From<V1Expr> for Expr {
    fn from(e: V1Expr) -> Self {
        let list = |v: Vec<V1Expr>| v.into_iter().map(Expr::from).collect();
        match e {
            V1Expr::And(v) => Expr::And(list(v)),
            V1Expr::Or(v) => Expr::Or(list(v)),
            V1Expr::Not(e) => Expr::Not(Box::new((*e).into())),
            V1Expr::Cmp { col, op, value } => Expr::Cmp { col, op: op.into(), value: value.into() },
            V1Expr::In { col, values, negated } => {
                Expr::In { col, values: values.into_iter().map(Literal::from).collect(), negated }
            }
            V1Expr::IsNull { col, negated } => Expr::IsNull { col, negated },
            V1Expr::Contains { col, value } => Expr::Contains { col, value: value.into() },
            V1Expr::Column(c) => Expr::Column(c),
            V1Expr::Const(l) => Expr::Const(l.into()),
            V1Expr::InSegment(id) => Expr::InSegment(id),
        }
    }
}

impl From<V1CmpOp> for CmpOp {
    fn from(op: V1CmpOp) -> Self {
        match op {
            V1CmpOp::Eq => CmpOp::Eq,
            V1CmpOp::Ne => CmpOp::Ne,
            V1CmpOp::Lt => CmpOp::Lt,
            V1CmpOp::Le => CmpOp::Le,
            V1CmpOp::Gt => CmpOp::Gt,
            V1CmpOp::Ge => CmpOp::Ge,
        }
    }
}

impl From<V1Literal> for Literal {
    fn from(l: V1Literal) -> Self {
        match l {
            V1Literal::Null => Literal::Null,
            V1Literal::Bool(b) => Literal::Bool(b),
            V1Literal::Int(i) => Literal::Int(i),
            V1Literal::Float(x) => Literal::Float(x),
            V1Literal::Str(s) => Literal::Str(s),
        }
    }
}
