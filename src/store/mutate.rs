//! Incremental changes to the customer table: partial upserts, new customers, deletes and
//! new attributes. Columns and every index are updated incrementally, row by row; nothing
//! is rebuilt. A batch is checked whole before anything changes, so a bad batch changes
//! nothing. Callers serialise writers; readers read a published version the write does not
//! touch (the write goes to a clone, see `crate::db`).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::BooleanArray;
use arrow_schema::{DataType, Field, TimeUnit};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::colmut::{cell_of, code_lists, holds, ColumnMut};
use super::column::{Column, ColumnData, Dict, Kind, Temporal};
use super::Dataset;
use crate::index::container::CHUNK_ROWS;
use crate::index::{AttrIndex, Postings, RangeIndex, ValueIndex};

/// One attribute value as written by a client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CellValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<String>),
}

/// A partial update: attributes not mentioned keep their value; a new id is a new customer
/// whose unmentioned attributes are NULL.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CustomerUpdate {
    pub customer_id: u64,
    pub attributes: Vec<(String, CellValue)>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MutationError {
    #[error("customer {customer_id}: unknown attribute '{attribute}'; attributes are: {known}")]
    UnknownAttribute { customer_id: u64, attribute: String, known: String },
    #[error("customer {customer_id}: attribute '{attribute}' is {kind}, cannot take {value}")]
    TypeMismatch { customer_id: u64, attribute: String, kind: String, value: String },
    #[error("customer {customer_id}: '{attribute}' is the customer id column and cannot be set")]
    IdAttribute { customer_id: u64, attribute: String },
    #[error("attribute '{0}' already exists")]
    AttributeExists(String),
    #[error("bad attribute name '{0}': use letters, digits and _, starting with a letter or _")]
    BadAttributeName(String),
    #[error("the table is full ({0} rows)")]
    TooManyRows(usize),
    /// A value of the right kind that the column cannot hold exactly (out of range,
    /// non-finite, too long, not a date): storing it would change it, or it could not be
    /// logged and read back as itself.
    #[error("customer {customer_id}: attribute '{attribute}' cannot take {value}: {reason}")]
    BadValue { customer_id: u64, attribute: String, value: String, reason: String },
    #[error("customer id {customer_id} is out of range: the id column '{column}' ({kind}) holds {range}")]
    BadCustomerId { customer_id: u64, column: String, kind: String, range: String },
}

/// Longest string value, in bytes: a string attribute, one item of a list, a segment's
/// description.
pub const MAX_STR_BYTES: usize = 64 * 1024;
/// Most items in one list value.
pub const MAX_LIST_ITEMS: usize = 1_000;
/// Integers up to this magnitude are exactly representable in a float column (2^53).
pub const MAX_EXACT_FLOAT_INT: u64 = 1 << 53;

/// The kinds an attribute can be added with at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NewAttribute {
    Bool,
    Int,
    Float,
    String,
    StringList,
    Date,
    Timestamp,
}

/// Which rows of a write changed in which column, for the saved segments: a segment
/// re-evaluates only the rows where a column it reads changed (and the new rows), so an
/// event that moves points but not the tier leaves the segments over `tier` alone.
#[derive(Clone, Debug, Default)]
pub struct Touched {
    /// Per column (table order), the rows whose value changed, ascending.
    pub by_column: Vec<Vec<u32>>,
    /// Rows from this one on were created by the write.
    pub first_new: u32,
}

