//! A row-by-row SQL evaluator over plain Arrow record batches: the oracle the bitmap engine
//! is tested against. It shares nothing with the engine but the [`Expr`] it reads: no
//! dictionaries, no indexes, no negation push-down, just SQL's three-valued logic.

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, TimeUnit};

use crate::query::ast::{CmpOp, Expr, Literal};

/// One cell, widened.
#[derive(Clone, Debug, PartialEq)]
enum Cell {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    List(Vec<Option<String>>),
}

/// `SELECT count(*) FROM batches WHERE e`.
pub fn count(batches: &[RecordBatch], e: &Expr) -> Result<u64, String> {
    let mut n = 0;
    for b in batches {
        for row in 0..b.num_rows() {
            if eval(b, row, e)? == Some(true) {
                n += 1;
            }
        }
    }
    Ok(n)
}

/// The truth value of `e` at one row; None is UNKNOWN.
pub fn eval(b: &RecordBatch, row: usize, e: &Expr) -> Result<Option<bool>, String> {
    Ok(match e {
        Expr::And(v) => {
            let mut acc = Some(true);
            for x in v {
                match eval(b, row, x)? {
                    Some(false) => return Ok(Some(false)),
                    None => acc = None,
                    Some(true) => {}
                }
            }
            acc
        }
        Expr::Or(v) => {
            let mut acc = Some(false);
            for x in v {
                match eval(b, row, x)? {
                    Some(true) => return Ok(Some(true)),
                    None => acc = None,
                    Some(false) => {}
                }
            }
            acc
        }
        Expr::Not(x) => eval(b, row, x)?.map(|v| !v),
        Expr::Const(Literal::Bool(v)) => Some(*v),
        Expr::Const(Literal::Null) => None,
        Expr::Const(l) => return Err(format!("bare literal {l}")),
        Expr::InSegment(id) => return Err(format!("the oracle has no saved segments (in_segment('{id}'))")),
        Expr::Column(c) => match cell(b, c, row)? {
            (Cell::Bool(v), _) => Some(v),
            (Cell::Null, _) => None,
            _ => return Err(format!("{c} is not boolean")),
        },
        Expr::IsNull { col, negated } => Some((cell(b, col, row)?.0 == Cell::Null) != *negated),
        Expr::Cmp { col, op, value } => {
            let (c, dt) = cell(b, col, row)?;
            compare(&c, &dt, *op, value)?
        }
        Expr::In { col, values, negated } => {
            let (c, dt) = cell(b, col, row)?;
            let mut acc = Some(false);
            for v in values {
                match compare(&c, &dt, CmpOp::Eq, v)? {
                    Some(true) => {
                        acc = Some(true);
                        break;
                    }
                    None => acc = None,
                    Some(false) => {}
                }
            }
            if *negated {
                acc.map(|x| !x)
            } else {
                acc
            }
        }
        Expr::Contains { col, value } => match (cell(b, col, row)?.0, value) {
            (Cell::Null, _) | (_, Literal::Null) => None,
            (Cell::List(items), Literal::Str(s)) => {
                Some(items.iter().any(|i| i.as_deref() == Some(s.as_str())))
            }
            (c, v) => return Err(format!("list_contains({c:?}, {v})")),
        },
    })
}

fn cell(b: &RecordBatch, name: &str, row: usize) -> Result<(Cell, DataType), String> {
    let a = b.column_by_name(name).ok_or_else(|| format!("unknown column {name}"))?;
    Ok((value(a, row)?, a.data_type().clone()))
}

