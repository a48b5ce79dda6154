//! Tests of the engine's gamification part: a hand-computed ledger through the engine
//! (columns, segments and achievements in the same apply), check-before-log, and the
//! law that the log alone gives the state: a random log applied live equals the same
//! log encoded, decoded and replayed in random groupings, and the state after a restart
//! from the log and from a snapshot.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::super::tests::table;
use super::*;
use crate::db::{Db, DbOptions};
use crate::engine::Mutation;
use crate::gamify::gen::{EventGen, GenConfig};
use crate::gamify::{Event, EventOutcome, Grant, LedgerOutcome, PropValue, Spend, DAY_MS};
use crate::persist::record;
use crate::segments::{Change as SegChange, Definition};

const ROWS: usize = 500;
/// 2026-01-10T12:00:00Z.
const T0: i64 = 1_768_046_400_000;

fn put_demo(at: i64) -> Mutation {
    Mutation::Gamify(Change::PutProgram { program: Arc::new(Program::demo()), effective_ms: at })
}

fn purchase(id: &str, customer: u64, eur: f64, at: i64) -> Event {
    Event {
        event_id: id.into(),
        customer_id: customer,
        kind: "purchase".into(),
        occurred_at_ms: at,
        properties: BTreeMap::from([
            ("amount_eur".to_string(), PropValue::Float(eur)),
            ("category".to_string(), PropValue::Str("toys".into())),
        ]),
    }
}

fn events(batch: Vec<Event>, logged_at_ms: i64) -> Mutation {
    Mutation::Gamify(Change::RecordEvents { events: batch, logged_at_ms })
}

fn spend(customer: u64, req: &str, points: i64, at: i64) -> Mutation {
    Mutation::Gamify(Change::SpendPoints {
        spend: Spend { customer_id: customer, wallet: "points".into(), request_id: req.into(), points },
        logged_at_ms: at,
    })
}

fn cell(e: &Engine, id: u64, attr: &str) -> CellValue {
    let row = e.data().row_of(id).unwrap_or_else(|| panic!("customer {id} has no row"));
    e.data().cell(e.data().column_index(attr).unwrap(), row)
}

fn gamify_outcome(r: Result<Outcome, EngineError>) -> ChangeOutcome {
    match r {
        Ok(Outcome::Gamify(o)) => o,
        other => panic!("{other:?}"),
    }
}

/// Checks then applies, as the committer does; the check's error if it refused.
fn commit(e: &mut Engine, seq: u64, m: &Mutation) -> Result<Outcome, EngineError> {
    e.check(m)?;
    e.apply(seq, m)
}

