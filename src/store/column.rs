//! The in-memory form of one customer attribute: Arrow arrays, one per 2^16-row chunk.
//!
//! Chunks line up with the bitmap containers so a chunk's values and its index containers
//! are read together, and so a later update can copy-on-write one 64 Ki-row chunk instead
//! of a 10M-row array (Arrow arrays are immutable). Strings are dictionary-encoded against
//! one dictionary per column shared by all chunks: codes are the index's value ids.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, BooleanArray, ListArray};
use arrow_schema::{DataType, TimeUnit};

/// What kind of values a column holds, as the segment language sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Bool,
    /// Any integer width; also dates and timestamps, held as their integer encoding.
    Int(Temporal),
    Float,
    Str,
    StrList,
}

/// How the integers of an `Int` column are to be read as calendar values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Temporal {
    None,
    /// Days since 1970-01-01.
    Date32,
    /// Milliseconds since 1970-01-01.
    Date64,
    Timestamp(TimeUnit),
}

impl Kind {
    /// A short name for errors and the Schema RPC.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Bool => "bool",
            Kind::Int(Temporal::None) => "int",
            Kind::Int(Temporal::Date32 | Temporal::Date64) => "date",
            Kind::Int(Temporal::Timestamp(_)) => "timestamp",
            Kind::Float => "float",
            Kind::Str => "string",
            Kind::StrList => "list<string>",
        }
    }
}

/// A string dictionary: code -> value and value -> code.
#[derive(Clone, Debug, Default)]
pub struct Dict {
    values: Vec<Arc<str>>,
    codes: HashMap<Arc<str>, u32>,
}

impl Dict {
    pub fn code(&self, value: &str) -> Option<u32> {
        self.codes.get(value).copied()
    }

    /// The code of `value`, adding it when new.
    pub fn intern(&mut self, value: &str) -> u32 {
        if let Some(&c) = self.codes.get(value) {
            return c;
        }
        let c = self.values.len() as u32;
        let v: Arc<str> = value.into();
        self.values.push(v.clone());
        self.codes.insert(v, c);
        c
    }

    pub fn value(&self, code: u32) -> &str {
        &self.values[code as usize]
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn heap_bytes(&self) -> usize {
        self.values.iter().map(|v| v.len() * 2 + 48).sum()
    }
}

/// The chunks of one column. Code arrays are as narrow as the dictionary allows (`UInt8`
/// up to 256 values, the usual low-cardinality attribute; `UInt16`; else `UInt32`).
#[derive(Clone, Debug)]
pub enum ColumnData {
    Bool(Vec<BooleanArray>),
    /// PrimitiveArray of the source's own integer, date or timestamp type.
    Int(Vec<ArrayRef>),
    /// Float32Array or Float64Array.
    Float(Vec<ArrayRef>),
    Str {
        dict: Arc<Dict>,
        chunks: Vec<ArrayRef>,
    },
    /// Lists of codes (`List<UInt16|UInt32>`).
    List {
        dict: Arc<Dict>,
        chunks: Vec<ListArray>,
    },
}

/// One attribute.
#[derive(Clone, Debug)]
pub struct Column {
    pub name: String,
    /// The type it was loaded from, reported back by the Schema RPC.
    pub source_type: DataType,
    pub kind: Kind,
    pub nullable: bool,
    pub data: ColumnData,
}

impl Column {
    /// The chunk array (codes for strings).
    pub fn chunk(&self, c: usize) -> &dyn Array {
        match &self.data {
            ColumnData::Bool(v) => &v[c],
            ColumnData::Int(v) | ColumnData::Float(v) => v[c].as_ref(),
            ColumnData::Str { chunks, .. } => chunks[c].as_ref(),
            ColumnData::List { chunks, .. } => &chunks[c],
        }
    }

    pub fn dict(&self) -> Option<&Arc<Dict>> {
        match &self.data {
            ColumnData::Str { dict, .. } | ColumnData::List { dict, .. } => Some(dict),
            _ => None,
        }
    }

    pub fn is_null(&self, row: u32) -> bool {
        let (c, o) = split(row);
        self.chunk(c).is_null(o)
    }

    /// Bytes held by the arrays and dictionary.
    pub fn heap_bytes(&self) -> usize {
        let arrays: usize = match &self.data {
            ColumnData::Bool(v) => v.iter().map(|a| a.get_array_memory_size()).sum(),
            ColumnData::Int(v) | ColumnData::Float(v) | ColumnData::Str { chunks: v, .. } => {
                v.iter().map(|a| a.get_array_memory_size()).sum()
            }
            ColumnData::List { chunks, .. } => chunks.iter().map(|a| a.get_array_memory_size()).sum(),
        };
        arrays + self.dict().map_or(0, |d| d.heap_bytes())
    }

    /// Integer values of chunk `c` (Int columns only).
    pub fn ints(&self, c: usize) -> IntSlice<'_> {
        match &self.data {
            ColumnData::Int(v) => IntSlice::of(v[c].as_ref()),
            _ => panic!("{} is not an integer column", self.name),
        }
    }

    /// Float values of chunk `c` (Float columns only).
    pub fn floats(&self, c: usize) -> FloatSlice<'_> {
        match &self.data {
            ColumnData::Float(v) => FloatSlice::of(v[c].as_ref()),
            _ => panic!("{} is not a float column", self.name),
        }
    }
}

