//! Loading: Parquet and Arrow IPC (file and stream) give the same table; bad id columns
//! are load errors that name the id and rows.

use std::sync::Arc;

use arrow_array::{ArrayRef, Decimal128Array, Int64Array, RecordBatch, StringArray};
use segd::query::{compile_sql, eval, Limits};
use segd::store::{load::load_file, Dataset, StoreError};

fn counts(ds: &Dataset) -> Vec<u64> {
    [
        "gender = 'F'",
        "age BETWEEN 25 AND 34",
        "list_contains(badges, 'vip')",
        "last_purchase_days_ago IS NULL",
    ]
    .iter()
    .map(|t| eval::count(ds, &compile_sql(ds, t, &Limits::default()).unwrap()))
    .collect()
}

#[test]
fn parquet_and_arrow_ipc_load_the_same_table() {
    let dir = tempfile::tempdir().unwrap();
    let parquet = dir.path().join("c.parquet");
    segd::gen::write_parquet(&parquet, 70_000, 3).unwrap();
    let batches = segd::gen::generate(70_000, 3);
    let file = dir.path().join("c.arrow");
    let mut w =
        arrow_ipc::writer::FileWriter::try_new(std::fs::File::create(&file).unwrap(), &segd::gen::schema())
            .unwrap();
    let stream = dir.path().join("c.arrows");
    let mut s = arrow_ipc::writer::StreamWriter::try_new(
        std::fs::File::create(&stream).unwrap(),
        &segd::gen::schema(),
    )
    .unwrap();
    for b in &batches {
        w.write(b).unwrap();
        s.write(b).unwrap();
    }
    w.finish().unwrap();
    s.finish().unwrap();
    let want = counts(&load_file(&parquet, "customer_id").unwrap());
    assert_eq!(counts(&load_file(&file, "customer_id").unwrap()), want);
    assert_eq!(counts(&load_file(&stream, "customer_id").unwrap()), want);
    let missing = load_file(&dir.path().join("nope.parquet"), "customer_id").err().unwrap();
    assert!(missing.to_string().contains("nope.parquet"), "{missing}");
}

fn table(ids: Vec<Option<i64>>) -> Result<Dataset, StoreError> {
    let n = ids.len();
    let cols: Vec<(&str, ArrayRef)> = vec![
        ("id", Arc::new(Int64Array::from(ids))),
        ("name", Arc::new(StringArray::from(vec!["a"; n]))),
        ("price", Arc::new(Decimal128Array::from(vec![1i128; n]))),
    ];
    let b = RecordBatch::try_from_iter(cols).unwrap();
    Dataset::from_batches(b.schema(), [Ok(b)], "id")
}

#[test]
fn id_column_errors_name_the_id_and_rows() {
    let e = table(vec![Some(5), Some(6), Some(5)]).err().unwrap();
    assert!(matches!(e, StoreError::DuplicateId { id: 5, first: 0, second: 2 }), "{e}");
    let e = table(vec![Some(5), None]).err().unwrap();
    assert!(matches!(e, StoreError::NullId { row: 1, .. }), "{e}");
    let b = RecordBatch::try_from_iter([("x", Arc::new(Int64Array::from(vec![1])) as ArrayRef)]).unwrap();
    let e = Dataset::from_batches(b.schema(), [Ok(b)], "customer_id").err().unwrap();
    assert!(e.to_string().contains("customer_id") && e.to_string().contains('x'), "{e}");
    // An unsupported column (decimal) is skipped, the rest loads.
    let ds = table(vec![Some(1), Some(2)]).unwrap();
    assert!(ds.column_index("price").is_none());
    assert_eq!(ds.customers(), 2);
}
