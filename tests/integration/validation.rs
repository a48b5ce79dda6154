//! Validation at the boundary: every value that cannot be stored and logged exactly is
//! refused by the committer's check with an error naming the customer, attribute and
//! value; and every mutation the check accepts encodes, decodes and replays to the same
//! state (a property test against a row-by-row model kept by the test itself).

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use segd::engine::{Engine, EngineError, Mutation};
use segd::persist::record::{decode_mutation, encode_mutation, FORMAT};
use segd::query::ast::{CmpOp, Expr, Literal};
use segd::query::{json, sql, Limits, QueryError};
use segd::segments::{Definition, SegmentError};
use segd::store::mutate::{CellValue, CustomerUpdate, MutationError, MAX_LIST_ITEMS, MAX_STR_BYTES};
use segd::store::Dataset;

use crate::differential::table;

/// Ids of the generated table: `i * 3 + 7`.
fn ids(rows: u64) -> Vec<u64> {
    (1..=rows).map(|i| i * 3 + 7).collect()
}

fn upsert(id: u64, attr: &str, v: CellValue) -> Mutation {
    Mutation::Upsert(vec![CustomerUpdate { customer_id: id, attributes: vec![(attr.into(), v)] }])
}

fn engine() -> Engine {
    Engine::new(table(200, 5).ds, 100, 10_000)
}

/// The check's verdict on a one-cell upsert of customer 10.
fn bad_value(e: &Engine, attr: &str, v: CellValue) -> (String, String) {
    match e.check(&upsert(10, attr, v)) {
        Err(EngineError::Mutation(MutationError::BadValue { customer_id: 10, attribute, value, reason })) => {
            assert_eq!(attribute, attr);
            (value, reason)
        }
        other => panic!("{attr}: expected BadValue, got {other:?}"),
    }
}

#[test]
fn non_finite_floats_are_refused_naming_customer_attribute_and_value() {
    let e = engine();
    let err = e.check(&upsert(10, "f64c", CellValue::Float(f64::NAN))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "customer 10: attribute 'f64c' cannot take Float(NaN): not a finite number (NaN and infinities cannot be stored)"
    );
    for x in [f64::INFINITY, f64::NEG_INFINITY] {
        assert_eq!(bad_value(&e, "f64c", CellValue::Float(x)).0, format!("Float({x:?})"));
        assert!(bad_value(&e, "i64c", CellValue::Float(x)).1.contains("not a finite number"));
    }
    assert!(bad_value(&e, "f32c", CellValue::Float(f64::NAN)).1.contains("not a finite number"));
}

#[test]
fn integers_out_of_the_columns_width_are_refused() {
    let e = engine();
    assert_eq!(bad_value(&e, "i8c", CellValue::Int(300)).1, "out of range for Int8 (-128..=127)");
    assert_eq!(bad_value(&e, "i8c", CellValue::Int(-129)).1, "out of range for Int8 (-128..=127)");
    assert_eq!(bad_value(&e, "u16c", CellValue::Int(-1)).1, "out of range for UInt16 (0..=65535)");
    assert_eq!(bad_value(&e, "u16c", CellValue::Int(65_536)).1, "out of range for UInt16 (0..=65535)");
    assert!(bad_value(&e, "i64c", CellValue::Float(1e300)).1.starts_with("out of range for Int64"));
    assert!(bad_value(&e, "i8c", CellValue::Float(2.5)).1.contains("not a whole number"));
    // The edges themselves fit.
    for (attr, v) in [("i8c", -128), ("i8c", 127), ("u16c", 0), ("u16c", 65_535)] {
        e.check(&upsert(10, attr, CellValue::Int(v))).unwrap();
    }
    e.check(&upsert(10, "i8c", CellValue::Float(-128.0))).unwrap();
}

#[test]
fn floats_that_would_be_rounded_are_refused() {
    let e = engine();
    let big = (1i64 << 53) + 1;
    assert!(bad_value(&e, "f64c", CellValue::Int(big)).1.contains("cannot hold this integer exactly"));
    e.check(&upsert(10, "f64c", CellValue::Int(1 << 53))).unwrap();
    assert!(bad_value(&e, "f32c", CellValue::Float(0.1)).1.contains("32-bit"));
    assert!(bad_value(&e, "f32c", CellValue::Float(1e300)).1.contains("32-bit"));
    e.check(&upsert(10, "f32c", CellValue::Float(0.25))).unwrap();
    assert!(bad_value(&e, "f32c", CellValue::Int((1 << 24) + 1)).1.contains("exactly"));
}

