//! The segment expression both front ends (SQL text, JSON tree) produce, before it is
//! bound to the table's columns.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Literal {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl std::fmt::Display for Literal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Literal::Null => write!(f, "NULL"),
            Literal::Bool(b) => write!(f, "{}", if *b { "TRUE" } else { "FALSE" }),
            Literal::Int(i) => write!(f, "{i}"),
            Literal::Float(x) => write!(f, "{x}"),
            Literal::Str(s) => write!(f, "'{}'", s.replace('\'', "''")),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "<>",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }

    /// `a op b` == `b op.flip() a`.
    pub fn flip(self) -> CmpOp {
        match self {
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::Le => CmpOp::Ge,
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::Ge => CmpOp::Le,
            o => o,
        }
    }
}

/// A boolean expression over customer attributes, with SQL's meaning.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    /// `col op value`.
    Cmp {
        col: String,
        op: CmpOp,
        value: Literal,
    },
    /// `col [NOT] IN (values)`.
    In {
        col: String,
        values: Vec<Literal>,
        negated: bool,
    },
    /// `col IS [NOT] NULL`.
    IsNull {
        col: String,
        negated: bool,
    },
    /// `list_contains(col, value)` / `value = ANY(col)`.
    Contains {
        col: String,
        value: Literal,
    },
    /// A bare boolean column: TRUE where it is true.
    Column(String),
    /// `TRUE`, `FALSE` or `NULL`.
    Const(Literal),
    /// `in_segment('id')`: the customer is in a saved segment (never UNKNOWN).
    InSegment(String),
}

impl Expr {
    /// Nesting depth (a leaf is 1).
    pub fn depth(&self) -> usize {
        match self {
            Expr::And(v) | Expr::Or(v) => 1 + v.iter().map(Expr::depth).max().unwrap_or(0),
            Expr::Not(e) => 1 + e.depth(),
            _ => 1,
        }
    }

    /// Saved segments referenced with `in_segment`.
    pub fn segment_refs(&self) -> Vec<String> {
        match self {
            Expr::And(v) | Expr::Or(v) => v.iter().flat_map(Expr::segment_refs).collect(),
            Expr::Not(e) => e.segment_refs(),
            Expr::InSegment(id) => vec![id.clone()],
            _ => vec![],
        }
    }

    /// Longest IN list.
    pub fn max_in_list(&self) -> usize {
        match self {
            Expr::And(v) | Expr::Or(v) => v.iter().map(Expr::max_in_list).max().unwrap_or(0),
            Expr::Not(e) => e.max_in_list(),
            Expr::In { values, .. } => values.len(),
            _ => 0,
        }
    }
}

/// Bounds checked before any work, so a hostile segment cannot exhaust the stack or CPU.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Bytes of segment text.
    pub max_text: usize,
    /// Nesting of AND / OR / NOT.
    pub max_depth: usize,
    /// Values in one IN list.
    pub max_in_list: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_text: 64 * 1024, max_depth: 64, max_in_list: 10_000 }
    }
}
