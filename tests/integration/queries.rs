//! The fixture's queries (the benchmark kit's 14 and harder ones on NULLs, lists, floats,
//! dates, literals and nesting) on its 50k table: counts must equal DuckDB's
//! `expected_count` exactly, from the SQL text and from the JSON tree; the naive row-by-row
//! evaluator must agree with DuckDB too, and memberships with the naive evaluator.

use std::fs::File;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_array::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use segd::naive;
use segd::query::{compile_expr, compile_sql, eval, json, sql, Limits};
use segd::store::load::load_file;

use crate::common::{fixture, fixture_queries, FIXTURE_ROWS};

fn expected(q: &serde_json::Value) -> u64 {
    q["expected_count"][FIXTURE_ROWS.to_string()].as_u64().expect("expected_count for the fixture's rows")
}

fn fixture_batches() -> Vec<RecordBatch> {
    let (data, _) = fixture();
    ParquetRecordBatchReaderBuilder::try_new(File::open(&data).unwrap())
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

#[test]
fn the_fixture_holds_the_kits_queries_and_harder_ones() {
    let qs = fixture_queries();
    let ids: Vec<&str> = qs.iter().map(|q| q["id"].as_str().unwrap()).collect();
    for n in 1..=14 {
        assert!(
            ids.iter().any(|id| id.starts_with(&format!("q{n:02}_"))),
            "kit query q{n:02} missing: {ids:?}"
        );
    }
    assert!(ids.len() >= 14 + 25, "{} queries", ids.len());
    // A fixture whose answers are all empty or all full would test little.
    let spread = qs.iter().map(expected).filter(|&n| n > 0 && n < FIXTURE_ROWS as u64).count();
    assert!(spread >= ids.len() - 5, "only {spread} queries select a proper subset");
}

#[test]
fn fixture_queries_match_duckdb() {
    let (data, _) = fixture();
    let ds = load_file(&data, "customer_id").expect("fixture loads");
    assert_eq!(ds.rows(), FIXTURE_ROWS);
    let limits = Limits::default();
    for q in fixture_queries() {
        let id = q["id"].as_str().unwrap();
        let text = q["sql"]["duckdb"].as_str().unwrap();
        let plan = compile_sql(&ds, text, &limits).unwrap_or_else(|e| panic!("{id}: {text}: {e}"));
        assert_eq!(eval::count(&ds, &plan), expected(&q), "{id}: {text}");
        // The kit's queries carry the same segment as a JSON tree.
        if !q["ast"].is_null() {
            let tree = json::parse(&q["ast"], &limits).unwrap();
            let by_tree = eval::count(&ds, &compile_expr(&ds, &tree, &limits).unwrap());
            assert_eq!(by_tree, expected(&q), "{id}: ast");
        }
    }
}

#[test]
fn the_naive_evaluator_agrees_with_duckdb() {
    // The row-by-row oracle of the other tests is itself checked against DuckDB here.
    let batches = fixture_batches();
    let limits = Limits::default();
    for q in fixture_queries() {
        let text = q["sql"]["duckdb"].as_str().unwrap();
        let e = sql::parse(text, &limits).unwrap();
        assert_eq!(naive::count(&batches, &e).unwrap(), expected(&q), "{}: {text}", q["id"]);
    }
}

#[test]
fn membership_agrees_with_the_oracle() {
    let (data, _) = fixture();
    let ds = load_file(&data, "customer_id").expect("fixture loads");
    let batches = fixture_batches();
    let limits = Limits::default();
    for q in fixture_queries() {
        let text = q["sql"]["duckdb"].as_str().unwrap();
        let e = sql::parse(text, &limits).unwrap();
        let plan = compile_expr(&ds, &e, &limits).unwrap();
        // Every 37th row of every batch: ~1,350 ids per query.
        for b in &batches {
            let ids = b.column_by_name("customer_id").unwrap().as_primitive::<UInt64Type>();
            for row in (0..b.num_rows()).step_by(37) {
                let want = naive::eval(b, row, &e).unwrap() == Some(true);
                assert_eq!(
                    eval::is_member(&ds, &plan, ids.value(row)),
                    Some(want),
                    "{text} id {}",
                    ids.value(row)
                );
            }
        }
        assert_eq!(eval::is_member(&ds, &plan, 0), None);
        assert_eq!(eval::is_member(&ds, &plan, FIXTURE_ROWS as u64 + 1), None);
    }
}
