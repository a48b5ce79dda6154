//! Leaderboard reads in process, on the benchmark kit's table, with the same scores and
//! the same 10% segment as `../shared/bench/redis_leaderboard.py` (the Redis sorted-set
//! anchor): every customer's `loyalty_points` on one board, scoped reads to
//! `country = 'DE' AND age < 40`. `scripts/bench-leaderboard.sh` runs both in one go.
//!
//! Ties: every key is reached at instant 0 with sequence 0, so equal scores order by the
//! customer id (Redis orders equal scores by member string, descending, in ZREVRANGE; the
//! work is the same).
//!
//! `SEGD_BENCH_ROWS` (default 10000000) picks `bench-data/customers_<rows>.parquet`.
use criterion::{criterion_group, criterion_main, Criterion};
use rand::{Rng, SeedableRng};

use segd::leaderboard::{Board, Key, Scope};
use segd::query::{compile_sql, eval, Limits};
use segd::store::column::split;
use segd::store::Dataset;

#[path = "common.rs"]
mod common;
use common::dataset;

const SEGMENT: &str = "country = 'DE' AND age < 40";

/// The board of every row's `loyalty_points`, built as a restore builds it.
fn board(ds: &Dataset) -> Board {
    let col = ds.column_index("loyalty_points").expect("the kit's table has loyalty_points");
    let col = &ds.columns[col];
    let mut keys: Vec<Key> = (0..ds.rows() as u32)
        .map(|row| {
            let (c, i) = split(row);
            let score = col.ints(c).get(i);
            Key { score, reached_at_ms: 0, seq: 0, customer_id: ds.id_of(row), row }
        })
        .collect();
    keys.sort_unstable();
    Board::from_sorted_keys(keys).expect("distinct rows in order")
}

fn bench(c: &mut Criterion) {
    let (ds, rows) = dataset();
    let t = std::time::Instant::now();
    let rss0 = segd::store::resident_bytes().unwrap_or(0);
    let board = board(&ds);
    let rss1 = segd::store::resident_bytes().unwrap_or(0);
    eprintln!(
        "board of {} entries built in {:.2}s, RSS +{} MiB",
        board.len(),
        t.elapsed().as_secs_f64(),
        rss1.saturating_sub(rss0) >> 20
    );
    let plan = compile_sql(&ds, SEGMENT, &Limits::default()).unwrap();
    let seg = eval::materialize(&ds, &plan);
    eprintln!("segment '{SEGMENT}': {} members", seg.len);
    let scoped = Scope::Rows(&seg);
    let members: Vec<u32> = (0..ds.rows() as u32).filter(|&r| seg.contains(r)).collect();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(5);

    let mut g = c.benchmark_group(format!("leaderboard_{rows}"));
    g.bench_function("top100", |b| b.iter(|| board.top(100, 0, Scope::Everyone)));
    g.bench_function("top100_scoped_10pct", |b| b.iter(|| board.top(100, 0, scoped)));
    g.bench_function("rank_of", |b| {
        b.iter(|| board.rank_of(rng.random_range(0..rows as u32), Scope::Everyone))
    });
    g.bench_function("rank_of_scoped_10pct", |b| {
        b.iter(|| board.rank_of(members[rng.random_range(0..members.len())], scoped))
    });
    g.bench_function("around_me_10", |b| {
        b.iter(|| board.around(rng.random_range(0..rows as u32), 10, Scope::Everyone))
    });
    g.bench_function("around_me_10_scoped_10pct", |b| {
        b.iter(|| board.around(members[rng.random_range(0..members.len())], 10, scoped))
    });
    g.bench_function("count_scoped_10pct", |b| b.iter(|| board.count(scoped)));
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50);
    targets = bench
}
criterion_main!(benches);