impl Dataset {
    /// Checks a batch against the schema without changing anything: every value must be
    /// of its column's kind and be stored exactly as given (see [`MutationError::BadValue`]).
    pub fn check_upserts(&self, batch: &[CustomerUpdate]) -> Result<(), MutationError> {
        let id_col = &self.columns[self.id_col];
        let id_range = int_range(&id_col.source_type);
        let mut names = NameCache::default();
        for u in batch {
            if !id_range.contains(&(u.customer_id as i128)) {
                return Err(MutationError::BadCustomerId {
                    customer_id: u.customer_id,
                    column: id_col.name.clone(),
                    kind: id_col.source_type.to_string(),
                    range: format!("{}..={}", id_range.start(), id_range.end()),
                });
            }
            for (name, v) in &u.attributes {
                let Some(ci) = names.get(self, name) else {
                    return Err(MutationError::UnknownAttribute {
                        customer_id: u.customer_id,
                        attribute: name.clone(),
                        known: self.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", "),
                    });
                };
                if ci == self.id_col {
                    return Err(MutationError::IdAttribute {
                        customer_id: u.customer_id,
                        attribute: name.clone(),
                    });
                }
                let col = &self.columns[ci];
                match fit(col, v) {
                    Ok(()) => {}
                    Err(Unfit::Kind) => {
                        return Err(MutationError::TypeMismatch {
                            customer_id: u.customer_id,
                            attribute: name.clone(),
                            kind: format!("{} ({})", col.kind.name(), col.source_type),
                            value: shown(v),
                        })
                    }
                    Err(Unfit::Value(reason)) => {
                        return Err(MutationError::BadValue {
                            customer_id: u.customer_id,
                            attribute: name.clone(),
                            value: shown(v),
                            reason,
                        })
                    }
                }
            }
        }
        let new_ids: std::collections::HashSet<u64> =
            batch.iter().map(|u| u.customer_id).filter(|&id| self.ids.row_of(id).is_none()).collect();
        if self.rows + new_ids.len() >= u32::MAX as usize {
            return Err(MutationError::TooManyRows(self.rows));
        }
        Ok(())
    }

    /// Applies a batch of upserts (checked first). Returns every row whose values changed,
    /// new customers included, ascending.
    ///
    /// Rows are resolved first (new customers get rows at the end); then each written
    /// column is applied on its own, in parallel: its index, NULL bitmap and chunks.
    pub fn apply_upserts(&mut self, batch: &[CustomerUpdate]) -> Result<Vec<u32>, MutationError> {
        Ok(self.apply_upsert_batches(&[batch])?.into_iter().map(|(r, _)| r).collect())
    }

    /// Applies several batches as one, in order (a later write of a cell wins): the same
    /// final table as applying them one by one, with each chunk and index copied once.
    /// Returns the changed rows ascending, each with the index of the last batch that
    /// wrote it. Every batch is checked first; if one is bad, nothing changes.
    pub fn apply_upsert_batches(
        &mut self,
        batches: &[&[CustomerUpdate]],
    ) -> Result<Vec<(u32, usize)>, MutationError> {
        for batch in batches {
            self.check_upserts(batch)?;
        }
        Ok(self.apply_checked_upsert_batches(batches).0)
    }

    /// [`Dataset::apply_upsert_batches`] for batches [`Dataset::check_upserts`] already
    /// accepted against this table's schema: the engine's apply path, where the committer
    /// checked every upsert before logging it (so a write is checked once, not twice; a
    /// replayed record was checked when it was logged). An unchecked bad batch is a bug:
    /// it panics, and the committer's guard turns that into a fault.
    pub fn apply_checked_upsert_batches(
        &mut self,
        batches: &[&[CustomerUpdate]],
    ) -> (Vec<(u32, usize)>, Touched) {
        let n = batches.iter().map(|b| b.len()).sum();
        self.apply_checked_updates(
            n,
            batches.iter().enumerate().flat_map(|(bi, b)| b.iter().map(move |u| (bi, u))),
        )
    }

    /// [`Dataset::apply_checked_upsert_batches`] of `(batch index, update)` pairs in batch
    /// order (`n` of them): the engine applies a part of each batch this way, by
    /// reference, without copying the updates into batches of their own.
    pub fn apply_checked_updates<'a>(
        &mut self,
        n: usize,
        updates: impl Iterator<Item = (usize, &'a CustomerUpdate)>,
    ) -> (Vec<(u32, usize)>, Touched) {
        let old_rows = self.rows;
        let mut per_col: Vec<Vec<(u32, CellValue)>> = vec![vec![]; self.columns.len()];
        let mut touched = Vec::with_capacity(n);
        let mut names = NameCache::default();
        for (bi, u) in updates {
            let row = self.row_or_new(u.customer_id, &mut per_col);
            touched.push((row, bi));
            for (name, v) in &u.attributes {
                let ci = names.get(self, name).expect("checked");
                per_col[ci].push((row, normalise(&self.columns[ci], v)));
            }
        }
        let by_column = self.apply_per_column(per_col, old_rows);
        // Per row, the last batch that wrote it (a stable sort keeps batch order).
        touched.sort_by_key(|&(r, _)| r);
        let mut out: Vec<(u32, usize)> = Vec::with_capacity(touched.len());
        for (r, bi) in touched {
            match out.last_mut() {
                Some(last) if last.0 == r => last.1 = bi,
                _ => out.push((r, bi)),
            }
        }
        (out, Touched { by_column, first_new: old_rows as u32 })
    }

    /// Writes values already checked against the schema, column by column: `ids` are the
    /// customers (a new id gets a row), and each `(column index, values)` holds one value
    /// per id, in `ids`' order (a later value of a repeated id wins). The engine's
    /// gamification path: its derived columns are resolved once per change, not by name
    /// per value, and the values are moved, not cloned. Returns the written rows,
    /// ascending, each once, and which of them changed in which column.
    pub fn apply_checked_columns(
        &mut self,
        ids: &[u64],
        columns: Vec<(usize, Vec<CellValue>)>,
    ) -> (Vec<u32>, Touched) {
        let old_rows = self.rows;
        let mut per_col: Vec<Vec<(u32, CellValue)>> = vec![vec![]; self.columns.len()];
        let rows: Vec<u32> = ids.iter().map(|&id| self.row_or_new(id, &mut per_col)).collect();
        for (ci, values) in columns {
            assert_eq!(values.len(), rows.len(), "one value per customer in column {ci}");
            let col = &self.columns[ci];
            let cells = &mut per_col[ci];
            cells.reserve(values.len());
            cells.extend(rows.iter().copied().zip(values.into_iter().map(|v| normalise_owned(col, v))));
        }
        let by_column = self.apply_per_column(per_col, old_rows);
        let mut rows = rows;
        rows.sort_unstable();
        rows.dedup();
        (rows, Touched { by_column, first_new: old_rows as u32 })
    }

    /// The live row of a customer, or a new one at the end (its id cell queued in
    /// `per_col`).
    fn row_or_new(&mut self, customer_id: u64, per_col: &mut [Vec<(u32, CellValue)>]) -> u32 {
        if let Some(r) = self.ids.row_of(customer_id).filter(|&r| self.live.contains(r)) {
            return r;
        }
        let r = self.rows as u32;
        self.rows += 1;
        self.ids.insert(customer_id, r);
        self.live.insert(r);
        per_col[self.id_col].push((r, CellValue::Int(customer_id as i64)));
        r
    }

    /// Applies each column's cells (rows `old_rows..` are new), the columns in parallel.
    /// Returns, per column, the rows whose value changed.
    fn apply_per_column(&mut self, per_col: Vec<Vec<(u32, CellValue)>>, old_rows: usize) -> Vec<Vec<u32>> {
        let rows = self.rows;
        self.columns
            .par_iter_mut()
            .zip(self.indexes.par_iter_mut())
            .zip(self.nulls.par_iter_mut())
            .zip(per_col.into_par_iter())
            .map(|(((col, index), nulls), cells)| {
                if cells.is_empty() && rows == old_rows {
                    return vec![];
                }
                let cm = ColumnMut { col: Arc::make_mut(col), index: Arc::make_mut(index), nulls };
                apply_column(cm, cells, old_rows, rows)
            })
            .collect()
    }

    /// Deletes customers; unknown ids are ignored. Returns (id, row) of those deleted.
    pub fn delete_customers(&mut self, ids: &[u64]) -> Vec<(u64, u32)> {
        let mut out = vec![];
        for &id in ids {
            let Some(row) = self.ids.row_of(id).filter(|&r| self.live.contains(r)) else { continue };
            self.live.remove(row);
            self.ids.remove(id);
            out.push((id, row));
        }
        if out.is_empty() {
            return out;
        }
        let rows: Vec<u32> = out.iter().map(|&(_, r)| r).collect();
        self.columns.par_iter_mut().zip(self.indexes.par_iter_mut()).zip(self.nulls.par_iter_mut()).for_each(
            |((col, index), nulls)| {
                let mut cm = ColumnMut { col: Arc::make_mut(col), index: Arc::make_mut(index), nulls };
                for &row in &rows {
                    let old = cell_of(cm.col, row);
                    cm.unindex(row, &old);
                }
            },
        );
        out
    }

    /// Whether `name` can be added as an attribute.
    pub fn check_new_attribute(&self, name: &str) -> Result<(), MutationError> {
        let ok = name.len() <= 128
            && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(MutationError::BadAttributeName(name.into()));
        }
        if self.column_index(name).is_some() {
            return Err(MutationError::AttributeExists(name.into()));
        }
        Ok(())
    }

    /// Adds an attribute, NULL for every customer.
    pub fn add_attribute(&mut self, name: &str, kind: NewAttribute) -> Result<(), MutationError> {
        self.check_new_attribute(name)?;
        let (dt, kind_) = match kind {
            NewAttribute::Bool => (DataType::Boolean, Kind::Bool),
            NewAttribute::Int => (DataType::Int64, Kind::Int(Temporal::None)),
            NewAttribute::Float => (DataType::Float64, Kind::Float),
            NewAttribute::String => (DataType::Utf8, Kind::Str),
            NewAttribute::StringList => {
                (DataType::List(Arc::new(Field::new("item", DataType::Utf8, false))), Kind::StrList)
            }
            NewAttribute::Date => (DataType::Date32, Kind::Int(Temporal::Date32)),
            NewAttribute::Timestamp => (
                DataType::Timestamp(TimeUnit::Microsecond, None),
                Kind::Int(Temporal::Timestamp(TimeUnit::Microsecond)),
            ),
        };
        let n_chunks = self.n_chunks();
        let lens: Vec<usize> = (0..n_chunks).map(|c| (self.rows - c * CHUNK_ROWS).min(CHUNK_ROWS)).collect();
        let data = match kind_ {
            Kind::Bool => ColumnData::Bool(lens.iter().map(|&n| BooleanArray::new_null(n)).collect()),
            Kind::Float => {
                ColumnData::Float(lens.iter().map(|&n| arrow_array::new_null_array(&dt, n)).collect())
            }
            Kind::Int(_) => {
                ColumnData::Int(lens.iter().map(|&n| arrow_array::new_null_array(&dt, n)).collect())
            }
            Kind::Str => ColumnData::Str {
                dict: Arc::new(Dict::default()),
                chunks: lens.iter().map(|&n| arrow_array::new_null_array(&DataType::UInt8, n)).collect(),
            },
            Kind::StrList => ColumnData::List {
                dict: Arc::new(Dict::default()),
                chunks: lens.iter().map(|&n| code_lists(&vec![None; n], 0)).collect(),
            },
        };
        let index = match kind_ {
            Kind::Bool => {
                AttrIndex::Values(ValueIndex { values: vec![Postings::default(); 2], single_valued: true })
            }
            Kind::Str => AttrIndex::Values(ValueIndex { values: vec![], single_valued: true }),
            Kind::StrList => AttrIndex::Values(ValueIndex { values: vec![], single_valued: false }),
            Kind::Int(_) => AttrIndex::IntRange(RangeIndex::build(0, |_, _| {})),
            Kind::Float => AttrIndex::FloatRange(RangeIndex::build(0, |_, _| {})),
        };
        let mut nulls = self.live.clone();
        nulls.len = nulls.chunks.iter().map(|c| c.len() as u64).sum();
        self.columns.push(Arc::new(Column {
            name: name.into(),
            source_type: dt,
            kind: kind_,
            nullable: true,
            data,
        }));
        self.indexes.push(Arc::new(index));
        self.nulls.push(Some(nulls));
        Arc::make_mut(&mut self.by_name).insert(name.into(), self.columns.len() - 1);
        Ok(())
    }

    /// Writes cells of one column in rows that hold a customer, `(row, value)` (the last
    /// write of a row wins), with its index and NULL bitmap: a column-wide rewrite (a
    /// program taking over its derived columns) without an update per customer. Values
    /// must fit the column ([`Dataset::check_upserts`] decides); an unfit one is a bug.
    pub fn write_column_cells(&mut self, ci: usize, cells: Vec<(u32, CellValue)>) {
        if cells.is_empty() {
            return;
        }
        debug_assert!(cells.iter().all(|&(r, _)| self.live.contains(r)), "rows hold customers");
        let cells = cells.into_iter().map(|(r, v)| (r, normalise(&self.columns[ci], &v))).collect();
        let cm = ColumnMut {
            col: Arc::make_mut(&mut self.columns[ci]),
            index: Arc::make_mut(&mut self.indexes[ci]),
            nulls: &mut self.nulls[ci],
        };
        apply_column(cm, cells, self.rows, self.rows);
    }

    /// Every attribute of a customer, or None when the id is not held.
    pub fn customer(&self, customer_id: u64) -> Option<Vec<(String, CellValue)>> {
        let row = self.row_of(customer_id)?;
        Some((0..self.columns.len()).map(|ci| (self.columns[ci].name.clone(), self.cell(ci, row))).collect())
    }

    /// The value of one cell.
    pub fn cell(&self, ci: usize, row: u32) -> CellValue {
        cell_of(&self.columns[ci], row)
    }
}

