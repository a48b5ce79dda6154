//! Boards against an oracle that sorts every entry by the documented tie-break.

use crate::persist::leaderboard::{
    board_from_record, board_to_record, decode_period, encode_period, period_from_record, period_to_record,
};
use std::collections::BTreeMap;

use chrono_tz::Tz;
use proptest::prelude::*;

use super::*;

/// The oracle's entry: (score, reached_at_ms, seq, customer_id).
type Ent = (i64, i64, u64, u64);

#[derive(Default, Clone)]
struct Oracle {
    rows: BTreeMap<u32, Ent>,
}

impl Oracle {
    fn add(&mut self, row: u32, cust: u64, delta: i64, at: i64, seq: u64) {
        match self.rows.get_mut(&row) {
            Some(e) if delta == 0 => {
                let _ = e;
            }
            Some(e) => *e = (e.0 + delta, at, seq, cust),
            None => {
                self.rows.insert(row, (delta, at, seq, cust));
            }
        }
    }
    fn set(&mut self, row: u32, cust: u64, score: i64, at: i64, seq: u64) {
        if self.rows.get(&row).is_some_and(|e| e.0 == score && e.3 == cust) {
            return;
        }
        self.rows.insert(row, (score, at, seq, cust));
    }
    /// Rows in rank order within a scope: sort by score descending, then ascending
    /// reached_at, seq, customer id.
    fn order(&self, scope: Option<&[u32]>) -> Vec<Ranked> {
        let mut v: Vec<(u32, Ent)> = self
            .rows
            .iter()
            .filter(|(r, _)| scope.is_none_or(|s| s.contains(r)))
            .map(|(r, e)| (*r, *e))
            .collect();
        v.sort_by(|a, b| {
            b.1 .0.cmp(&a.1 .0).then(a.1 .1.cmp(&b.1 .1)).then(a.1 .2.cmp(&b.1 .2)).then(a.1 .3.cmp(&b.1 .3))
        });
        v.iter()
            .enumerate()
            .map(|(i, (r, e))| Ranked {
                rank: i as u64 + 1,
                row: *r,
                customer_id: e.3,
                score: e.0,
                reached_at_ms: e.1,
                seq: e.2,
            })
            .collect()
    }
}

fn postings(rows: &[u32]) -> Postings {
    let mut p = Postings::default();
    for &r in rows {
        p.insert(r);
    }
    p
}

