//! Shared fixtures: the benchmark kit's files, found through the environment set by
//! scripts/test.sh.

use std::path::PathBuf;

/// The benchmark kit's `queries.json` and its generated table of `rows` rows, or None
/// (with the reason printed) outside CI when they are absent. Under CI=true a missing
/// input fails the test: an oracle test that silently skips proves nothing.
pub fn bench_inputs(rows: usize) -> Option<(PathBuf, PathBuf)> {
    let queries = std::env::var("SEGD_QUERIES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/bench/queries.json"));
    let data = std::env::var("SEGD_BENCH_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench-data"))
        .join(format!("customers_{rows}.parquet"));
    let missing: Vec<String> =
        [&queries, &data].iter().filter(|p| !p.exists()).map(|p| p.display().to_string()).collect();
    if missing.is_empty() {
        return Some((queries, data));
    }
    let why = format!("missing {} (run scripts/test.sh to generate)", missing.join(" and "));
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{why}");
    }
    eprintln!("skipping: {why}");
    None
}