/// Column lookups by name over one batch. Updates name the same attributes again and
/// again, mostly in one order (a gamification event writes ~20 derived attributes per
/// customer, customer after customer): the name after the last one found is tried first,
/// then the others seen, before hashing (SipHash was ~7% of a commit group's
/// instructions; a cache of the last 8 names missed every time on 20 names in turn).
#[derive(Default)]
struct NameCache<'a> {
    seen: Vec<(&'a str, usize)>,
    next: usize,
}

impl<'a> NameCache<'a> {
    const SIZE: usize = 64;

    fn get(&mut self, ds: &Dataset, name: &'a str) -> Option<usize> {
        if let Some(&(n, ci)) = self.seen.get(self.next) {
            if n == name {
                self.next += 1;
                return Some(ci);
            }
        }
        if let Some(i) = self.seen.iter().position(|(n, _)| *n == name) {
            self.next = i + 1;
            return Some(self.seen[i].1);
        }
        let ci = ds.column_index(name)?;
        if self.seen.len() < Self::SIZE {
            self.seen.push((name, ci));
            self.next = self.seen.len();
        }
        Some(ci)
    }
}

/// Why a value does not fit a column.
enum Unfit {
    /// Not of the column's kind.
    Kind,
    /// Of its kind, but not storable exactly; the reason names the limit.
    Value(String),
}

