//! Applying changes to one column: its cells, its index and its NULL bitmap, borrowed
//! together so that a batch's columns can be applied in parallel (they share nothing).
//!
//! Arrow arrays are immutable, so a changed chunk is rebuilt once per batch (64 Ki rows at
//! most) and swapped in; index containers are edited through `Arc::make_mut`, which copies
//! a container only while a published version still shares it.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef, BooleanArray, ListArray, PrimitiveArray};
use arrow_buffer::{BooleanBufferBuilder, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, TimeUnit};
use rayon::prelude::*;

use super::column::{split, CodeSlice, Column, ColumnData};
use super::mutate::CellValue;
use crate::index::{AttrIndex, Postings, ValueIndex};

/// One column with its index and NULL bitmap, mutably.
pub struct ColumnMut<'a> {
    pub col: &'a mut Column,
    pub index: &'a mut AttrIndex,
    pub nulls: &'a mut Option<Postings>,
}

/// The value of one cell.
pub fn cell_of(col: &Column, row: u32) -> CellValue {
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

impl ColumnMut<'_> {
    /// Rebuilds every chunk a batch wrote: `(chunk, new length, cells)`. Numeric chunks
    /// (the large ones: 512 KiB of f64) are rebuilt in parallel.
    pub fn rebuild_chunks(&mut self, groups: Vec<(usize, usize, BTreeMap<usize, CellValue>)>) {
        let dt = self.col.source_type.clone();
        match &mut self.col.data {
            ColumnData::Int(chunks) | ColumnData::Float(chunks) => {
                let old: &Vec<ArrayRef> = chunks;
                let new: Vec<(usize, ArrayRef)> = groups
                    .par_iter()
                    .map(|(c, len, cells)| (*c, rebuild_primitive(old.get(*c), &dt, *len, cells)))
                    .collect();
                for (c, a) in new {
                    set_chunk(chunks, c, a);
                }
            }
            _ => {
                for (c, len, cells) in &groups {
                    self.rebuild_chunk(*c, *len, cells);
                }
            }
        }
    }

    /// Moves a row from its old value's postings to the new value's (`old` is None for a
    /// new row, which is in no postings yet).
    pub fn reindex(&mut self, row: u32, old: Option<&CellValue>, new: &CellValue) {
        if old == Some(new) {
            return;
        }
        let key = |v: Option<&CellValue>| match v {
            Some(CellValue::Int(i)) => Some(*i as f64),
            Some(CellValue::Float(f)) if !f.is_nan() => Some(f + 0.0),
            _ => None,
        };
        if let AttrIndex::IntRange(_) | AttrIndex::FloatRange(_) = &*self.index {
            if old == Some(&CellValue::Null) {
                if let Some(n) = self.nulls.as_mut() {
                    n.remove(row);
                }
            }
            if *new == CellValue::Null {
                self.nulls.get_or_insert_with(Postings::default).insert(row);
            }
            match &mut *self.index {
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
            self.unindex(row, old);
        }
        if *new == CellValue::Null {
            self.nulls.get_or_insert_with(Postings::default).insert(row);
            return;
        }
        let col = &mut *self.col;
        match (&mut *self.index, new) {
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

    pub fn unindex(&mut self, row: u32, old: &CellValue) {
        let col = &*self.col;
        match (&mut *self.index, old) {
            (_, CellValue::Null) => {
                if let Some(n) = self.nulls.as_mut() {
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
    pub fn rebuild_chunk(&mut self, c: usize, len: usize, cells: &BTreeMap<usize, CellValue>) {
        let col = &mut *self.col;
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

pub(super) fn code_lists(rows: &[Option<Vec<u32>>], width: usize) -> ListArray {
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
