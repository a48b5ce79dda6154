//! The segment language's [`Expr`] evaluated over one event's properties or one
//! customer's attributes, with SQL's three-valued logic: a comparison with NULL (a missing
//! property, a NULL literal) is UNKNOWN; NOT UNKNOWN is UNKNOWN; AND is FALSE if any side
//! is FALSE, OR is TRUE if any side is TRUE; a condition holds only when TRUE.
//!
//! Values of different kinds (a string compared with a number, a list compared with
//! anything) are UNKNOWN rather than an error: event properties are dynamic, and a rule
//! must never fail an event that its program accepted. Integers and floats compare as
//! numbers.

use std::cmp::Ordering;

use super::Value;
use crate::query::ast::{CmpOp, Expr, Literal};

/// A truth value of SQL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tri {
    True,
    False,
    Unknown,
}

impl Tri {
    fn from_bool(b: bool) -> Tri {
        if b {
            Tri::True
        } else {
            Tri::False
        }
    }
    fn not(self) -> Tri {
        match self {
            Tri::True => Tri::False,
            Tri::False => Tri::True,
            Tri::Unknown => Tri::Unknown,
        }
    }
    pub fn is_true(self) -> bool {
        self == Tri::True
    }
}

/// What an expression's names resolve to.
pub trait Lookup {
    /// The value of a property / attribute; `Value::Null` when absent.
    fn value(&self, name: &str) -> Value;
    /// `in_segment('id')`: TRUE or FALSE, never UNKNOWN (as in segd's query engine).
    fn in_segment(&self, segment_id: &str) -> bool;
}

/// Evaluates `e` with SQL's three-valued logic.
pub fn eval(e: &Expr, l: &dyn Lookup) -> Tri {
    match e {
        Expr::And(kids) => {
            let mut acc = Tri::True;
            for k in kids {
                match eval(k, l) {
                    Tri::False => return Tri::False,
                    Tri::Unknown => acc = Tri::Unknown,
                    Tri::True => {}
                }
            }
            acc
        }
        Expr::Or(kids) => {
            let mut acc = Tri::False;
            for k in kids {
                match eval(k, l) {
                    Tri::True => return Tri::True,
                    Tri::Unknown => acc = Tri::Unknown,
                    Tri::False => {}
                }
            }
            acc
        }
        Expr::Not(inner) => eval(inner, l).not(),
        Expr::Cmp { col, op, value } => match compare(&l.value(col), value) {
            None => Tri::Unknown,
            Some(ord) => Tri::from_bool(match op {
                CmpOp::Eq => ord == Ordering::Equal,
                CmpOp::Ne => ord != Ordering::Equal,
                CmpOp::Lt => ord == Ordering::Less,
                CmpOp::Le => ord != Ordering::Greater,
                CmpOp::Gt => ord == Ordering::Greater,
                CmpOp::Ge => ord != Ordering::Less,
            }),
        },
        Expr::In { col, values, negated } => {
            let v = l.value(col);
            let mut acc = Tri::False;
            for lit in values {
                match compare(&v, lit) {
                    Some(Ordering::Equal) => {
                        acc = Tri::True;
                        break;
                    }
                    None => acc = Tri::Unknown,
                    Some(_) => {}
                }
            }
            if *negated {
                acc.not()
            } else {
                acc
            }
        }
        Expr::IsNull { col, negated } => Tri::from_bool((l.value(col) == Value::Null) != *negated),
        Expr::Contains { col, value } => match (l.value(col), value) {
            (Value::List(items), Literal::Str(s)) => Tri::from_bool(items.iter().any(|i| i == s)),
            _ => Tri::Unknown,
        },
        Expr::Column(col) => match l.value(col) {
            Value::Bool(b) => Tri::from_bool(b),
            _ => Tri::Unknown,
        },
        Expr::Const(Literal::Bool(b)) => Tri::from_bool(*b),
        Expr::Const(_) => Tri::Unknown,
        Expr::InSegment(id) => Tri::from_bool(l.in_segment(id)),
    }
}

