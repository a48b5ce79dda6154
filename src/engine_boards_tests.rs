//! Leaderboards through the engine against an oracle: a random log (event batches over
//! weeks, some events logged days late, ticks, spends, deletes, opt-ins to a challenge,
//! a program change that renames one board, redefines another and redefines one
//! board's challenge) applied live; after every few records, every board, period (current and each
//! kept closed one) and scope (everyone, a saved segment, a `where` text) must equal the
//! oracle's sort of every customer's score by the documented tie-break, and `rank_of` /
//! `around` must agree with it. Then the same boards after a replay in random groups,
//! after a snapshot taken ahead of its table, and after restarts of a data dir.
//! Challenge-progress boards' scores come from the challenges worked out by hand
//! (`engine_boards_tests_challenges.rs`).

#[path = "engine_boards_tests_challenges.rs"]
mod hand;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration};
use chrono_tz::Tz;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::super::tests::table;
use super::*;
use crate::db::{Db, DbOptions};
use crate::engine::Mutation;
use crate::gamify::gen::{EventGen, GenConfig};
use crate::gamify::leaderboards::{LeaderboardSpec, MetricSpec, PeriodSpec};
use crate::gamify::{EventOutcome, Program, PropValue, Spend, DAY_MS};
use crate::index::Postings;
use crate::leaderboard::{PeriodSel, Ranked, Scope};
use crate::query::ast::Limits;
use crate::segments::Definition;
use crate::store::mutate::CellValue;

const ROWS: usize = 400;
/// 2026-01-10T12:00:00Z, a Saturday.
const T0: i64 = 1_768_046_400_000;
const WHERE: &str = "age >= 40";

fn board(id: &str, metric: MetricSpec, period: PeriodSpec, keep: Option<u32>) -> LeaderboardSpec {
    LeaderboardSpec { id: id.into(), name: format!("board {id}"), metric, period, keep_closed: keep }
}

fn program(second: bool) -> Arc<Program> {
    let mut spec = Program::demo().spec;
    spec.challenges = hand::defs(second);
    let sum = MetricSpec::EventSum { event: "purchase".into(), property: "amount_eur".into() };
    let progress = |c: &str| MetricSpec::ChallengeProgress { challenge: c.into() };
    spec.leaderboards = vec![
        board("pts_week", MetricSpec::Points, PeriodSpec::Week, Some(2)),
        board("purchases", MetricSpec::EventCount { event: "purchase".into() }, PeriodSpec::AllTime, None),
        board("eur_day", sum, PeriodSpec::Day, Some(3)),
        board("logins_month", MetricSpec::EventCount { event: "login".into() }, PeriodSpec::Month, Some(1)),
        board("reviews", progress("weekly_reviews"), PeriodSpec::AllTime, None),
        board("books_week", progress("books_month"), PeriodSpec::Week, Some(2)),
        board("spring_day", progress("spring"), PeriodSpec::Day, Some(3)),
    ];
    if second {
        // A new name keeps the scores; a new keep_closed starts the board over.
        spec.leaderboards[0].name = "Points this week".into();
        spec.leaderboards[2].keep_closed = Some(4);
    }
    Arc::new(Program::new(spec).unwrap())
}

/// A period by the calendar, computed apart from `leaderboard::period`: (year, day of
/// year), (ISO year, ISO week), (year, month) or (0, 0).
type PKey = (i32, u32);

fn key_of_date(d: chrono::NaiveDate, p: PeriodSpec) -> PKey {
    match p {
        PeriodSpec::Day => (d.year(), d.ordinal()),
        PeriodSpec::Week => (d.iso_week().year(), d.iso_week().week()),
        PeriodSpec::Month => (d.year(), d.month()),
        PeriodSpec::AllTime => (0, 0),
    }
}

fn local(tz: Tz, ms: i64) -> chrono::NaiveDate {
    DateTime::from_timestamp_millis(ms).unwrap().with_timezone(&tz).date_naive()
}

