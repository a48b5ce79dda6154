//! SQL `WHERE` text -> [`Expr`], with the `sqlparser` crate.

use sqlparser::ast::{self as sql, BinaryOperator, UnaryOperator};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;

use super::ast::{CmpOp, Expr, Limits, Literal};
use super::error::QueryError;

/// Parses the text after `WHERE`.
pub fn parse(text: &str, limits: &Limits) -> Result<Expr, QueryError> {
    if text.len() > limits.max_text {
        return Err(QueryError::Limit {
            what: "segment text bytes",
            got: text.len(),
            limit: limits.max_text,
        });
    }
    if text.trim().is_empty() {
        return Err(QueryError::Syntax("empty segment".into()));
    }
    // sqlparser recurses per nesting level; its own limit keeps deep input off the stack.
    let mut parser = Parser::new(&GenericDialect)
        .with_recursion_limit(limits.max_depth * 4 + 16)
        .try_with_sql(text)
        .map_err(|e| QueryError::Syntax(e.to_string()))?;
    let parsed = parser.parse_expr().map_err(|e| QueryError::Syntax(e.to_string()))?;
    let next = parser.peek_token();
    if next.token != sqlparser::tokenizer::Token::EOF {
        return Err(QueryError::Syntax(format!(
            "unexpected '{}' after the expression at {}",
            next.token, next.span.start
        )));
    }
    convert(&parsed, 0, limits)
}

fn unsupported(e: &impl std::fmt::Display) -> QueryError {
    QueryError::Unsupported { construct: format!("'{e}'") }
}

fn convert(e: &sql::Expr, depth: usize, limits: &Limits) -> Result<Expr, QueryError> {
    if depth > limits.max_depth {
        return Err(QueryError::Limit { what: "predicate depth", got: depth, limit: limits.max_depth });
    }
    let rec = |e: &sql::Expr| convert(e, depth + 1, limits);
    Ok(match e {
        sql::Expr::Nested(inner) => convert(inner, depth, limits)?,
        sql::Expr::BinaryOp { left, op: BinaryOperator::And, right } => {
            Expr::And(vec![rec(left)?, rec(right)?])
        }
        sql::Expr::BinaryOp { left, op: BinaryOperator::Or, right } => {
            Expr::Or(vec![rec(left)?, rec(right)?])
        }
        sql::Expr::UnaryOp { op: UnaryOperator::Not, expr } => Expr::Not(Box::new(rec(expr)?)),
        sql::Expr::BinaryOp { left, op, right } => {
            let op = cmp_op(op).ok_or_else(|| unsupported(e))?;
            match (column(left), column(right)) {
                (Some(col), None) => Expr::Cmp { col, op, value: literal(right)? },
                (None, Some(col)) => Expr::Cmp { col, op: op.flip(), value: literal(left)? },
                (Some(_), Some(r)) => {
                    return Err(QueryError::Unsupported {
                        construct: format!(
                            "'{e}' compares two columns; compare a column with a literal \
                             (strings take single quotes: '{r}')"
                        ),
                    })
                }
                _ => {
                    return Err(QueryError::Unsupported {
                        construct: format!("'{e}' (compare a column with a literal)"),
                    })
                }
            }
        }
        sql::Expr::InList { expr, list, negated } => {
            let col = column(expr).ok_or_else(|| unsupported(e))?;
            if list.len() > limits.max_in_list {
                return Err(QueryError::Limit {
                    what: "IN list length",
                    got: list.len(),
                    limit: limits.max_in_list,
                });
            }
            Expr::In { col, values: list.iter().map(literal).collect::<Result<_, _>>()?, negated: *negated }
        }
        sql::Expr::Between { expr, negated, low, high } => {
            let col = column(expr).ok_or_else(|| unsupported(e))?;
            let between = Expr::And(vec![
                Expr::Cmp { col: col.clone(), op: CmpOp::Ge, value: literal(low)? },
                Expr::Cmp { col, op: CmpOp::Le, value: literal(high)? },
            ]);
            if *negated {
                Expr::Not(Box::new(between))
            } else {
                between
            }
        }
        sql::Expr::IsNull(x) | sql::Expr::IsNotNull(x) => Expr::IsNull {
            col: column(x).ok_or_else(|| unsupported(e))?,
            negated: matches!(e, sql::Expr::IsNotNull(_)),
        },
        sql::Expr::IsTrue(x) => Expr::Column(column(x).ok_or_else(|| unsupported(e))?),
        sql::Expr::IsFalse(x) => Expr::Cmp {
            col: column(x).ok_or_else(|| unsupported(e))?,
            op: CmpOp::Eq,
            value: Literal::Bool(false),
        },
        sql::Expr::Identifier(_) | sql::Expr::CompoundIdentifier(_) => {
            Expr::Column(column(e).expect("identifier"))
        }
        sql::Expr::Value(_) => match literal(e)? {
            l @ (Literal::Bool(_) | Literal::Null) => Expr::Const(l),
            l => {
                return Err(QueryError::Unsupported {
                    construct: format!("a bare literal {l} (not a boolean)"),
                })
            }
        },
        sql::Expr::Function(f) => function(f, e)?,
        sql::Expr::AnyOp { left, compare_op: BinaryOperator::Eq, right, .. } => {
            let col = column(right).ok_or_else(|| unsupported(e))?;
            Expr::Contains { col, value: literal(left)? }
        }
        _ => return Err(unsupported(e)),
    })
}