fn value(a: &ArrayRef, i: usize) -> Result<Cell, String> {
    if a.is_null(i) {
        return Ok(Cell::Null);
    }
    macro_rules! int {
        ($t:ty) => {
            Cell::Int(a.as_primitive::<$t>().value(i) as i128)
        };
    }
    Ok(match a.data_type() {
        DataType::Boolean => Cell::Bool(a.as_boolean().value(i)),
        DataType::Int8 => int!(Int8Type),
        DataType::Int16 => int!(Int16Type),
        DataType::Int32 => int!(Int32Type),
        DataType::Int64 => int!(Int64Type),
        DataType::UInt8 => int!(UInt8Type),
        DataType::UInt16 => int!(UInt16Type),
        DataType::UInt32 => int!(UInt32Type),
        DataType::UInt64 => int!(UInt64Type),
        DataType::Date32 => int!(Date32Type),
        DataType::Timestamp(TimeUnit::Millisecond, _) => int!(TimestampMillisecondType),
        DataType::Timestamp(TimeUnit::Microsecond, _) => int!(TimestampMicrosecondType),
        DataType::Float32 => Cell::Float(a.as_primitive::<Float32Type>().value(i) as f64),
        DataType::Float64 => Cell::Float(a.as_primitive::<Float64Type>().value(i)),
        DataType::Utf8 => Cell::Str(a.as_string::<i32>().value(i).to_string()),
        DataType::LargeUtf8 => Cell::Str(a.as_string::<i64>().value(i).to_string()),
        DataType::Dictionary(_, _) => {
            let d = a.as_any_dictionary();
            value(d.values(), d.normalized_keys()[i])?
        }
        DataType::List(_) => {
            let l = a.as_list::<i32>().value(i);
            Cell::List(
                (0..l.len())
                    .map(|j| match value(&l, j) {
                        Ok(Cell::Str(s)) => Some(s),
                        _ => None,
                    })
                    .collect(),
            )
        }
        t => return Err(format!("oracle does not read {t}")),
    })
}

fn ord<T: PartialOrd>(a: T, op: CmpOp, b: T) -> bool {
    match op {
        CmpOp::Eq => a == b,
        CmpOp::Ne => a != b,
        CmpOp::Lt => a < b,
        CmpOp::Le => a <= b,
        CmpOp::Gt => a > b,
        CmpOp::Ge => a >= b,
    }
}

fn compare(c: &Cell, dt: &DataType, op: CmpOp, v: &Literal) -> Result<Option<bool>, String> {
    Ok(Some(match (c, v) {
        (Cell::Null, _) | (_, Literal::Null) => return Ok(None),
        (Cell::Bool(a), Literal::Bool(b)) => ord(a, op, b),
        (Cell::Int(a), Literal::Int(b)) => ord(*a, op, *b as i128),
        (Cell::Int(a), Literal::Float(b)) if !is_temporal(dt) => ord(*a as f64, op, *b),
        (Cell::Int(a), Literal::Str(s)) if is_temporal(dt) => ord(*a, op, parse_temporal(dt, s)?),
        (Cell::Float(a), Literal::Int(b)) => !a.is_nan() && ord(*a, op, *b as f64),
        (Cell::Float(a), Literal::Float(b)) => !a.is_nan() && ord(*a, op, *b),
        (Cell::Str(a), Literal::Str(b)) => ord(a.as_str(), op, b.as_str()),
        (c, v) => return Err(format!("type mismatch: {c:?} {} {v}", op.symbol())),
    }))
}

fn is_temporal(dt: &DataType) -> bool {
    matches!(dt, DataType::Date32 | DataType::Timestamp(_, _))
}

/// 'YYYY-MM-DD' or 'YYYY-MM-DD[ T]HH:MM:SS[.f]' in the column's unit. A time of day on a
/// date column is dropped, as DuckDB casts such a literal to DATE.
fn parse_temporal(dt: &DataType, s: &str) -> Result<i128, String> {
    use chrono::{NaiveDate, NaiveDateTime};
    let t = NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight"))
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f"))
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f"))
        .map_err(|e| format!("date {s}: {e}"))?
        .and_utc();
    let nanos = t.timestamp() as i128 * 1_000_000_000 + t.timestamp_subsec_nanos() as i128;
    let per: i128 = match dt {
        DataType::Date32 => 86_400 * 1_000_000_000,
        DataType::Timestamp(TimeUnit::Second, _) => 1_000_000_000,
        DataType::Timestamp(TimeUnit::Millisecond, _) => 1_000_000,
        DataType::Timestamp(TimeUnit::Microsecond, _) => 1_000,
        DataType::Timestamp(TimeUnit::Nanosecond, _) => 1,
        t => return Err(format!("temporal {t}")),
    };
    Ok(nanos.div_euclid(per))
}
