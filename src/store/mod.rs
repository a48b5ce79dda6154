//! The customer table in memory: Arrow column chunks, their indexes, and the id map.

pub mod build;
pub mod colmut;
pub mod column;
pub mod export;
pub mod ids;
pub mod load;
pub mod mutate;

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{Array, RecordBatch};
use arrow_schema::SchemaRef;
use rayon::prelude::*;

use crate::index::container::CHUNK_ROWS;
use crate::index::{null_postings, AttrIndex, Postings, RangeIndex, ValueIndex};
use column::{CodeSlice, Column, ColumnData, Kind};
use ids::IdMap;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot read {path}: {msg}")]
    Io { path: String, msg: String },
    #[error("arrow: {0}")]
    Arrow(String),
    #[error("id column '{0}' not found (columns: {1})")]
    NoIdColumn(String, String),
    #[error("id column '{column}' must be an integer column, not {found}")]
    BadIdType { column: String, found: String },
    #[error("id column '{column}' is NULL at row {row}")]
    NullId { column: String, row: usize },
    #[error("duplicate customer id {id} at rows {first} and {second}")]
    DuplicateId { id: u64, first: u32, second: u32 },
    #[error("too many rows: {0} (at most {max})", max = u32::MAX - 1)]
    TooManyRows(usize),
    #[error("unsupported: {0}")]
    Unsupported(String),
}

/// Every customer, every attribute, every index.
///
/// Cloning is cheap and shares everything: columns, indexes and postings sit behind `Arc`s,
/// and a write copies only what it changes (`Arc::make_mut` on the column, its index, the
/// touched chunk lists and containers). That is how a batch is applied to a private copy
/// while readers keep counting on the published one (see `crate::db`).
#[derive(Clone)]
pub struct Dataset {
    pub columns: Vec<Arc<Column>>,
    /// `indexes[i]` indexes `columns[i]`.
    pub indexes: Vec<Arc<AttrIndex>>,
    /// NULL rows of each nullable column.
    pub nulls: Vec<Option<Postings>>,
    /// Rows that hold a customer.
    pub live: Postings,
    by_name: Arc<HashMap<String, usize>>,
    id_col: usize,
    ids: IdMap,
    rows: usize,
}

impl Dataset {
    /// Builds the table from Arrow batches (any sizes), then every index in parallel.
    pub fn from_batches(
        schema: SchemaRef,
        batches: impl IntoIterator<Item = Result<RecordBatch, StoreError>>,
        id_column: &str,
    ) -> Result<Dataset, StoreError> {
        let mut builders = load::builders_for(&schema, id_column)?;
        for batch in batches {
            load::append_batch(&mut builders, &batch?)?;
        }
        Self::from_columns(load::finish(builders)?, id_column)
    }