/// The period `back` periods before the one holding `ms`.
fn key_back(tz: Tz, ms: i64, p: PeriodSpec, back: u32) -> PKey {
    let d = local(tz, ms);
    match p {
        PeriodSpec::Day => key_of_date(d - Duration::days(back as i64), p),
        PeriodSpec::Week => key_of_date(d - Duration::days(7 * back as i64), p),
        PeriodSpec::Month => {
            let m = d.year() * 12 + d.month0() as i32 - back as i32;
            (m.div_euclid(12), m.rem_euclid(12) as u32 + 1)
        }
        PeriodSpec::AllTime => (0, 0),
    }
}

/// (score, reached_at_ms, tie sequence) per customer.
type Scores = BTreeMap<u64, (i64, i64, u64)>;

#[derive(Clone, Default)]
struct Oracle {
    boards: Vec<(LeaderboardSpec, BTreeMap<PKey, Scores>)>,
    /// The latest logged instant of an applied gamification change.
    now: i64,
    /// The program's challenges, and their progress by hand.
    challenges: Vec<crate::gamify::achieve::ChallengeDef>,
    hand: hand::Hand,
}

impl Oracle {
    /// The demo program's zone.
    fn tz() -> Tz {
        chrono_tz::Europe::Berlin
    }

    fn program(&mut self, p: &Program, at: i64) {
        let old = std::mem::take(&mut self.boards);
        let counting = |defs: &[_], m: &MetricSpec| match m {
            MetricSpec::ChallengeProgress { challenge } => hand::counting(defs, challenge),
            _ => None,
        };
        for spec in &p.spec.leaderboards {
            let same = old.iter().find(|(o, _)| {
                o.id == spec.id
                    && o.metric == spec.metric
                    && o.period == spec.period
                    && o.keep() == spec.keep()
                    && counting(&self.challenges, &o.metric) == counting(&p.spec.challenges, &spec.metric)
            });
            self.boards.push((spec.clone(), same.map(|s| s.1.clone()).unwrap_or_default()));
        }
        self.challenges = p.spec.challenges.clone();
        self.hand.wide_spring =
            p.spec.challenges.iter().any(|c| c.filter.as_deref().is_some_and(|w| w.contains("'web'")));
        self.now = self.now.max(at);
    }

    fn events(&mut self, seq: u64, at: i64, events: &[crate::gamify::Event], outcomes: &[EventOutcome]) {
        self.now = self.now.max(at);
        for (i, (e, o)) in events.iter().zip(outcomes).enumerate() {
            let EventOutcome::Applied { credited, reversed, .. } = o else { continue };
            let steps = self.hand.steps(e);
            for (spec, periods) in &mut self.boards {
                let delta = match &spec.metric {
                    MetricSpec::ChallengeProgress { challenge } => {
                        match steps.iter().find(|(c, _)| c == challenge) {
                            Some(&(_, amount)) => amount,
                            None => continue,
                        }
                    }
                    MetricSpec::Points if credited != reversed => credited - reversed,
                    MetricSpec::Points => continue,
                    MetricSpec::EventCount { event } if *event == e.kind => 1,
                    MetricSpec::EventSum { event, property } if *event == e.kind => {
                        match e.properties.get(property) {
                            Some(PropValue::Float(x)) => (x * 100.0).round() as i64,
                            Some(PropValue::Int(x)) => x * 100,
                            _ => 0,
                        }
                    }
                    MetricSpec::EventCount { .. } | MetricSpec::EventSum { .. } => continue,
                };
                let scores = periods.entry(key_back(Self::tz(), self.now, spec.period, 0)).or_default();
                let tie = seq * 16384 + i as u64;
                match scores.get_mut(&e.customer_id) {
                    Some(_) if delta == 0 => {}
                    Some(s) => *s = (s.0 + delta, at, tie),
                    None => {
                        scores.insert(e.customer_id, (delta, at, tie));
                    }
                }
            }
        }
    }

