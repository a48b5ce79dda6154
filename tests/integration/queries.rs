//! The benchmark kit's 14 queries on its 100k table: counts must equal DuckDB's
//! `expected_count` exactly, from the SQL text and from the JSON tree; memberships must
//! agree with the naive evaluator.

use std::fs::File;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_array::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use segd::naive;
use segd::query::{compile_expr, compile_sql, eval, json, sql, Limits};
use segd::store::load::load_file;

use crate::common::bench_inputs;

#[test]
fn bench_queries_match_duckdb_at_100k() {
    let Some((queries, data)) = bench_inputs(100_000) else { return };
    let ds = load_file(&data, "customer_id").expect("bench table loads");
    assert_eq!(ds.rows(), 100_000);
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&queries).unwrap()).unwrap();
    let qs = doc["queries"].as_array().unwrap();
    assert_eq!(qs.len(), 14);
    let limits = Limits::default();
    for q in qs {
        let id = q["id"].as_str().unwrap();
        let expected = q["expected_count"]["100000"].as_u64().expect("expected_count at 100k");
        let text = q["sql"]["duckdb"].as_str().unwrap();
        let by_sql = eval::count(&ds, &compile_sql(&ds, text, &limits).unwrap());
        assert_eq!(by_sql, expected, "{id}: {text}");
        let tree = json::parse(&q["ast"], &limits).unwrap();
        let by_tree = eval::count(&ds, &compile_expr(&ds, &tree, &limits).unwrap());
        assert_eq!(by_tree, expected, "{id}: ast");
    }
}

#[test]
fn membership_agrees_with_the_oracle_at_100k() {
    let Some((queries, data)) = bench_inputs(100_000) else { return };
    let ds = load_file(&data, "customer_id").expect("bench table loads");
    let batches: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(File::open(&data).unwrap())
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect();
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&queries).unwrap()).unwrap();
    let limits = Limits::default();
    for q in doc["queries"].as_array().unwrap() {
        let text = q["sql"]["duckdb"].as_str().unwrap();
        let e = sql::parse(text, &limits).unwrap();
        let plan = compile_expr(&ds, &e, &limits).unwrap();
        // Every 37th row of every batch: ~2,700 ids per query.
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
        assert_eq!(eval::is_member(&ds, &plan, 100_001), None);
    }
}