#[test]
fn invalid_dates_are_refused() {
    let e = engine();
    for bad in ["2023-02-30", "2023-13-01", "yesterday", "2023-1-1x"] {
        let (value, reason) = bad_value(&e, "d", CellValue::Str(bad.into()));
        assert_eq!(value, format!("Str({bad:?})"));
        assert!(reason.contains("not a valid date"), "{reason}");
    }
    e.check(&upsert(10, "d", CellValue::Str("2024-02-29".into()))).unwrap();
    assert!(bad_value(&e, "ts", CellValue::Str("2024-02-29 25:00:00".into())).1.contains("not a valid date"));
    // A date of the wrong kind is a type error, not a value error.
    assert!(matches!(
        e.check(&upsert(10, "d", CellValue::Float(1.0))),
        Err(EngineError::Mutation(MutationError::TypeMismatch { .. }))
    ));
}

#[test]
fn customer_ids_beyond_the_id_column_are_refused() {
    let e = engine();
    let id = u64::MAX;
    match e.check(&upsert(id, "i8c", CellValue::Int(1))) {
        Err(EngineError::Mutation(MutationError::BadCustomerId { customer_id, column, .. })) => {
            assert_eq!((customer_id, column.as_str()), (id, "id"));
        }
        other => panic!("{other:?}"),
    }
    // The largest id the table's u64 column holds as a signed 64-bit value.
    e.check(&upsert(i64::MAX as u64, "i8c", CellValue::Int(1))).unwrap();
    assert!(e.check(&upsert(i64::MAX as u64 + 1, "i8c", CellValue::Int(1))).is_err());
}

#[test]
fn strings_and_lists_over_the_documented_limits_are_refused() {
    let e = engine();
    let long = "é".repeat(MAX_STR_BYTES / 2) + "x";
    let (value, reason) = bad_value(&e, "s", CellValue::Str(long));
    assert_eq!(reason, format!("{} bytes is over the limit of {MAX_STR_BYTES} bytes", MAX_STR_BYTES + 1));
    assert!(value.len() < 200, "the value is cut in the message: {value}");
    e.check(&upsert(10, "s", CellValue::Str("x".repeat(MAX_STR_BYTES)))).unwrap();

    let items = |n: usize| CellValue::List((0..n).map(|i| format!("t{i}")).collect());
    let (_, reason) = bad_value(&e, "l", items(MAX_LIST_ITEMS + 1));
    assert_eq!(
        reason,
        format!("{} items is over the limit of {MAX_LIST_ITEMS} per list", MAX_LIST_ITEMS + 1)
    );
    e.check(&upsert(10, "l", items(MAX_LIST_ITEMS))).unwrap();
    let (_, reason) = bad_value(&e, "l", CellValue::List(vec!["a".into(), "y".repeat(MAX_STR_BYTES + 1)]));
    assert!(reason.contains("over the limit"), "{reason}");
}

