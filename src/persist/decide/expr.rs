//! Segment predicate trees ([`Expr`]) as records: the `Predicate` form of an offer rule.

use super::{need, RecordError};
use crate::query::ast::{CmpOp, Expr, Literal};

/// A segment predicate tree ([`Expr`]).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExprRecord {
    #[prost(oneof = "ExprNode", tags = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10")]
    pub node: Option<ExprNode>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum ExprNode {
    #[prost(message, tag = "1")]
    And(ExprList),
    #[prost(message, tag = "2")]
    Or(ExprList),
    #[prost(message, boxed, tag = "3")]
    Not(Box<ExprRecord>),
    #[prost(message, tag = "4")]
    Cmp(CmpRecord),
    #[prost(message, tag = "5")]
    In(InRecord),
    #[prost(message, tag = "6")]
    IsNull(IsNullRecord),
    #[prost(message, tag = "7")]
    Contains(ContainsRecord),
    #[prost(string, tag = "8")]
    Column(String),
    #[prost(message, tag = "9")]
    Const(LiteralRecord),
    #[prost(string, tag = "10")]
    InSegment(String),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ExprList {
    #[prost(message, repeated, tag = "1")]
    pub items: Vec<ExprRecord>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CmpRecord {
    #[prost(string, tag = "1")]
    pub col: String,
    /// 1 =, 2 <>, 3 <, 4 <=, 5 >, 6 >=.
    #[prost(int32, tag = "2")]
    pub op: i32,
    #[prost(message, optional, tag = "3")]
    pub value: Option<LiteralRecord>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct InRecord {
    #[prost(string, tag = "1")]
    pub col: String,
    #[prost(message, repeated, tag = "2")]
    pub values: Vec<LiteralRecord>,
    #[prost(bool, tag = "3")]
    pub negated: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct IsNullRecord {
    #[prost(string, tag = "1")]
    pub col: String,
    #[prost(bool, tag = "2")]
    pub negated: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainsRecord {
    #[prost(string, tag = "1")]
    pub col: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<LiteralRecord>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LiteralRecord {
    #[prost(oneof = "LiteralKind", tags = "1, 2, 3, 4, 5")]
    pub kind: Option<LiteralKind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum LiteralKind {
    #[prost(bool, tag = "1")]
    Null(bool),
    #[prost(bool, tag = "2")]
    Bool(bool),
    #[prost(int64, tag = "3")]
    Int(i64),
    #[prost(double, tag = "4")]
    Float(f64),
    #[prost(string, tag = "5")]
    Str(String),
}

const CMP_OPS: [CmpOp; 6] = [CmpOp::Eq, CmpOp::Ne, CmpOp::Lt, CmpOp::Le, CmpOp::Gt, CmpOp::Ge];

fn cmp_code(op: CmpOp) -> i32 {
    match op {
        CmpOp::Eq => 1,
        CmpOp::Ne => 2,
        CmpOp::Lt => 3,
        CmpOp::Le => 4,
        CmpOp::Gt => 5,
        CmpOp::Ge => 6,
    }
}

impl From<&Expr> for ExprRecord {
    fn from(e: &Expr) -> Self {
        let list = |v: &Vec<Expr>| ExprList { items: v.iter().map(ExprRecord::from).collect() };
        let node = match e {
            Expr::And(v) => ExprNode::And(list(v)),
            Expr::Or(v) => ExprNode::Or(list(v)),
            Expr::Not(x) => ExprNode::Not(Box::new(x.as_ref().into())),
            Expr::Cmp { col, op, value } => {
                ExprNode::Cmp(CmpRecord { col: col.clone(), op: cmp_code(*op), value: Some(value.into()) })
            }
            Expr::In { col, values, negated } => ExprNode::In(InRecord {
                col: col.clone(),
                values: values.iter().map(LiteralRecord::from).collect(),
                negated: *negated,
            }),
            Expr::IsNull { col, negated } => {
                ExprNode::IsNull(IsNullRecord { col: col.clone(), negated: *negated })
            }
            Expr::Contains { col, value } => {
                ExprNode::Contains(ContainsRecord { col: col.clone(), value: Some(value.into()) })
            }
            Expr::Column(c) => ExprNode::Column(c.clone()),
            Expr::Const(l) => ExprNode::Const(l.into()),
            Expr::InSegment(id) => ExprNode::InSegment(id.clone()),
        };
        ExprRecord { node: Some(node) }
    }
}

impl TryFrom<ExprRecord> for Expr {
    type Error = RecordError;

    fn try_from(r: ExprRecord) -> Result<Self, RecordError> {
        let list = |l: ExprList| l.items.into_iter().map(Expr::try_from).collect::<Result<Vec<_>, _>>();
        Ok(match need(r.node, "expr")? {
            ExprNode::And(l) => Expr::And(list(l)?),
            ExprNode::Or(l) => Expr::Or(list(l)?),
            ExprNode::Not(x) => Expr::Not(Box::new((*x).try_into()?)),
            ExprNode::Cmp(CmpRecord { col, op, value }) => {
                let op = CMP_OPS
                    .into_iter()
                    .find(|o| cmp_code(*o) == op)
                    .ok_or(RecordError::Unknown { field: "cmp.op", value: op.to_string() })?;
                Expr::Cmp { col, op, value: need(value, "cmp.value")?.try_into()? }
            }
            ExprNode::In(InRecord { col, values, negated }) => Expr::In {
                col,
                values: values.into_iter().map(Literal::try_from).collect::<Result<_, _>>()?,
                negated,
            },
            ExprNode::IsNull(IsNullRecord { col, negated }) => Expr::IsNull { col, negated },
            ExprNode::Contains(ContainsRecord { col, value }) => {
                Expr::Contains { col, value: need(value, "contains.value")?.try_into()? }
            }
            ExprNode::Column(c) => Expr::Column(c),
            ExprNode::Const(l) => Expr::Const(l.try_into()?),
            ExprNode::InSegment(id) => Expr::InSegment(id),
        })
    }
}

impl From<&Literal> for LiteralRecord {
    fn from(l: &Literal) -> Self {
        let kind = match l {
            Literal::Null => LiteralKind::Null(true),
            Literal::Bool(b) => LiteralKind::Bool(*b),
            Literal::Int(i) => LiteralKind::Int(*i),
            Literal::Float(x) => LiteralKind::Float(*x),
            Literal::Str(s) => LiteralKind::Str(s.clone()),
        };
        LiteralRecord { kind: Some(kind) }
    }
}

impl TryFrom<LiteralRecord> for Literal {
    type Error = RecordError;

    fn try_from(r: LiteralRecord) -> Result<Self, RecordError> {
        Ok(match need(r.kind, "literal")? {
            LiteralKind::Null(_) => Literal::Null,
            LiteralKind::Bool(b) => Literal::Bool(b),
            LiteralKind::Int(i) => Literal::Int(i),
            LiteralKind::Float(x) => Literal::Float(x),
            LiteralKind::Str(s) => Literal::Str(s),
        })
    }
}