fn function(f: &sql::Function, whole: &sql::Expr) -> Result<Expr, QueryError> {
    let name = f.name.to_string().to_ascii_lowercase();
    if name == "in_segment" {
        let sql::FunctionArguments::List(list) = &f.args else { return Err(unsupported(whole)) };
        return match list.args.as_slice() {
            [sql::FunctionArg::Unnamed(sql::FunctionArgExpr::Expr(x))] => match literal(x)? {
                Literal::Str(id) => Ok(Expr::InSegment(id)),
                _ => Err(QueryError::Unsupported {
                    construct: format!("'{whole}' (in_segment takes a quoted segment id)"),
                }),
            },
            _ => Err(QueryError::Unsupported {
                construct: format!("'{whole}' (in_segment takes one segment id)"),
            }),
        };
    }
    if !matches!(name.as_str(), "list_contains" | "array_contains" | "list_has" | "array_has") {
        return Err(QueryError::Unsupported { construct: format!("function '{name}'") });
    }
    let sql::FunctionArguments::List(list) = &f.args else { return Err(unsupported(whole)) };
    let args: Vec<&sql::Expr> = list
        .args
        .iter()
        .map(|a| match a {
            sql::FunctionArg::Unnamed(sql::FunctionArgExpr::Expr(x)) => Ok(x),
            _ => Err(unsupported(whole)),
        })
        .collect::<Result<_, _>>()?;
    match args.as_slice() {
        [c, v] => Ok(Expr::Contains {
            col: column(c).ok_or_else(|| QueryError::Unsupported {
                construct: format!("'{whole}' (the first argument of {name} must be a list column)"),
            })?,
            value: literal(v)?,
        }),
        _ => Err(QueryError::Unsupported {
            construct: format!("'{whole}' ({name} takes a column and a value)"),
        }),
    }
}

fn cmp_op(op: &BinaryOperator) -> Option<CmpOp> {
    Some(match op {
        BinaryOperator::Eq => CmpOp::Eq,
        BinaryOperator::NotEq => CmpOp::Ne,
        BinaryOperator::Lt => CmpOp::Lt,
        BinaryOperator::LtEq => CmpOp::Le,
        BinaryOperator::Gt => CmpOp::Gt,
        BinaryOperator::GtEq => CmpOp::Ge,
        _ => return None,
    })
}

fn column(e: &sql::Expr) -> Option<String> {
    match e {
        sql::Expr::Identifier(i) => Some(i.value.clone()),
        // customers.age: the table qualifier is accepted and ignored.
        sql::Expr::CompoundIdentifier(parts) if parts.len() == 2 => Some(parts[1].value.clone()),
        sql::Expr::Nested(x) => column(x),
        _ => None,
    }
}