#[test]
fn segments_with_non_finite_numbers_or_long_descriptions_are_refused() {
    let e = engine();
    let create = |definition: Definition, description: String| Mutation::CreateSegment {
        id: "s1".into(),
        description,
        definition,
        members: vec![],
    };
    for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let tree = Expr::And(vec![
            Expr::Column("b".into()),
            Expr::In {
                col: "f64c".into(),
                values: vec![Literal::Float(1.0), Literal::Float(x)],
                negated: false,
            },
        ]);
        match e.check(&create(Definition::Tree(tree), String::new())) {
            Err(EngineError::Segment(SegmentError::Query(QueryError::NonFinite(y)))) => {
                assert_eq!(y.to_bits(), x.to_bits())
            }
            other => panic!("{x}: {other:?}"),
        }
        let cmp = Expr::Cmp { col: "f64c".into(), op: CmpOp::Gt, value: Literal::Float(x) };
        assert!(matches!(
            e.check(&create(Definition::Tree(Expr::Not(Box::new(cmp))), String::new())),
            Err(EngineError::Segment(SegmentError::Query(QueryError::NonFinite(_))))
        ));
    }
    let limits = Limits::default();
    assert!(matches!(sql::parse("f64c > 1e999", &limits), Err(QueryError::Syntax(m)) if m.contains("1e999")));
    assert!(matches!(
        json::parse_str(r#"{"op":"range","col":"f64c","gt":1e999}"#, &limits),
        Err(QueryError::Syntax(_))
    ));
    match e.check(&create(Definition::Static, "d".repeat(MAX_STR_BYTES + 1))) {
        Err(EngineError::Segment(SegmentError::DescriptionTooLong { id, len, limit })) => {
            assert_eq!((id.as_str(), len, limit), ("s1", MAX_STR_BYTES + 1, MAX_STR_BYTES))
        }
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Property: what the check accepts, the log carries exactly.

const ROWS: u64 = 150;

/// Valid dates with their day numbers, computed by hand (days since 1970-01-01).
const DATES: [(&str, i64); 3] = [("1970-01-01", 0), ("2000-02-29", 11_016), ("2024-12-31", 20_088)];

fn cell() -> impl Strategy<Value = (&'static str, CellValue)> {
    let s = prop_oneof![
        4 => proptest::sample::select(vec!["a", "DE", "x y", "é", ""]).prop_map(|s| CellValue::Str(s.into())),
        1 => Just(CellValue::Str("z".repeat(MAX_STR_BYTES + 1))),
    ];
    let list = prop_oneof![
        4 => proptest::collection::vec("[a-c]{0,3}", 0..4).prop_map(CellValue::List),
        1 => Just(CellValue::List(vec!["t".into(); MAX_LIST_ITEMS + 1])),
    ];
    let date = prop_oneof![
        proptest::sample::select(DATES.to_vec()).prop_map(|(d, _)| CellValue::Str(d.into())),
        Just(CellValue::Str("2023-02-30".into())),
        (-30_000i64..30_000).prop_map(CellValue::Int),
    ];
    prop_oneof![
        any::<f64>().prop_map(|x| ("f64c", CellValue::Float(x))),
        prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(-0.0), Just(1.5)]
            .prop_map(|x| ("f64c", CellValue::Float(x))),
        prop_oneof![any::<i64>(), -(1i64 << 54)..(1i64 << 54)].prop_map(|i| ("f64c", CellValue::Int(i))),
        prop_oneof![any::<f32>().prop_map(f64::from), any::<f64>()]
            .prop_map(|x| ("f32c", CellValue::Float(x))),
        (-400i64..400).prop_map(|i| ("i8c", CellValue::Int(i))),
        prop_oneof![Just(2.5), Just(-7.0), Just(f64::NAN), Just(1e40)]
            .prop_map(|x| ("i8c", CellValue::Float(x))),
        (-5i64..70_000).prop_map(|i| ("u16c", CellValue::Int(i))),
        any::<i64>().prop_map(|i| ("i64c", CellValue::Int(i))),
        any::<bool>().prop_map(|b| ("b", CellValue::Bool(b))),
        s.prop_map(|v| ("s", v)),
        list.prop_map(|v| ("l", v)),
        date.prop_map(|v| ("d", v)),
        proptest::sample::select(vec!["f64c", "i8c", "s", "l", "d", "b"]).prop_map(|a| (a, CellValue::Null)),
        Just(("i8c", CellValue::Str("x".into()))),
    ]
}

fn customer_id() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => (1..=ROWS).prop_map(|i| i * 3 + 7),
        2 => 1_000_000u64..1_000_010,
        1 => Just(u64::MAX),
        1 => Just(i64::MAX as u64 + 1),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let update = (customer_id(), proptest::collection::vec(cell(), 0..4)).prop_map(|(customer_id, cells)| {
        CustomerUpdate {
            customer_id,
            attributes: cells.into_iter().map(|(a, v)| (a.to_string(), v)).collect(),
        }
    });
    let float_lit = prop_oneof![Just(f64::NAN), Just(0.5), Just(-3.0), Just(f64::NEG_INFINITY)];
    prop_oneof![
        6 => proptest::collection::vec(update, 1..4).prop_map(Mutation::Upsert),
        1 => proptest::collection::vec(customer_id(), 0..3).prop_map(Mutation::Delete),
        1 => (0..3usize, proptest::collection::vec(customer_id(), 0..4))
            .prop_map(|(n, members)| Mutation::CreateSegment {
                id: format!("st{n}"),
                description: "static".into(),
                definition: Definition::Static,
                members,
            }),
        1 => (0..3usize, float_lit).prop_map(|(n, x)| Mutation::CreateSegment {
            id: format!("dy{n}"),
            description: String::new(),
            definition: Definition::Tree(Expr::Or(vec![
                Expr::Cmp { col: "f64c".into(), op: CmpOp::Lt, value: Literal::Float(x) },
                Expr::Cmp { col: "i8c".into(), op: CmpOp::Ge, value: Literal::Int(3) },
                Expr::InSegment("st0".into()),
            ])),
            members: vec![],
        }),
        1 => (0..3usize, 0..3usize).prop_map(|(n, s)| Mutation::CreateSegment {
            id: format!("sq{n}"),
            description: String::new(),
            definition: Definition::Sql(["s = 'DE'", "list_contains(l, 'a')", "d >= DATE '2000-01-01'"][s].into()),
            members: vec![],
        }),
        1 => (0..3usize, proptest::collection::vec(customer_id(), 0..4), any::<bool>())
            .prop_map(|(n, customer_ids, add)| Mutation::EditMembers { id: format!("st{n}"), customer_ids, add }),
        1 => (0..3usize).prop_map(|n| Mutation::DeleteSegment { id: format!("st{n}") }),
    ]
}

