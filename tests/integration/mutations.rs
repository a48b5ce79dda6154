//! Live updates: a random sequence of upserts, new customers and deletes applied to the
//! indexes in place must count exactly what a table rebuilt from scratch counts (and what
//! the naive evaluator counts on the exported rows).

use proptest::prelude::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use segd::naive;
use segd::query::{compile_expr, eval, Limits};
use segd::store::mutate::{CellValue, CustomerUpdate, MutationError};
use segd::store::Dataset;

use crate::differential::{expr, table, STRS, TAGS};

fn random_value(r: &mut SmallRng, col: &str) -> CellValue {
    if r.random_bool(0.1) {
        return CellValue::Null;
    }
    match col {
        "b" => CellValue::Bool(r.random()),
        "i8c" => CellValue::Int(r.random_range(-6..=6)),
        "u16c" => CellValue::Int(r.random_range(0..1000)),
        "i64c" => CellValue::Int(r.random_range(-1_000_000_000_000i64..1_000_000_000_000)),
        "f64c" => CellValue::Float(if r.random_bool(0.3) {
            0.0
        } else {
            r.random_range(-200_000..200_000) as f64 / 2.0
        }),
        "f32c" => CellValue::Float(r.random_range(0..400) as f64 / 4.0),
        "s" => CellValue::Str(if r.random_bool(0.2) {
            "new".into()
        } else {
            STRS[r.random_range(0..STRS.len())].into()
        }),
        // Values beyond the loaded dictionary (v300..) are new codes.
        "sd" => CellValue::Str(format!("v{:03}", r.random_range(0..330))),
        "l" => CellValue::List(
            (0..r.random_range(0..4))
                .map(|_| {
                    if r.random_bool(0.1) {
                        "t_new".to_string()
                    } else {
                        TAGS[r.random_range(0..TAGS.len())].into()
                    }
                })
                .collect(),
        ),
        "d" => CellValue::Str(format!(
            "20{:02}-0{}-1{}",
            r.random_range(18..25),
            r.random_range(1..10),
            r.random_range(0..10)
        )),
        "ts" => CellValue::Int(r.random_range(1_400_000_000_000i64..1_800_000_000_000)),
        c => unreachable!("{c}"),
    }
}

const COLS: [&str; 11] = ["b", "i8c", "u16c", "i64c", "f64c", "f32c", "s", "sd", "l", "d", "ts"];

