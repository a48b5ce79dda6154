//! Rule tables for badges: each expectation written out by hand from the module's rules.

use std::collections::BTreeMap;

use super::*;
use crate::gamify::Value;
use crate::query::{sql, Limits};

struct Customer(BTreeMap<&'static str, Value>);

impl Lookup for Customer {
    fn value(&self, name: &str) -> Value {
        self.0.get(name).cloned().unwrap_or(Value::Null)
    }
    fn in_segment(&self, id: &str) -> bool {
        id == "vip"
    }
}

fn spec(id: &str, criterion: &str, repeat: Repeat) -> BadgeSpec {
    BadgeSpec { id: id.into(), criterion: sql::parse(criterion, &Limits::default()).unwrap(), repeat }
}

fn customer(purchases: i64, level: Option<i64>) -> Customer {
    let mut m = BTreeMap::from([("purchase_count", Value::Int(purchases))]);
    if let Some(l) = level {
        m.insert("level", Value::Int(l));
    }
    Customer(m)
}

/// A once-badge: awarded at the first evaluation where it holds, never again, and kept
/// when the criterion later fails.
#[test]
fn once_is_awarded_once_and_kept() {
    let s = spec("ten_purchases", "purchase_count >= 10", Repeat::Once);
    let specs = [(7u16, &s)];
    let mut b = CustomerBadges::default();
    // (purchases, instant, awards expected)
    let table: [(i64, i64, Vec<Award>); 5] = [
        (9, 100, vec![]),
        (10, 200, vec![Award { key: 7, count: 1, at_ms: 200 }]),
        (11, 300, vec![]),
        (3, 400, vec![]),
        (12, 500, vec![]),
    ];
    for (n, at, want) in table {
        assert_eq!(b.evaluate(&specs, &customer(n, None), at), want, "purchases {n} at {at}");
    }
    let h = b.get(7).unwrap();
    assert_eq!((h.count, h.first_at_ms, h.last_at_ms), (1, 200, 200));
    assert_eq!(b.awarded().count(), 1);
}

/// A repeatable badge counts rising edges; FALSE and UNKNOWN (NULL) both re-arm it, and
/// `max` stops it.
#[test]
fn repeatable_counts_rising_edges_up_to_max() {
    let s = spec("high_level", "level >= 5", Repeat::Repeatable { max: Some(2) });
    let specs = [(1u16, &s)];
    let mut b = CustomerBadges::default();
    let table: [(Option<i64>, i64, Vec<Award>); 7] = [
        (Some(5), 10, vec![Award { key: 1, count: 1, at_ms: 10 }]),
        (Some(6), 20, vec![]),
        (None, 30, vec![]), // NULL: not TRUE, re-arms
        (Some(7), 40, vec![Award { key: 1, count: 2, at_ms: 40 }]),
        (Some(1), 50, vec![]),
        (Some(9), 60, vec![]), // max 2 reached
        (Some(9), 70, vec![]),
    ];
    for (level, at, want) in table {
        assert_eq!(b.evaluate(&specs, &customer(0, level), at), want, "level {level:?} at {at}");
    }
    let h = b.get(1).unwrap();
    assert_eq!((h.count, h.first_at_ms, h.last_at_ms), (2, 10, 40));
}

/// NULL never awards: a criterion over a missing value is UNKNOWN.
#[test]
fn unknown_never_awards() {
    let s = spec("lvl", "level >= 0", Repeat::Once);
    let mut b = CustomerBadges::default();
    assert!(b.evaluate(&[(0, &s)], &customer(1, None), 1).is_empty());
    assert!(b.entries().is_empty(), "nothing tracked for a badge never TRUE");
    assert_eq!(b.evaluate(&[(0, &s)], &customer(1, Some(0)), 2), vec![Award { key: 0, count: 1, at_ms: 2 }]);
}

/// Awards come in program order; keys, not positions, identify badges, so re-ordering a
/// program keeps every award and awards nothing twice.
#[test]
fn program_order_and_stable_keys() {
    let a = spec("a", "purchase_count >= 1", Repeat::Once);
    let z = spec("z", "in_segment('vip')", Repeat::Once);
    let mut b = CustomerBadges::default();
    let got = b.evaluate(&[(9, &z), (2, &a)], &customer(1, None), 5);
    assert_eq!(got, vec![Award { key: 9, count: 1, at_ms: 5 }, Award { key: 2, count: 1, at_ms: 5 }]);
    assert!(b.evaluate(&[(2, &a), (9, &z)], &customer(1, None), 6).is_empty());
    assert_eq!(b.entries().iter().map(|h| h.key).collect::<Vec<_>>(), vec![2, 9]);
}

/// A snapshot's entries rebuild the same state, whatever their order.
#[test]
fn from_held_round_trips() {
    let s = spec("r", "purchase_count >= 3", Repeat::Repeatable { max: None });
    let t = spec("t", "purchase_count >= 1", Repeat::Once);
    let mut b = CustomerBadges::default();
    for (n, at) in [(3, 1), (0, 2), (4, 3)] {
        b.evaluate(&[(4, &s), (1, &t)], &customer(n, None), at);
    }
    let mut entries = b.entries().to_vec();
    entries.reverse();
    assert_eq!(CustomerBadges::from_held(entries), b);
    assert_eq!(b.get(4).unwrap().count, 2);
}

#[test]
fn validation_names_the_badge_and_field() {
    let known = |n: &str| matches!(n, "purchase_count" | "level");
    let ok = spec("ok", "purchase_count > 1", Repeat::Once);
    assert_eq!(validate(std::slice::from_ref(&ok), &known), Ok(()));
    let cases: Vec<(Vec<BadgeSpec>, BadgeError)> = vec![
        (vec![spec("Bad", "level > 1", Repeat::Once)], BadgeError::BadId { index: 0, id: "Bad".into() }),
        (vec![spec("", "level > 1", Repeat::Once)], BadgeError::BadId { index: 0, id: "".into() }),
        (vec![spec("9x", "level > 1", Repeat::Once)], BadgeError::BadId { index: 0, id: "9x".into() }),
        (vec![ok.clone(), ok.clone()], BadgeError::DuplicateId { index: 1, id: "ok".into() }),
        (
            vec![spec("typo", "levle > 1", Repeat::Once)],
            BadgeError::UnknownName { index: 0, id: "typo".into(), name: "levle".into() },
        ),
        (
            vec![spec("m", "level > 1", Repeat::Repeatable { max: Some(0) })],
            BadgeError::ZeroMax { index: 0, id: "m".into() },
        ),
    ];
    for (specs, want) in cases {
        assert_eq!(validate(&specs, &known), Err(want));
    }
    let many: Vec<BadgeSpec> =
        (0..=MAX_BADGES).map(|i| spec(&format!("b{i}"), "level > 1", Repeat::Once)).collect();
    assert_eq!(validate(&many, &known), Err(BadgeError::TooMany { got: MAX_BADGES + 1 }));
    let long = "a".repeat(MAX_ID_BYTES + 1);
    assert!(matches!(
        validate(&[spec(&long, "level > 1", Repeat::Once)], &known),
        Err(BadgeError::BadId { .. })
    ));
}
