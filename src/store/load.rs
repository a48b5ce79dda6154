//! Reading Parquet and Arrow IPC files into column builders, with progress in the log.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::Instant;

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use rayon::prelude::*;

use super::build::ColumnBuilder;
use super::column::Column;
use super::{Dataset, StoreError};

/// Loads a Parquet file or an Arrow IPC file/stream (told apart by their magic bytes).
pub fn load_file(path: &Path, id_column: &str) -> Result<Dataset, StoreError> {
    let io =
        |e: &dyn std::fmt::Display| StoreError::Io { path: path.display().to_string(), msg: e.to_string() };
    let mut magic = [0u8; 6];
    File::open(path).and_then(|mut f| f.read_exact(&mut magic)).map_err(|e| io(&e))?;
    let t = Instant::now();
    let columns = if &magic[..4] == b"PAR1" {
        load_parquet(path, id_column)?
    } else if &magic == b"ARROW1" {
        let r = arrow_ipc::reader::FileReader::try_new(File::open(path).map_err(|e| io(&e))?, None)
            .map_err(|e| io(&e))?;
        let schema = r.schema();
        read_batches(schema, r.map(|b| b.map_err(|e| StoreError::Arrow(e.to_string()))), id_column)?
    } else {
        let r = arrow_ipc::reader::StreamReader::try_new(File::open(path).map_err(|e| io(&e))?, None)
            .map_err(|e| io(&e))?;
        let schema = r.schema();
        read_batches(schema, r.map(|b| b.map_err(|e| StoreError::Arrow(e.to_string()))), id_column)?
    };
    let rss_mib = super::resident_bytes().unwrap_or(0) >> 20;
    tracing::info!(path = %path.display(), ms = t.elapsed().as_millis() as u64, rss_mib, "columns loaded");
    Dataset::from_columns(columns, id_column)
}

/// Decodes row groups two (one per core) at a time and converts each batch's columns in
/// parallel, so peak memory is a few row groups beyond the table itself.
fn load_parquet(path: &Path, id_column: &str) -> Result<Vec<Column>, StoreError> {
    let io =
        |e: &dyn std::fmt::Display| StoreError::Io { path: path.display().to_string(), msg: e.to_string() };
    let file = File::open(path).map_err(|e| io(&e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| io(&e))?;
    let schema = builder.schema().clone();
    let groups = builder.metadata().num_row_groups();
    let total = builder.metadata().file_metadata().num_rows() as usize;
    let mut builders = builders_for(&schema, id_column)?;
    let window = rayon::current_num_threads().max(1);
    let options = ArrowReaderOptions::new().with_schema(dictionary_strings(&schema));
    let t = Instant::now();
    let mut done = 0usize;
    for start in (0..groups).step_by(window) {
        let decoded: Vec<Vec<RecordBatch>> = (start..(start + window).min(groups))
            .into_par_iter()
            .map(|g| {
                let f = File::open(path).map_err(|e| io(&e))?;
                ParquetRecordBatchReaderBuilder::try_new_with_options(f, options.clone())
                    .and_then(|b| b.with_row_groups(vec![g]).with_batch_size(1 << 16).build())
                    .map_err(|e| io(&e))?
                    .map(|b| b.map_err(|e| io(&e)))
                    .collect()
            })
            .collect::<Result<_, _>>()?;
        for batch in decoded.iter().flatten() {
            append_batch(&mut builders, batch)?;
            done += batch.num_rows();
        }
        let secs = t.elapsed().as_secs_f64().max(1e-9);
        tracing::info!(rows = done, total, rows_per_s = (done as f64 / secs) as u64, "loading");
    }
    finish(builders)
}

/// The file's schema with every string column (and list of strings) read as a dictionary
/// array:
/// Parquet stores such columns dictionary-encoded, and reading the codes as they are lets
/// the builder intern each distinct value once per batch instead of hashing every row's
/// string (a fifth of the load's CPU at 10M rows, measured with perf). Columns whose pages
/// are not dictionary-encoded come back the same type, built by the reader.
fn dictionary_strings(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let t = match f.data_type() {
                DataType::Utf8 | DataType::LargeUtf8 => dictionary_of(f.data_type()),
                DataType::List(item) if matches!(item.data_type(), DataType::Utf8 | DataType::LargeUtf8) => {
                    let item = item.as_ref().clone().with_data_type(dictionary_of(item.data_type()));
                    DataType::List(Arc::new(item))
                }
                other => other.clone(),
            };
            f.as_ref().clone().with_data_type(t)
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

fn dictionary_of(t: &DataType) -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(t.clone()))
}

fn read_batches(
    schema: SchemaRef,
    batches: impl Iterator<Item = Result<RecordBatch, StoreError>>,
    id_column: &str,
) -> Result<Vec<Column>, StoreError> {
    let mut builders = builders_for(&schema, id_column)?;
    for b in batches {
        append_batch(&mut builders, &b?)?;
    }
    finish(builders)
}

/// One builder per supported column; unsupported columns are skipped with a warning
/// (a table with a decimal or struct column is still useful for its other attributes).
pub fn builders_for(schema: &SchemaRef, id_column: &str) -> Result<Vec<(usize, ColumnBuilder)>, StoreError> {
    let mut out = vec![];
    for (i, f) in schema.fields().iter().enumerate() {
        match ColumnBuilder::new(f) {
            Some(b) => out.push((i, b)),
            None if f.name() == id_column => {
                return Err(StoreError::BadIdType {
                    column: id_column.into(),
                    found: f.data_type().to_string(),
                })
            }
            None => {
                tracing::warn!(column = %f.name(), r#type = %f.data_type(), "unsupported column type, skipped")
            }
        }
    }
    if !schema.fields().iter().any(|f| f.name() == id_column) {
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        return Err(StoreError::NoIdColumn(id_column.into(), names.join(", ")));
    }
    Ok(out)
}

pub fn append_batch(builders: &mut [(usize, ColumnBuilder)], batch: &RecordBatch) -> Result<(), StoreError> {
    builders.par_iter_mut().try_for_each(|(i, b)| b.append(batch.column(*i)))
}

pub fn finish(builders: Vec<(usize, ColumnBuilder)>) -> Result<Vec<Column>, StoreError> {
    builders.into_par_iter().map(|(_, b)| b.finish()).collect()
}
