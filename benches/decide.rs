//! Next-best-offer in process, the benchmark set-up: 200 offers over 50 saved
//! segments (the first 50 of `segd::gen::benchmark_segments`), on the 10M table
//! (`SEGD_BENCH_ROWS` picks another size):
//! - `next_best_offer/web`: one decision as the service takes it (the offers' rules from
//!   the `RuleCache`, then arbitration; neither logged nor applied);
//! - `next_best_offer/web_unexplained`: the same without the explanation (what a call
//!   without `explain` decides: nothing built for offers not presented);
//! - `next_best_offer/web_compiling`: the same with every offer's rules compiled per call
//!   (how the service decided before the cache);
//! - `decide_for_segment/1M`: a blast over a 1M-member segment (the first 1M rows, or all
//!   rows of a smaller table), `Blaster` on every core; throughput in decisions;
//! - `reach_estimate/o000`: one offer's exact funnel over the whole base (draws cached);
//! - `record_outcome/durable`: outcomes committed through the write-ahead log (a data dir
//!   in a temp dir, on a 100k-row table: an outcome's cost does not depend on the table),
//!   submitted 1,000 at a time as concurrent clients would; throughput in outcomes.
//!
//! scripts/bench-decide.sh runs it with the gRPC figure (`segd loadgen --rpc next-best-offer`).

use std::sync::mpsc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::{Rng, SeedableRng};

use segd::db::{Db, DbOptions};
use segd::decide::{
    decide, decide_with, reach_estimate, Blast, Blaster, Change, Channel, Context, DatasetFacts, DrawCache,
    Limit, Offer, OutcomeKind, Propensity, Request, RuleCache, SegmentRef, Value,
};
use segd::engine::{Engine, Mutation, Outcome};
use segd::index::Postings;
use segd::query::Limits;
use segd::segments::Definition;
use segd::store::Dataset;

#[path = "common.rs"]
mod common;
use common::dataset;

const SEGMENTS: usize = 50;
const OFFERS: usize = 200;

