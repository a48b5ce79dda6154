//! Segment counts and memberships in process, on the benchmark kit's table.
//!
//! `SEGD_BENCH_ROWS` (default 10000000) picks `bench-data/customers_<rows>.parquet`
//! (generate it with ../shared/bench/gen.py); when the file is absent a table of the same
//! schema is generated in process, so the bench always runs.
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rand::{Rng, SeedableRng};

use segd::query::{compile_sql, eval, Limits};
use segd::store::Dataset;

#[path = "common.rs"]
mod common;
use common::dataset;

fn queries() -> Vec<(String, String)> {
    let path = std::env::var("SEGD_QUERIES")
        .unwrap_or_else(|_| format!("{}/../shared/bench/queries.json", env!("CARGO_MANIFEST_DIR")));
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("queries.json")).unwrap();
    doc["queries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| (q["id"].as_str().unwrap().to_string(), q["sql"]["duckdb"].as_str().unwrap().to_string()))
        .collect()
}

fn bench(c: &mut Criterion) {
    let (ds, rows) = dataset();
    let qs = queries();
    let limits = Limits::default();
    let mut g = c.benchmark_group(format!("count_{rows}"));
    for (id, sql) in &qs {
        let plan = compile_sql(&ds, sql, &limits).unwrap();
        g.bench_function(BenchmarkId::new("count", id), |b| b.iter(|| eval::count(&ds, &plan)));
    }
    let (_, q12) = qs.iter().find(|(id, _)| id.starts_with("q12")).unwrap();
    g.bench_function("compile_and_count/q12", |b| {
        b.iter(|| eval::count(&ds, &compile_sql(&ds, q12, &limits).unwrap()))
    });
    g.finish();

    design(c, &ds, &qs, rows);
    cold(c, &ds, &qs, rows);

    let mut g = c.benchmark_group(format!("membership_{rows}"));
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    let ids: Vec<u64> = (0..10_000).map(|_| rng.random_range(1..=rows as u64)).collect();
    for (id, sql) in qs.iter().filter(|(id, _)| id.starts_with("q01") || id.starts_with("q12")) {
        let plan = compile_sql(&ds, sql, &limits).unwrap();
        let mut i = 0;
        g.bench_function(BenchmarkId::new("is_member", id), |b| {
            b.iter(|| {
                i = (i + 1) % ids.len();
                eval::is_member(&ds, &plan, ids[i])
            })
        });
        g.bench_function(BenchmarkId::new("is_member_batch_10k", id), |b| {
            b.iter(|| {
                eval::is_member_batch(&ds, &plan, &ids).into_iter().filter(|&m| m == Some(true)).count()
            })
        });
    }
    g.finish();
}

/// The multi-predicate queries with every cache emptied before each evaluation: what a
/// count costs when its containers come from DRAM, as they must at 100M rows, where one
/// query's containers are several times the L3 (issue 13, item 8). Only the evaluation is
/// timed; the sweep that evicts the caches is not.
fn cold(c: &mut Criterion, ds: &Dataset, qs: &[(String, String)], rows: usize) {
    const SWEEP: usize = 512 << 20;
    let mut sweep = vec![0u8; SWEEP];
    let mut g = c.benchmark_group(format!("count_cold_{rows}"));
    g.sample_size(10).measurement_time(std::time::Duration::from_secs(1));
    for (id, sql) in
        qs.iter().filter(|(id, _)| ["q03", "q04", "q07", "q12", "q13"].iter().any(|p| id.starts_with(p)))
    {
        let plan = compile_sql(ds, sql, &Limits::default()).unwrap();
        g.bench_function(BenchmarkId::new("count", id), |b| {
            b.iter_custom(|iters| {
                let mut spent = std::time::Duration::ZERO;
                for i in 0..iters {
                    // One write per cache line: every line of L1, L2 and L3 is replaced.
                    for line in sweep.chunks_mut(64) {
                        line[0] = line[0].wrapping_add(i as u8 | 1);
                    }
                    std::hint::black_box(&sweep);
                    let t = std::time::Instant::now();
                    std::hint::black_box(eval::count(ds, &plan));
                    spent += t.elapsed();
                }
                spent
            })
        });
    }
    g.finish();
}

/// The choices behind the engine, measured: q12 as a chain of roaring-rs operators over
/// the same leaf bitmaps, and ranges by scanning the Arrow values instead of the index.
fn design(c: &mut Criterion, ds: &Dataset, qs: &[(String, String)], rows: usize) {
    use segd::query::plan::Node;
    let mut g = c.benchmark_group(format!("design_{rows}"));
    let (_, q12) = qs.iter().find(|(id, _)| id.starts_with("q12")).unwrap();
    let plan = compile_sql(ds, q12, &Limits::default()).unwrap();
    let Node::And(kids) = &plan.root else { panic!("q12 plans to an AND") };
    let leaves: Vec<roaring::RoaringBitmap> = kids
        .iter()
        .map(|k| eval::materialize(ds, &segd::query::Plan { root: k.clone() }).rows().into_iter().collect())
        .collect();
    let fused = eval::count(ds, &plan);
    g.bench_function("q12/roaring_chain", |b| {
        b.iter(|| {
            let mut acc = leaves[0].clone();
            for l in &leaves[1..] {
                acc &= l;
            }
            assert_eq!(acc.len(), fused);
            acc.len()
        })
    });
    g.bench_function("q12/fused_containers", |b| b.iter(|| eval::count(ds, &plan)));

    // q04 by a scan of the raw f64 values (the simplest exact alternative to an index).
    let col = &ds.columns[ds.column_index("total_spend_eur").unwrap()];
    let (_, q04) = qs.iter().find(|(id, _)| id.starts_with("q04")).unwrap();
    let p04 = compile_sql(ds, q04, &Limits::default()).unwrap();
    let want = eval::count(ds, &p04);
    g.bench_function("q04/scan_arrow_values", |b| {
        b.iter(|| {
            use rayon::prelude::*;
            let n: u64 = (0..ds.n_chunks())
                .into_par_iter()
                .map(|ch| {
                    let v = col.floats(ch);
                    let len = col.chunk(ch).len();
                    (0..len).filter(|&o| (250.0..2500.0).contains(&v.get(o))).count() as u64
                })
                .sum();
            assert_eq!(n, want);
            n
        })
    });
    g.bench_function("q04/range_index", |b| b.iter(|| eval::count(ds, &p04)));
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
