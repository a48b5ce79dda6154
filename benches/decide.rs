//! Next-best-offer in process, on the demo offer catalogue (src/decide/demo_offers.json):
//! `next_best_offer` is one decision as the service takes it (the offers' rules resolved
//! against the version, then arbitration; neither logged nor applied), `reach_estimate`
//! one offer's exact funnel over the whole base. Run with `SEGD_BENCH_ROWS=1000000` for
//! the 1M figures (the default table is 10M rows, as in the other benches).

use criterion::{criterion_group, criterion_main, Criterion};
use rand::{Rng, SeedableRng};

use segd::decide::{decide, reach_estimate, Change, Channel, Context, DatasetFacts, Request};
use segd::engine::{Engine, Mutation};
use segd::query::Limits;

#[path = "common.rs"]
mod common;
use common::dataset;

fn bench(c: &mut Criterion) {
    let (ds, rows) = dataset();
    let mut engine = Engine::new(ds, 1000, 1_000_000);
    for (i, o) in segd::grpc::decide::demo_offers().unwrap().into_iter().enumerate() {
        engine.apply(i as u64 + 1, &Mutation::Decide(Change::PutOffer(Box::new(o)))).unwrap();
    }
    let limits = Limits::default();
    let now_ms = 1_767_225_600_000;
    let ctx = |channel| Context { channel, placement: "home".into(), intent: String::new(), now_ms };
    let mut r = rand::rngs::SmallRng::seed_from_u64(7);
    let mut id = 0u64;
    c.bench_function("next_best_offer/web", |b| {
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
    let offer = engine.decide().catalogue().get("winback-10").unwrap().clone();
    c.bench_function("reach_estimate/winback-10", |b| {
        b.iter(|| {
            let segs = |s: &str| engine.segments().members_of(s);
            let st = engine.decide();
            let policy = st.catalogue().policy();
            reach_estimate(engine.data(), &segs, &limits, &offer, policy, &ctx(Channel::Email), st.contacts())
                .unwrap()
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
