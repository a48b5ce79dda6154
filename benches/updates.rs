//! Applying customer updates in process: columns, every index and 100 saved segments
//! maintained. Each update changes 3 attributes (spend, recency, tier) of a random customer.
//! Durability (the log's fsync) is measured separately by the service benchmark.
//!
//! `SEGD_BENCH_ROWS` (default 10000000) picks `bench-data/customers_<rows>.parquet`, as in
//! the segments bench; absent, a table is generated in process.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::{Rng, SeedableRng};

use segd::engine::{Engine, Mutation};
use segd::segments::Definition;
use segd::store::mutate::{CellValue, CustomerUpdate};
use segd::store::{load::load_file, Dataset};

fn dataset() -> (Dataset, usize) {
    let rows: usize =
        std::env::var("SEGD_BENCH_ROWS").ok().and_then(|s| s.parse().ok()).unwrap_or(10_000_000);
    let dir = std::env::var("SEGD_BENCH_DATA")
        .unwrap_or_else(|_| format!("{}/bench-data", env!("CARGO_MANIFEST_DIR")));
    let path = PathBuf::from(dir).join(format!("customers_{rows}.parquet"));
    let ds = if path.exists() {
        load_file(&path, "customer_id").expect("load")
    } else {
        let b = segd::gen::generate(rows, segd::gen::DEFAULT_SEED);
        Dataset::from_batches(segd::gen::schema(), b.into_iter().map(Ok), "customer_id").unwrap()
    };
    (ds, rows)
}

/// 100 saved segments: thresholds and lists varied over the benchmark kit's columns.
fn segment_texts() -> Vec<String> {
    let mut v = vec![];
    for i in 0..25 {
        v.push(format!("total_spend_eur >= {} AND last_purchase_days_ago < {}", 100 * (i + 1), 30 + 10 * i));
        v.push(format!("tier IN ('GOLD', 'PLATINUM') AND age >= {}", 20 + i * 2));
        v.push(format!("last_purchase_days_ago >= {} AND email_opt_in", 60 + i * 20));
        v.push(format!("country = 'DE' AND total_spend_eur < {} AND NOT (tier = 'NONE')", 500 + i * 300));
    }
    v
}

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
    for (i, text) in segment_texts().into_iter().enumerate() {
        let m = Mutation::CreateSegment {
            id: format!("s{i:03}"),
            description: String::new(),
            definition: Definition::Sql(text),
        };
        engine.apply(i as u64 + 1, &m).unwrap();
    }
    eprintln!("100 saved segments materialised in {:.2}s", t.elapsed().as_secs_f64());
    let mut g = c.benchmark_group(format!("updates_{rows}"));
    g.measurement_time(Duration::from_secs(5));
    let mut r = rand::rngs::SmallRng::seed_from_u64(3);
    let mut seq = 1000;
    for n in [100usize, 1000, 10_000] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::new("upsert_3_attrs_100_segments", n), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let m = Mutation::Upsert(batch(&mut r, rows, n));
                    seq += 1;
                    let t = Instant::now();
                    engine.apply(seq, &m).unwrap();
                    total += t.elapsed();
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