#[test]
fn a_ledger_by_hand_through_the_engine() {
    let mut e = Engine::new(table(ROWS), 10, 1000);
    assert!(matches!(e.check(&spend(1, "r", 1, T0)), Err(EngineError::Gamify(GamifyError::NoProgram))));
    commit(&mut e, 1, &put_demo(T0)).unwrap();
    let gold = Mutation::CreateSegment {
        id: "rich_bronze".into(),
        description: String::new(),
        definition: Definition::Sql("tier = 'BRONZE' AND points_balance >= 300".into()),
        members: vec![],
    };
    commit(&mut e, 2, &gold).unwrap();
    let _ = e.take_events();

    // 600 € at T0: 600 points pending for 14 days; 600 € of turnover is BRONZE (>= 500);
    // lifetime 600 is level 4 (thresholds 0, 100, 250, 500, 750).
    let o = gamify_outcome(commit(&mut e, 3, &events(vec![purchase("p1", 7, 600.0, T0)], T0)));
    assert_eq!(
        o,
        ChangeOutcome::Events(vec![EventOutcome::Applied {
            credited: 600,
            reversed: 0,
            shortfall: 0,
            challenges: vec![]
        }])
    );
    assert_eq!(cell(&e, 7, "points_pending"), CellValue::Int(600));
    assert_eq!(cell(&e, 7, "points_balance"), CellValue::Int(0));
    assert_eq!(cell(&e, 7, "lifetime_points"), CellValue::Int(600));
    assert_eq!(cell(&e, 7, "tier"), CellValue::Str("BRONZE".into()));
    assert_eq!(cell(&e, 7, "level"), CellValue::Int(4));
    assert_eq!(cell(&e, 7, "purchases"), CellValue::Int(1));
    assert_eq!(cell(&e, 7, "purchase_sum_eur"), CellValue::Float(600.0));
    let ev = e.take_events();
    e.publish_events(ev);
    let ach: Vec<Achievement> =
        e.achievements_since(1, &HashSet::new(), 100).unwrap().into_iter().map(|a| a.achievement).collect();
    assert!(ach.contains(&Achievement::LevelUp { customer_id: 7, from: 1, to: 4, at_ms: T0 }), "{ach:?}");
    assert!(ach
        .iter()
        .any(|a| matches!(a, Achievement::TierChanged { customer_id: 7, to, .. } if to == "BRONZE")));

    // Nothing available yet: a spend is refused before it is logged.
    assert!(matches!(
        e.check(&spend(7, "s1", 100, T0 + 1)),
        Err(EngineError::Gamify(GamifyError::InsufficientPoints { available: 0, requested: 100, .. }))
    ));
    // A tick after the 14-day window: the points become available, and the customer
    // enters the saved segment in the same apply.
    let tick = Mutation::Gamify(Change::Tick { now_ms: T0 + 14 * DAY_MS + 1 });
    gamify_outcome(commit(&mut e, 4, &tick));
    assert_eq!(cell(&e, 7, "points_balance"), CellValue::Int(600));
    assert_eq!(cell(&e, 7, "points_pending"), CellValue::Int(0));
    let seg = e.take_events();
    assert_eq!(seg.len(), 1);
    assert_eq!((seg[0].customer_id, seg[0].change, seg[0].sequence), (7, SegChange::Entered, 4));

    // Two spends checked against the same state (one commit group): the second finds
    // 350 left at its turn and is answered with the error, changing nothing.
    let t = T0 + 15 * DAY_MS;
    let (a, b) = (spend(7, "s1", 250, t), spend(7, "s2", 400, t));
    e.check(&a).unwrap();
    e.check(&b).unwrap();
    let out = e.apply_group(&[(5, &a), (6, &b)]);
    assert!(matches!(gamify_outcome(out[0].clone()), ChangeOutcome::Spent(_)));
    assert!(matches!(
        gamify_outcome(out[1].clone()),
        ChangeOutcome::Rejected(GamifyError::InsufficientPoints { available: 350, requested: 400, .. })
    ));
    assert_eq!(cell(&e, 7, "points_balance"), CellValue::Int(350));
    // Left the segment (350 >= 300 still: stays); spend 100 more and it leaves.
    gamify_outcome(commit(&mut e, 7, &spend(7, "s3", 100, t)));
    assert_eq!(cell(&e, 7, "points_balance"), CellValue::Int(250));
    let seg = e.take_events();
    assert_eq!(
        seg.iter().map(|s| (s.customer_id, s.change, s.sequence)).collect::<Vec<_>>(),
        [(7, SegChange::Left, 7)]
    );
    // A repeated spend request is answered again and changes nothing.
    assert!(matches!(
        gamify_outcome(commit(&mut e, 8, &spend(7, "s3", 100, t))),
        ChangeOutcome::Spent(LedgerOutcome { duplicate: true, .. })
    ));
    assert_eq!(cell(&e, 7, "points_balance"), CellValue::Int(250));

    // A batch with one bad event is refused whole, naming it; a duplicate changes nothing.
    let before = e.gamification().unwrap().state.clone();
    let mut bad = purchase("p3", 8, 10.0, t);
    bad.properties.insert("amount_eur".into(), PropValue::Float(-1.0));
    let err = e.check(&events(vec![purchase("p2", 8, 10.0, t), bad], t)).unwrap_err().to_string();
    assert!(err.contains("events[1] \"p3\"") && err.contains("amount_eur"), "{err}");
    assert_eq!(e.gamification().unwrap().state, before);
    gamify_outcome(commit(&mut e, 9, &events(vec![purchase("p2", 8, 10.0, t)], t)));
    let before = (e.gamification().unwrap().state.clone(), e.data().customer(8));
    let dup = gamify_outcome(commit(&mut e, 10, &events(vec![purchase("p2", 8, 10.0, t)], t)));
    assert_eq!(dup, ChangeOutcome::Events(vec![EventOutcome::Duplicate]));
    assert!(e.gamification().unwrap().state == before.0);
    assert_eq!(e.data().customer(8), before.1);

    // An unknown customer is created (the demo program says so), with its attributes.
    assert!(e.data().row_of(9_999).is_none());
    gamify_outcome(commit(&mut e, 11, &events(vec![purchase("p4", 9_999, 20.0, t)], t)));
    assert_eq!(cell(&e, 9_999, "points_pending"), CellValue::Int(20));
    assert_eq!(cell(&e, 9_999, "tier"), CellValue::Str("NONE".into()));
}

