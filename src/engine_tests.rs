//! Tests of [`super`]: commit-group boundaries of every mutation kind, and the law that
//! segment events are a function of the log alone: any grouping of one random log gives
//! the stream an independent oracle computes (each mutation applied alone to a plain
//! table, every saved segment re-evaluated row by row with [`crate::naive`], membership
//! diffed).

use std::collections::{HashMap, HashSet};

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::query::{Expr, Limits};
use crate::segments::Change;
use crate::store::mutate::CellValue;

pub(crate) fn table(rows: usize) -> Dataset {
    let b = crate::gen::generate(rows, 5);
    Dataset::from_batches(crate::gen::schema(), b.into_iter().map(Ok), "customer_id").unwrap()
}

fn upsert(id: u64, attrs: &[(&str, CellValue)]) -> Mutation {
    Mutation::Upsert(vec![CustomerUpdate {
        customer_id: id,
        attributes: attrs.iter().map(|(a, v)| (a.to_string(), v.clone())).collect(),
    }])
}

fn sql_segment(id: &str, text: &str) -> Mutation {
    Mutation::CreateSegment {
        id: id.into(),
        description: String::new(),
        members: vec![],
        definition: Definition::Sql(text.into()),
    }
}

/// (sequence, segment, customer, entered) of each event, in stream order.
pub(crate) type Stream = Vec<(u64, String, u64, bool)>;

pub(crate) fn stream(events: &[SegmentEvent]) -> Stream {
    events
        .iter()
        .map(|e| (e.sequence, e.segment_id.to_string(), e.customer_id, e.change == Change::Entered))
        .collect()
}

#[test]
fn group_boundaries_of_every_kind() {
    let kinds = [
        (Mutation::Upsert(vec![]), false, 0),
        (Mutation::Delete(vec![1, 2, 3]), false, 3),
        (Mutation::AddAttribute { name: "x".into(), kind: NewAttribute::Int }, true, 1),
        (sql_segment("s", "age > 1"), true, 1),
        (Mutation::DeleteSegment { id: "s".into() }, true, 1),
        (Mutation::EditMembers { id: "s".into(), customer_ids: vec![4, 5], add: true }, false, 2),
    ];
    for (m, ends, changes) in kinds {
        assert_eq!(m.changes_schema(), ends, "{m:?}");
        assert_eq!(m.changes(), changes, "{m:?}");
    }
    let m =
        Mutation::Upsert((1..=7).map(|i| CustomerUpdate { customer_id: i, attributes: vec![] }).collect());
    assert_eq!(m.summary(), "upsert of 7 customers [1, 2, 3, 4, 5, ...]");
    let m = Mutation::EditMembers { id: "vip".into(), customer_ids: vec![9], add: false };
    assert_eq!(m.summary(), "remove 1 members of segment 'vip' [9]");
}

/// One customer written by three upserts of one group: in, out, in again. Each upsert
/// gets its own event with its own sequence (hand-computed), however the group is cut.
#[test]
fn a_customer_written_thrice_in_a_group_gets_an_event_per_write() {
    let base = {
        let mut e = Engine::new(table(1_000), 10, 1_000);
        e.apply(1, &sql_segment("gold", "tier = 'GOLD'")).unwrap();
        e.take_events();
        e
    };
    let id =
        (1..=1000).find(|&i| base.segments.is_member(&base.data, "gold", i).unwrap() == Some(false)).unwrap();
    let other = (1..=1000)
        .find(|&i| {
            i != id && !base.segments.get("gold").unwrap().members.contains(base.data.row_of(i).unwrap())
        })
        .unwrap();
    let gold = || CellValue::Str("GOLD".into());
    let log = [
        (10, upsert(id, &[("tier", gold())])),
        (11, upsert(other, &[("tier", gold())])),
        (12, upsert(id, &[("tier", CellValue::Str("SILVER".into()))])),
        (13, upsert(id, &[("age", CellValue::Int(30)), ("tier", gold())])),
        (14, upsert(5_000_000, &[("tier", gold())])),
    ];
    let want: Stream = vec![
        (10, "gold".into(), id, true),
        (11, "gold".into(), other, true),
        (12, "gold".into(), id, false),
        (13, "gold".into(), id, true),
        (14, "gold".into(), 5_000_000, true),
    ];
    for cut in [vec![5], vec![1, 1, 1, 1, 1], vec![2, 3], vec![3, 2], vec![1, 4]] {
        let mut e = base.clone();
        let mut at = 0;
        for n in &cut {
            let items: Vec<(u64, &Mutation)> = log[at..at + n].iter().map(|(s, m)| (*s, m)).collect();
            for r in e.apply_group(&items) {
                r.unwrap();
            }
            at += n;
        }
        assert_eq!(stream(&e.take_events()), want, "groups of {cut:?}");
        assert_eq!(e.sequence, 14);
        assert_eq!(e.data.customer(id), {
            let mut one = base.clone();
            for (s, m) in &log {
                one.apply(*s, m).unwrap();
            }
            one.data.customer(id)
        });
    }
}

