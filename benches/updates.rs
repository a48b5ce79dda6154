//! Applying customer updates in process: columns, every index and 100 saved segments
//! maintained. Each update changes 3 attributes (spend, recency, tier) of a random customer.
//! Durability (the log's fsync) is measured separately by the service benchmark.
//!
//! Each iteration does what the committer does with one commit group: clone the published
//! version (readers keep it), apply the group to the clone (copy-on-write), publish it.
//! `group_of_4` is four requests of the batch size arriving together (one group).
//!
//! `SEGD_BENCH_ROWS` (default 10000000) picks `bench-data/customers_<rows>.parquet`, as in
//! the segments bench; absent, a table is generated in process.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::{Rng, SeedableRng};

use segd::engine::{Engine, Mutation};
use segd::segments::Definition;
use segd::store::mutate::{CellValue, CustomerUpdate};

#[path = "common.rs"]
mod common;
use common::dataset;

fn batch(r: &mut rand::rngs::SmallRng, rows: usize, n: usize) -> Vec<CustomerUpdate> {
    const TIERS: [&str; 5] = ["NONE", "BRONZE", "SILVER", "GOLD", "PLATINUM"];
    (0..n)
        .map(|_| CustomerUpdate {
            customer_id: r.random_range(1..=rows as u64),
            attributes: vec![
                ("total_spend_eur".into(), CellValue::Float(r.random_range(0..3_000_000) as f64 / 100.0)),
                ("last_purchase_days_ago".into(), CellValue::Int(r.random_range(0..400))),
                ("tier".into(), CellValue::Str(TIERS[r.random_range(0..5)].into())),
            ],
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let (ds, rows) = dataset();
    let mut engine = Engine::new(ds, 1000, 1_000_000);
    let t = Instant::now();
    for (i, (id, text)) in segd::gen::benchmark_segments().into_iter().enumerate() {
        let m = Mutation::CreateSegment {
            id,
            description: String::new(),
            definition: Definition::Sql(text),
            members: vec![],
        };
        engine.apply(i as u64 + 1, &m).unwrap();
    }
    eprintln!("100 saved segments materialised in {:.2}s", t.elapsed().as_secs_f64());
    let mut g = c.benchmark_group(format!("updates_{rows}"));
    g.measurement_time(Duration::from_secs(5));
    let mut r = rand::rngs::SmallRng::seed_from_u64(3);
    let mut seq = 1000;
    let mut published = std::sync::Arc::new(engine);
    for (n, requests) in [(100usize, 1usize), (1000, 1), (10_000, 1), (10_000, 4)] {
        g.throughput(Throughput::Elements((n * requests) as u64));
        let name = if requests == 1 {
            "upsert_3_attrs_100_segments"
        } else {
            "upsert_3_attrs_100_segments_group_of_4"
        };
        g.bench_function(BenchmarkId::new(name, n), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let group: Vec<(u64, Mutation)> = (0..requests)
                        .map(|_| {
                            seq += 1;
                            (seq, Mutation::Upsert(batch(&mut r, rows, n)))
                        })
                        .collect();
                    let items: Vec<(u64, &Mutation)> = group.iter().map(|(s, m)| (*s, m)).collect();
                    let t = Instant::now();
                    let mut next = Engine::clone(&published);
                    for r in next.apply_group(&items) {
                        r.unwrap();
                    }
                    let old = std::mem::replace(&mut published, std::sync::Arc::new(next));
                    total += t.elapsed();
                    // Freeing what the group replaced happens on the committer too, but after
                    // the answer: not timed.
                    drop(old);
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_millis(500));
    targets = bench
}
criterion_main!(benches);