#[test]
fn a_program_must_fit_existing_columns() {
    let mut e = Engine::new(table(ROWS), 10, 1000);
    // The demo table's `level` is an Int8 column: 20 levels fit, a string does not.
    e.apply(1, &Mutation::AddAttribute { name: "points_balance".into(), kind: NewAttribute::String })
        .unwrap();
    let err = e.check(&put_demo(T0)).unwrap_err().to_string();
    assert!(err.contains("attribute 'points_balance' cannot hold"), "{err}");
}

/// A random log over the demo program: event batches, grants, spends, manual tiers,
/// ticks and a program change, each checked against the state before it (as the
/// committer does; refused ones are left out), applied live as it is built.
fn random_log(seed: u64) -> (Vec<(u64, Mutation)>, Engine) {
    let mut r = SmallRng::seed_from_u64(seed);
    let mut live = Engine::new(table(ROWS), 10, 1_000_000);
    let mut log = vec![];
    let mut seq = 0;
    let mut push = |live: &mut Engine, m: Mutation, log: &mut Vec<(u64, Mutation)>| {
        if live.check(&m).is_ok() {
            seq += 1;
            live.apply(seq, &m).unwrap();
            log.push((seq, m));
        }
    };
    push(&mut live, put_demo(T0), &mut log);
    let seg = Mutation::CreateSegment {
        id: "gold_rich".into(),
        description: String::new(),
        definition: Definition::Sql("tier = 'GOLD' AND points_balance > 200".into()),
        members: vec![],
    };
    push(&mut live, seg, &mut log);
    let cfg = GenConfig { customers: ROWS as u64 + 50, events: 3_000, seed, start_ms: T0, span_days: 400 };
    let all: Vec<Event> = EventGen::new(cfg).collect();
    let mut i = 0;
    let mut n = 0;
    while i < all.len() {
        let k = r.random_range(1..60).min(all.len() - i);
        let batch = all[i..i + k].to_vec();
        i += k;
        let logged = batch.iter().map(|e| e.occurred_at_ms).max().unwrap_or(T0) + 1_000;
        push(&mut live, events(batch, logged), &mut log);
        n += 1;
        let c = r.random_range(1..=ROWS as u64);
        match r.random_range(0..10) {
            0 => push(&mut live, spend(c, &format!("s{n}"), r.random_range(1..200), logged), &mut log),
            1 => push(
                &mut live,
                Mutation::Gamify(Change::GrantPoints {
                    grant: Grant {
                        customer_id: c,
                        wallet: "points".into(),
                        request_id: format!("g{n}"),
                        points: r.random_range(1..500),
                    },
                    logged_at_ms: logged,
                }),
                &mut log,
            ),
            2 => {
                let tier = ["SILVER", "GOLD"][r.random_range(0..2)].to_string();
                let tier = if r.random_bool(0.3) { None } else { Some(tier) };
                let m = Change::SetManualTier { customer_id: c, tier, logged_at_ms: logged };
                push(&mut live, Mutation::Gamify(m), &mut log)
            }
            3 | 4 => push(&mut live, Mutation::Gamify(Change::Tick { now_ms: logged }), &mut log),
            _ => {}
        }
        if n == 40 {
            // Raise GOLD to 1,200 €: every customer re-tiered in one mutation.
            let mut spec = Program::demo().spec;
            spec.tiers.tiers[3].min = 1_200.0;
            let program = Arc::new(Program::new(spec).unwrap());
            push(&mut live, Mutation::Gamify(Change::PutProgram { program, effective_ms: logged }), &mut log);
        }
    }
    // Values that move with the clock alone (a lapsed streak, a new week's challenge) are
    // written by ticks: one at the clock brings every column up to it.
    let now = live.gamification().map_or(T0, |g| g.state.clock_ms());
    push(&mut live, Mutation::Gamify(Change::Tick { now_ms: now }), &mut log);
    (log, live)
}

