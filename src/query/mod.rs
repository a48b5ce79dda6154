//! The segment language: SQL `WHERE` text or a JSON tree -> [`Expr`] -> bound [`Plan`] ->
//! counts and memberships.

pub mod ast;
pub mod error;
pub mod eval;
pub mod explain;
pub mod json;
pub mod plan;
pub mod rows;
pub mod sql;

pub use ast::{Expr, Limits, Literal};
pub use error::QueryError;
pub use plan::Plan;

use crate::store::Dataset;

/// Parses and plans SQL `WHERE` text.
pub fn compile_sql(ds: &Dataset, text: &str, limits: &Limits) -> Result<Plan, QueryError> {
    plan::bind(ds, &sql::parse(text, limits)?)
}

/// Parses and plans SQL `WHERE` text, resolving `in_segment` through `segs`.
pub fn compile_sql_in(
    ds: &Dataset,
    text: &str,
    limits: &Limits,
    segs: plan::Segments<'_>,
) -> Result<Plan, QueryError> {
    let e = sql::parse(text, limits)?;
    plan::bind_in(ds, &e, segs)
}

/// [`compile_expr`], resolving `in_segment` through `segs`.
pub fn compile_expr_in(
    ds: &Dataset,
    e: &Expr,
    limits: &Limits,
    segs: plan::Segments<'_>,
) -> Result<Plan, QueryError> {
    check_limits(e, limits)?;
    plan::bind_in(ds, e, segs)
}

/// Whether an expression built elsewhere (JSON tree, gRPC Predicate) is within `limits`.
pub fn check_limits(e: &Expr, limits: &Limits) -> Result<(), QueryError> {
    if e.depth() > limits.max_depth {
        return Err(QueryError::Limit { what: "predicate depth", got: e.depth(), limit: limits.max_depth });
    }
    if e.max_in_list() > limits.max_in_list {
        return Err(QueryError::Limit {
            what: "IN list length",
            got: e.max_in_list(),
            limit: limits.max_in_list,
        });
    }
    Ok(())
}

/// Plans an expression built elsewhere (JSON tree, gRPC Predicate), after the limits.
pub fn compile_expr(ds: &Dataset, e: &Expr, limits: &Limits) -> Result<Plan, QueryError> {
    compile_expr_in(ds, e, limits, &|_| None)
}