/// The test's own idea of what a column stores for a value, or None when it must be
/// refused: written from the column types, independently of the store's checks.
fn stored(attr: &str, v: &CellValue) -> Option<CellValue> {
    let int_in = |i: i64, lo: i64, hi: i64| (lo..=hi).contains(&i).then_some(CellValue::Int(i));
    match (attr, v) {
        (_, CellValue::Null) => Some(CellValue::Null),
        ("f64c", CellValue::Float(x)) => x.is_finite().then_some(CellValue::Float(*x)),
        ("f64c", CellValue::Int(i)) => (i.unsigned_abs() <= 1 << 53).then_some(CellValue::Float(*i as f64)),
        ("f32c", CellValue::Float(x)) => {
            (x.is_finite() && f64::from(*x as f32) == *x).then_some(CellValue::Float(*x))
        }
        ("i8c", CellValue::Int(i)) => int_in(*i, -128, 127),
        ("i8c", CellValue::Float(x)) if x.is_finite() && x.fract() == 0.0 && x.abs() < 1e3 => {
            int_in(*x as i64, -128, 127)
        }
        ("u16c", CellValue::Int(i)) => int_in(*i, 0, 65_535),
        ("i64c", CellValue::Int(i)) => Some(CellValue::Int(*i)),
        ("b", CellValue::Bool(b)) => Some(CellValue::Bool(*b)),
        ("s", CellValue::Str(s)) => (s.len() <= MAX_STR_BYTES).then(|| v.clone()),
        ("l", CellValue::List(items)) => (items.len() <= MAX_LIST_ITEMS).then(|| v.clone()),
        ("d", CellValue::Int(i)) => Some(CellValue::Int(*i)),
        ("d", CellValue::Str(s)) => DATES.iter().find(|(d, _)| d == s).map(|&(_, n)| CellValue::Int(n)),
        _ => None,
    }
}

/// A row-by-row view of the table and the static segments, kept by the test.
struct Model {
    rows: BTreeMap<u64, BTreeMap<String, CellValue>>,
    columns: Vec<String>,
    statics: BTreeMap<String, BTreeSet<u64>>,
    dynamic: BTreeSet<String>,
}

impl Model {
    fn of(ds: &Dataset) -> Model {
        let rows: BTreeMap<u64, BTreeMap<String, CellValue>> =
            ids(ROWS).into_iter().map(|id| (id, ds.customer(id).unwrap().into_iter().collect())).collect();
        let columns = rows.values().next().unwrap().keys().cloned().collect();
        Model { rows, columns, statics: BTreeMap::new(), dynamic: BTreeSet::new() }
    }

    fn segment_exists(&self, id: &str) -> bool {
        self.statics.contains_key(id) || self.dynamic.contains(id)
    }