    /// Indexes finished columns.
    pub fn from_columns(columns: Vec<Column>, id_column: &str) -> Result<Dataset, StoreError> {
        let id_col = columns
            .iter()
            .position(|c| c.name == id_column)
            .ok_or_else(|| StoreError::NoIdColumn(id_column.into(), names(&columns)))?;
        let rows: usize = match &columns[id_col].data {
            ColumnData::Int(v) => v.iter().map(|a| a.len()).sum(),
            _ => {
                return Err(StoreError::BadIdType {
                    column: id_column.into(),
                    found: columns[id_col].source_type.to_string(),
                })
            }
        };
        if rows >= u32::MAX as usize {
            return Err(StoreError::TooManyRows(rows));
        }
        let id_values = id_values(&columns[id_col])?;
        let t = std::time::Instant::now();
        let (ids, built): (Result<IdMap, _>, Vec<_>) =
            rayon::join(|| IdMap::build(&id_values), || columns.par_iter().map(index_column).collect());
        let ids =
            ids.map_err(|ids::Duplicate(id, first, second)| StoreError::DuplicateId { id, first, second })?;
        let (indexes, nulls): (Vec<AttrIndex>, Vec<_>) = built.into_iter().unzip();
        tracing::info!(
            rows,
            columns = columns.len(),
            ms = t.elapsed().as_millis() as u64,
            rss_mib = resident_bytes().unwrap_or(0) >> 20,
            "indexes built"
        );
        for (c, ix) in columns.iter().zip(&indexes) {
            tracing::debug!(column = %c.name, column_kib = c.heap_bytes() >> 10, index_kib = ix.heap_bytes() >> 10);
        }
        let by_name = Arc::new(columns.iter().enumerate().map(|(i, c)| (c.name.clone(), i)).collect());
        let columns = columns.into_iter().map(Arc::new).collect();
        let indexes = indexes.into_iter().map(Arc::new).collect();
        Ok(Dataset { columns, indexes, nulls, live: Postings::all(rows), by_name, id_col, ids, rows })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn n_chunks(&self) -> usize {
        self.rows.div_ceil(CHUNK_ROWS)
    }

    /// Customers held (live rows).
    pub fn customers(&self) -> u64 {
        self.live.len
    }

    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    pub fn id_column(&self) -> &Column {
        &self.columns[self.id_col]
    }

    /// The row of an external customer id, if held.
    pub fn row_of(&self, customer_id: u64) -> Option<u32> {
        self.ids.row_of(customer_id).filter(|&r| self.live.contains(r))
    }

    /// The external id of a row.
    pub fn id_of(&self, row: u32) -> u64 {
        let (c, o) = column::split(row);
        self.columns[self.id_col].ints(c).get(o) as u64
    }

    /// Changes whenever a dictionary gains a value or an attribute is added: a plan bound
    /// before may name a value (or column) that did not exist then. Dictionaries only grow,
    /// so the sum of their sizes and the column count is such a number.
    pub fn binding_generation(&self) -> u64 {
        self.columns.len() as u64
            + self.columns.iter().filter_map(|c| c.dict()).map(|d| d.len() as u64).sum::<u64>()
    }

    /// Bytes held by columns, indexes and the id map, in total and per column (what an
    /// operator needs to see which attribute costs what, e.g. a program's derived ones).
    pub fn memory(&self) -> MemoryReport {
        let per_column: Vec<ColumnMemory> = (0..self.columns.len())
            .map(|ci| ColumnMemory {
                name: self.columns[ci].name.clone(),
                values: self.columns[ci].heap_bytes(),
                index: self.indexes[ci].heap_bytes()
                    + self.nulls[ci].as_ref().map_or(0, Postings::heap_bytes),
            })
            .collect();
        MemoryReport {
            columns: per_column.iter().map(|c| c.values).sum(),
            indexes: per_column.iter().map(|c| c.index).sum::<usize>() + self.live.heap_bytes(),
            ids: self.ids.heap_bytes(),
            per_column,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct MemoryReport {
    pub columns: usize,
    /// Every column's index and NULL bitmap, and the bitmap of rows holding a customer.
    pub indexes: usize,
    pub ids: usize,
    pub per_column: Vec<ColumnMemory>,
}

/// One column's share of [`MemoryReport`].
#[derive(Clone, Debug, PartialEq)]
pub struct ColumnMemory {
    pub name: String,
    /// The values (Arrow chunks, dictionaries).
    pub values: usize,
    /// Its index and NULL bitmap.
    pub index: usize,
}

fn names(columns: &[Column]) -> String {
    columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
}

fn id_values(col: &Column) -> Result<Vec<u64>, StoreError> {
    let ColumnData::Int(chunks) = &col.data else { unreachable!("checked by caller") };
    let mut out = Vec::with_capacity(chunks.iter().map(|a| a.len()).sum());
    for (c, a) in chunks.iter().enumerate() {
        if let Some(nulls) = a.nulls() {
            if let Some(o) = (0..a.len()).find(|&o| nulls.is_null(o)) {
                return Err(StoreError::NullId { column: col.name.clone(), row: c * CHUNK_ROWS + o });
            }
        }
        let v = col.ints(c);
        out.extend((0..a.len()).map(|o| v.get(o) as u64));
    }
    Ok(out)
}

/// Builds the index and NULL bitmap of one column.
fn index_column(col: &Column) -> (AttrIndex, Option<Postings>) {
    let n_chunks = match &col.data {
        ColumnData::Bool(v) => v.len(),
        ColumnData::Int(v) | ColumnData::Float(v) | ColumnData::Str { chunks: v, .. } => v.len(),
        ColumnData::List { chunks, .. } => chunks.len(),
    };
    let nulls = (col.nullable || (0..n_chunks).any(|c| col.chunk(c).null_count() > 0)).then(|| {
        null_postings(n_chunks, |c| {
            let a = col.chunk(c);
            match a.nulls() {
                Some(n) => (0..a.len()).filter(|&o| n.is_null(o)).map(|o| o as u16).collect(),
                None => vec![],
            }
        })
    });
    let index = match (&col.kind, &col.data) {
        (Kind::Bool, ColumnData::Bool(chunks)) => {
            AttrIndex::Values(ValueIndex::build(n_chunks, 2, true, |c, f| {
                for (o, v) in chunks[c].iter().enumerate() {
                    if let Some(v) = v {
                        f(o as u16, v as u32);
                    }
                }
            }))
        }
        (Kind::Int(_), _) => AttrIndex::IntRange(RangeIndex::build(n_chunks, |c, f| {
            let a = col.chunk(c);
            let v = col.ints(c);
            for o in 0..a.len() {
                if a.is_valid(o) {
                    f(o as u16, v.get(o));
                }
            }
        })),
        (Kind::Float, _) => AttrIndex::FloatRange(RangeIndex::build(n_chunks, |c, f| {
            let a = col.chunk(c);
            let v = col.floats(c);
            for o in 0..a.len() {
                let x = v.get(o);
                // NaN matches no range (it is unordered); -0.0 and 0.0 are one value.
                if a.is_valid(o) && !x.is_nan() {
                    f(o as u16, x + 0.0);
                }
            }
        })),
        (Kind::Str, ColumnData::Str { dict, chunks }) => {
            AttrIndex::Values(ValueIndex::build(n_chunks, dict.len(), true, |c, f| {
                let a = chunks[c].as_ref();
                let codes = CodeSlice::of(a);
                for o in 0..a.len() {
                    if a.is_valid(o) {
                        f(o as u16, codes.get(o));
                    }
                }
            }))
        }
        (Kind::StrList, ColumnData::List { dict, chunks }) => {
            AttrIndex::Values(ValueIndex::build(n_chunks, dict.len(), false, |c, f| {
                let l = &chunks[c];
                let codes = CodeSlice::of(l.values().as_ref());
                let offs = l.value_offsets();
                for o in 0..l.len() {
                    // Duplicated elements index once: the builder wants distinct offsets.
                    let mut seen: Vec<u32> = Vec::new();
                    for i in offs[o] as usize..offs[o + 1] as usize {
                        let code = codes.get(i);
                        if !seen.contains(&code) {
                            seen.push(code);
                            f(o as u16, code);
                        }
                    }
                }
            }))
        }
        _ => unreachable!("column data matches its kind"),
    };
    (index, nulls)
}

/// The values of a bool column chunk (used by the row-level evaluator).
pub fn bool_at(col: &Column, row: u32) -> Option<bool> {
    let (c, o) = column::split(row);
    let ColumnData::Bool(v) = &col.data else { return None };
    v[c].is_valid(o).then(|| v[c].value(o))
}

/// The code(s) of a string or list cell.
pub fn codes_at(col: &Column, row: u32) -> Option<Vec<u32>> {
    let (c, o) = column::split(row);
    match &col.data {
        ColumnData::Str { chunks, .. } => {
            let a = chunks[c].as_ref();
            a.is_valid(o).then(|| vec![CodeSlice::of(a).get(o)])
        }
        ColumnData::List { chunks, .. } => {
            let l = &chunks[c];
            if l.is_null(o) {
                return None;
            }
            let codes = CodeSlice::of(l.values().as_ref());
            let offs = l.value_offsets();
            Some((offs[o] as usize..offs[o + 1] as usize).map(|i| codes.get(i)).collect())
        }
        _ => None,
    }
}

/// Resident set size of this process in bytes (Linux), for the load log and metrics.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