/// Compares every read of `b` with the oracle, whole and in `scope`.
fn check(b: &Board, o: &Oracle, scope_rows: &[u32], probe_k: usize) {
    let sp = postings(scope_rows);
    for (scope, sel) in [(Scope::Everyone, None), (Scope::Rows(&sp), Some(scope_rows))] {
        let want = o.order(sel);
        assert_eq!(b.count(scope), want.len() as u64);
        assert_eq!(b.top(usize::MAX, 0, scope), want);
        for (n, off) in
            [(1usize, 0u64), (10, 0), (7, 3), (100, 250), (5, want.len() as u64), (3, want.len() as u64 + 9)]
        {
            let w: Vec<Ranked> = want.iter().skip(off as usize).take(n).copied().collect();
            assert_eq!(b.top(n, off, scope), w, "top({n}, {off})");
        }
        for (i, r) in want.iter().enumerate() {
            assert_eq!(b.rank_of(r.row, scope), Some(i as u64 + 1), "rank_of row {}", r.row);
            if i % 17 == 0 {
                let lo = i.saturating_sub(probe_k);
                let w: Vec<Ranked> = want[lo..(i + probe_k + 1).min(want.len())].to_vec();
                assert_eq!(b.around(r.row, probe_k, scope), w, "around row {}", r.row);
            }
        }
        // Rows off the board or outside the scope have no rank.
        for row in 0..40u32 {
            let ranked = want.iter().any(|r| r.row == row);
            assert_eq!(b.rank_of(row, scope).is_some(), ranked);
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Add { row: u32, delta: i64 },
    Set { row: u32, score: i64 },
    Remove { row: u32 },
}

/// Rows span three 2^16-row chunks so scoped counts cross chunk boundaries.
fn row() -> impl Strategy<Value = u32> {
    prop_oneof![0u32..1200, 65_530u32..65_700, 140_000u32..140_050]
}

fn op() -> impl Strategy<Value = Op> {
    // Small scores so ties are common and the tie-break decides.
    prop_oneof![
        6 => (row(), -3i64..6).prop_map(|(row, delta)| Op::Add { row, delta }),
        2 => (row(), -2i64..8).prop_map(|(row, score)| Op::Set { row, score }),
        1 => row().prop_map(|row| Op::Remove { row }),
    ]
}

fn cust(row: u32) -> u64 {
    // Customer ids in an order unrelated to rows.
    (row as u64).wrapping_mul(2_654_435_761) % 1_000_003
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn board_equals_sorting_oracle(ops in prop::collection::vec(op(), 1..3000), scope_bits in any::<u64>(), dense in any::<bool>()) {
        let mut b = Board::new();
        let mut o = Oracle::default();
        for (seq, op) in ops.iter().enumerate() {
            // Many updates share a millisecond: the sequence number must order them.
            let (seq, at) = (seq as u64, seq as i64 / 4);
            match *op {
                Op::Add { row, delta } => {
                    b.add(row, cust(row), delta, at, seq).unwrap();
                    o.add(row, cust(row), delta, at, seq);
                }
                Op::Set { row, score } => {
                    b.set(row, cust(row), score, at, seq);
                    o.set(row, cust(row), score, at, seq);
                }
                Op::Remove { row } => {
                    prop_assert_eq!(b.remove(row), o.rows.remove(&row).is_some());
                }
            }
        }
        // A scope of about 60% or 6% of the rows, chosen by a hash of the row.
        let scope: Vec<u32> = o.rows.keys().copied().chain(0..50)
            .filter(|r| (cust(*r) ^ scope_bits) % 100 < if dense { 60 } else { 6 }).collect();
        check(&b, &o, &scope, 3);
        let mut back = board_from_record(&board_to_record(&b)).unwrap();
        prop_assert_eq!(board_to_record(&back), board_to_record(&b));
        check(&back, &o, &scope, 2);
        // A restored board keeps updating like the original.
        for (i, op) in ops.iter().take(300).enumerate() {
            let seq = (ops.len() + i) as u64;
            if let Op::Add { row, delta } = *op {
                back.add(row, cust(row), delta + 1, seq as i64, seq).unwrap();
                o.add(row, cust(row), delta + 1, seq as i64, seq);
            }
        }
        check(&back, &o, &scope, 2);
    }
}

#[test]
fn tie_break_by_hand() {
    let mut b = Board::new();
    // Customer 9 reaches 10 first (t=1), customer 5 at t=2, customer 7 at t=2 but later
    // in the log, customer 3 at t=2 with seq 3 too (impossible in a log, but the id
    // decides), customer 1 has 12.
    b.set(0, 9, 10, 1, 1);
    b.set(1, 5, 10, 2, 2);
    b.set(2, 7, 10, 2, 5);
    b.set(3, 1, 12, 9, 9);
    b.set(4, 4, 10, 2, 5);
    let ids: Vec<u64> = b.top(10, 0, Scope::Everyone).iter().map(|r| r.customer_id).collect();
    assert_eq!(ids, vec![1, 9, 5, 4, 7]);
    // Re-setting 10 keeps customer 9's instant; raising then lowering does not.
    b.set(0, 9, 10, 50, 50);
    assert_eq!(b.rank_of(0, Scope::Everyone), Some(2));
    b.set(0, 9, 11, 51, 51);
    b.set(0, 9, 10, 52, 52);
    assert_eq!(b.rank_of(0, Scope::Everyone), Some(5));
    assert_eq!(
        b.add(3, 1, i64::MAX, 60, 60),
        Err(BoardError::Overflow { row: 3, score: 12, delta: i64::MAX })
    );
}

/// A tie-heavy board of 3,000 rows after many moves: scoped ranks go through the band
/// bitmaps (many bands, many rebuilds), for a sparse and a dense scope.
#[test]
fn scoped_ranks_cross_many_bands() {
    let mut b = Board::new();
    let mut o = Oracle::default();
    let mut x: u64 = 7;
    for seq in 0..20_000u64 {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let row = ((x >> 33) % 3_000) as u32 + if x & 1 == 0 { 0 } else { 70_000 };
        let delta = ((x >> 20) % 7) as i64 - 2;
        b.add(row, cust(row), delta, seq as i64 / 3, seq).unwrap();
        o.add(row, cust(row), delta, seq as i64 / 3, seq);
        if seq.is_multiple_of(97) {
            b.remove(row);
            o.rows.remove(&row);
        }
    }
    assert!(b.bands() > 4 * super::bands::STRIDE, "only {} bands", b.bands());
    for modulo in [13u64, 2] {
        let scope: Vec<u32> = o.rows.keys().copied().filter(|r| cust(*r).is_multiple_of(modulo)).collect();
        let sp = postings(&scope);
        let want = o.order(Some(&scope));
        for r in &want {
            assert_eq!(b.rank_of(r.row, Scope::Rows(&sp)), Some(r.rank), "row {}", r.row);
        }
    }
}

fn ms(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
}

#[test]
fn weekly_board_rolls_in_the_programs_zone() {
    let tz: Tz = "Europe/Berlin".parse().unwrap();
    // Sunday 2026-11-29 23:30 in Berlin is 22:30 UTC: still week 48.
    let mut pb = PeriodBoard::new(Period::Week, tz, 2, ms("2026-11-29T22:30:00Z")).unwrap();
    pb.add(1, 11, 5, ms("2026-11-29T22:30:00Z"), 1).unwrap();
    // 23:00 UTC on Sunday is Monday 00:00 in Berlin: a new week.
    pb.add(2, 22, 3, ms("2026-11-29T23:00:00Z"), 2).unwrap();
    assert_eq!(pb.board(PeriodSel::Current).unwrap().top(9, 0, Scope::Everyone)[0].customer_id, 22);
    assert_eq!(pb.board(PeriodSel::Previous(1)).unwrap().top(9, 0, Scope::Everyone)[0].customer_id, 11);
    // A late event (an instant of the closed week) counts in the current week.
    pb.add(1, 11, 1, ms("2026-11-29T12:00:00Z"), 3).unwrap();
    assert_eq!(pb.board(PeriodSel::Current).unwrap().len(), 2);
    assert_eq!(pb.board(PeriodSel::Previous(1)).unwrap().len(), 1);
    // Two weeks later, the first week is the third one back: past `keep`.
    pb.roll_to(ms("2026-12-14T00:00:00Z"));
    assert!(pb.board(PeriodSel::Previous(1)).unwrap().is_empty());
    assert_eq!(pb.board(PeriodSel::Previous(2)).unwrap().len(), 2);
    assert!(matches!(pb.board(PeriodSel::Previous(3)), Err(BoardError::NoSuchPeriod { back: 3, .. })));
    let back = decode_period(&encode_period(&pb)).unwrap();
    assert_eq!(period_to_record(&back), period_to_record(&pb));
}

#[test]
fn a_read_after_a_quiet_spell_sees_the_periods_the_clock_says() {
    let tz: Tz = "Europe/Berlin".parse().unwrap();
    let mut pb = PeriodBoard::new(Period::Day, tz, 3, ms("2026-11-30T10:00:00Z")).unwrap();
    pb.add(1, 11, 5, ms("2026-11-30T10:00:00Z"), 1).unwrap();
    pb.add(2, 22, 3, ms("2026-12-01T10:00:00Z"), 2).unwrap();
    let ids = |b: &Board| b.top(9, 0, Scope::Everyone).iter().map(|r| r.customer_id).collect::<Vec<_>>();
    let read = |sel, at: &str| pb.board_at(sel, ms(at)).map(|(b, i)| (ids(b), i));
    // Nothing logged since Tuesday: on Thursday, today is empty, Tuesday two days back.
    let thu = "2026-12-03T09:00:00Z";
    let tue = period::period_index(tz, ms("2026-12-01T10:00:00Z"), Period::Day);
    assert_eq!(read(PeriodSel::Current, thu).unwrap(), (vec![], tue + 2));
    assert_eq!(read(PeriodSel::Previous(1), thu).unwrap(), (vec![], tue + 1));
    assert_eq!(read(PeriodSel::Previous(2), thu).unwrap(), (vec![22], tue));
    assert_eq!(read(PeriodSel::Previous(3), thu).unwrap(), (vec![11], tue - 1));
    // As of the last logged instant, the same as `board`.
    assert_eq!(read(PeriodSel::Current, "2026-12-01T12:00:00Z").unwrap(), (vec![22], tue));
    assert_eq!(read(PeriodSel::Previous(1), "2026-12-01T12:00:00Z").unwrap(), (vec![11], tue - 1));
    // A clock behind the board (another node's) reads the board's current period.
    assert_eq!(read(PeriodSel::Current, "2026-11-01T00:00:00Z").unwrap(), (vec![22], tue));
    assert!(matches!(read(PeriodSel::Previous(4), thu), Err(BoardError::NoSuchPeriod { back: 4, kept: 3 })));
    // Period bounds are local midnights.
    let (start, end) = period::period_bounds(tz, tue, Period::Day).unwrap();
    assert_eq!((start, end), (ms("2026-11-30T23:00:00Z"), ms("2026-12-01T23:00:00Z")));
}

#[test]
fn record_errors_name_the_field() {
    let mut r = period_to_record(&PeriodBoard::new(Period::Day, chrono_tz::UTC, 1, 0).unwrap());
    r.tz = "Mars/Olympus".into();
    assert_eq!(period_from_record(&r).unwrap_err(), BoardError::TimeZone("Mars/Olympus".into()));
    r.tz = "UTC".into();
    r.period = 9;
    assert!(matches!(period_from_record(&r), Err(BoardError::Record { field: "period", .. })));
    assert!(matches!(
        PeriodBoard::new(Period::Day, chrono_tz::UTC, 401, 0),
        Err(BoardError::Keep { got: 401, .. })
    ));
}

#[derive(Debug, Clone)]
struct TimedAdd {
    row: u32,
    delta: i64,
    /// Hours since the start; occasionally earlier than the previous update.
    hours: i64,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Every period board equals, per period, the oracle over the updates whose logged
    /// instant (or, for late ones, the period they were applied in) falls in it.
    #[test]
    fn period_boards_equal_oracle(
        adds in prop::collection::vec((0u32..60, -2i64..5, 0i64..30).prop_map(|(row, delta, h)| TimedAdd { row, delta, hours: h }), 1..400),
        which in 0usize..4,
    ) {
        let period = [Period::AllTime, Period::Day, Period::Week, Period::Month][which];
        let tz: Tz = "America/Los_Angeles".parse().unwrap();
        let start = ms("2026-10-28T00:00:00Z");
        let keep = 3u32;
        let mut pb = PeriodBoard::new(period, tz, keep, start).unwrap();
        let mut oracles: BTreeMap<i64, Oracle> = BTreeMap::new();
        let (mut clock, mut cur) = (start, period::period_index(tz, start, period));
        for (seq, a) in adds.iter().enumerate() {
            // Mostly forward in steps of hours; `hours == 0` goes back two days (late).
            let at = if a.hours == 0 { clock - 48 * 3_600_000 } else { clock + a.hours * 3_600_000 * 7 };
            let idx = period::period_index(tz, at, period).max(cur);
            cur = idx;
            clock = clock.max(at);
            pb.add(a.row, a.row as u64, a.delta, at, seq as u64).unwrap();
            oracles.entry(idx).or_default().add(a.row, a.row as u64, a.delta, at, seq as u64);
        }
        let scope: Vec<u32> = (0..60).filter(|r| r % 3 == 0).collect();
        prop_assert_eq!(pb.index(), cur);
        check(pb.board(PeriodSel::Current).unwrap(), oracles.get(&cur).unwrap_or(&Oracle::default()), &scope, 2);
        if period != Period::AllTime {
            for back in 1..=keep {
                let o = oracles.get(&(cur - back as i64)).cloned().unwrap_or_default();
                check(pb.board(PeriodSel::Previous(back)).unwrap(), &o, &scope, 2);
            }
        }
        let again = decode_period(&encode_period(&pb)).unwrap();
        prop_assert_eq!(period_to_record(&again), period_to_record(&pb));
    }
}

proptest! {
    /// A commit group's updates applied once per row ([`Board::add_all`], rows in any
    /// order, each row's updates in log order) leave the board one add per event leaves,
    /// and both equal the oracle's plain sort.
    #[test]
    fn batched_updates_equal_per_event_updates(
        start in proptest::collection::vec((0u32..30, -2i64..40), 0..40),
        batch in proptest::collection::vec((0u32..30, prop_oneof![Just(0i64), Just(-5), -3i64..6, Just(i64::MAX)]), 1..120),
        reverse_rows in any::<bool>(),
    ) {
        let (mut one_by_one, mut batched, mut oracle) = (Board::new(), Board::new(), Oracle::default());
        for (seq, &(row, delta)) in start.iter().enumerate() {
            for b in [&mut one_by_one, &mut batched] {
                b.add(row, 1000 + row as u64, delta, 1_000, seq as u64).unwrap();
            }
            oracle.add(row, 1000 + row as u64, delta, 1_000, seq as u64);
        }
        let first = start.len() as u64;
        let mut per_row: BTreeMap<u32, Vec<(u64, i64, i64, u64)>> = BTreeMap::new();
        let mut overflows = 0;
        for (i, &(row, delta)) in batch.iter().enumerate() {
            let (at, seq) = (2_000 + i as i64 / 7, first + i as u64);
            if one_by_one.add(row, 1000 + row as u64, delta, at, seq).is_err() {
                overflows += 1;
            } else {
                oracle.add(row, 1000 + row as u64, delta, at, seq);
            }
            per_row.entry(row).or_default().push((1000 + row as u64, delta, at, seq));
        }
        let mut rows: Vec<(u32, Vec<_>)> = per_row.into_iter().collect();
        if reverse_rows {
            rows.reverse();
        }
        let mut errors = 0;
        for (row, adds) in rows {
            errors += batched.add_all(row, adds).len();
        }
        prop_assert_eq!(errors, overflows);
        let keys = |b: &Board| b.keys().copied().collect::<Vec<_>>();
        prop_assert_eq!(keys(&batched), keys(&one_by_one));
        let scope: Vec<u32> = (0..30).filter(|r| r % 2 == 0).collect();
        check(&batched, &oracle, &scope, 3);
    }
}