/// Whether a value can be stored in a column exactly as given (kind, range, finiteness,
/// length, a parseable date).
fn fit(col: &Column, v: &CellValue) -> Result<(), Unfit> {
    let in_range = |i: i128| {
        let r = int_range(&col.source_type);
        if r.contains(&i) {
            Ok(())
        } else {
            Err(Unfit::Value(format!("out of range for {} ({}..={})", col.source_type, r.start(), r.end())))
        }
    };
    let f32_col = col.source_type == DataType::Float32;
    let non_finite = || Unfit::Value("not a finite number (NaN and infinities cannot be stored)".into());
    match (col.kind, v) {
        (_, CellValue::Null) | (Kind::Bool, CellValue::Bool(_)) => Ok(()),
        (Kind::Str, CellValue::Str(s)) => check_str(s),
        (Kind::StrList, CellValue::List(items)) => {
            if items.len() > MAX_LIST_ITEMS {
                return Err(Unfit::Value(format!(
                    "{} items is over the limit of {MAX_LIST_ITEMS} per list",
                    items.len()
                )));
            }
            items.iter().try_for_each(|s| check_str(s))
        }
        (Kind::Float, CellValue::Float(f)) if !f.is_finite() => Err(non_finite()),
        (Kind::Float, CellValue::Float(f)) if f32_col && (*f as f32) as f64 != *f => {
            Err(Unfit::Value("not exactly representable in a 32-bit float column".into()))
        }
        (Kind::Float, CellValue::Float(_)) => Ok(()),
        (Kind::Float, CellValue::Int(i)) => {
            let max = if f32_col { 1 << 24 } else { MAX_EXACT_FLOAT_INT };
            if i.unsigned_abs() <= max {
                Ok(())
            } else {
                Err(Unfit::Value(format!(
                    "beyond ±{max}, a {} column cannot hold this integer exactly",
                    col.source_type
                )))
            }
        }
        (Kind::Int(Temporal::None), CellValue::Float(f)) => {
            if !f.is_finite() {
                Err(non_finite())
            } else if f.fract() != 0.0 {
                Err(Unfit::Value("not a whole number, and the column holds integers".into()))
            } else {
                in_range(*f as i128)
            }
        }
        (Kind::Int(_), CellValue::Int(i)) => in_range(*i as i128),
        (
            Kind::Int(t @ (Temporal::Date32 | Temporal::Date64 | Temporal::Timestamp(_))),
            CellValue::Str(s),
        ) => match crate::query::plan::temporal(t, s) {
            Some(i) => in_range(i as i128),
            None => Err(Unfit::Value(
                "not a valid date or time in range (YYYY-MM-DD, or YYYY-MM-DD HH:MM:SS[.fraction])".into(),
            )),
        },
        (Kind::Bool | Kind::Str | Kind::StrList | Kind::Float | Kind::Int(_), _) => Err(Unfit::Kind),
    }
}