/// A random log over a small table: upserts of a hot set of customers (so a group often
/// writes one customer several times), new customers, deletes, static-segment edits, an
/// attribute added and then used, segments created and deleted along the way.
pub(crate) fn random_log(seed: u64, len: usize) -> Vec<(u64, Mutation)> {
    let mut r = SmallRng::seed_from_u64(seed);
    let mut log = vec![
        sql_segment("gold_de", "tier = 'GOLD' AND country = 'DE'"),
        sql_segment("older_or_mail", "age >= 60 OR email_opt_in"),
        Mutation::CreateSegment {
            id: "vip".into(),
            description: String::new(),
            members: vec![],
            definition: Definition::Static,
        },
        sql_segment("vip_rich", "in_segment('vip') AND loyalty_points > 1500"),
    ];
    let (mut streak, mut late, mut next_new) = (false, 0u32, 9_000_000u64);
    let mut late_live: Vec<String> = vec![];
    let hot = |r: &mut SmallRng| r.random_range(1..=60u64);
    while log.len() < len {
        let m = match r.random_range(0..100) {
            0..=54 => Mutation::Upsert(
                (0..r.random_range(1..=6))
                    .map(|_| {
                        let customer_id = if r.random_bool(0.1) {
                            next_new += 1;
                            next_new
                        } else if r.random_bool(0.3) && next_new > 9_000_000 {
                            r.random_range(9_000_001..=next_new)
                        } else {
                            hot(&mut r)
                        };
                        let mut attributes = vec![];
                        for _ in 0..r.random_range(1..=3) {
                            let (a, v) = match r.random_range(0..6) {
                                0 => (
                                    "tier",
                                    CellValue::Str(
                                        ["GOLD", "SILVER", "NEWTIER"][r.random_range(0..3)].into(),
                                    ),
                                ),
                                1 => ("country", CellValue::Str(["DE", "FR"][r.random_range(0..2)].into())),
                                2 => ("age", CellValue::Int(r.random_range(18..90))),
                                3 => ("loyalty_points", CellValue::Int(r.random_range(0..3000))),
                                4 => ("email_opt_in", CellValue::Bool(r.random())),
                                _ if streak => ("streak", CellValue::Int(r.random_range(0..6))),
                                _ => ("age", CellValue::Null),
                            };
                            attributes.push((a.to_string(), v));
                        }
                        CustomerUpdate { customer_id, attributes }
                    })
                    .collect(),
            ),
            55..=66 => Mutation::Delete((0..r.random_range(1..=3)).map(|_| hot(&mut r)).collect()),
            67..=86 => Mutation::EditMembers {
                id: "vip".into(),
                customer_ids: (0..r.random_range(1..=4)).map(|_| hot(&mut r)).collect(),
                add: r.random_bool(0.6),
            },
            87..=89 if !streak => {
                streak = true;
                Mutation::AddAttribute { name: "streak".into(), kind: NewAttribute::Int }
            }
            90..=94 => {
                late += 1;
                let id = format!("late{late}");
                late_live.push(id.clone());
                let text = if streak && r.random_bool(0.5) {
                    "streak >= 3"
                } else {
                    "age < 30 AND NOT email_opt_in"
                };
                sql_segment(&id, text)
            }
            95..=99 if !late_live.is_empty() => {
                Mutation::DeleteSegment { id: late_live.swap_remove(r.random_range(0..late_live.len())) }
            }
            _ => continue,
        };
        log.push(m);
    }
    log.into_iter().enumerate().map(|(i, m)| (100 + i as u64, m)).collect()
}

