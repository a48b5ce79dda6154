//! Applying changes to one column: its cells, its index and its NULL bitmap, borrowed
//! together so that a batch's columns can be applied in parallel (they share nothing).
//!
//! Arrow arrays are immutable to their readers, so a changed chunk is rebuilt once per batch
//! (64 Ki rows at most) and swapped in, unless no other version holds its values: then it
//! is written in place. A commit group's first write to a chunk copies it (the published
//! version shares it); the group's later writes to that chunk (one per gamification event
//! batch) land in that private copy instead of copying it again. Index containers are
//! edited through `Arc::make_mut`, which likewise copies a container only while a
//! published version still shares it.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef, BooleanArray, ListArray, NullArray, PrimitiveArray};
use arrow_buffer::bit_util::{set_bit, unset_bit};
use arrow_buffer::{
    ArrowNativeType, BooleanBuffer, BooleanBufferBuilder, Buffer, MutableBuffer, NullBuffer, OffsetBuffer,
    ScalarBuffer,
};
use arrow_schema::{DataType, Field, TimeUnit};
use rayon::prelude::*;

use super::column::{split, CodeSlice, Column, ColumnData, Dict};
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

/// Whether a cell holds `v` (in the column's own representation), bit for bit, as
/// `same_cell(cell_of(col, row), v)` answers, without building the cell: most derived
/// attributes an event writes keep their value, and a string or list cell built per
/// write was an allocation per cell.
pub fn holds(col: &Column, row: u32, v: &CellValue) -> bool {
    if col.is_null(row) {
        return *v == CellValue::Null;
    }
    let (c, o) = split(row);
    match (&col.data, v) {
        (ColumnData::Bool(a), CellValue::Bool(b)) => a[c].value(o) == *b,
        (ColumnData::Int(_), CellValue::Int(i)) => col.ints(c).get(o) == *i,
        (ColumnData::Float(_), CellValue::Float(f)) => col.floats(c).get(o).to_bits() == f.to_bits(),
        (ColumnData::Str { dict, chunks }, CellValue::Str(s)) => {
            dict.value(CodeSlice::of(chunks[c].as_ref()).get(o)) == s.as_str()
        }
        (ColumnData::List { dict, chunks }, CellValue::List(items)) => {
            let l = &chunks[c];
            let codes = CodeSlice::of(l.values().as_ref());
            let offs = l.value_offsets();
            let (from, to) = (offs[o] as usize, offs[o + 1] as usize);
            to - from == items.len()
                && (from..to).zip(items).all(|(i, s)| dict.value(codes.get(i)) == s.as_str())
        }
        _ => false,
    }
}