    /// Applies `m` if the model accepts it; returns whether it did.
    fn apply(&mut self, m: &Mutation) -> bool {
        match m {
            Mutation::Upsert(batch) => {
                let mut staged = vec![];
                for u in batch {
                    if u.customer_id > i64::MAX as u64 {
                        return false;
                    }
                    for (a, v) in &u.attributes {
                        match stored(a, v) {
                            Some(s) => staged.push((u.customer_id, a.clone(), s)),
                            None => return false,
                        }
                    }
                    staged.push((u.customer_id, String::new(), CellValue::Null));
                }
                for (id, a, v) in staged {
                    let row = self.rows.entry(id).or_insert_with(|| {
                        let mut r: BTreeMap<String, CellValue> =
                            self.columns.iter().map(|c| (c.clone(), CellValue::Null)).collect();
                        r.insert("id".into(), CellValue::Int(id as i64));
                        r
                    });
                    if !a.is_empty() {
                        row.insert(a, v);
                    }
                }
                true
            }
            Mutation::Delete(ids) => {
                for id in ids {
                    self.rows.remove(id);
                    for members in self.statics.values_mut() {
                        members.remove(id);
                    }
                }
                true
            }
            Mutation::CreateSegment { id, definition, members, .. } => {
                let finite = match definition {
                    Definition::Tree(Expr::Or(v)) => match &v[0] {
                        Expr::Cmp { value: Literal::Float(x), .. } => x.is_finite(),
                        _ => true,
                    },
                    _ => true,
                };
                let refs_ok = !matches!(definition, Definition::Tree(_)) || self.segment_exists("st0");
                if self.segment_exists(id) || !finite || !refs_ok {
                    return false;
                }
                if *definition == Definition::Static {
                    let known = members.iter().copied().filter(|m| self.rows.contains_key(m)).collect();
                    self.statics.insert(id.clone(), known);
                } else {
                    self.dynamic.insert(id.clone());
                }
                true
            }
            Mutation::EditMembers { id, customer_ids, add } => {
                let Some(members) = self.statics.get_mut(id) else { return false };
                for c in customer_ids.iter().filter(|c| self.rows.contains_key(c)) {
                    if *add {
                        members.insert(*c);
                    } else {
                        members.remove(c);
                    }
                }
                true
            }
            Mutation::DeleteSegment { id } => {
                // st0 is read by every dynamic tree segment: deleting it is refused then.
                let in_use = id == "st0" && self.dynamic.iter().any(|d| d.starts_with("dy"));
                if !self.statics.contains_key(id) || in_use {
                    return false;
                }
                self.statics.remove(id);
                true
            }
            Mutation::AddAttribute { .. } | Mutation::Decide(_) | Mutation::Gamify(_) => {
                unreachable!("not generated")
            }
        }
    }
}

fn members(e: &Engine, id: &str) -> BTreeSet<u64> {
    let s = e.segments().get(id).unwrap();
    s.members.rows().into_iter().map(|r| e.data().id_of(r)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn what_the_check_accepts_round_trips_through_the_log(ms in proptest::collection::vec(mutation(), 1..25)) {
        let base = table(ROWS as usize, 8).ds;
        let mut model = Model::of(&base);
        let mut live = Engine::new(base.clone(), 100, 100_000);
        let mut log: Vec<(u64, Vec<u8>)> = vec![];
        for m in &ms {
            let accepted = live.check(m).is_ok();
            prop_assert_eq!(accepted, model.apply(m), "check disagrees with the model on {:?}", m);
            if !accepted {
                continue;
            }
            let seq = log.len() as u64 + 1;
            live.apply(seq, m).unwrap();
            let mut bytes = vec![];
            encode_mutation(m, &mut bytes);
            prop_assert_eq!(&decode_mutation(FORMAT, &bytes).unwrap(), m);
            log.push((seq, bytes));
        }
        // Replay: decoded records applied in one group, as start-up does.
        let mut replayed = Engine::new(base, 100, 100_000);
        let decoded: Vec<(u64, Mutation)> =
            log.iter().map(|(s, b)| (*s, decode_mutation(FORMAT, b).unwrap())).collect();
        let items: Vec<(u64, &Mutation)> = decoded.iter().map(|(s, m)| (*s, m)).collect();
        for r in replayed.apply_group(&items) {
            prop_assert!(r.is_ok(), "{:?}", r);
        }
        prop_assert_eq!(live.data().customers(), model.rows.len() as u64);
        prop_assert_eq!(replayed.data().customers(), model.rows.len() as u64);
        for (id, want) in &model.rows {
            let want: Vec<(String, CellValue)> = want.clone().into_iter().collect();
            for e in [&live, &replayed] {
                let mut got = e.data().customer(*id).expect("customer held");
                got.sort_by(|a, b| a.0.cmp(&b.0));
                prop_assert_eq!(&got, &want, "customer {}", id);
            }
        }
        for (id, want) in &model.statics {
            prop_assert_eq!(&members(&live, id), want);
            prop_assert_eq!(&members(&replayed, id), want);
        }
        for id in &model.dynamic {
            prop_assert_eq!(members(&live, id), members(&replayed, id));
        }
    }
}