/// A saved segment as the oracle sees it: a static list, or a row predicate, optionally
/// ANDed with membership of a static segment (what `in_segment(...) AND ...` means).
struct OracleSegment {
    id: String,
    expr: Option<Expr>,
    within: Option<String>,
}

/// Applies the log one mutation at a time to a plain table and diffs each segment's
/// membership, computed row by row, before and after.
pub(crate) struct Oracle {
    data: Dataset,
    segments: Vec<OracleSegment>,
    members: HashMap<String, HashSet<u64>>,
    statics: HashMap<String, HashSet<u64>>,
}

impl Oracle {
    pub(crate) fn new(data: Dataset) -> Oracle {
        Oracle { data, segments: vec![], members: HashMap::new(), statics: HashMap::new() }
    }

    /// Live customer ids in row order.
    fn live(&self) -> Vec<u64> {
        self.data
            .export()
            .iter()
            .flat_map(|b| {
                b.column_by_name("customer_id").unwrap().as_primitive::<UInt64Type>().values().to_vec()
            })
            .collect()
    }

    fn evaluate(&self, s: &OracleSegment) -> HashSet<u64> {
        let Some(expr) = &s.expr else { return self.statics[&s.id].clone() };
        let mut out = HashSet::new();
        for b in self.data.export() {
            let ids = b.column_by_name("customer_id").unwrap().as_primitive::<UInt64Type>().clone();
            for row in 0..b.num_rows() {
                let id = ids.value(row);
                let within = s.within.as_ref().is_none_or(|w| self.statics[w].contains(&id));
                if within && crate::naive::eval(&b, row, expr).unwrap() == Some(true) {
                    out.insert(id);
                }
            }
        }
        out
    }

    pub(crate) fn step(&mut self, seq: u64, m: &Mutation, out: &mut Stream) {
        let before = self.live();
        match m {
            Mutation::Upsert(b) => {
                self.data.apply_upserts(b).unwrap();
            }
            Mutation::Delete(ids) => {
                let gone: HashSet<u64> =
                    self.data.delete_customers(ids).into_iter().map(|(id, _)| id).collect();
                for set in self.statics.values_mut() {
                    set.retain(|id| !gone.contains(id));
                }
            }
            Mutation::AddAttribute { name, kind } => self.data.add_attribute(name, *kind).unwrap(),
            Mutation::CreateSegment { id, definition, .. } => {
                let s = match definition {
                    Definition::Static => {
                        self.statics.insert(id.clone(), HashSet::new());
                        OracleSegment { id: id.clone(), expr: None, within: None }
                    }
                    Definition::Sql(text) => match text.strip_prefix("in_segment('vip') AND ") {
                        Some(rest) => OracleSegment {
                            id: id.clone(),
                            expr: Some(crate::query::sql::parse(rest, &Limits::default()).unwrap()),
                            within: Some("vip".into()),
                        },
                        None => OracleSegment {
                            id: id.clone(),
                            expr: Some(crate::query::sql::parse(text, &Limits::default()).unwrap()),
                            within: None,
                        },
                    },
                    Definition::Tree(_) => unreachable!("the random log writes SQL"),
                };
                self.members.insert(id.clone(), self.evaluate(&s));
                self.segments.push(s);
            }
            Mutation::DeleteSegment { id } => {
                self.segments.retain(|s| &s.id != id);
                self.members.remove(id);
            }
            Mutation::EditMembers { id, customer_ids, add } => {
                let set = self.statics.get_mut(id).unwrap();
                for c in customer_ids {
                    if self.data.row_of(*c).is_none() {
                        continue;
                    }
                    if *add {
                        set.insert(*c);
                    } else {
                        set.remove(c);
                    }
                }
            }
            // Decisions change no customer attribute and no saved segment: no events.
            Mutation::Decide(_) => {}
            // Its own oracle is in engine_gamify_tests.rs.
            Mutation::Gamify(_) => unreachable!("the random log writes no gamification"),
        }
        // Row order: rows are never reused, new customers get new rows at the end.
        let seen: HashSet<u64> = before.iter().copied().collect();
        let order: Vec<u64> =
            before.iter().copied().chain(self.live().into_iter().filter(|id| !seen.contains(id))).collect();
        for s in &self.segments {
            let now = self.evaluate(s);
            let was = &self.members[&s.id];
            for id in &order {
                if was.contains(id) != now.contains(id) {
                    out.push((seq, s.id.clone(), *id, now.contains(id)));
                }
            }
            self.members.insert(s.id.clone(), now);
        }
    }
}

