//! Badges, challenges and streaks through the engine (the demo program's): their columns
//! written in the same apply as the event, a saved segment over them entered and left in
//! that commit, achievements published with their version, and the logged tick that ends
//! a streak. Expectations by hand: T0 is Saturday 10 January 2026, 13:00 in Berlin (UTC+1).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use super::super::tests::table;
use super::*;
use crate::engine::Mutation;
use crate::gamify::{Event, DAY_MS};
use crate::segments::{Change as SegChange, Definition};

/// 2026-01-10T12:00:00Z.
const T0: i64 = 1_768_046_400_000;

fn login(id: &str, customer_id: u64, at: i64) -> Mutation {
    let e = Event {
        event_id: id.into(),
        customer_id,
        kind: "login".into(),
        occurred_at_ms: at,
        properties: BTreeMap::new(),
    };
    Mutation::Gamify(Change::RecordEvents { events: vec![e], logged_at_ms: at + 1_000 })
}

/// Checks then applies, as the committer does; the change must not be refused.
fn commit(e: &mut Engine, seq: u64, m: &Mutation) {
    e.check(m).unwrap();
    match e.apply(seq, m) {
        Ok(Outcome::Gamify(ChangeOutcome::Rejected(err))) => panic!("{err}"),
        Ok(_) => {}
        Err(err) => panic!("{err}"),
    }
}

fn cell(e: &Engine, id: u64, attr: &str) -> CellValue {
    let row = e.data().row_of(id).unwrap();
    e.data().cell(e.data().column_index(attr).unwrap(), row)
}

#[test]
fn a_week_of_logins_is_a_badge_a_column_and_a_segment_in_the_same_commit() {
    let mut e = Engine::new(table(500), 10, 1000);
    let program = Arc::new(Program::demo());
    commit(&mut e, 1, &Mutation::Gamify(Change::PutProgram { program, effective_ms: T0 }));
    let seg = Mutation::CreateSegment {
        id: "streakers".into(),
        description: String::new(),
        definition: Definition::Sql(
            "list_contains(badges, 'streak_7') AND streak_daily_login_current >= 7".into(),
        ),
        members: vec![],
    };
    commit(&mut e, 2, &seg);
    let _ = e.take_events();
    let c = 7;
    let day = |k: i64| T0 + k * DAY_MS;
    // Seven days in a row (10 to 16 January): sequences 3 to 9.
    for k in 0..7 {
        commit(&mut e, 3 + k as u64, &login(&format!("l{k}"), c, day(k)));
        assert_eq!(cell(&e, c, "streak_daily_login_current"), CellValue::Int(k + 1), "day {k}");
    }
    assert_eq!(cell(&e, c, "badges"), CellValue::List(vec!["streak_7".into()]));
    assert_eq!(cell(&e, c, "badge_count"), CellValue::Int(1));
    assert_eq!(cell(&e, c, "streak_daily_login_longest"), CellValue::Int(7));
    // 5 points a day for the login, and the badge's 70, available at once.
    assert_eq!(cell(&e, c, "points_balance"), CellValue::Int(7 * 5 + 70));
    let seg = e.take_events();
    let moves = |s: &[crate::segments::SegmentEvent]| -> Vec<(u64, SegChange, u64)> {
        s.iter().map(|s| (s.customer_id, s.change, s.sequence)).collect()
    };
    assert_eq!(moves(&seg), [(c, SegChange::Entered, 9)]);
    e.publish_events(seg);
    let ach: Vec<(u64, Achievement)> = e
        .achievements_since(3, &HashSet::new(), 100)
        .unwrap()
        .into_iter()
        .map(|a| (a.sequence, a.achievement))
        .filter(|(_, a)| !matches!(a, Achievement::LevelUp { .. } | Achievement::TierChanged { .. }))
        .collect();
    let milestone = |m, at| Achievement::StreakMilestone {
        customer_id: c,
        streak: "daily_login".into(),
        milestone: m,
        at_ms: at,
    };
    assert_eq!(
        ach,
        vec![
            (5, milestone(3, day(2))),
            (9, milestone(7, day(6))),
            (
                9,
                Achievement::BadgeAwarded {
                    customer_id: c,
                    badge: "streak_7".into(),
                    count: 1,
                    at_ms: day(6)
                }
            ),
        ]
    );
    // Not extended after the 16th: a freeze (one per 7 days) would forgive the 17th, so
    // the streak reads 0 from the 19th 00:00 in Berlin; the tick then writes the column
    // and the customer leaves the segment in that commit.
    let end = 1_768_777_200_000; // 2026-01-18T23:00:00Z
    assert_eq!(e.gamification().unwrap().state.next_due_ms(), Some(end));
    commit(&mut e, 10, &Mutation::Gamify(Change::Tick { now_ms: end - 1 }));
    assert_eq!(cell(&e, c, "streak_daily_login_current"), CellValue::Int(7));
    commit(&mut e, 11, &Mutation::Gamify(Change::Tick { now_ms: end }));
    assert_eq!(cell(&e, c, "streak_daily_login_current"), CellValue::Int(0));
    assert_eq!(cell(&e, c, "streak_daily_login_longest"), CellValue::Int(7));
    assert_eq!(moves(&e.take_events()), [(c, SegChange::Left, 11)]);
}

#[test]
fn a_badge_criterion_must_name_attributes() {
    let e = Engine::new(table(50), 10, 1000);
    let mut spec = Program::demo().spec;
    spec.badges[0].criterion = Some("purchasez >= 1 AND country = 'DE'".into());
    let program = Arc::new(Program::new(spec).unwrap());
    let err = e.check(&Mutation::Gamify(Change::PutProgram { program, effective_ms: T0 })).unwrap_err();
    assert!(err.to_string().contains("'purchasez' is no customer attribute"), "{err}");
}