    fn delete(&mut self, ids: &[u64]) {
        for id in ids {
            self.hand.picked.remove(id);
        }
        for (_, periods) in &mut self.boards {
            for scores in periods.values_mut() {
                for id in ids {
                    scores.remove(id);
                }
            }
        }
    }

    /// (customer, score, reached_at) in rank order, within `scope` (None: everyone).
    fn order(&self, b: usize, back: u32, scope: Option<&BTreeSet<u64>>) -> Vec<(u64, i64, i64)> {
        let (spec, periods) = &self.boards[b];
        let k = key_back(Self::tz(), self.now, spec.period, back);
        let mut v: Vec<(u64, (i64, i64, u64))> = periods
            .get(&k)
            .into_iter()
            .flatten()
            .filter(|(c, _)| scope.is_none_or(|s| s.contains(*c)))
            .map(|(c, s)| (*c, *s))
            .collect();
        v.sort_by(|a, b| {
            b.1 .0.cmp(&a.1 .0).then(a.1 .1.cmp(&b.1 .1)).then(a.1 .2.cmp(&b.1 .2)).then(a.0.cmp(&b.0))
        });
        v.into_iter().map(|(c, s)| (c, s.0, s.1)).collect()
    }
}

/// Every read of every board equals the oracle.
fn check(e: &Engine, o: &Oracle, r: &mut SmallRng) {
    let data = e.data();
    let picked: BTreeSet<u64> = {
        let seg = e.segments().get("picked").unwrap();
        seg.members.rows().into_iter().map(|row| data.id_of(row)).collect()
    };
    let age = data.column_index("age").unwrap();
    let older: BTreeSet<u64> = (0..=ROWS as u64 + 60)
        .filter(|&id| {
            data.row_of(id).is_some_and(|row| matches!(data.cell(age, row), CellValue::Int(a) if a >= 40))
        })
        .collect();
    let plan = crate::query::compile_sql(data, WHERE, &Limits::default()).unwrap();
    let where_rows = crate::query::eval::materialize(data, &plan);
    let saved_rows = Postings::clone(&e.segments().get("picked").unwrap().members);
    let boards = e.boards();
    assert_eq!(boards.all().len(), o.boards.len());
    for (bi, (spec, _)) in o.boards.iter().enumerate() {
        let live = boards.get(&spec.id).unwrap();
        assert_eq!(live.spec, *spec);
        let periods = if spec.period == PeriodSpec::AllTime { 0 } else { spec.keep() };
        for back in 0..=periods {
            let sel = if back == 0 { PeriodSel::Current } else { PeriodSel::Previous(back) };
            let (pb, _) = live.board.board_at(sel, o.now).unwrap();
            let scopes: [(Scope<'_>, Option<&BTreeSet<u64>>); 3] = [
                (Scope::Everyone, None),
                (Scope::Rows(&saved_rows), Some(&picked)),
                (Scope::Rows(&where_rows), Some(&older)),
            ];
            for (scope, set) in scopes {
                let want = o.order(bi, back, set);
                let what = format!("board {} back {back} scope {:?}", spec.id, set.map(|s| s.len()));
                let got: Vec<(u64, i64, i64)> = pb
                    .top(usize::MAX, 0, scope)
                    .iter()
                    .map(|k| (k.customer_id, k.score, k.reached_at_ms))
                    .collect();
                assert_eq!(got, want, "{what}");
                assert_eq!(pb.count(scope), want.len() as u64, "{what}");
                let page: Vec<u64> = pb.top(3, 2, scope).iter().map(|k| k.rank).collect();
                assert_eq!(page, (3..=5).take(want.len().saturating_sub(2).min(3)).collect::<Vec<u64>>());
                for _ in 0..4 {
                    if want.is_empty() {
                        break;
                    }
                    let i = r.random_range(0..want.len());
                    let row = data.row_of(want[i].0).unwrap();
                    assert_eq!(pb.rank_of(row, scope), Some(i as u64 + 1), "{what} customer {}", want[i].0);
                    let around: Vec<(u64, u64)> =
                        pb.around(row, 2, scope).iter().map(|k: &Ranked| (k.rank, k.customer_id)).collect();
                    let lo = i.saturating_sub(2);
                    let hi = (i + 3).min(want.len());
                    let expect: Vec<(u64, u64)> = (lo..hi).map(|j| (j as u64 + 1, want[j].0)).collect();
                    assert_eq!(around, expect, "{what} around {}", want[i].0);
                }
            }
        }
    }
}

fn events(batch: Vec<crate::gamify::Event>, logged_at_ms: i64) -> Mutation {
    Mutation::Gamify(Change::RecordEvents { events: batch, logged_at_ms })
}

/// A random log, applied live as it is built (refused records are left out, as the
/// committer leaves them out), with the oracle following it and checked along the way.
fn random_log(seed: u64) -> (Vec<(u64, Mutation)>, Engine, Oracle) {
    let mut r = SmallRng::seed_from_u64(seed);
    let mut live = Engine::new(table(ROWS), 10, 1_000_000);
    let mut oracle = Oracle::default();
    let mut log: Vec<(u64, Mutation)> = vec![];
    fn push(live: &mut Engine, oracle: &mut Oracle, m: Mutation, log: &mut Vec<(u64, Mutation)>) {
        if live.check(&m).is_err() {
            return;
        }
        let seq = log.len() as u64 + 1;
        let out = live.apply(seq, &m).unwrap();
        match (&m, &out) {
            (_, Outcome::Gamify(ChangeOutcome::Rejected(_))) => {}
            (Mutation::Gamify(Change::PutProgram { program, effective_ms }), _) => {
                oracle.program(program, *effective_ms)
            }
            (
                Mutation::Gamify(Change::RecordEvents { events, logged_at_ms }),
                Outcome::Gamify(ChangeOutcome::Events(o)),
            ) => oracle.events(seq, *logged_at_ms, events, o),
            (Mutation::Gamify(Change::Tick { now_ms: at }), _)
            | (Mutation::Gamify(Change::SpendPoints { logged_at_ms: at, .. }), _) => {
                oracle.now = oracle.now.max(*at)
            }
            (Mutation::Gamify(Change::JoinChallenge { customer_id, challenge, logged_at_ms }), _) => {
                assert_eq!(challenge, "books_month");
                oracle.hand.joined.insert(*customer_id);
                oracle.now = oracle.now.max(*logged_at_ms)
            }
            (Mutation::Delete(ids), _) => oracle.delete(ids),
            (Mutation::CreateSegment { .. }, _) => {}
            (other, o) => panic!("the test's log has no {} answered {o:?}", other.summary()),
        }
        log.push((seq, m));
    }
    push(
        &mut live,
        &mut oracle,
        Mutation::Gamify(Change::PutProgram { program: program(false), effective_ms: T0 }),
        &mut log,
    );
    let members: Vec<u64> = (1..=ROWS as u64).filter(|_| r.random_bool(0.3)).collect();
    oracle.hand.picked = members.iter().copied().collect();
    let seg = Mutation::CreateSegment {
        id: "picked".into(),
        description: String::new(),
        definition: Definition::Static,
        members,
    };
    push(&mut live, &mut oracle, seg, &mut log);
    let join = |c: u64, at: i64| {
        Mutation::Gamify(Change::JoinChallenge {
            customer_id: c,
            challenge: "books_month".into(),
            logged_at_ms: at,
        })
    };
    for c in (1..=ROWS as u64).filter(|_| r.random_bool(0.3)) {
        push(&mut live, &mut oracle, join(c, T0), &mut log);
    }
    // 45 days: days, weeks and a month roll over many times.
    let cfg = GenConfig { customers: ROWS as u64 + 50, events: 2_500, seed, start_ms: T0, span_days: 45 };
    let all: Vec<crate::gamify::Event> = EventGen::new(cfg).collect();
    let (mut i, mut n, mut clock) = (0, 0, T0);
    while i < all.len() {
        let k = r.random_range(1..40).min(all.len() - i);
        let mut batch = all[i..i + k].to_vec();
        i += k;
        // Now and then, a copy of a recent review or books purchase logged days after it
        // occurred: often in an earlier week or month than the customer's progress (which
        // the original may have moved) holds, so late for it.
        let challenged = |e: &&crate::gamify::Event| {
            e.kind == "review" || e.properties.get("category") == Some(&PropValue::Str("books".into()))
        };
        let recent: Vec<&crate::gamify::Event> =
            all[i.saturating_sub(200)..i].iter().filter(challenged).collect();
        if !recent.is_empty() && r.random_bool(0.5) {
            for _ in 0..r.random_range(1..5) {
                let mut e = recent[r.random_range(0..recent.len())].clone();
                e.event_id = format!("late-{n}-{}", batch.len());
                let back = e.occurred_at_ms - r.random_range(DAY_MS..5 * DAY_MS);
                e.occurred_at_ms = back.max(clock - 6 * DAY_MS);
                batch.push(e);
            }
        }
        // Logged a little after the latest event; events of one batch share the instant,
        // so ties on score are frequent and the sequence must break them.
        clock = clock
            .max(batch.iter().map(|e| e.occurred_at_ms).max().unwrap_or(T0) + r.random_range(0..2) * 1_000);
        push(&mut live, &mut oracle, events(batch, clock), &mut log);
        n += 1;
        let c = r.random_range(1..=ROWS as u64);
        match r.random_range(0..12) {
            0 => {
                let s =
                    Spend { customer_id: c, wallet: "points".into(), request_id: format!("s{n}"), points: 5 };
                push(
                    &mut live,
                    &mut oracle,
                    Mutation::Gamify(Change::SpendPoints { spend: s, logged_at_ms: clock }),
                    &mut log,
                )
            }
            1 | 2 => {
                // A quiet spell: a tick a day or two later rolls the day board over.
                clock += r.random_range(1..DAY_MS / 2);
                push(&mut live, &mut oracle, Mutation::Gamify(Change::Tick { now_ms: clock }), &mut log)
            }
            3 => push(&mut live, &mut oracle, Mutation::Delete(vec![c, c + 1]), &mut log),
            4 | 5 => push(&mut live, &mut oracle, join(c, clock), &mut log),
            _ => {}
        }
        if n == 60 {
            let m = Change::PutProgram { program: program(true), effective_ms: clock };
            push(&mut live, &mut oracle, Mutation::Gamify(m), &mut log);
        }
        if n % 25 == 0 {
            check(&live, &oracle, &mut r);
        }
    }
    check(&live, &oracle, &mut r);
    (log, live, oracle)
}

fn same_boards(a: &Engine, b: &Engine) {
    assert_eq!(a.boards_snapshot(), b.boards_snapshot());
}

#[test]
fn boards_equal_the_oracle_for_every_scope_and_period() {
    for seed in [1, 2] {
        let (log, live, oracle) = random_log(seed);
        // The test saw boards of substance: several periods, big boards, ties broken.
        let boards = live.boards();
        let all_time = boards.get("purchases").unwrap();
        assert!(all_time.board.board_at(PeriodSel::Current, oracle.now).unwrap().0.len() > 200);
        let days = boards.get("eur_day").unwrap();
        for back in 1..=4 {
            assert!(days.board.board_at(PeriodSel::Previous(back), oracle.now).is_ok());
        }
        // The program change happened (the day board was redefined), customers were deleted.
        assert_eq!(days.spec.keep(), 4);
        // Challenge boards of substance, with events the challenges did not take: late
        // ones, and logins outside spring's window.
        let reviews = boards.get("reviews").unwrap();
        assert!(reviews.board.board_at(PeriodSel::Current, oracle.now).unwrap().0.len() > 20);
        assert_eq!(reviews.value_of(3), 3.0);
        let books = boards.get("books_week").unwrap();
        assert_eq!(books.value_of(1250), 12.5);
        let weeks = (0..=2).map(|b| oracle.order(5, b, None).len()).sum::<usize>();
        assert!(weeks > 5, "{weeks}");
        for c in ["weekly_reviews", "books_month", "spring"] {
            assert!(oracle.hand.taken.get(c).is_some_and(|&n| n > 10), "{c}: {:?}", oracle.hand.taken);
        }
        assert!(
            oracle.hand.late > 0 && oracle.hand.outside > 0,
            "{} {}",
            oracle.hand.late,
            oracle.hand.outside
        );
        assert!(log.iter().any(|(_, m)| matches!(m, Mutation::Delete(_))));
    }
}

#[test]
fn replay_in_any_grouping_and_a_snapshot_ahead_of_its_table_give_the_same_boards() {
    let (log, live, _) = random_log(3);
    let mut r = SmallRng::seed_from_u64(9);
    // The log replayed in random groups (the committer's and replay's path).
    let mut replayed = Engine::new(table(ROWS), 10, 1_000_000);
    let mut i = 0;
    let (mut half, mut ahead) = (None, None);
    while i < log.len() {
        let k = r.random_range(1..20).min(log.len() - i);
        let items: Vec<(u64, &Mutation)> = log[i..i + k].iter().map(|(s, m)| (*s, m)).collect();
        for o in replayed.apply_group(&items) {
            o.unwrap();
        }
        // A clone applying a group again (a retry, a failed group located record by
        // record) leaves the shared boards alone.
        let mut again = Engine::clone(&replayed);
        for (s, m) in &items {
            let _ = again.apply(*s, m);
        }
        i += k;
        if half.is_none() && i > log.len() / 2 {
            half = Some(i);
        }
        if ahead.is_none() && i > log.len() * 3 / 4 {
            ahead = Some(replayed.boards_snapshot());
        }
    }
    same_boards(&live, &replayed);
    // A snapshot's boards read when the committer had gone further than its table (at
    // three quarters of the log, the table at one half): the records between are
    // skipped by the boards, the later ones count.
    let half = half.unwrap();
    let mut restarted = Engine::new(table(ROWS), 10, 1_000_000);
    for (s, m) in &log[..half] {
        restarted.apply(*s, m).unwrap();
    }
    restarted.restore_boards(&ahead.unwrap()).unwrap();
    assert!(restarted.boards().applied_through() > log[half - 1].0);
    for (s, m) in &log[half..] {
        restarted.apply(*s, m).unwrap();
    }
    same_boards(&live, &restarted);
    // The section decodes to what it was made from.
    let snap = live.boards_snapshot();
    let mut e = Engine::new(table(ROWS), 10, 10);
    e.restore_boards(&snap).unwrap();
    assert_eq!(e.boards_snapshot(), snap);
    assert!(matches!(
        e.restore_boards(&snap[..snap.len() / 2]),
        Err(crate::leaderboard::BoardError::Record { .. })
    ));
}

#[test]
fn restart_from_the_log_and_from_a_snapshot_gives_the_same_boards() {
    let (log, live, _) = random_log(4);
    let dir = tempfile::tempdir().unwrap();
    let opts = DbOptions { data_dir: dir.path().to_path_buf(), ..DbOptions::default() };
    let open = || Db::open(opts.clone(), || Ok(table(ROWS)), |_| {}).unwrap();
    let db = open();
    for (seq, m) in log {
        assert_eq!(db.commit(m).unwrap().sequence, seq);
    }
    same_boards(&live, &db.read());
    drop(db);
    // From the log (the only snapshot is the import's).
    let db = open();
    same_boards(&live, &db.read());
    db.close().unwrap();
    drop(db);
    // From the snapshot written at close (field 40), nothing to replay.
    let db = open();
    same_boards(&live, &db.read());
    assert_eq!(db.read().boards().applied_through(), db.read().sequence());
}

#[test]
fn a_deleted_customer_leaves_every_board() {
    let mut e = Engine::new(table(ROWS), 10, 1000);
    let put = Mutation::Gamify(Change::PutProgram { program: program(false), effective_ms: T0 });
    e.apply(1, &put).unwrap();
    let buy = |id: &str, c: u64| crate::gamify::Event {
        event_id: id.into(),
        customer_id: c,
        kind: "purchase".into(),
        occurred_at_ms: T0,
        properties: BTreeMap::from([("amount_eur".to_string(), PropValue::Float(10.0))]),
    };
    e.apply(2, &events(vec![buy("a", 5), buy("b", 6), buy("c", 5)], T0)).unwrap();
    let top = |e: &Engine| -> Vec<(u64, i64)> {
        let b = e.boards();
        let (pb, _) = b.get("purchases").unwrap().board.board_at(PeriodSel::Current, T0).unwrap();
        pb.top(10, 0, Scope::Everyone).iter().map(|k| (k.customer_id, k.score)).collect()
    };
    assert_eq!(top(&e), [(5, 2), (6, 1)]);
    e.apply(3, &Mutation::Delete(vec![5])).unwrap();
    assert_eq!(top(&e), [(6, 1)]);
    let err = e.boards().get("nope").unwrap_err().to_string();
    assert!(err.contains("unknown leaderboard 'nope'") && err.contains("pts_week, purchases"), "{err}");
}

#[test]
fn a_challenge_boards_counting_rules_live_in_the_snapshot() {
    use crate::persist::leaderboard::LiveBoardsRecord;
    use prost::Message;
    let (_, live, oracle) = random_log(5);
    let snap = live.boards_snapshot();
    let rec = LiveBoardsRecord::decode(snap.as_slice()).unwrap();
    // Field 3 only on the challenge boards, holding their challenge's counting rules.
    for b in &rec.boards {
        let spec: LeaderboardSpec = serde_json::from_str(&b.spec_json).unwrap();
        let counts = live.boards().get(&spec.id).unwrap().counts.clone();
        let want = spec.counts(&program(true).spec);
        assert_eq!(counts, want, "{}", spec.id);
        assert_eq!(b.counts_json.is_some(), matches!(spec.metric, MetricSpec::ChallengeProgress { .. }));
        if let Some(j) = &b.counts_json {
            assert_eq!(
                serde_json::from_str::<crate::gamify::leaderboards::ChallengeCounts>(j).unwrap(),
                want.unwrap()
            );
        }
    }
    // Restored, the boards are what they were, and a program change after the restart
    // judges "the same ranking" by the counting rules the snapshot kept: weekly_reviews
    // unchanged keeps its board, books_month with another window starts over.
    let mut e = Engine::new(table(ROWS), 10, 1_000_000);
    e.restore_boards(&snap).unwrap();
    assert_eq!(e.boards_snapshot(), snap);
    let before = |e: &Engine, id: &str| {
        let b = e.boards();
        b.get(id).unwrap().board.board_at(PeriodSel::Current, oracle.now).unwrap().0.len()
    };
    let reviews = before(&e, "reviews");
    assert!(reviews > 0);
    let mut p = program(true).spec.clone();
    p.challenges[1].window = crate::gamify::achieve::WindowDef::Weekly;
    let next = Arc::new(Program::new(p).unwrap());
    let seq = e.boards().applied_through() + 1;
    e.boards.write().on_program(seq, &next, oracle.now);
    assert_eq!(before(&e, "reviews"), reviews);
    assert_eq!(before(&e, "books_week"), 0);
    // A challenge board without its rules is a corrupt record, named; a board of another
    // metric with rules too.
    for (metric, strip) in [(true, true), (false, false)] {
        let mut bad = rec.clone();
        let i = bad.boards.iter().position(|b| b.spec_json.contains("challenge_progress") == metric).unwrap();
        let rules = rec.boards.iter().find_map(|b| b.counts_json.clone());
        bad.boards[i].counts_json = if strip { None } else { rules };
        let err = e.restore_boards(&bad.encode_to_vec()).unwrap_err().to_string();
        assert!(err.contains("counts_json"), "{err}");
    }
}
