//! Shared fixtures: the project's own oracle table under `tests/fixtures/` (see
//! `tests/fixtures/README.md`), committed with the code so every clone runs the oracle tests.

use std::path::PathBuf;

/// Rows of the fixture table, and the key of its `expected_count`.
pub const FIXTURE_ROWS: usize = 50_000;

/// `tests/fixtures/customers_50000.parquet` and `queries_50000.json` (DuckDB's counts over
/// that table). Panics when either is missing: an oracle test that skips proves nothing.
pub fn fixture() -> (PathBuf, PathBuf) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let data = dir.join(format!("customers_{FIXTURE_ROWS}.parquet"));
    let queries = dir.join(format!("queries_{FIXTURE_ROWS}.json"));
    for p in [&data, &queries] {
        assert!(
            p.is_file(),
            "missing test fixture {} (it is committed; regenerate it with scripts/make-fixture.py)",
            p.display()
        );
    }
    (data, queries)
}

/// The fixture's query file, parsed.
pub fn fixture_queries() -> Vec<serde_json::Value> {
    let (_, queries) = fixture();
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&queries).unwrap()).unwrap();
    doc["queries"].as_array().expect("a 'queries' array").clone()
}