fn literal(e: &sql::Expr) -> Result<Literal, QueryError> {
    use sql::Value as V;
    match e {
        sql::Expr::Nested(x) => literal(x),
        sql::Expr::Value(v) => match &v.value {
            V::Number(n, _) => number(n),
            V::SingleQuotedString(s) => Ok(Literal::Str(s.clone())),
            V::Boolean(b) => Ok(Literal::Bool(*b)),
            V::Null => Ok(Literal::Null),
            other => Err(QueryError::Unsupported { construct: format!("literal {other}") }),
        },
        sql::Expr::UnaryOp { op: UnaryOperator::Minus, expr } => match literal(expr)? {
            Literal::Int(i) => Ok(Literal::Int(-i)),
            Literal::Float(f) => Ok(Literal::Float(-f)),
            _ => Err(unsupported(e)),
        },
        sql::Expr::UnaryOp { op: UnaryOperator::Plus, expr } => literal(expr),
        // DATE '2024-01-31' / TIMESTAMP '...': the column decides how the text is read.
        sql::Expr::TypedString(t) => match &t.value.value {
            V::SingleQuotedString(s) => Ok(Literal::Str(s.clone())),
            _ => Err(unsupported(e)),
        },
        sql::Expr::Identifier(i) => Err(QueryError::Unsupported {
            construct: format!("'{}' where a literal was expected (strings take single quotes)", i.value),
        }),
        _ => Err(QueryError::Unsupported { construct: format!("'{e}' where a literal was expected") }),
    }
}

fn number(n: &str) -> Result<Literal, QueryError> {
    if let Ok(i) = n.parse::<i64>() {
        return Ok(Literal::Int(i));
    }
    n.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .map(Literal::Float)
        .ok_or_else(|| QueryError::Syntax(format!("bad number '{n}'")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Expr, QueryError> {
        parse(s, &Limits::default())
    }

    #[test]
    fn parses_the_language() {
        assert_eq!(
            p("age BETWEEN 25 AND 34").unwrap(),
            Expr::And(vec![
                Expr::Cmp { col: "age".into(), op: CmpOp::Ge, value: Literal::Int(25) },
                Expr::Cmp { col: "age".into(), op: CmpOp::Le, value: Literal::Int(34) },
            ])
        );
        assert_eq!(
            p("'vip' = ANY(badges)").unwrap(),
            Expr::Contains { col: "badges".into(), value: Literal::Str("vip".into()) }
        );
        assert_eq!(
            p("10 < age").unwrap(),
            Expr::Cmp { col: "age".into(), op: CmpOp::Gt, value: Literal::Int(10) }
        );
        assert_eq!(
            p("x >= -1.5").unwrap(),
            Expr::Cmp { col: "x".into(), op: CmpOp::Ge, value: Literal::Float(-1.5) }
        );
        assert!(matches!(p("NOT (a IS NULL)").unwrap(), Expr::Not(_)));
        assert!(matches!(p("list_contains(badges, 'vip')").unwrap(), Expr::Contains { .. }));
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(matches!(p("age >"), Err(QueryError::Syntax(_))));
        assert!(matches!(p("age = 1 garbage"), Err(QueryError::Syntax(m)) if m.contains("garbage")));
        assert!(matches!(p("age + 1 = 2"), Err(QueryError::Unsupported { .. })));
        assert!(
            matches!(p("lower(city) = 'x'"), Err(QueryError::Unsupported { construct }) if construct.contains("lower"))
        );
        assert!(
            matches!(p("city = Berlin"), Err(QueryError::Unsupported { construct }) if construct.contains("single quotes"))
        );
        let deep = format!("{}a = 1{}", "(".repeat(500), ")".repeat(500));
        assert!(p(&deep).is_err());
        let nots = format!("{}a", "NOT ".repeat(200));
        assert!(matches!(p(&nots), Err(QueryError::Limit { .. }) | Err(QueryError::Syntax(_))));
        assert!(matches!(p(""), Err(QueryError::Syntax(_))));
    }
}