/// Every attribute of every customer the table may hold.
fn table_of(e: &Engine) -> Vec<Option<Vec<(String, CellValue)>>> {
    (0..=ROWS as u64 + 60).map(|id| e.data().customer(id)).collect()
}

fn assert_same(a: &Engine, b: &Engine) {
    let (ga, gb) = (a.gamification().unwrap(), b.gamification().unwrap());
    assert_eq!(ga.program, gb.program);
    assert_eq!(ga.effective_ms, gb.effective_ms);
    assert!(ga.state == gb.state, "gamification states differ");
    assert_eq!(table_of(a), table_of(b));
    assert_eq!(a.sequence(), b.sequence());
}

#[test]
fn the_log_alone_gives_the_state_whatever_the_grouping() {
    let (log, mut live) = random_log(11);
    assert!(log.len() > 80, "{}", log.len());
    let g = live.gamification().unwrap();
    g.state.check_invariants().unwrap();
    // The columns say what the ledger says, customer by customer.
    let mut with_state = 0;
    for (id, _) in g.state.customers() {
        with_state += 1;
        for (name, v) in g.state.attributes(&g.program, id).unwrap() {
            assert_eq!(cell(&live, id, &name), super::cell(v), "customer {id} {name}");
        }
    }
    assert!(with_state > ROWS / 2, "{with_state}");
    let live_events = live.take_events();
    live.publish_events(vec![]);
    let live_ach = live.achievements_since(1, &HashSet::new(), usize::MAX).unwrap();
    assert!(live_ach.len() > 50, "{}", live_ach.len());

    // The log's bytes, replayed in random groups.
    let mut bytes = vec![];
    for (seq, m) in &log {
        let mut buf = vec![];
        record::encode_mutation(m, &mut buf);
        bytes.push((*seq, buf));
    }
    let mut r = SmallRng::seed_from_u64(5);
    let mut replayed = Engine::new(table(ROWS), 10, 1_000_000);
    let mut events = vec![];
    let mut i = 0;
    while i < bytes.len() {
        let k = r.random_range(1..20).min(bytes.len() - i);
        let decoded: Vec<(u64, Mutation)> = bytes[i..i + k]
            .iter()
            .map(|(s, b)| (*s, record::decode_mutation(record::FORMAT, b).unwrap()))
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
    assert_same(&live, &replayed);
    assert_eq!(events, live_events);
    assert_eq!(replayed.achievements_since(1, &HashSet::new(), usize::MAX).unwrap(), live_ach);
}

#[test]
fn restart_from_the_log_and_from_a_snapshot_gives_the_same_state() {
    let (log, live) = random_log(3);
    let dir = tempfile::tempdir().unwrap();
    let opts = DbOptions { data_dir: dir.path().to_path_buf(), ..DbOptions::default() };
    let open = || Db::open(opts.clone(), || Ok(table(ROWS)), |_| {}).unwrap();
    let db = open();
    for (seq, m) in log {
        let c = db.commit(m).unwrap();
        assert_eq!(c.sequence, seq);
    }
    assert_same(&live, &db.read());
    drop(db);
    // From the log (the only snapshot is the import's).
    let db = open();
    assert_same(&live, &db.read());
    db.close().unwrap();
    drop(db);
    // From the snapshot written at close.
    let db = open();
    assert_same(&live, &db.read());
    // The snapshot's section decodes to the same bytes it was made from.
    let snap = db.read().gamify_snapshot();
    let mut e = Engine::new(table(ROWS), 10, 10);
    e.restore_gamify(&snap).unwrap();
    assert_eq!(e.gamify_snapshot(), snap);
}
