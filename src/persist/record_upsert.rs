//! The log record of an upsert written straight from the in-memory batch: the same bytes
//! as `pb::Record::from(m).encode(..)` (a test compares them), without building the
//! `pb` message first. That message owns a copy of every attribute name and string
//! value, and building, encoding and freeing it was ~22% of a commit group's CPU
//! (callgrind, 4 × 10,000 upserts, 100 saved segments; see BENCHMARKS.md §8).
//!
//! Protobuf's rules as prost applies them: fields in field-number order; a proto3 scalar
//! equal to its default (`customer_id` 0, an empty `attribute`) is left out; a oneof case
//! is always written, even at its default (`bool` false, an empty `str`); repeated
//! strings are written one by one, empty ones included.

use crate::store::mutate::{CellValue, CustomerUpdate};

const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;

/// `Record.upsert`, `Upsert.customers`, `CustomerUpdate.customer_id` / `.cells`, `Cell.*`,
/// `StringList.items` (proto/segd/log/v1/log.proto).
const RECORD_UPSERT: u8 = 1;
const UPSERT_CUSTOMERS: u8 = 1;
const UPDATE_CUSTOMER_ID: u8 = 1;
const UPDATE_CELLS: u8 = 2;
const CELL_ATTRIBUTE: u8 = 1;
const CELL_NULL: u8 = 2;
const CELL_BOOL: u8 = 3;
const CELL_INT: u8 = 4;
const CELL_FLOAT: u8 = 5;
const CELL_STR: u8 = 6;
const CELL_LIST: u8 = 7;
const LIST_ITEMS: u8 = 1;

/// Appends the record of `Mutation::Upsert(batch)` to `buf`.
pub(super) fn encode_upsert(batch: &[CustomerUpdate], buf: &mut Vec<u8>) {
    let body: usize = batch.iter().map(|u| delimited_len(update_len(u))).sum();
    buf.reserve(delimited_len(body));
    key(RECORD_UPSERT, LEN, buf);
    varint(body as u64, buf);
    for u in batch {
        key(UPSERT_CUSTOMERS, LEN, buf);
        varint(update_len(u) as u64, buf);
        if u.customer_id != 0 {
            key(UPDATE_CUSTOMER_ID, VARINT, buf);
            varint(u.customer_id, buf);
        }
        for (name, v) in &u.attributes {
            key(UPDATE_CELLS, LEN, buf);
            varint(cell_len(name, v) as u64, buf);
            if !name.is_empty() {
                bytes(CELL_ATTRIBUTE, name.as_bytes(), buf);
            }
            match v {
                CellValue::Null => {
                    key(CELL_NULL, LEN, buf);
                    buf.push(0);
                }
                CellValue::Bool(b) => {
                    key(CELL_BOOL, VARINT, buf);
                    buf.push(*b as u8);
                }
                CellValue::Int(i) => {
                    key(CELL_INT, VARINT, buf);
                    varint(zigzag(*i), buf);
                }
                CellValue::Float(x) => {
                    key(CELL_FLOAT, I64, buf);
                    buf.extend_from_slice(&x.to_le_bytes());
                }
                CellValue::Str(s) => bytes(CELL_STR, s.as_bytes(), buf),
                CellValue::List(items) => {
                    key(CELL_LIST, LEN, buf);
                    varint(list_len(items) as u64, buf);
                    for s in items {
                        bytes(LIST_ITEMS, s.as_bytes(), buf);
                    }
                }
            }
        }
    }
}

fn update_len(u: &CustomerUpdate) -> usize {
    let id = if u.customer_id == 0 { 0 } else { 1 + varint_len(u.customer_id) };
    id + u.attributes.iter().map(|(name, v)| delimited_len(cell_len(name, v))).sum::<usize>()
}

fn cell_len(name: &str, v: &CellValue) -> usize {
    let name = if name.is_empty() { 0 } else { delimited_len(name.len()) };
    name + match v {
        CellValue::Null => 2,
        CellValue::Bool(_) => 2,
        CellValue::Int(i) => 1 + varint_len(zigzag(*i)),
        CellValue::Float(_) => 9,
        CellValue::Str(s) => delimited_len(s.len()),
        CellValue::List(items) => delimited_len(list_len(items)),
    }
}

fn list_len(items: &[String]) -> usize {
    items.iter().map(|s| delimited_len(s.len())).sum()
}

/// A one-byte key, a length and `n` bytes (every field number here is below 16).
fn delimited_len(n: usize) -> usize {
    1 + varint_len(n as u64) + n
}

fn key(field: u8, wire: u8, buf: &mut Vec<u8>) {
    buf.push(field << 3 | wire);
}

