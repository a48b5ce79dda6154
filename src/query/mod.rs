//! The segment language: SQL `WHERE` text or a JSON tree -> [`Expr`] -> bound [`Plan`] ->
//! counts and memberships.

pub mod ast;
pub mod error;
pub mod eval;
pub mod explain;
pub mod json;
pub mod plan;
pub mod sql;

pub use ast::{Expr, Limits, Literal};
pub use error::QueryError;
pub use plan::Plan;

use crate::store::Dataset;

/// Parses and plans SQL `WHERE` text.
pub fn compile_sql(ds: &Dataset, text: &str, limits: &Limits) -> Result<Plan, QueryError> {
    plan::bind(ds, &sql::parse(text, limits)?)
}

/// Plans an expression built elsewhere (JSON tree, gRPC Predicate), after the limits.
pub fn compile_expr(ds: &Dataset, e: &Expr, limits: &Limits) -> Result<Plan, QueryError> {
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
    plan::bind(ds, e)
}