/// The 50 saved segments, then 200 offers over them: every offer's eligibility is a saved
/// segment, a third add an applicability text, values and propensities of every kind
/// (a tenth adaptive), hold-outs, caps and budgets on some, one fallback.
fn mutations() -> Vec<Mutation> {
    let mut out = vec![];
    let segs: Vec<(String, String)> = segd::gen::benchmark_segments().into_iter().take(SEGMENTS).collect();
    for (i, (_, text)) in segs.iter().enumerate() {
        out.push(Mutation::CreateSegment {
            id: format!("s{i:02}"),
            description: String::new(),
            definition: Definition::Sql(text.clone()),
            members: vec![],
        });
    }
    for i in 0..OFFERS {
        let mut o = Offer::new(&format!("o{i:03}"), &[Channel::Web, Channel::Email]);
        o.eligibility = SegmentRef::Saved(format!("s{:02}", i % SEGMENTS));
        if i % 3 == 1 {
            o.applicability = SegmentRef::Where(format!("age >= {}", 18 + i % 40));
        }
        o.value = match i % 2 {
            0 => Value::Constant(1.0 + i as f64),
            _ => Value::Attribute { name: "avg_basket_eur".into(), factor: 0.1 },
        };
        o.propensity = match i % 10 {
            0 => Propensity::adaptive_default(),
            1..=4 => Propensity::Attribute("churn_risk".into()),
            _ => Propensity::Constant(0.05 + (i % 7) as f64 / 10.0),
        };
        if i % 4 == 0 {
            o.holdout_pct = 5.0;
        }
        if i % 5 == 0 {
            o.cap = Some(Limit { max: 2, window_ms: 7 * 86_400_000 });
        }
        if i % 8 == 0 {
            o.budget = Some(1_000_000);
        }
        if i == OFFERS - 1 {
            o = Offer::new(&o.id, &[Channel::Web, Channel::Email]);
            o.fallback = true;
            o.value = Value::Constant(0.01);
        }
        out.push(Mutation::Decide(Change::PutOffer(Box::new(o))));
    }
    out
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn bench(c: &mut Criterion) {
    let (ds, rows) = dataset();
    let mut engine = Engine::new(ds, 1000, 1_000_000);
    for (i, m) in mutations().into_iter().enumerate() {
        engine.apply(i as u64 + 1, &m).unwrap();
    }
    let limits = Limits::default();
    let now = now_ms();
    let ctx = |channel| Context { channel, placement: "home".into(), intent: String::new(), now_ms: now };
    let mut r = rand::rngs::SmallRng::seed_from_u64(7);
    let mut id = 0u64;
    let cache = RuleCache::default();
    c.bench_function("next_best_offer/web", |b| {
        b.iter(|| {
            id += 1;
            let segs = |s: &str| engine.segments().members_of(s);
            let members = |s: &str| engine.segments().get(s).ok().map(|m| &*m.members);
            let st = engine.decide();
            let rules = cache.get(engine.data(), st.catalogue(), &segs, &limits).unwrap();
            let facts = DatasetFacts::with_rules(engine.data(), rules, &members);
            let req = Request {
                decision_id: id,
                customer_id: r.random_range(1..=rows as u64),
                context: ctx(Channel::Web),
                max_results: 5,
                counts_as_impression: true,
            };
            decide(st.catalogue(), st.contacts(), &facts, &req).unwrap()
        })
    });
    // As the service decides without `explain` (the default): nothing built for the
    // offers not presented.
    c.bench_function("next_best_offer/web_unexplained", |b| {
        b.iter(|| {
            id += 1;
            let segs = |s: &str| engine.segments().members_of(s);
            let members = |s: &str| engine.segments().get(s).ok().map(|m| &*m.members);
            let st = engine.decide();
            let rules = cache.get(engine.data(), st.catalogue(), &segs, &limits).unwrap();
            let facts = DatasetFacts::with_rules(engine.data(), rules, &members);
            let req = Request {
                decision_id: id,
                customer_id: r.random_range(1..=rows as u64),
                context: ctx(Channel::Web),
                max_results: 5,
                counts_as_impression: true,
            };
            decide_with(st.catalogue(), st.contacts(), &facts, &req, false).unwrap()
        })
    });
    c.bench_function("next_best_offer/web_compiling", |b| {
        b.iter(|| {
            id += 1;
            let segs = |s: &str| engine.segments().members_of(s);
            let st = engine.decide();
            let facts = DatasetFacts::new(engine.data(), st.catalogue(), &segs, &limits).unwrap();
            let req = Request {
                decision_id: id,
                customer_id: r.random_range(1..=rows as u64),
                context: ctx(Channel::Web),
                max_results: 5,
                counts_as_impression: true,
            };
            decide(st.catalogue(), st.contacts(), &facts, &req).unwrap()
        })
    });

    let draws = DrawCache::default();
    let members = Postings::all(rows.min(1_000_000));
    let mut g = c.benchmark_group("decide_for_segment");
    g.throughput(Throughput::Elements(members.len));
    g.sample_size(10);
    g.bench_function("1M", |b| {
        b.iter(|| {
            let segs = |s: &str| engine.segments().members_of(s);
            let st = engine.decide();
            let blast = Blast {
                first_decision_id: 1,
                context: ctx(Channel::Web),
                max_results: 5,
                counts_as_impression: true,
            };
            let bl = Blaster::new(
                st.catalogue(),
                st.contacts(),
                engine.data(),
                &segs,
                &limits,
                &draws,
                &members,
                blast,
            )
            .unwrap();
            let batches = bl.decide_par(0..bl.chunks());
            batches.iter().map(|b| b.members.len()).sum::<usize>()
        })
    });
    g.finish();

    let offer = engine.decide().catalogue().get("o000").unwrap().clone();
    c.bench_function("reach_estimate/o000", |b| {
        b.iter(|| {
            let segs = |s: &str| engine.segments().members_of(s);
            let st = engine.decide();
            let policy = st.catalogue().policy();
            reach_estimate(
                engine.data(),
                &segs,
                &limits,
                &offer,
                policy,
                &ctx(Channel::Email),
                st.contacts(),
                &draws,
            )
            .unwrap()
        })
    });
    drop(engine);
    record_outcomes(c);
}

/// Commits `m` and everything after it in one go; waits for all.
fn commit_all(db: &Db, ms: Vec<Mutation>) -> Vec<Outcome> {
    let (tx, rx) = mpsc::channel();
    let n = ms.len();
    for (i, m) in ms.into_iter().enumerate() {
        let tx = tx.clone();
        db.submit(m, move |r| {
            let _ = tx.send((i, r));
        });
    }
    let mut out: Vec<Option<Outcome>> = (0..n).map(|_| None).collect();
    for _ in 0..n {
        let (i, r) = rx.recv().unwrap();
        out[i] = Some(r.unwrap().outcome);
    }
    out.into_iter().map(Option::unwrap).collect()
}

fn record_outcomes(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let opts = DbOptions { data_dir: dir.path().to_path_buf(), ..DbOptions::default() };
    let db = Db::open(
        opts,
        || {
            let b = segd::gen::generate(100_000, 3);
            Ok(Dataset::from_batches(segd::gen::schema(), b.into_iter().map(Ok), "customer_id")?)
        },
        |_| {},
    )
    .unwrap();
    let o = Offer::new("o", &[Channel::App]);
    commit_all(&db, vec![Mutation::Decide(Change::PutOffer(Box::new(o)))]);
    let mut next = 0u64;
    let mut g = c.benchmark_group("record_outcome");
    const BATCH: u64 = 1_000;
    g.throughput(Throughput::Elements(BATCH));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("durable", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let now = now_ms();
                let ids: Vec<u64> = (0..BATCH).map(|i| next + i + 1).collect();
                next += BATCH;
                let decisions = ids
                    .iter()
                    .map(|&d| {
                        let ctx = Context {
                            channel: Channel::App,
                            placement: String::new(),
                            intent: String::new(),
                            now_ms: now,
                        };
                        let req = Request {
                            decision_id: d,
                            customer_id: 1 + d % 100_000,
                            context: ctx,
                            max_results: 1,
                            counts_as_impression: false,
                        };
                        let eng = db.read();
                        let st = eng.decide();
                        let facts =
                            DatasetFacts::new(eng.data(), st.catalogue(), &|_| None, &Limits::default())
                                .unwrap();
                        Mutation::Decide(Change::DecisionTaken(
                            decide(st.catalogue(), st.contacts(), &facts, &req).unwrap().record,
                        ))
                    })
                    .collect();
                commit_all(&db, decisions);
                let outcomes = ids
                    .iter()
                    .map(|&d| {
                        Mutation::Decide(Change::RecordOutcome {
                            decision_id: d,
                            offer_id: "o".into(),
                            kind: OutcomeKind::Accept,
                            at_ms: now,
                        })
                    })
                    .collect();
                let t = Instant::now();
                commit_all(&db, outcomes);
                total += t.elapsed();
            }
            total
        })
    });
    g.finish();
    db.close().unwrap();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