fn bytes(field: u8, b: &[u8], buf: &mut Vec<u8>) {
    key(field, LEN, buf);
    varint(b.len() as u64, buf);
    buf.extend_from_slice(b);
}

fn zigzag(i: i64) -> u64 {
    ((i << 1) ^ (i >> 63)) as u64
}

fn varint(mut v: u64, buf: &mut Vec<u8>) {
    while v >= 0x80 {
        buf.push(v as u8 | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn varint_len(v: u64) -> usize {
    // 7 bits a byte; 0 takes one byte.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Reads the record of an upsert in the form [`encode_upsert`] writes, building the batch
/// directly: prost's generic decoder grew every string as it read it and left ~3.5k
/// instructions per customer update (3 cells), most of start-up replay's CPU.
///
/// None for any other record and any other form of one (unknown, repeated or misplaced
/// fields, a cell without a value, bad UTF-8, a cut record): the general decoder then
/// reads those bytes, so this path never decides an error, nor a value prost would not
/// give (`fast_decode_agrees_with_prost`).
pub(super) fn decode_upsert(bytes: &[u8]) -> Option<Vec<CustomerUpdate>> {
    let mut r = Reader(bytes);
    if r.key()? != (RECORD_UPSERT, LEN) {
        return None;
    }
    let mut body = r.delimited()?;
    if !r.0.is_empty() {
        return None;
    }
    let mut batch = Vec::new();
    while !body.0.is_empty() {
        if body.key()? != (UPSERT_CUSTOMERS, LEN) {
            return None;
        }
        batch.push(update(body.delimited()?)?);
    }
    Some(batch)
}

fn update(mut r: Reader<'_>) -> Option<CustomerUpdate> {
    let mut customer_id = None;
    let mut attributes = Vec::new();
    while !r.0.is_empty() {
        match r.key()? {
            (UPDATE_CUSTOMER_ID, VARINT) if customer_id.is_none() => customer_id = Some(r.varint()?),
            (UPDATE_CELLS, LEN) => attributes.push(cell(r.delimited()?)?),
            _ => return None,
        }
    }
    Some(CustomerUpdate { customer_id: customer_id.unwrap_or(0), attributes })
}

fn cell(mut r: Reader<'_>) -> Option<(String, CellValue)> {
    let mut name = None;
    let mut value = None;
    while !r.0.is_empty() {
        let key = r.key()?;
        if key == (CELL_ATTRIBUTE, LEN) && name.is_none() {
            name = Some(r.string()?);
            continue;
        }
        if value.is_some() {
            return None;
        }
        value = Some(match key {
            (CELL_NULL, LEN) if r.delimited()?.0.is_empty() => CellValue::Null,
            (CELL_BOOL, VARINT) => match r.varint()? {
                0 => CellValue::Bool(false),
                1 => CellValue::Bool(true),
                _ => return None,
            },
            (CELL_INT, VARINT) => {
                let z = r.varint()?;
                CellValue::Int((z >> 1) as i64 ^ -((z & 1) as i64))
            }
            (CELL_FLOAT, I64) => CellValue::Float(f64::from_le_bytes(r.take(8)?.try_into().ok()?)),
            (CELL_STR, LEN) => CellValue::Str(r.string()?),
            (CELL_LIST, LEN) => {
                let mut list = r.delimited()?;
                let mut items = vec![];
                while !list.0.is_empty() {
                    if list.key()? != (LIST_ITEMS, LEN) {
                        return None;
                    }
                    items.push(list.string()?);
                }
                CellValue::List(items)
            }
            _ => return None,
        });
    }
    Some((name.unwrap_or_default(), value?))
}

/// The unread rest of a message.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// A one-byte key as (field, wire type): every field read here is below 16.
    fn key(&mut self) -> Option<(u8, u8)> {
        let (&b, rest) = self.0.split_first()?;
        if b & 0x80 != 0 {
            return None;
        }
        self.0 = rest;
        Some((b >> 3, b & 7))
    }

    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for (i, &b) in self.0.iter().enumerate().take(10) {
            // The tenth byte holds the top bit only (prost refuses more).
            if i == 9 && b > 1 {
                return None;
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                self.0 = &self.0[i + 1..];
                return Some(v);
            }
        }
        None
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn delimited(&mut self) -> Option<Reader<'a>> {
        let n = usize::try_from(self.varint()?).ok()?;
        self.take(n).map(Reader)
    }

    fn string(&mut self) -> Option<String> {
        let b = self.delimited()?.0;
        std::str::from_utf8(b).ok().map(str::to_owned)
    }
}
