//! Errors of the segment language: each names what was wrong and what is allowed.

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    #[error("syntax error: {0}")]
    Syntax(String),
    #[error("unknown column '{column}'; columns are: {known}")]
    UnknownColumn { column: String, known: String },
    #[error("type mismatch: column '{column}' is {kind}, cannot compare with {literal}")]
    TypeMismatch { column: String, kind: &'static str, literal: String },
    #[error("unsupported: {construct}; allowed: = <> != < <= > >=, [NOT] BETWEEN, [NOT] IN (...), IS [NOT] NULL, AND, OR, NOT, parentheses, a bare boolean column, list_contains(col, 'x'), 'x' = ANY(col), in_segment('id'), TRUE/FALSE/NULL")]
    Unsupported { construct: String },
    #[error("operator {op} is not supported on {kind} column '{column}'")]
    BadOperator { column: String, kind: &'static str, op: String },
    #[error("limit exceeded: {what} is {got}, the limit is {limit}")]
    Limit { what: &'static str, got: usize, limit: usize },
    #[error("unknown segment id '{0}' in in_segment()")]
    UnknownSegment(String),
    #[error("invalid predicate tree: {0}")]
    BadTree(String),
    #[error("number {0} is not finite: NaN and infinities are not allowed in a segment")]
    NonFinite(f64),
}