fn check_str(s: &str) -> Result<(), Unfit> {
    if s.len() > MAX_STR_BYTES {
        return Err(Unfit::Value(format!("{} bytes is over the limit of {MAX_STR_BYTES} bytes", s.len())));
    }
    Ok(())
}

/// A value for an error message: long strings and lists are cut (the message must stay
/// readable and small).
fn shown(v: &CellValue) -> String {
    const MAX: usize = 80;
    let full = match v {
        CellValue::List(items) if items.len() > 8 => {
            format!("List({:?}, ... {} items)", &items[..8], items.len())
        }
        _ => format!("{v:?}"),
    };
    if full.chars().count() <= MAX {
        return full;
    }
    let cut: String = full.chars().take(MAX).collect();
    format!("{cut}... ({} bytes)", full.len())
}

/// [`normalise`] of a value the caller gives away (no copy of a string or list).
fn normalise_owned(col: &Column, v: CellValue) -> CellValue {
    match (col.kind, v) {
        (Kind::Float, CellValue::Int(i)) => CellValue::Float(i as f64),
        (Kind::Int(_), CellValue::Float(f)) => CellValue::Int(f as i64),
        (Kind::Int(t), CellValue::Str(s)) => {
            CellValue::Int(crate::query::plan::temporal(t, &s).expect("checked"))
        }
        (_, v) => v,
    }
}