/// The order of a value and a literal, or None when either is NULL or they do not
/// compare (different kinds, NaN).
fn compare(v: &Value, lit: &Literal) -> Option<Ordering> {
    match (v, lit) {
        (Value::Int(a), Literal::Int(b)) => Some(a.cmp(b)),
        (Value::Int(a), Literal::Float(b)) => (*a as f64).partial_cmp(b),
        (Value::Float(a), Literal::Int(b)) => a.partial_cmp(&(*b as f64)),
        (Value::Float(a), Literal::Float(b)) => a.partial_cmp(b),
        (Value::Str(a), Literal::Str(b)) => Some(a.as_str().cmp(b.as_str())),
        (Value::Bool(a), Literal::Bool(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

/// The property / attribute names an expression reads.
pub fn names(e: &Expr) -> Vec<&str> {
    fn walk<'a>(e: &'a Expr, out: &mut Vec<&'a str>) {
        match e {
            Expr::And(kids) | Expr::Or(kids) => kids.iter().for_each(|k| walk(k, out)),
            Expr::Not(inner) => walk(inner, out),
            Expr::Cmp { col, .. }
            | Expr::In { col, .. }
            | Expr::IsNull { col, .. }
            | Expr::Contains { col, .. }
            | Expr::Column(col) => out.push(col),
            Expr::Const(_) | Expr::InSegment(_) => {}
        }
    }
    let mut out = Vec::new();
    walk(e, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::query::{sql, Limits};

    struct Row(BTreeMap<&'static str, Value>);
    impl Lookup for Row {
        fn value(&self, name: &str) -> Value {
            self.0.get(name).cloned().unwrap_or(Value::Null)
        }
        fn in_segment(&self, id: &str) -> bool {
            id == "vip"
        }
    }

    /// SQL truth tables, checked on a row with a number, a string, a NULL and a list.
    #[test]
    fn three_valued_logic() {
        let row = Row(BTreeMap::from([
            ("amount", Value::Float(25.5)),
            ("qty", Value::Int(3)),
            ("category", Value::Str("books".into())),
            ("gift", Value::Bool(true)),
            ("tags", Value::List(vec!["a".into(), "b".into()])),
        ]));
        let cases: &[(&str, Tri)] = &[
            ("amount >= 25.5", Tri::True),
            ("amount > 25.5", Tri::False),
            ("qty = 3.0", Tri::True),
            ("qty BETWEEN 1 AND 3", Tri::True),
            ("category = 'books'", Tri::True),
            ("category <> 'books'", Tri::False),
            ("category = 3", Tri::Unknown),
            ("missing = 1", Tri::Unknown),
            ("NOT (missing = 1)", Tri::Unknown),
            ("missing = 1 AND qty = 4", Tri::False),
            ("missing = 1 AND qty = 3", Tri::Unknown),
            ("missing = 1 OR qty = 3", Tri::True),
            ("missing = 1 OR qty = 4", Tri::Unknown),
            ("missing IS NULL", Tri::True),
            ("amount IS NOT NULL", Tri::True),
            ("category IN ('toys', 'books')", Tri::True),
            ("category NOT IN ('toys', 'books')", Tri::False),
            ("category IN ('toys', NULL)", Tri::Unknown),
            ("category NOT IN ('toys', NULL)", Tri::Unknown),
            ("missing IN ('toys')", Tri::Unknown),
            ("gift", Tri::True),
            ("NOT gift", Tri::False),
            ("missing", Tri::Unknown),
            ("list_contains(tags, 'b')", Tri::True),
            ("list_contains(tags, 'z')", Tri::False),
            ("list_contains(category, 'b')", Tri::Unknown),
            ("TRUE", Tri::True),
            ("NULL", Tri::Unknown),
            ("in_segment('vip')", Tri::True),
            ("NOT in_segment('other')", Tri::True),
        ];
        for (text, want) in cases {
            let e = sql::parse(text, &Limits::default()).unwrap();
            assert_eq!(eval(&e, &row), *want, "{text}");
        }
    }

    #[test]
    fn names_of_an_expression() {
        let e =
            sql::parse("a = 1 AND (b IS NULL OR NOT c IN (1, 2)) AND in_segment('s')", &Limits::default())
                .unwrap();
        assert_eq!(names(&e), vec!["a", "b", "c"]);
    }
}
