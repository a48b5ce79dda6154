//! The program owns its derived columns: after a PutProgram every customer's row holds
//! the program's values, whatever the table held (the generated demo table's `tier` and
//! `level`, an upsert's value). The oracle: the table read back row by row against the
//! hand-written starting values and the core's per-customer attributes.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::super::tests::table;
use super::*;
use crate::engine::Mutation;
use crate::gamify::{Event, PropValue};
use crate::segments::{Change as SegChange, Definition};

const ROWS: usize = 400;
/// 2026-01-10T12:00:00Z.
const T0: i64 = 1_768_046_400_000;

fn cell_of(e: &Engine, id: u64, attr: &str) -> CellValue {
    let row = e.data().row_of(id).unwrap_or_else(|| panic!("customer {id} has no row"));
    e.data().cell(e.data().column_index(attr).unwrap(), row)
}

fn commit(e: &mut Engine, seq: u64, m: &Mutation) -> Outcome {
    e.check(m).unwrap();
    e.apply(seq, m).unwrap()
}

fn put(program: Program, at: i64) -> Mutation {
    Mutation::Gamify(Change::PutProgram { program: Arc::new(program), effective_ms: at })
}

fn purchase(id: &str, customer: u64, eur: f64) -> Mutation {
    let e = Event {
        event_id: id.into(),
        customer_id: customer,
        kind: "purchase".into(),
        occurred_at_ms: T0,
        properties: BTreeMap::from([("amount_eur".to_string(), PropValue::Float(eur))]),
    };
    Mutation::Gamify(Change::RecordEvents { events: vec![e], logged_at_ms: T0 })
}

/// The demo program's values for a customer no change has touched, written by hand.
fn starting(name: &str) -> CellValue {
    match name {
        "tier" => CellValue::Str("NONE".into()),
        "level" => CellValue::Int(1),
        "purchase_sum_eur" => CellValue::Float(0.0),
        // The demo's badges, challenges and streaks: none held, nothing done, no streak.
        "badges" => CellValue::List(vec![]),
        "challenge_weekly_reviews_completed" | "challenge_books_month_completed" => CellValue::Bool(false),
        // books_month sums euros.
        "challenge_books_month_progress" => CellValue::Float(0.0),
        _ => CellValue::Int(0),
    }
}

/// Every customer's derived cells equal its state's attributes, or the starting values.
fn assert_owned(e: &Engine) {
    let g = e.gamification().unwrap();
    let names: Vec<String> = g.state.starting_attributes(&g.program).into_iter().map(|(n, _)| n).collect();
    assert!(names.len() >= 10, "{names:?}");
    for id in 1..=ROWS as u64 {
        let want: Vec<(String, CellValue)> = match g.state.attributes(&g.program, id) {
            Some(attrs) => attrs.into_iter().map(|(n, v)| (n, super::cell(v))).collect(),
            None => names.iter().map(|n| (n.clone(), starting(n))).collect(),
        };
        for (name, v) in want {
            assert_eq!(cell_of(e, id, &name), v, "customer {id} {name}");
        }
    }
}

#[test]
fn a_program_owns_its_derived_columns() {
    let mut e = Engine::new(table(ROWS), 10, 10_000);
    // The generated table has its own tiers and levels.
    let generated_gold: Vec<u64> =
        (1..=ROWS as u64).filter(|&id| cell_of(&e, id, "tier") == CellValue::Str("GOLD".into())).collect();
    assert!(!generated_gold.is_empty());
    assert!((1..=ROWS as u64).any(|id| cell_of(&e, id, "level") != CellValue::Int(1)));
    let seg = Mutation::CreateSegment {
        id: "gold".into(),
        description: String::new(),
        definition: Definition::Sql("tier = 'GOLD'".into()),
        members: vec![],
    };
    commit(&mut e, 1, &seg);
    let _ = e.take_events();

    // The first program: every customer takes the starting values (the points columns
    // were added NULL, so every row changes), and the generated GOLD customers leave.
    let o = commit(&mut e, 2, &put(Program::demo(), T0));
    assert!(
        matches!(o, Outcome::Gamify(ChangeOutcome::ProgramPut { customers_changed }) if customers_changed == ROWS as u64),
        "{o:?}"
    );
    assert_owned(&e);
    let mut left: Vec<(u64, SegChange, u64)> =
        e.take_events().iter().map(|s| (s.customer_id, s.change, s.sequence)).collect();
    left.sort_by_key(|x| x.0);
    let want: Vec<(u64, SegChange, u64)> =
        generated_gold.iter().map(|&id| (id, SegChange::Left, 2)).collect();
    assert_eq!(left, want);

    // Customer 3 buys for 600 € (BRONZE), customer 4 for 100 €; upserts then write over
    // the program's columns of customer 3 (with state) and 5 (without).
    commit(&mut e, 3, &purchase("p3", 3, 600.0));
    commit(&mut e, 4, &purchase("p4", 4, 100.0));
    let upsert = |id: u64, attrs: Vec<(&str, CellValue)>| {
        Mutation::Upsert(vec![CustomerUpdate {
            customer_id: id,
            attributes: attrs.into_iter().map(|(n, v)| (n.to_string(), v)).collect(),
        }])
    };
    commit(&mut e, 5, &upsert(3, vec![("level", CellValue::Int(40))]));
    commit(
        &mut e,
        6,
        &upsert(5, vec![("tier", CellValue::Str("GOLD".into())), ("level", CellValue::Int(9))]),
    );
    assert_eq!(cell_of(&e, 3, "tier"), CellValue::Str("BRONZE".into()));
    let _ = e.take_events();

    // A program with GOLD from 550 €: customer 3 rises to GOLD, customer 5 goes back to
    // the starting values; customer 4 and everyone else are already right.
    let mut spec = Program::demo().spec;
    spec.tiers.tiers[2].min = 520.0;
    spec.tiers.tiers[3].min = 550.0;
    let o = commit(&mut e, 7, &put(Program::new(spec).unwrap(), T0 + 1_000));
    assert!(matches!(o, Outcome::Gamify(ChangeOutcome::ProgramPut { customers_changed: 2 })), "{o:?}");
    assert_owned(&e);
    assert_eq!(cell_of(&e, 3, "tier"), CellValue::Str("GOLD".into()));
    assert_eq!(cell_of(&e, 3, "level"), CellValue::Int(4));
    assert_eq!(cell_of(&e, 5, "tier"), CellValue::Str("NONE".into()));
    let mut moves: Vec<(u64, SegChange, u64)> =
        e.take_events().iter().map(|s| (s.customer_id, s.change, s.sequence)).collect();
    moves.sort_by_key(|m| m.0);
    assert_eq!(moves, [(3, SegChange::Entered, 7), (5, SegChange::Left, 7)]);
}