/// Chunk number and offset of a row.
#[inline]
pub fn split(row: u32) -> (usize, usize) {
    ((row >> 16) as usize, (row & 0xffff) as usize)
}

/// A chunk's integers as a slice of their own width; `get` widens to i64.
/// The match inside `get` is always the same arm in a loop, so it predicts perfectly.
#[derive(Clone, Copy)]
pub enum IntSlice<'a> {
    I8(&'a [i8]),
    I16(&'a [i16]),
    I32(&'a [i32]),
    I64(&'a [i64]),
    U8(&'a [u8]),
    U16(&'a [u16]),
    U32(&'a [u32]),
    U64(&'a [u64]),
}

macro_rules! prim_values {
    ($a:expr, $t:ty) => {
        $a.as_any().downcast_ref::<arrow_array::PrimitiveArray<$t>>().expect("column chunk type").values()
    };
}

impl<'a> IntSlice<'a> {
    pub fn of(a: &'a dyn Array) -> Self {
        use arrow_array::types::*;
        match a.data_type() {
            DataType::Int8 => IntSlice::I8(prim_values!(a, Int8Type)),
            DataType::Int16 => IntSlice::I16(prim_values!(a, Int16Type)),
            DataType::Int32 => IntSlice::I32(prim_values!(a, Int32Type)),
            DataType::Int64 => IntSlice::I64(prim_values!(a, Int64Type)),
            DataType::UInt8 => IntSlice::U8(prim_values!(a, UInt8Type)),
            DataType::UInt16 => IntSlice::U16(prim_values!(a, UInt16Type)),
            DataType::UInt32 => IntSlice::U32(prim_values!(a, UInt32Type)),
            DataType::UInt64 => IntSlice::U64(prim_values!(a, UInt64Type)),
            DataType::Date32 => IntSlice::I32(prim_values!(a, Date32Type)),
            DataType::Date64 => IntSlice::I64(prim_values!(a, Date64Type)),
            DataType::Timestamp(TimeUnit::Second, _) => IntSlice::I64(prim_values!(a, TimestampSecondType)),
            DataType::Timestamp(TimeUnit::Millisecond, _) => {
                IntSlice::I64(prim_values!(a, TimestampMillisecondType))
            }
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                IntSlice::I64(prim_values!(a, TimestampMicrosecondType))
            }
            DataType::Timestamp(TimeUnit::Nanosecond, _) => {
                IntSlice::I64(prim_values!(a, TimestampNanosecondType))
            }
            t => panic!("not an integer chunk: {t}"),
        }
    }

    /// The value at `i` as i64. u64 values above i64::MAX are refused at load.
    #[inline]
    pub fn get(&self, i: usize) -> i64 {
        match self {
            IntSlice::I8(v) => v[i] as i64,
            IntSlice::I16(v) => v[i] as i64,
            IntSlice::I32(v) => v[i] as i64,
            IntSlice::I64(v) => v[i],
            IntSlice::U8(v) => v[i] as i64,
            IntSlice::U16(v) => v[i] as i64,
            IntSlice::U32(v) => v[i] as i64,
            IntSlice::U64(v) => v[i] as i64,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            IntSlice::I8(v) => v.len(),
            IntSlice::I16(v) => v.len(),
            IntSlice::I32(v) => v.len(),
            IntSlice::I64(v) => v.len(),
            IntSlice::U8(v) => v.len(),
            IntSlice::U16(v) => v.len(),
            IntSlice::U32(v) => v.len(),
            IntSlice::U64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A chunk's floats; `get` widens to f64.
#[derive(Clone, Copy)]
pub enum FloatSlice<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
}

impl<'a> FloatSlice<'a> {
    pub fn of(a: &'a dyn Array) -> Self {
        use arrow_array::types::*;
        match a.data_type() {
            DataType::Float32 => FloatSlice::F32(prim_values!(a, Float32Type)),
            DataType::Float64 => FloatSlice::F64(prim_values!(a, Float64Type)),
            t => panic!("not a float chunk: {t}"),
        }
    }

    #[inline]
    pub fn get(&self, i: usize) -> f64 {
        match self {
            FloatSlice::F32(v) => v[i] as f64,
            FloatSlice::F64(v) => v[i],
        }
    }
}

/// A chunk of dictionary codes, 8, 16 or 32 bits wide.
#[derive(Clone, Copy)]
pub enum CodeSlice<'a> {
    U8(&'a [u8]),
    U16(&'a [u16]),
    U32(&'a [u32]),
}

impl<'a> CodeSlice<'a> {
    pub fn of(a: &'a dyn Array) -> Self {
        use arrow_array::types::*;
        match a.data_type() {
            DataType::UInt8 => CodeSlice::U8(prim_values!(a, UInt8Type)),
            DataType::UInt16 => CodeSlice::U16(prim_values!(a, UInt16Type)),
            DataType::UInt32 => CodeSlice::U32(prim_values!(a, UInt32Type)),
            t => panic!("not a code chunk: {t}"),
        }
    }

    #[inline]
    pub fn get(&self, i: usize) -> u32 {
        match self {
            CodeSlice::U8(v) => v[i] as u32,
            CodeSlice::U16(v) => v[i] as u32,
            CodeSlice::U32(v) => v[i],
        }
    }
}