/// Applies `steps` random batches; returns how many customers changed.
fn mutate(ds: &mut Dataset, seed: u64, steps: usize) {
    let mut r = SmallRng::seed_from_u64(seed);
    let max_id = (ds.rows() as u64) * 3 + 7;
    for _ in 0..steps {
        if r.random_bool(0.25) {
            let ids: Vec<u64> = (0..r.random_range(1..50)).map(|_| r.random_range(0..max_id)).collect();
            ds.delete_customers(&ids);
            continue;
        }
        let batch: Vec<CustomerUpdate> = (0..r.random_range(1..200))
            .map(|_| CustomerUpdate {
                // Existing ids are 3k+7; a few others are new customers.
                customer_id: if r.random_bool(0.1) {
                    50_000_000 + r.random_range(0..100)
                } else {
                    r.random_range(0..max_id)
                },
                attributes: (0..r.random_range(0..4))
                    .map(|_| {
                        let c = COLS[r.random_range(0..COLS.len())];
                        (c.to_string(), random_value(&mut r, c))
                    })
                    .collect(),
            })
            .collect();
        ds.apply_upserts(&batch).expect("valid batch applies");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn live_updates_count_like_a_rebuild(seed in any::<u64>(), es in proptest::collection::vec(expr(), 12)) {
        // 65,530 rows: appended customers cross into a new chunk.
        let mut live = table(65_530, seed % 7).ds;
        // A version kept while the live one is written (as a reader holds a published
        // version during a commit): the writes must not show through to it.
        let kept = live.clone();
        let kept_batches = kept.export();
        mutate(&mut live, seed, 30);
        let batches = live.export();
        let rebuilt = Dataset::from_batches(live.export_schema(), batches.clone().into_iter().map(Ok), "id").unwrap();
        prop_assert_eq!(live.customers(), rebuilt.customers());
        for e in &es {
            let a = eval::count(&live, &compile_expr(&live, e, &Limits::default()).unwrap());
            let b = eval::count(&rebuilt, &compile_expr(&rebuilt, e, &Limits::default()).unwrap());
            prop_assert_eq!(a, b, "live vs rebuilt: {:?}", e);
            prop_assert_eq!(a, naive::count(&batches, e).unwrap(), "live vs naive: {:?}", e);
            let k = eval::count(&kept, &compile_expr(&kept, e, &Limits::default()).unwrap());
            prop_assert_eq!(k, naive::count(&kept_batches, e).unwrap(), "kept version vs naive: {:?}", e);
        }
    }
}

#[test]
fn a_bad_batch_changes_nothing() {
    let mut ds = table(3_000, 1).ds;
    let before = ds.export();
    let bad = vec![
        CustomerUpdate { customer_id: 10, attributes: vec![("s".into(), CellValue::Str("ok".into()))] },
        CustomerUpdate { customer_id: 13, attributes: vec![("i8c".into(), CellValue::Int(1000))] },
    ];
    assert!(
        matches!(ds.apply_upserts(&bad), Err(MutationError::TypeMismatch { attribute, .. }) if attribute == "i8c")
    );
    let unknown =
        vec![CustomerUpdate { customer_id: 10, attributes: vec![("nope".into(), CellValue::Int(1))] }];
    assert!(matches!(ds.apply_upserts(&unknown), Err(MutationError::UnknownAttribute { .. })));
    let id = vec![CustomerUpdate { customer_id: 10, attributes: vec![("id".into(), CellValue::Int(1))] }];
    assert!(matches!(ds.apply_upserts(&id), Err(MutationError::IdAttribute { .. })));
    assert_eq!(ds.export(), before);
}

#[test]
fn get_customer_and_new_attributes() {
    let mut ds = table(3_000, 1).ds;
    let row = ds.customer(10).expect("id 10 exists");
    assert_eq!(row.len(), 12);
    ds.add_attribute("vip_score", segd::store::mutate::NewAttribute::Float).unwrap();
    ds.apply_upserts(&[CustomerUpdate {
        customer_id: 10,
        attributes: vec![("vip_score".into(), CellValue::Float(9.5))],
    }])
    .unwrap();
    let plan = segd::query::compile_sql(&ds, "vip_score > 9", &Limits::default()).unwrap();
    assert_eq!(eval::count(&ds, &plan), 1);
    assert_eq!(eval::is_member(&ds, &plan, 10), Some(true));
    assert!(ds.customer(10).unwrap().contains(&("vip_score".to_string(), CellValue::Float(9.5))));
    ds.delete_customers(&[10]);
    assert_eq!(ds.customer(10), None);
    assert_eq!(eval::count(&ds, &plan), 0);
}

#[test]
fn a_dictionary_outgrowing_its_code_width_keeps_every_value() {
    // "s" has 6 values (8-bit codes); 300 new ones force 16-bit codes in every chunk.
    let mut ds = table(70_000, 3).ds;
    let batch: Vec<CustomerUpdate> = (0..300)
        .map(|i| CustomerUpdate {
            customer_id: 7 + 3 * i,
            attributes: vec![("s".into(), CellValue::Str(format!("n{i}")))],
        })
        .collect();
    ds.apply_upserts(&batch).unwrap();
    let batches = ds.export();
    for text in ["s = 'n299'", "s = 'a'", "s IN ('n0', 'b', 'n150')", "s > 'n1'"] {
        let e = segd::query::sql::parse(text, &Limits::default()).unwrap();
        let plan = compile_expr(&ds, &e, &Limits::default()).unwrap();
        assert_eq!(eval::count(&ds, &plan), naive::count(&batches, &e).unwrap(), "{text}");
    }
}

/// A commit group's consecutive upserts applied as one batch (`Engine::apply_group`) leave
/// the same table and the same saved-segment members as applying them one by one; where
/// the batches change different customers, the events are the same too, each with the
/// sequence of its own batch.
#[test]
fn a_group_applied_at_once_matches_one_by_one() {
    use segd::engine::{Engine, Mutation};
    use segd::segments::Definition;

    let mut r = SmallRng::seed_from_u64(11);
    let base = table(20_000, 3).ds;
    let defs = [
        "i8c >= 0 AND s IN ('a', 'new')",
        "f64c < 0 OR b",
        "NOT (sd = 'v001') AND u16c < 500",
        "in_segment('g0') AND b",
    ];
    let mut engines = [Engine::new(base.clone(), 100, 1_000_000), Engine::new(base, 100, 1_000_000)];
    for e in &mut engines {
        for (i, d) in defs.iter().enumerate() {
            let m = Mutation::CreateSegment {
                id: format!("g{i}"),
                description: String::new(),
                definition: Definition::Sql(d.to_string()),
            };
            e.apply(i as u64 + 1, &m).unwrap();
        }
    }
    let max_id = 20_000u64 * 3 + 7;
    // Disjoint customers per batch (so per-batch events are well defined), plus new ones.
    let mut ids: Vec<u64> = (0..max_id).step_by(3).map(|i| i + 7).collect();
    let group: Vec<(u64, Mutation)> = (0..6u64)
        .map(|b| {
            let batch = (0..300)
                .map(|k| {
                    let customer_id = if k % 50 == 0 {
                        90_000_000 + b * 1000 + k
                    } else {
                        ids.swap_remove(r.random_range(0..ids.len()))
                    };
                    let attributes = (0..3)
                        .map(|_| {
                            let c = COLS[r.random_range(0..COLS.len())];
                            (c.to_string(), random_value(&mut r, c))
                        })
                        .collect();
                    CustomerUpdate { customer_id, attributes }
                })
                .collect();
            (100 + b, Mutation::Upsert(batch))
        })
        .collect();
    for (seq, m) in &group {
        engines[0].apply(*seq, m).unwrap();
    }
    let items: Vec<(u64, &Mutation)> = group.iter().map(|(s, m)| (*s, m)).collect();
    for r in engines[1].apply_group(&items) {
        r.unwrap();
    }
    let [one, all] = &engines;
    assert_eq!(one.data().export(), all.data().export());
    for i in 0..defs.len() {
        let id = format!("g{i}");
        assert_eq!(
            one.segments().get(&id).unwrap().members.rows(),
            all.segments().get(&id).unwrap().members.rows(),
            "{id}"
        );
    }
    let events = |e: &Engine| {
        let mut v = e.events_since(100, &Default::default(), usize::MAX).unwrap();
        v.sort_by(|a, b| {
            (a.sequence, &a.segment_id, a.customer_id).cmp(&(b.sequence, &b.segment_id, b.customer_id))
        });
        v
    };
    let (a, b) = (events(one), events(all));
    assert!(!a.is_empty());
    assert_eq!(a, b);
}
