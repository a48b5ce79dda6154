//! The structured segment tree (the `ast` form of the benchmark kit's queries.json) ->
//! [`Expr`]. Ops: eq, in, range {gt, gte, lt, lte}, contains, is_null, not, and, or.
//! NOT has SQL's meaning here too: it excludes rows where the inner predicate is unknown.

use serde_json::Value;

use super::ast::{CmpOp, Expr, Limits, Literal};
use super::error::QueryError;

pub fn parse(tree: &Value, limits: &Limits) -> Result<Expr, QueryError> {
    convert(tree, 1, limits)
}

/// Parses JSON text.
pub fn parse_str(text: &str, limits: &Limits) -> Result<Expr, QueryError> {
    if text.len() > limits.max_text {
        return Err(QueryError::Limit {
            what: "segment text bytes",
            got: text.len(),
            limit: limits.max_text,
        });
    }
    let v: Value = serde_json::from_str(text).map_err(|e| QueryError::Syntax(format!("JSON: {e}")))?;
    parse(&v, limits)
}

fn field<'a>(node: &'a Value, name: &str, op: &str) -> Result<&'a Value, QueryError> {
    node.get(name).ok_or_else(|| QueryError::BadTree(format!("'{op}' needs field '{name}'")))
}

fn col(node: &Value, op: &str) -> Result<String, QueryError> {
    field(node, "col", op)?
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| QueryError::BadTree(format!("'{op}': 'col' must be a string")))
}

pub fn literal(v: &Value) -> Result<Literal, QueryError> {
    Ok(match v {
        Value::Null => Literal::Null,
        Value::Bool(b) => Literal::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Literal::Int(i),
            None => match n.as_f64() {
                Some(x) if x.is_finite() => Literal::Float(x),
                Some(x) => return Err(QueryError::NonFinite(x)),
                None => return Err(QueryError::BadTree(format!("number {n}"))),
            },
        },
        Value::String(s) => Literal::Str(s.clone()),
        other => return Err(QueryError::BadTree(format!("a value must be a scalar, got {other}"))),
    })
}

fn convert(node: &Value, depth: usize, limits: &Limits) -> Result<Expr, QueryError> {
    if depth > limits.max_depth {
        return Err(QueryError::Limit { what: "predicate depth", got: depth, limit: limits.max_depth });
    }
    let op = node
        .get("op")
        .and_then(Value::as_str)
        .ok_or_else(|| QueryError::BadTree("every node needs a string field 'op'".into()))?;
    let args = |name: &str| -> Result<Vec<Expr>, QueryError> {
        let list = field(node, name, op)?
            .as_array()
            .ok_or_else(|| QueryError::BadTree(format!("'{op}': '{name}' must be an array")))?;
        if list.is_empty() {
            return Err(QueryError::BadTree(format!("'{op}' needs at least one argument")));
        }
        list.iter().map(|a| convert(a, depth + 1, limits)).collect()
    };
    Ok(match op {
        "and" => Expr::And(args("args")?),
        "or" => Expr::Or(args("args")?),
        "not" => Expr::Not(Box::new(convert(field(node, "arg", op)?, depth + 1, limits)?)),
        "eq" => Expr::Cmp { col: col(node, op)?, op: CmpOp::Eq, value: literal(field(node, "value", op)?)? },
        "in" => {
            let values = field(node, "values", op)?
                .as_array()
                .ok_or_else(|| QueryError::BadTree("'in': 'values' must be an array".into()))?;
            if values.len() > limits.max_in_list {
                return Err(QueryError::Limit {
                    what: "IN list length",
                    got: values.len(),
                    limit: limits.max_in_list,
                });
            }
            Expr::In {
                col: col(node, op)?,
                values: values.iter().map(literal).collect::<Result<_, _>>()?,
                negated: false,
            }
        }
        "range" => {
            let c = col(node, op)?;
            let mut parts = vec![];
            for (name, cmp) in [("gt", CmpOp::Gt), ("gte", CmpOp::Ge), ("lt", CmpOp::Lt), ("lte", CmpOp::Le)]
            {
                if let Some(v) = node.get(name) {
                    parts.push(Expr::Cmp { col: c.clone(), op: cmp, value: literal(v)? });
                }
            }
            match parts.len() {
                0 => return Err(QueryError::BadTree("'range' needs one of gt, gte, lt, lte".into())),
                1 => parts.pop().expect("one"),
                _ => Expr::And(parts),
            }
        }
        "contains" => Expr::Contains { col: col(node, op)?, value: literal(field(node, "value", op)?)? },
        "in_segment" => Expr::InSegment(
            field(node, "segment", op)?
                .as_str()
                .ok_or_else(|| QueryError::BadTree("'in_segment': 'segment' must be a string".into()))?
                .to_string(),
        ),
        "is_null" => Expr::IsNull { col: col(node, op)?, negated: false },
        "is_not_null" => Expr::IsNull { col: col(node, op)?, negated: true },
        other => {
            return Err(QueryError::BadTree(format!(
                "unknown op '{other}'; ops are eq, in, range, contains, is_null, is_not_null, in_segment, not, and, or"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_becomes_comparisons() {
        let e = parse_str(r#"{"op":"range","col":"age","gte":25,"lt":30}"#, &Limits::default()).unwrap();
        assert!(matches!(e, Expr::And(v) if v.len() == 2));
        let e = parse_str(r#"{"op":"frob"}"#, &Limits::default());
        assert!(matches!(e, Err(QueryError::BadTree(m)) if m.contains("frob")));
    }
}
