//! Incremental changes to the customer table: partial upserts, new customers, deletes and
//! new attributes. Columns and every index are updated in place, row by row; nothing is
//! rebuilt. A batch is checked whole before anything changes, so a bad batch changes nothing.
//!
//! Arrow arrays are immutable, so a changed chunk is rebuilt once per batch (64 Ki rows at
//! most) and swapped in; indexes (containers) are edited in place. Callers serialise
//! writers and keep readers out while a batch applies (the service holds a write lock).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef, BooleanArray, ListArray, PrimitiveArray};
use arrow_buffer::{BooleanBufferBuilder, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, TimeUnit};
use serde::{Deserialize, Serialize};

use super::column::{split, CodeSlice, Column, ColumnData, Dict, Kind, Temporal};
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
}

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

impl Dataset {
    /// Checks a batch against the schema without changing anything.
    pub fn check_upserts(&self, batch: &[CustomerUpdate]) -> Result<(), MutationError> {
        for u in batch {
            for (name, v) in &u.attributes {
                let Some(ci) = self.column_index(name) else {
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
                if !fits(col, v) {
                    return Err(MutationError::TypeMismatch {
                        customer_id: u.customer_id,
                        attribute: name.clone(),
                        kind: format!("{} ({})", col.kind.name(), col.source_type),
                        value: format!("{v:?}"),
                    });
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
    pub fn apply_upserts(&mut self, batch: &[CustomerUpdate]) -> Result<Vec<u32>, MutationError> {
        self.check_upserts(batch)?;
        let old_rows = self.rows;
        // New customers get rows at the end; the id column is their first change.
        let mut changes: BTreeMap<(usize, usize), BTreeMap<usize, CellValue>> = BTreeMap::new();
        let mut touched = vec![];
        for u in batch {
            let row = match self.ids.row_of(u.customer_id).filter(|&r| self.live.contains(r)) {
                Some(r) => r,
                None => {
                    let r = self.rows as u32;
                    self.rows += 1;
                    self.ids.insert(u.customer_id, r);
                    self.live.insert(r);
                    let (c, o) = split(r);
                    changes
                        .entry((self.id_col, c))
                        .or_default()
                        .insert(o, CellValue::Int(u.customer_id as i64));
                    r
                }
            };
            touched.push(row);
            let (c, o) = split(row);
            for (name, v) in &u.attributes {
                let ci = self.column_index(name).expect("checked");
                changes.entry((ci, c)).or_default().insert(o, normalise(&self.columns[ci], v));
            }
        }
        // New rows: every column not written is NULL there.
        for r in old_rows..self.rows {
            let (c, o) = split(r as u32);
            for ci in 0..self.columns.len() {
                changes.entry((ci, c)).or_default().entry(o).or_insert(CellValue::Null);
            }
        }
        let rows = self.rows;
        let new_len = |c: usize| (rows - c * CHUNK_ROWS).min(CHUNK_ROWS);
        for ((ci, c), cells) in changes {
            for (&o, v) in &cells {
                let row = (c * CHUNK_ROWS + o) as u32;
                let old = if (row as usize) < old_rows { Some(self.cell(ci, row)) } else { None };
                self.reindex(ci, row, old.as_ref(), v);
            }
            let len = new_len(c);
            self.rebuild_chunk(ci, c, len, &cells);
        }
        touched.sort_unstable();
        touched.dedup();
        Ok(touched)
    }

    /// Deletes customers; unknown ids are ignored. Returns (id, row) of those deleted.
    pub fn delete_customers(&mut self, ids: &[u64]) -> Vec<(u64, u32)> {
        let mut out = vec![];
        for &id in ids {
            let Some(row) = self.ids.row_of(id).filter(|&r| self.live.contains(r)) else { continue };
            for ci in 0..self.columns.len() {
                let old = self.cell(ci, row);
                self.unindex(ci, row, &old);
            }
            self.live.remove(row);
            self.ids.remove(id);
            out.push((id, row));
        }
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

    /// Every attribute of a customer, or None when the id is not held.
    pub fn customer(&self, customer_id: u64) -> Option<Vec<(String, CellValue)>> {
        let row = self.row_of(customer_id)?;
        Some((0..self.columns.len()).map(|ci| (self.columns[ci].name.clone(), self.cell(ci, row))).collect())
    }

    /// The value of one cell.
    pub fn cell(&self, ci: usize, row: u32) -> CellValue {
        let col = &self.columns[ci];
        if col.is_null(row) {
            return CellValue::Null;
        }
        let (c, o) = split(row);
        match &col.data {
            ColumnData::Bool(v) => CellValue::Bool(v[c].value(o)),
            ColumnData::Int(_) => CellValue::Int(col.ints(c).get(o)),
            ColumnData::Float(_) => CellValue::Float(col.floats(c).get(o)),
            ColumnData::Str { dict, chunks } => {
                CellValue::Str(dict.value(CodeSlice::of(chunks[c].as_ref()).get(o)).into())
            }
            ColumnData::List { dict, .. } => CellValue::List(
                super::codes_at(col, row)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|k| dict.value(k).to_string())
                    .collect(),
            ),
        }
    }

    /// Moves a row from its old value's postings to the new value's (`old` is None for a
    /// new row, which is in no postings yet).
    fn reindex(&mut self, ci: usize, row: u32, old: Option<&CellValue>, new: &CellValue) {
        if old == Some(new) {
            return;
        }
        let key = |v: Option<&CellValue>| match v {
            Some(CellValue::Int(i)) => Some(*i as f64),
            Some(CellValue::Float(f)) if !f.is_nan() => Some(f + 0.0),
            _ => None,
        };
        if let AttrIndex::IntRange(_) | AttrIndex::FloatRange(_) = &*self.indexes[ci] {
            if old == Some(&CellValue::Null) {
                if let Some(n) = self.nulls[ci].as_mut() {
                    n.remove(row);
                }
            }
            if *new == CellValue::Null {
                self.nulls[ci].get_or_insert_with(Postings::default).insert(row);
            }
            match Arc::make_mut(&mut self.indexes[ci]) {
                AttrIndex::IntRange(ix) => {
                    let int =
                        |v: Option<&CellValue>| if let Some(CellValue::Int(i)) = v { Some(*i) } else { None };
                    ix.update(row, int(old), int(Some(new)));
                }
                AttrIndex::FloatRange(ix) => ix.update(row, key(old), key(Some(new))),
                AttrIndex::Values(_) => unreachable!(),
            }
            return;
        }
        if let Some(old) = old {
            self.unindex(ci, row, old);
        }
        if *new == CellValue::Null {
            self.nulls[ci].get_or_insert_with(Postings::default).insert(row);
            return;
        }
        let col = Arc::make_mut(&mut self.columns[ci]);
        match (Arc::make_mut(&mut self.indexes[ci]), new) {
            (AttrIndex::Values(v), CellValue::Bool(b)) => {
                v.values[*b as usize].insert(row);
            }
            (AttrIndex::Values(v), CellValue::Str(s)) => {
                let code = intern(col, s);
                grow(v, code).insert(row);
            }
            (AttrIndex::Values(v), CellValue::List(items)) => {
                for s in items {
                    let code = intern(col, s);
                    grow(v, code).insert(row);
                }
            }
            (_, v) => unreachable!("checked value {v:?} for {}", col.name),
        }
    }

    fn unindex(&mut self, ci: usize, row: u32, old: &CellValue) {
        let col = &self.columns[ci];
        match (Arc::make_mut(&mut self.indexes[ci]), old) {
            (_, CellValue::Null) => {
                if let Some(n) = self.nulls[ci].as_mut() {
                    n.remove(row);
                }
            }
            (AttrIndex::Values(v), CellValue::Bool(b)) => {
                v.values[*b as usize].remove(row);
            }
            (AttrIndex::Values(v), CellValue::Str(s)) => {
                if let Some(code) = col.dict().and_then(|d| d.code(s)) {
                    v.values[code as usize].remove(row);
                }
            }
            (AttrIndex::Values(v), CellValue::List(items)) => {
                for code in items.iter().filter_map(|s| col.dict().and_then(|d| d.code(s))) {
                    v.values[code as usize].remove(row);
                }
            }
            (AttrIndex::IntRange(ix), CellValue::Int(i)) => ix.remove(row, *i),
            (AttrIndex::FloatRange(ix), CellValue::Float(f)) if !f.is_nan() => ix.remove(row, f + 0.0),
            _ => {}
        }
    }

    /// Rebuilds chunk `c` of column `ci` at `len` rows with `cells` written.
    fn rebuild_chunk(&mut self, ci: usize, c: usize, len: usize, cells: &BTreeMap<usize, CellValue>) {
        let col = Arc::make_mut(&mut self.columns[ci]);
        let old_len = chunk_len(col, c);
        match &mut col.data {
            ColumnData::Bool(chunks) => {
                let mut v: Vec<Option<bool>> = (0..len)
                    .map(|o| {
                        (o < old_len).then(|| chunks[c].is_valid(o).then(|| chunks[c].value(o))).flatten()
                    })
                    .collect();
                for (&o, x) in cells {
                    v[o] = if let CellValue::Bool(b) = x { Some(*b) } else { None };
                }
                set_chunk(chunks, c, BooleanArray::from(v));
            }
            ColumnData::Int(chunks) | ColumnData::Float(chunks) => {
                let old = chunks.get(c).cloned();
                let new = rebuild_primitive(old.as_ref(), &col.source_type, len, cells);
                set_chunk(chunks, c, new);
            }
            ColumnData::Str { dict, chunks } => {
                let width = dict.len();
                // A dictionary that outgrew its code width widens every chunk.
                if chunks.first().is_some_and(|a| code_width(a.data_type()) < width) {
                    for a in chunks.iter_mut() {
                        let codes = CodeSlice::of(a.as_ref());
                        let w: Vec<Option<u32>> =
                            (0..a.len()).map(|o| a.is_valid(o).then(|| codes.get(o))).collect();
                        *a = super::build::code_array_opt(&w, width);
                    }
                }
                // Codes are rebuilt like any primitive chunk of their width.
                let code_type = match chunks.first() {
                    Some(a) => a.data_type().clone(),
                    None => super::build::code_array_opt(&[], width).data_type().clone(),
                };
                let code_cells: BTreeMap<usize, CellValue> = cells
                    .iter()
                    .map(|(&o, x)| {
                        let code = if let CellValue::Str(s) = x { dict.code(s) } else { None };
                        (o, code.map_or(CellValue::Null, |k| CellValue::Int(k as i64)))
                    })
                    .collect();
                let new = rebuild_primitive(chunks.get(c), &code_type, len, &code_cells);
                set_chunk(chunks, c, new);
            }
            ColumnData::List { dict, chunks } => {
                let mut v: Vec<Option<Vec<u32>>> = match chunks.get(c) {
                    Some(l) => {
                        let codes = CodeSlice::of(l.values().as_ref());
                        let offs = l.value_offsets();
                        (0..len)
                            .map(|o| {
                                (o < old_len && l.is_valid(o)).then(|| {
                                    (offs[o] as usize..offs[o + 1] as usize).map(|i| codes.get(i)).collect()
                                })
                            })
                            .collect()
                    }
                    None => vec![None; len],
                };
                for (&o, x) in cells {
                    v[o] = if let CellValue::List(items) = x {
                        Some(items.iter().filter_map(|s| dict.code(s)).collect())
                    } else {
                        None
                    };
                }
                let width = dict.len();
                if chunks.first().is_some_and(|l| code_width(l.values().data_type()) < width) {
                    for (k, l) in chunks.iter_mut().enumerate() {
                        if k != c {
                            *l = code_lists(&list_rows(l), width);
                        }
                    }
                }
                set_chunk(chunks, c, code_lists(&v, width));
            }
        }
    }
}

fn set_chunk<T>(chunks: &mut Vec<T>, c: usize, a: T) {
    if c == chunks.len() {
        chunks.push(a);
    } else {
        chunks[c] = a;
    }
}

fn chunk_len(col: &Column, c: usize) -> usize {
    let n = match &col.data {
        ColumnData::Bool(v) => v.len(),
        ColumnData::Int(v) | ColumnData::Float(v) | ColumnData::Str { chunks: v, .. } => v.len(),
        ColumnData::List { chunks, .. } => chunks.len(),
    };
    if c < n {
        col.chunk(c).len()
    } else {
        0
    }
}

/// How many codes an array of this type can hold.
fn code_width(dt: &DataType) -> usize {
    match dt {
        DataType::UInt8 => 1 << 8,
        DataType::UInt16 => 1 << 16,
        _ => usize::MAX,
    }
}

fn list_rows(l: &ListArray) -> Vec<Option<Vec<u32>>> {
    let codes = CodeSlice::of(l.values().as_ref());
    let offs = l.value_offsets();
    (0..l.len())
        .map(|o| {
            l.is_valid(o).then(|| (offs[o] as usize..offs[o + 1] as usize).map(|i| codes.get(i)).collect())
        })
        .collect()
}

fn code_lists(rows: &[Option<Vec<u32>>], width: usize) -> ListArray {
    let mut offsets = vec![0i32];
    let mut flat = vec![];
    for r in rows {
        flat.extend(r.iter().flatten().map(|&c| Some(c)));
        offsets.push(flat.len() as i32);
    }
    let values = super::build::code_array_opt(&flat, width);
    let field = Arc::new(Field::new("item", values.data_type().clone(), false));
    let nulls = NullBuffer::from(rows.iter().map(Option::is_some).collect::<Vec<_>>());
    let nulls = (nulls.null_count() > 0).then_some(nulls);
    ListArray::new(field, OffsetBuffer::new(ScalarBuffer::from(offsets)), values, nulls)
}

fn grow(v: &mut ValueIndex, code: u32) -> &mut Postings {
    if v.values.len() <= code as usize {
        v.values.resize(code as usize + 1, Postings::default());
    }
    &mut v.values[code as usize]
}

fn intern(col: &mut Column, s: &str) -> u32 {
    match &mut col.data {
        ColumnData::Str { dict, .. } | ColumnData::List { dict, .. } => Arc::make_mut(dict).intern(s),
        _ => unreachable!("strings go to string columns"),
    }
}

/// Whether a value can be stored in a column (type and range).
fn fits(col: &Column, v: &CellValue) -> bool {
    match (col.kind, v) {
        (_, CellValue::Null) => true,
        (Kind::Bool, CellValue::Bool(_))
        | (Kind::Str, CellValue::Str(_))
        | (Kind::StrList, CellValue::List(_)) => true,
        (Kind::Float, CellValue::Int(_) | CellValue::Float(_)) => true,
        (Kind::Int(Temporal::None), CellValue::Int(i)) => int_range(&col.source_type).contains(&(*i as i128)),
        (Kind::Int(Temporal::None), CellValue::Float(f)) => {
            f.fract() == 0.0 && int_range(&col.source_type).contains(&(*f as i128))
        }
        (Kind::Int(_), CellValue::Int(i)) => int_range(&col.source_type).contains(&(*i as i128)),
        (Kind::Int(t), CellValue::Str(s)) => crate::query::plan::temporal(t, s).is_some(),
        _ => false,
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

/// Copies the old chunk's values (one memcpy), writes the cells, and carries validity
/// only when some row is or becomes NULL: a batch touches every chunk of a column at 10M
/// rows, so this runs ~150 times per column per batch.
macro_rules! rebuild_as {
    ($old:expr, $t:ty, $len:expr, $cells:expr, $dt:expr, $conv:expr) => {{
        let old = $old.map(|a| a.as_primitive::<$t>());
        let old_len = old.map_or(0, |a| a.len().min($len));
        let mut vals: Vec<<$t as ArrowPrimitiveType>::Native> = Vec::with_capacity($len);
        if let Some(a) = old {
            vals.extend_from_slice(&a.values()[..old_len]);
        }
        vals.resize($len, Default::default());
        let old_nulls = old.and_then(|a| a.nulls()).filter(|n| n.null_count() > 0);
        let any_null = $cells.values().any(|x| $conv(x).is_none());
        let nulls = if old_nulls.is_some() || any_null || $len > old_len {
            let mut b = BooleanBufferBuilder::new($len);
            match old_nulls {
                Some(n) => b.append_buffer(&n.inner().slice(0, old_len)),
                None => b.append_n(old_len, true),
            }
            b.append_n($len - old_len, false);
            for (&o, x) in $cells {
                match $conv(x) {
                    Some(v) => {
                        vals[o] = v;
                        b.set_bit(o, true);
                    }
                    None => b.set_bit(o, false),
                }
            }
            Some(NullBuffer::new(b.finish())).filter(|n| n.null_count() > 0)
        } else {
            for (&o, x) in $cells {
                if let Some(v) = $conv(x) {
                    vals[o] = v;
                }
            }
            None
        };
        Arc::new(PrimitiveArray::<$t>::new(ScalarBuffer::from(vals), nulls).with_data_type($dt.clone()))
            as ArrayRef
    }};
}

/// A primitive chunk rebuilt at `len` rows with `cells` written (values already checked).
fn rebuild_primitive(
    old: Option<&ArrayRef>,
    dt: &DataType,
    len: usize,
    cells: &BTreeMap<usize, CellValue>,
) -> ArrayRef {
    let int = |x: &CellValue| if let CellValue::Int(i) = x { Some(*i) } else { None };
    let float = |x: &CellValue| if let CellValue::Float(f) = x { Some(*f) } else { None };
    match dt {
        DataType::Int8 => rebuild_as!(old, Int8Type, len, cells, dt, |x| int(x).map(|i| i as i8)),
        DataType::Int16 => rebuild_as!(old, Int16Type, len, cells, dt, |x| int(x).map(|i| i as i16)),
        DataType::Int32 => rebuild_as!(old, Int32Type, len, cells, dt, |x| int(x).map(|i| i as i32)),
        DataType::Int64 => rebuild_as!(old, Int64Type, len, cells, dt, int),
        DataType::UInt8 => rebuild_as!(old, UInt8Type, len, cells, dt, |x| int(x).map(|i| i as u8)),
        DataType::UInt16 => rebuild_as!(old, UInt16Type, len, cells, dt, |x| int(x).map(|i| i as u16)),
        DataType::UInt32 => rebuild_as!(old, UInt32Type, len, cells, dt, |x| int(x).map(|i| i as u32)),
        DataType::UInt64 => rebuild_as!(old, UInt64Type, len, cells, dt, |x| int(x).map(|i| i as u64)),
        DataType::Date32 => rebuild_as!(old, Date32Type, len, cells, dt, |x| int(x).map(|i| i as i32)),
        DataType::Date64 => rebuild_as!(old, Date64Type, len, cells, dt, int),
        DataType::Timestamp(TimeUnit::Second, _) => {
            rebuild_as!(old, TimestampSecondType, len, cells, dt, int)
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            rebuild_as!(old, TimestampMillisecondType, len, cells, dt, int)
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            rebuild_as!(old, TimestampMicrosecondType, len, cells, dt, int)
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            rebuild_as!(old, TimestampNanosecondType, len, cells, dt, int)
        }
        DataType::Float32 => rebuild_as!(old, Float32Type, len, cells, dt, |x| float(x).map(|f| f as f32)),
        DataType::Float64 => rebuild_as!(old, Float64Type, len, cells, dt, float),
        t => unreachable!("not a primitive column type: {t}"),
    }
}