/// The replay law for these sections on a dense log (30 customers over 60 days: logins,
/// rated reviews, book purchases, joins to `books_month`, daily ticks): applied live, it
/// equals the same log encoded, decoded and replayed in random groupings (state, columns,
/// achievements), and the snapshot section gives the same state back.
#[test]
fn replay_and_snapshots_give_the_same_badges_challenges_and_streaks() {
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    use crate::gamify::PropValue;
    use crate::persist::record;

    let mut r = SmallRng::seed_from_u64(7);
    let mut live = Engine::new(table(100), 10, 1_000_000);
    let mut log: Vec<(u64, Mutation)> = vec![];
    let push = |live: &mut Engine, m: Mutation, log: &mut Vec<(u64, Mutation)>| {
        if live.check(&m).is_ok() {
            let seq = log.len() as u64 + 1;
            live.apply(seq, &m).unwrap();
            log.push((seq, m));
        }
    };
    let program = Arc::new(Program::demo());
    push(&mut live, Mutation::Gamify(Change::PutProgram { program, effective_ms: T0 }), &mut log);
    let mut n = 0;
    for day in 0..60 {
        let at0 = T0 - 12 * 3_600_000 + day * DAY_MS;
        let mut batch = vec![];
        for c in 1..=30u64 {
            let mut kinds: Vec<(&str, Vec<(&str, PropValue)>)> = vec![];
            if r.random_bool(0.7) {
                kinds.push(("login", vec![]));
            }
            if r.random_bool(0.2) {
                kinds.push(("review", vec![("rating", PropValue::Int(4))]));
            }
            if r.random_bool(0.15) {
                let eur = PropValue::Float(r.random_range(5..80) as f64);
                kinds.push((
                    "purchase",
                    vec![("amount_eur", eur), ("category", PropValue::Str("books".into()))],
                ));
            }
            for (kind, props) in kinds {
                n += 1;
                batch.push(Event {
                    event_id: format!("e{n}"),
                    customer_id: c,
                    kind: kind.into(),
                    occurred_at_ms: at0 + r.random_range(0..12 * 3_600_000),
                    properties: props.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
                });
            }
        }
        let logged = at0 + 12 * 3_600_000;
        push(
            &mut live,
            Mutation::Gamify(Change::RecordEvents { events: batch, logged_at_ms: logged }),
            &mut log,
        );
        let c = r.random_range(1..=30u64);
        let join =
            Change::JoinChallenge { customer_id: c, challenge: "books_month".into(), logged_at_ms: logged };
        push(&mut live, Mutation::Gamify(join), &mut log);
        push(&mut live, Mutation::Gamify(Change::Tick { now_ms: logged + 3_600_000 }), &mut log);
    }
    let live_events = live.take_events();
    live.publish_events(vec![]);
    let live_ach = live.achievements_since(1, &HashSet::new(), usize::MAX).unwrap();
    let kinds = |f: &dyn Fn(&Achievement) -> bool| live_ach.iter().filter(|a| f(&a.achievement)).count();
    let streak_7 = kinds(&|a| matches!(a, Achievement::BadgeAwarded { badge, .. } if badge == "streak_7"));
    let critic = kinds(
        &|a| matches!(a, Achievement::ChallengeCompleted { challenge, .. } if challenge == "weekly_reviews"),
    );
    let books = kinds(
        &|a| matches!(a, Achievement::ChallengeCompleted { challenge, .. } if challenge == "books_month"),
    );
    let milestones = kinds(&|a| matches!(a, Achievement::StreakMilestone { .. }));
    assert!(
        streak_7 > 0 && critic > 0 && books > 0 && milestones > 0,
        "{streak_7} {critic} {books} {milestones}"
    );

    let mut replayed = Engine::new(table(100), 10, 1_000_000);
    let mut events = vec![];
    let mut i = 0;
    while i < log.len() {
        let k = r.random_range(1..8).min(log.len() - i);
        let decoded: Vec<(u64, Mutation)> = log[i..i + k]
            .iter()
            .map(|(s, m)| {
                let mut buf = vec![];
                record::encode_mutation(m, &mut buf);
                (*s, record::decode_mutation(record::FORMAT, &buf).unwrap())
            })
            .collect();
        assert_eq!(decoded, log[i..i + k]);
        let items: Vec<(u64, &Mutation)> = decoded.iter().map(|(s, m)| (*s, m)).collect();
        for o in replayed.apply_group(&items) {
            o.unwrap();
        }
        let ev = replayed.take_events();
        events.extend(ev.iter().cloned());
        replayed.publish_events(ev);
        i += k;
    }
    let (a, b) = (live.gamification().unwrap(), replayed.gamification().unwrap());
    assert!(a.state == b.state, "gamification states differ");
    let rows = |e: &Engine| (0..=100u64).map(|id| e.data().customer(id)).collect::<Vec<_>>();
    assert_eq!(rows(&live), rows(&replayed));
    assert_eq!(events, live_events);
    assert_eq!(replayed.achievements_since(1, &HashSet::new(), usize::MAX).unwrap(), live_ach);

    let snap = live.gamify_snapshot();
    let mut restored = Engine::new(table(100), 10, 10);
    restored.restore_gamify(&snap).unwrap();
    assert!(restored.gamification().unwrap().state == a.state);
    assert_eq!(restored.gamify_snapshot(), snap);
}