/// The log applied in groups of the given sizes, each to a clone of the last version (as
/// the committer does); the concatenated events.
fn grouped(base: &Engine, log: &[(u64, Mutation)], sizes: &[usize]) -> (Stream, Engine) {
    let mut published = base.clone();
    let mut out = vec![];
    let mut at = 0;
    for &n in sizes {
        let mut next = published.clone();
        let items: Vec<(u64, &Mutation)> = log[at..at + n].iter().map(|(s, m)| (*s, m)).collect();
        for (r, (s, m)) in next.apply_group(&items).into_iter().zip(&items) {
            r.unwrap_or_else(|e| panic!("{s} {m:?}: {e}"));
        }
        out.extend(stream(&next.take_events()));
        published = next;
        at += n;
    }
    assert_eq!(at, log.len());
    (out, published)
}

fn random_sizes(r: &mut SmallRng, len: usize, max: usize) -> Vec<usize> {
    let mut sizes = vec![];
    let mut left = len;
    while left > 0 {
        let n = r.random_range(1..=max.min(left));
        sizes.push(n);
        left -= n;
    }
    sizes
}

#[test]
fn events_are_a_function_of_the_log_whatever_the_grouping() {
    for seed in 0..4u64 {
        let log = random_log(seed, 300);
        let base = Engine::new(table(3_000), 100, 1_000_000);
        let mut oracle = Oracle::new(base.data.clone());
        let mut want = vec![];
        for (seq, m) in &log {
            oracle.step(*seq, m, &mut want);
        }
        // Enough happened for the law to mean something.
        assert!(want.len() > 100, "seed {seed}: {} events", want.len());
        let mut r = SmallRng::seed_from_u64(seed);
        let groupings = [
            vec![1; log.len()],
            vec![log.len()],
            random_sizes(&mut r, log.len(), 8),
            random_sizes(&mut r, log.len(), 60),
        ];
        for sizes in groupings {
            let (got, engine) = grouped(&base, &log, &sizes);
            if got != want {
                let at = got.iter().zip(&want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
                panic!(
                    "seed {seed}, {} groups: streams differ at event {at}: got {:?}, want {:?} ({} vs {} events)",
                    sizes.len(),
                    got.get(at),
                    want.get(at),
                    got.len(),
                    want.len()
                );
            }
            for s in &oracle.segments {
                let rows = engine.segments.get(&s.id).unwrap().members.rows();
                let ids: HashSet<u64> = rows.into_iter().map(|r| engine.data.id_of(r)).collect();
                assert_eq!(ids, oracle.members[&s.id], "seed {seed}: members of {}", s.id);
            }
        }
    }
}

#[test]
fn event_log_keeps_the_newest_events_whatever_the_batch_sizes() {
    // The oracle: one event at a time into a bounded queue, remembering the sequence of
    // the last one dropped.
    let ev = |sequence: u64| SegmentEvent {
        segment_id: "s".into(),
        customer_id: sequence * 10,
        change: Change::Entered,
        sequence,
    };
    let mut r = SmallRng::seed_from_u64(9);
    for capacity in [1usize, 3, 7] {
        let mut log = EventLog::new(capacity);
        let mut kept: std::collections::VecDeque<SegmentEvent> = Default::default();
        let mut dropped = 0;
        let mut seq = 0;
        for _ in 0..60 {
            // Batches below, at and above the capacity; several events per sequence.
            let batch: Vec<SegmentEvent> = (0..r.random_range(0..=2 * capacity + 1))
                .map(|_| {
                    seq += r.random_range(0..2);
                    ev(seq)
                })
                .collect();
            for e in batch.clone() {
                if kept.len() == capacity {
                    dropped = kept.pop_front().unwrap().sequence;
                }
                kept.push_back(e);
            }
            log.push(batch);
            let all = HashSet::new();
            for from in 0..=seq + 1 {
                let want = if from <= dropped {
                    Err(Gone { asked: from, oldest: dropped + 1 })
                } else {
                    Ok(kept.iter().filter(|e| e.sequence >= from).cloned().collect::<Vec<_>>())
                };
                assert_eq!(log.since(from, &all, usize::MAX), want, "capacity {capacity}, from {from}");
            }
        }
    }
}
