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
    let events = s.on_write(&ds, &rows, &seqs, &[], 21);
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