impl ColumnMut<'_> {
    /// Rebuilds every chunk a batch wrote: `(chunk, new length, cells)`. Numeric chunks
    /// (the large ones: 512 KiB of f64) are rebuilt in parallel.
    pub fn rebuild_chunks(&mut self, groups: Vec<(usize, usize, BTreeMap<usize, CellValue>)>) {
        let dt = self.col.source_type.clone();
        match &mut self.col.data {
            ColumnData::Int(chunks) | ColumnData::Float(chunks) => {
                // Taken out of the column, a chunk no other version holds is written in place.
                let taken: Vec<_> = groups
                    .into_iter()
                    .map(|(c, len, cells)| (c, len, cells, take_chunk(chunks, c)))
                    .collect();
                let new: Vec<(usize, ArrayRef)> = taken
                    .into_par_iter()
                    .map(|(c, len, cells, old)| (c, rebuild_primitive(old, &dt, len, &cells)))
                    .collect();
                for (c, a) in new {
                    set_chunk(chunks, c, a);
                }
            }
            // List chunks are spliced in parallel too when the codes' type stays (a new
            // value that outgrows it re-codes every chunk: one at a time below).
            ColumnData::List { dict, chunks }
                if chunks.first().is_some_and(|l| code_width(l.values().data_type()) >= dict.len())
                    && groups
                        .iter()
                        .all(|(c, len, _)| *c < chunks.len() && chunk_len_list(&chunks[*c]) == *len) =>
            {
                let dict: &Dict = dict;
                let mut taken: Vec<(usize, ListArray, BTreeMap<usize, CellValue>)> = groups
                    .into_iter()
                    .map(|(c, _, cells)| {
                        let empty = ListArray::new_null(list_field(&chunks[c]), 0);
                        let l = std::mem::replace(&mut chunks[c], empty);
                        (c, l, cells)
                    })
                    .collect();
                taken.par_iter_mut().for_each(|(_, l, cells)| {
                    let len = l.len();
                    let old = std::mem::replace(l, ListArray::new_null(list_field(l), 0));
                    *l = match splice_unique(old, len, cells, dict) {
                        Ok(done) => done,
                        Err(shared) => splice_list(&shared, len, len, cells, dict),
                    };
                });
                for (c, l, _) in taken {
                    chunks[c] = l;
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
                let old =
                    chunks.get_mut(c).map(|a| std::mem::replace(a, BooleanArray::from(Vec::<bool>::new())));
                set_chunk(chunks, c, rebuild_bool(old, old_len, len, cells));
            }
            ColumnData::Int(chunks) | ColumnData::Float(chunks) => {
                let old = take_chunk(chunks, c);
                let new = rebuild_primitive(old, &col.source_type, len, cells);
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
                let old = take_chunk(chunks, c);
                let new = rebuild_primitive(old, &code_type, len, &code_cells);
                set_chunk(chunks, c, new);
            }
            ColumnData::List { dict, chunks } => {
                let fits = |l: &ListArray| code_width(l.values().data_type()) >= dict.len();
                if chunks.first().is_some_and(fits) {
                    if let Some(l) = chunks.get_mut(c).filter(|l| fits(l)) {
                        let taken = std::mem::replace(l, ListArray::new_null(list_field(l), 0));
                        *l = match splice_unique(taken, len, cells, dict) {
                            Ok(done) => done,
                            Err(shared) => splice_list(&shared, old_len, len, cells, dict),
                        };
                        return;
                    }
                }
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

/// Chunk `c` moved out of the column (an empty placeholder stays until [`set_chunk`]), so
/// that its handle is not what keeps its values shared; None for a chunk not yet there.
fn take_chunk(chunks: &mut [ArrayRef], c: usize) -> Option<ArrayRef> {
    chunks.get_mut(c).map(|a| std::mem::replace(a, Arc::new(NullArray::new(0)) as ArrayRef))
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

/// A list chunk rebuilt at `len` rows with `cells` written, its codes' type kept (the
/// dictionary still fits it): the old rows between written ones are copied as runs of
/// codes, one memcpy each, not row by row.
fn splice_list(
    old: &ListArray,
    old_len: usize,
    len: usize,
    cells: &BTreeMap<usize, CellValue>,
    dict: &Dict,
) -> ListArray {
    match old.values().data_type() {
        DataType::UInt8 => splice_as::<UInt8Type>(old, old_len, len, cells, dict),
        DataType::UInt16 => splice_as::<UInt16Type>(old, old_len, len, cells, dict),
        DataType::UInt32 => splice_as::<UInt32Type>(old, old_len, len, cells, dict),
        t => unreachable!("list codes are unsigned, not {t}"),
    }
}

fn list_field(l: &ListArray) -> Arc<Field> {
    match l.data_type() {
        DataType::List(f) => f.clone(),
        t => unreachable!("a list chunk is a list, not {t}"),
    }
}

fn chunk_len_list(l: &ListArray) -> usize {
    l.len()
}

/// `cells` written into a list chunk that no other version holds, in place, keeping its
/// length. Why: a batch of events writes a few `badges` cells into each of the ~150 chunks
/// at 10M rows, and building a new chunk for each (256 KiB of offsets, allocated, shifted
/// and freed) was the largest share of an event's apply. Only a group's first write to a
/// chunk (shared with the published version) copies it; its later batches land here, in
/// one pass over the offsets and a move of the codes behind each written row.
///
/// Err gives the chunk back untouched when it is shared, would change length, or when a
/// write leaves fewer codes before some row than it had (the codes would move left, and
/// they are moved right to left): the caller splices a copy.
fn splice_unique(
    l: ListArray,
    len: usize,
    cells: &BTreeMap<usize, CellValue>,
    dict: &Dict,
) -> Result<ListArray, ListArray> {
    match l.values().data_type() {
        DataType::UInt8 => splice_unique_as::<UInt8Type>(l, len, cells, dict),
        DataType::UInt16 => splice_unique_as::<UInt16Type>(l, len, cells, dict),
        DataType::UInt32 => splice_unique_as::<UInt32Type>(l, len, cells, dict),
        _ => Err(l),
    }
}

fn splice_unique_as<T: ArrowPrimitiveType>(
    l: ListArray,
    len: usize,
    cells: &BTreeMap<usize, CellValue>,
    dict: &Dict,
) -> Result<ListArray, ListArray> {
    let n = l.len();
    let unique = l.offsets().inner().inner().strong_count() == 1
        && Arc::strong_count(l.values()) == 1
        && l.values().as_primitive::<T>().values().inner().strong_count() == 1
        && l.values().null_count() == 0
        && l.offset() == 0
        && l.values().offset() == 0;
    if n != len || !unique || cells.keys().next_back().is_some_and(|&o| o >= n) {
        return Err(l);
    }
    let code = |k: u32| T::Native::from_usize(k as usize).expect("the dictionary fits the code type");
    // Each written row's codes and the shift of every later row's codes (never negative).
    let offs = l.value_offsets();
    let mut writes: Vec<(usize, Vec<T::Native>, usize)> = Vec::with_capacity(cells.len());
    let mut shift = 0usize;
    for (&o, x) in cells {
        let new: Vec<T::Native> = match x {
            CellValue::List(items) => items.iter().filter_map(|s| dict.code(s)).map(code).collect(),
            _ => vec![],
        };
        let had = (offs[o + 1] - offs[o]) as usize;
        shift = match (shift + new.len()).checked_sub(had) {
            Some(s) => s,
            None => return Err(l),
        };
        writes.push((o, new, shift));
    }
    let old_total = offs[n] as usize;
    if old_total + shift > i32::MAX as usize {
        return Err(l);
    }
    let nulls = rebuilt_nulls(l.nulls(), n, n, cells, |x| matches!(x, CellValue::List(_)));
    let (field, offsets, values, old_nulls) = l.into_parts();
    let vals = values.as_primitive::<T>().clone();
    drop(values);
    let (vdt, vbuf, _) = vals.into_parts();
    let obuf = offsets.into_inner().into_inner();
    let (mut obuf, mut vbuf) = match (obuf.into_mutable(), vbuf.into_inner().into_mutable()) {
        (Ok(o), Ok(v)) => (o, v),
        (o, v) => {
            // Not ours after all (memory arrow did not allocate): given back as it was.
            let o = o.map_or_else(|b| b, Buffer::from);
            let v = v.map_or_else(|b| b, Buffer::from);
            let offsets = OffsetBuffer::new(ScalarBuffer::new(o, 0, n + 1));
            let values: ArrayRef = Arc::new(
                PrimitiveArray::<T>::new(ScalarBuffer::new(v, 0, old_total), None).with_data_type(vdt),
            );
            return Err(ListArray::new(field, offsets, values, old_nulls));
        }
    };
    let width = std::mem::size_of::<T::Native>();
    vbuf.resize((old_total + shift) * width, 0);
    let offs: &mut [i32] = obuf.typed_data_mut();
    let vals: &mut [T::Native] = vbuf.typed_data_mut();
    // Right to left: a row's codes move right by the shift of the writes before it, so a
    // move never lands on codes not yet moved.
    let mut end = old_total;
    for k in (0..writes.len()).rev() {
        let (o, new, after) = &writes[k];
        let before = if k == 0 { 0 } else { writes[k - 1].2 };
        let from = offs[o + 1] as usize;
        vals.copy_within(from..end, from + after);
        let start = offs[*o] as usize + before;
        vals[start..start + new.len()].copy_from_slice(new);
        end = offs[*o] as usize;
    }
    for (k, (o, _, after)) in writes.iter().enumerate() {
        let upto = writes.get(k + 1).map_or(n, |w| w.0);
        if *after > 0 {
            let s = *after as i32;
            offs[o + 1..=upto].iter_mut().for_each(|x| *x += s);
        }
    }
    let offsets: ScalarBuffer<i32> = ScalarBuffer::new(obuf.into(), 0, n + 1);
    debug_assert!(offsets.windows(2).all(|w| w[0] <= w[1]) && offsets[0] == 0);
    // SAFETY: offsets[0] is 0 and every step is the length of a row's codes (a kept row's
    // old one, a written row's new one), so they never decrease; checking it again was
    // a second pass over the chunk's offsets per write.
    let offsets = unsafe { OffsetBuffer::new_unchecked(offsets) };
    let values: ArrayRef = Arc::new(
        PrimitiveArray::<T>::new(ScalarBuffer::new(vbuf.into(), 0, old_total + shift), None)
            .with_data_type(vdt),
    );
    Ok(ListArray::new(field, offsets, values, nulls))
}

fn splice_as<T: ArrowPrimitiveType>(
    old: &ListArray,
    old_len: usize,
    len: usize,
    cells: &BTreeMap<usize, CellValue>,
    dict: &Dict,
) -> ListArray {
    let vals: &[T::Native] = old.values().as_primitive::<T>().values();
    let offs = old.value_offsets();
    let old_len = old_len.min(len);
    let mut offsets: Vec<i32> = Vec::with_capacity(len + 1);
    offsets.push(0);
    let mut flat: Vec<T::Native> = Vec::with_capacity(vals.len() + cells.len());
    // Old rows `from..to` (`to <= old_len`), offsets shifted to where their codes land.
    let copy = |from: usize, to: usize, offsets: &mut Vec<i32>, flat: &mut Vec<T::Native>| {
        if from >= to {
            return;
        }
        let shift = flat.len() as i32 - offs[from];
        flat.extend_from_slice(&vals[offs[from] as usize..offs[to] as usize]);
        offsets.extend(offs[from + 1..=to].iter().map(|&o| o + shift));
    };
    let mut next = 0;
    for (&o, x) in cells {
        copy(next, o.min(old_len), &mut offsets, &mut flat);
        // Rows added and not written are NULL (empty).
        for _ in next.max(old_len)..o {
            offsets.push(flat.len() as i32);
        }
        if let CellValue::List(items) = x {
            let code = |k: u32| T::Native::from_usize(k as usize).expect("the dictionary fits the code type");
            flat.extend(items.iter().filter_map(|s| dict.code(s)).map(code));
        }
        offsets.push(flat.len() as i32);
        next = o + 1;
    }
    copy(next, old_len, &mut offsets, &mut flat);
    for _ in next.max(old_len)..len {
        offsets.push(flat.len() as i32);
    }
    let nulls = rebuilt_nulls(old.nulls(), old_len, len, cells, |x| matches!(x, CellValue::List(_)));
    let values: ArrayRef = Arc::new(PrimitiveArray::<T>::new(ScalarBuffer::from(flat), None));
    let field = Arc::new(Field::new("item", values.data_type().clone(), false));
    ListArray::new(field, OffsetBuffer::new(ScalarBuffer::from(offsets)), values, nulls)
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

/// The validity of a chunk rebuilt at `len` rows from `old_len` rows with validity `old`:
/// rows added are NULL until written, and a written cell is valid unless `valid` says
/// not. None when every row is valid, the common case, in which no bitmap is built.
fn rebuilt_nulls(
    old: Option<&NullBuffer>,
    old_len: usize,
    len: usize,
    cells: &BTreeMap<usize, CellValue>,
    valid: impl Fn(&CellValue) -> bool,
) -> Option<NullBuffer> {
    let old = old.filter(|n| n.null_count() > 0);
    if old.is_none() && len == old_len && cells.values().all(&valid) {
        return None;
    }
    let mut b = BooleanBufferBuilder::new(len);
    match old {
        Some(n) => b.append_buffer(&n.inner().slice(0, old_len)),
        None => b.append_n(old_len, true),
    }
    b.append_n(len - old_len, false);
    for (&o, x) in cells {
        b.set_bit(o, valid(x));
    }
    Some(NullBuffer::new(b.finish())).filter(|n| n.null_count() > 0)
}

/// A primitive chunk rebuilt at `len` rows with `cells` written (values already checked;
/// a NULL cell keeps its old value under a cleared validity bit). The values are written
/// in place when the chunk keeps its length and no other version holds them, else copied
/// once (one memcpy): a batch touches every chunk of a column at 10M rows, so this runs
/// ~150 times per column per batch.
fn rebuild_typed<T: ArrowPrimitiveType>(
    old: Option<ArrayRef>,
    dt: &DataType,
    len: usize,
    cells: &BTreeMap<usize, CellValue>,
    conv: impl Fn(&CellValue) -> Option<T::Native>,
) -> ArrayRef {
    // The clone shares the values; once the chunk's own handle is dropped (here), they are
    // unique unless another version still holds the chunk.
    let (vals, old_nulls) = match old.map(|a| a.as_primitive::<T>().clone()) {
        Some(p) => {
            let (_, v, n) = p.into_parts();
            (Some(v), n)
        }
        None => (None, None),
    };
    let old_len = vals.as_ref().map_or(0, |v| v.len().min(len));
    let width = std::mem::size_of::<T::Native>();
    let copy = |from: &[T::Native]| {
        let mut m = MutableBuffer::new(len * width);
        m.extend_from_slice(&from[..old_len]);
        m.extend_zeros((len - old_len) * width);
        m
    };
    let mut buf = match vals {
        Some(v) if v.len() == len => match v.into_inner().into_mutable() {
            Ok(m) => m,
            Err(shared) => copy(shared.typed_data::<T::Native>()),
        },
        Some(v) => copy(&v),
        None => copy(&[]),
    };
    let nulls = rebuilt_nulls(old_nulls.as_ref(), old_len, len, cells, |x| conv(x).is_some());
    let slots = buf.typed_data_mut::<T::Native>();
    for (&o, x) in cells {
        if let Some(v) = conv(x) {
            slots[o] = v;
        }
    }
    Arc::new(PrimitiveArray::<T>::new(ScalarBuffer::from(buf), nulls).with_data_type(dt.clone())) as ArrayRef
}

/// A boolean chunk rebuilt like [`rebuild_typed`]: its bits written in place when no other
/// version holds them.
fn rebuild_bool(
    old: Option<BooleanArray>,
    old_len: usize,
    len: usize,
    cells: &BTreeMap<usize, CellValue>,
) -> BooleanArray {
    let bit = |x: &CellValue| if let CellValue::Bool(b) = x { Some(*b) } else { None };
    let (vals, old_nulls) = match old {
        Some(a) => {
            let (v, n) = a.into_parts();
            (Some(v), n)
        }
        None => (None, None),
    };
    let old_len = old_len.min(len);
    let copied = |from: &BooleanBuffer| {
        let mut b = BooleanBufferBuilder::new(len);
        b.append_buffer(&from.slice(0, old_len));
        b.append_n(len - old_len, false);
        for (&o, x) in cells {
            if let Some(v) = bit(x) {
                b.set_bit(o, v);
            }
        }
        b.finish()
    };
    let values = match vals {
        Some(v) if v.len() == len && v.offset() == 0 => match v.into_inner().into_mutable() {
            Ok(mut m) => {
                let bytes = m.as_slice_mut();
                for (&o, x) in cells {
                    match bit(x) {
                        Some(true) => set_bit(bytes, o),
                        Some(false) => unset_bit(bytes, o),
                        None => {}
                    }
                }
                BooleanBuffer::new(m.into(), 0, len)
            }
            Err(shared) => copied(&BooleanBuffer::new(shared, 0, len)),
        },
        Some(v) => copied(&v),
        None => copied(&BooleanBuffer::new_unset(0)),
    };
    let nulls = rebuilt_nulls(old_nulls.as_ref(), old_len, len, cells, |x| bit(x).is_some());
    BooleanArray::new(values, nulls)
}

/// A primitive chunk rebuilt at `len` rows with `cells` written (values already checked).
fn rebuild_primitive(
    old: Option<ArrayRef>,
    dt: &DataType,
    len: usize,
    cells: &BTreeMap<usize, CellValue>,
) -> ArrayRef {
    let int = |x: &CellValue| if let CellValue::Int(i) = x { Some(*i) } else { None };
    let float = |x: &CellValue| if let CellValue::Float(f) = x { Some(*f) } else { None };
    match dt {
        DataType::Int8 => rebuild_typed::<Int8Type>(old, dt, len, cells, |x| int(x).map(|i| i as i8)),
        DataType::Int16 => rebuild_typed::<Int16Type>(old, dt, len, cells, |x| int(x).map(|i| i as i16)),
        DataType::Int32 => rebuild_typed::<Int32Type>(old, dt, len, cells, |x| int(x).map(|i| i as i32)),
        DataType::Int64 => rebuild_typed::<Int64Type>(old, dt, len, cells, int),
        DataType::UInt8 => rebuild_typed::<UInt8Type>(old, dt, len, cells, |x| int(x).map(|i| i as u8)),
        DataType::UInt16 => rebuild_typed::<UInt16Type>(old, dt, len, cells, |x| int(x).map(|i| i as u16)),
        DataType::UInt32 => rebuild_typed::<UInt32Type>(old, dt, len, cells, |x| int(x).map(|i| i as u32)),
        DataType::UInt64 => rebuild_typed::<UInt64Type>(old, dt, len, cells, |x| int(x).map(|i| i as u64)),
        DataType::Date32 => rebuild_typed::<Date32Type>(old, dt, len, cells, |x| int(x).map(|i| i as i32)),
        DataType::Date64 => rebuild_typed::<Date64Type>(old, dt, len, cells, int),
        DataType::Timestamp(TimeUnit::Second, _) => {
            rebuild_typed::<TimestampSecondType>(old, dt, len, cells, int)
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            rebuild_typed::<TimestampMillisecondType>(old, dt, len, cells, int)
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            rebuild_typed::<TimestampMicrosecondType>(old, dt, len, cells, int)
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            rebuild_typed::<TimestampNanosecondType>(old, dt, len, cells, int)
        }
        DataType::Float32 => {
            rebuild_typed::<Float32Type>(old, dt, len, cells, |x| float(x).map(|f| f as f32))
        }
        DataType::Float64 => rebuild_typed::<Float64Type>(old, dt, len, cells, float),
        t => unreachable!("not a primitive column type: {t}"),
    }
}

#[cfg(test)]
#[path = "colmut_tests.rs"]
mod tests;
