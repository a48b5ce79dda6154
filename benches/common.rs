//! The table both benches run on, shared with `#[path]` (each bench is its own crate).
//!
//! `SEGD_BENCH_ROWS` (default 10000000) picks `bench-data/customers_<rows>.parquet`
//! (generate it with ../shared/bench/gen.py); when the file is absent a table of the same
//! schema is generated in process, so the benches always run.

use std::path::PathBuf;

use segd::store::{load::load_file, Dataset};

pub fn dataset() -> (Dataset, usize) {
    let rows: usize =
        std::env::var("SEGD_BENCH_ROWS").ok().and_then(|s| s.parse().ok()).unwrap_or(10_000_000);
    let dir = std::env::var("SEGD_BENCH_DATA")
        .unwrap_or_else(|_| format!("{}/bench-data", env!("CARGO_MANIFEST_DIR")));
    let path = PathBuf::from(dir).join(format!("customers_{rows}.parquet"));
    let t = std::time::Instant::now();
    let ds = if path.exists() {
        load_file(&path, "customer_id").expect("load")
    } else {
        eprintln!("{} not found: generating {rows} rows in process", path.display());
        let b = segd::gen::generate(rows, segd::gen::DEFAULT_SEED);
        Dataset::from_batches(segd::gen::schema(), b.into_iter().map(Ok), "customer_id").unwrap()
    };
    eprintln!("loaded {rows} rows in {:.2}s", t.elapsed().as_secs_f64());
    (ds, rows)
}