/// A value in the column's own representation (dates parsed, integral floats as ints).
fn normalise(col: &Column, v: &CellValue) -> CellValue {
    match (col.kind, v) {
        (Kind::Float, CellValue::Int(i)) => CellValue::Float(*i as f64),
        (Kind::Int(_), CellValue::Float(f)) => CellValue::Int(*f as i64),
        (Kind::Int(t), CellValue::Str(s)) => {
            CellValue::Int(crate::query::plan::temporal(t, s).expect("checked"))
        }
        _ => v.clone(),
    }
}

fn int_range(dt: &DataType) -> std::ops::RangeInclusive<i128> {
    match dt {
        DataType::Int8 => i8::MIN as i128..=i8::MAX as i128,
        DataType::Int16 => i16::MIN as i128..=i16::MAX as i128,
        DataType::Int32 | DataType::Date32 => i32::MIN as i128..=i32::MAX as i128,
        DataType::UInt8 => 0..=u8::MAX as i128,
        DataType::UInt16 => 0..=u16::MAX as i128,
        DataType::UInt32 => 0..=u32::MAX as i128,
        DataType::UInt64 => 0..=i64::MAX as i128,
        _ => i64::MIN as i128..=i64::MAX as i128,
    }
}

/// Applies one column's cells of a batch (`(row, value)` in batch order; the last write of
/// a row wins). Rows `old_rows..rows` are new: NULL wherever the batch did not write them.
/// Returns the rows whose value changed (new rows included), ascending.
fn apply_column(
    mut cm: ColumnMut<'_>,
    mut cells: Vec<(u32, CellValue)>,
    old_rows: usize,
    rows: usize,
) -> Vec<u32> {
    // Stable: for one row, the batch's writes stay in batch order, so the last one wins
    // (an explicit NULL included).
    cells.sort_by_key(|&(r, _)| r);
    let mut last: Vec<(u32, CellValue)> = Vec::with_capacity(cells.len() + (rows - old_rows));
    for (r, v) in cells {
        match last.last_mut() {
            Some((lr, lv)) if *lr == r => *lv = v,
            _ => last.push((r, v)),
        }
    }
    // New rows the batch did not write in this column are NULL in it.
    let split = last.partition_point(|&(r, _)| (r as usize) < old_rows);
    let written: Vec<(u32, CellValue)> = last.drain(split..).collect();
    let mut written = written.into_iter().peekable();
    for r in old_rows as u32..rows as u32 {
        match written.next_if(|(wr, _)| *wr == r) {
            Some(cell) => last.push(cell),
            None => last.push((r, CellValue::Null)),
        }
    }
    // A cell written with the value it holds changes neither the index nor its chunk: most
    // of an event's derived attributes (tier, level, badges, ...) keep their values, and a
    // chunk no cell changed is not rebuilt.
    let mut changed: Vec<(u32, CellValue)> = Vec::with_capacity(last.len());
    for (row, v) in last {
        let existing = (row as usize) < old_rows;
        if existing && holds(cm.col, row, &v) {
            continue;
        }
        let old = existing.then(|| cell_of(cm.col, row));
        cm.reindex(row, old.as_ref(), &v);
        changed.push((row, v));
    }
    let mut groups = vec![];
    for part in changed.chunk_by(|a, b| a.0 >> 16 == b.0 >> 16) {
        let c = (part[0].0 >> 16) as usize;
        let cells: BTreeMap<usize, CellValue> =
            part.iter().map(|(r, v)| ((*r & 0xffff) as usize, v.clone())).collect();
        groups.push((c, (rows - c * CHUNK_ROWS).min(CHUNK_ROWS), cells));
    }
    cm.rebuild_chunks(groups);
    changed.into_iter().map(|(r, _)| r).collect()
}

/// Whether a cell holding `old` already holds `new`, bit for bit (`-0.0` is not `0.0`: a
/// written value must read back exactly). [`holds`] answers the same without the cell
/// (`colmut_tests.rs` checks that they agree).
#[cfg(test)]
pub(super) fn same_cell(old: &CellValue, new: &CellValue) -> bool {
    match (old, new) {
        (CellValue::Float(a), CellValue::Float(b)) => a.to_bits() == b.to_bits(),
        _ => old == new,
    }
}
