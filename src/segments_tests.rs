//! Tests of [`super`]'s event derivation: the order of one mutation's events does not
//! depend on how its request listed customers, and several batches' events merge by
//! (sequence, segment, row).

use super::*;
use crate::store::mutate::{CellValue, CustomerUpdate};

fn table() -> Dataset {
    let b = crate::gen::generate(3_000, 2);
    Dataset::from_batches(crate::gen::schema(), b.into_iter().map(Ok), "customer_id").unwrap()
}

#[test]
fn member_edits_come_out_in_row_order_once_each() {
    let ds = table();
    let mut s = Segments::new(10);
    s.create(&ds, "vip", "", Definition::Static).unwrap();
    // Ids in descending row order, one twice, one unknown.
    let mut ids: Vec<u64> = (1..=5).collect();
    ids.sort_by_key(|&id| std::cmp::Reverse(ds.row_of(id)));
    let mut asked = ids.clone();
    asked.extend([ids[0], 77_777_777]);
    let (changed, events) = s.edit_members(&ds, "vip", &asked, true, 7).unwrap();
    assert_eq!(changed, 5);
    let got: Vec<(u64, Change, u64)> = events.iter().map(|e| (e.customer_id, e.change, e.sequence)).collect();
    let want: Vec<(u64, Change, u64)> = ids.iter().rev().map(|&id| (id, Change::Entered, 7)).collect();
    assert_eq!(got, want);
    // Removing one that is not a member changes nothing.
    let (changed, events) = s.edit_members(&ds, "vip", &[ids[0], 6], false, 8).unwrap();
    assert_eq!((changed, events.len()), (1, 1));
    assert_eq!((events[0].customer_id, events[0].change), (ids[0], Change::Left));
    s.create(&ds, "old", "", Definition::Sql("age > 60".into())).unwrap();
    assert_eq!(s.edit_members(&ds, "old", &[1], true, 9), Err(SegmentError::NotStatic("old".into())));
    assert_eq!(s.edit_members(&ds, "nope", &[1], true, 9), Err(SegmentError::NotFound("nope".into())));
}

#[test]
fn events_of_several_batches_are_ordered_by_sequence_segment_row() {
    let mut ds = table();
    let mut s = Segments::new(10);
    s.create(&ds, "a", "", Definition::Sql("tier = 'ZZ'".into())).unwrap();
    s.create(&ds, "b", "", Definition::Sql("country = 'ZZ'".into())).unwrap();
    // Four customers, by row; batch 0 (sequence 20) writes the last two rows, batch 1
    // (sequence 21) the first two, each into both segments.
    let mut ids: Vec<u64> = (1..=4).collect();
    ids.sort_by_key(|&id| ds.row_of(id));
    let both = |id: u64| CustomerUpdate {
        customer_id: id,
        attributes: vec![
            ("tier".into(), CellValue::Str("ZZ".into())),
            ("country".into(), CellValue::Str("ZZ".into())),
        ],
    };
    let b0 = vec![both(ids[3]), both(ids[2])];
    let b1 = vec![both(ids[1]), both(ids[0])];
    let changed = ds.apply_upsert_batches(&[&b0, &b1]).unwrap();
    let rows: Vec<u32> = changed.iter().map(|&(r, _)| r).collect();
    let seqs: Vec<u64> = changed.iter().map(|&(_, b)| [20, 21][b]).collect();
    let events = s.on_write(&ds, &rows, None, &seqs, &[], 21);
    let got: Vec<(u64, &str, u64)> =
        events.iter().map(|e| (e.sequence, &*e.segment_id, e.customer_id)).collect();
    let want = vec![
        (20, "a", ids[2]),
        (20, "a", ids[3]),
        (20, "b", ids[2]),
        (20, "b", ids[3]),
        (21, "a", ids[0]),
        (21, "a", ids[1]),
        (21, "b", ids[0]),
        (21, "b", ids[1]),
    ];
    assert_eq!(got, want);
    assert!(events.iter().all(|e| e.change == Change::Entered));
}

/// Re-evaluating only the rows where a column a segment reads changed gives the same
/// events and members as re-evaluating every changed row, and the members equal a fresh
/// evaluation of each definition (an `in_segment` reader and a column-free plan included).
#[test]
fn touched_columns_scope_reevaluation_without_changing_the_outcome() {
    use rand::{rngs::SmallRng, Rng, SeedableRng};
    // Three chunks, so a write's rows group by chunk.
    let b = crate::gen::generate(140_000, 3);
    let mut ds = Dataset::from_batches(crate::gen::schema(), b.into_iter().map(Ok), "customer_id").unwrap();
    let defs = [
        ("gold", "tier IN ('GOLD', 'PLATINUM') AND age >= 30"),
        ("de", "country = 'DE'"),
        ("spend", "total_spend_eur > 500 OR email_opt_in"),
        ("all", "TRUE"),
        ("gold_de", "in_segment('gold') AND country = 'DE'"),
        ("not_spend", "NOT in_segment('spend')"),
    ];
    let mut scoped = Segments::new(20);
    for (id, w) in defs {
        scoped.create(&ds, id, "", Definition::Sql(w.into())).unwrap();
    }
    let mut full = scoped.clone();
    let mut rng = SmallRng::seed_from_u64(5);
    let tiers = ["NONE", "BRONZE", "SILVER", "GOLD", "PLATINUM"];
    let countries = ["DE", "FR", "AT"];
    let mut next_id = 90_000_000u64;
    for round in 0..30u64 {
        let batch: Vec<CustomerUpdate> = (0..rng.random_range(1..200))
            .map(|_| {
                let customer_id = if rng.random_bool(0.05) {
                    next_id += 1;
                    next_id
                } else {
                    ds.id_of(rng.random_range(0..ds.rows() as u32))
                };
                let mut attributes = vec![];
                // Mostly one column per customer, sometimes a value it already holds.
                match rng.random_range(0..4) {
                    0 => {
                        attributes.push(("tier".into(), CellValue::Str(tiers[rng.random_range(0..5)].into())))
                    }
                    1 => attributes
                        .push(("country".into(), CellValue::Str(countries[rng.random_range(0..3)].into()))),
                    2 => attributes
                        .push(("total_spend_eur".into(), CellValue::Float(rng.random_range(0.0..1000.0)))),
                    _ => attributes.push(("age".into(), CellValue::Int(rng.random_range(18..90)))),
                }
                CustomerUpdate { customer_id, attributes }
            })
            .collect();
        for u in &batch {
            ds.check_upserts(std::slice::from_ref(u)).unwrap();
        }
        let (changed, touched) = ds.apply_checked_upsert_batches(&[&batch]);
        let rows: Vec<u32> = changed.iter().map(|&(r, _)| r).collect();
        let got = scoped.on_write(&ds, &rows, Some(&touched), &[], &[], round);
        let want = full.on_write(&ds, &rows, None, &[], &[], round);
        assert_eq!(got, want, "round {round}: events");
        // The oracle: every definition evaluated afresh over the whole table.
        let mut fresh = Segments::new(20);
        for (id, w) in defs {
            fresh.create(&ds, id, "", Definition::Sql(w.into())).unwrap();
        }
        for (id, _) in defs {
            let want = fresh.members_of(id).unwrap().rows();
            assert_eq!(scoped.members_of(id).unwrap().rows(), want, "round {round}: members of {id}");
        }
    }
}
