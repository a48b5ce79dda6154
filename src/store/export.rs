//! The table back out as plain Arrow record batches (live customers only): for snapshots,
//! for rebuilding from scratch in tests, and for anyone who wants the data as Arrow.

use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use super::column::{CodeSlice, ColumnData};
use super::Dataset;
use crate::index::container::{zeroed, CHUNK_ROWS};

impl Dataset {
    /// The Arrow schema batches are exported with: each column's source type, except
    /// strings (Utf8) and string lists (List<Utf8>), whose dictionaries are internal.
    pub fn export_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| {
                    let dt = match &c.data {
                        ColumnData::Str { .. } => DataType::Utf8,
                        ColumnData::List { .. } => {
                            DataType::List(Arc::new(Field::new("item", DataType::Utf8, false)))
                        }
                        _ => c.source_type.clone(),
                    };
                    Field::new(
                        &c.name,
                        dt,
                        c.nullable || self.nulls[self.column_index(&c.name).unwrap()].is_some(),
                    )
                })
                .collect::<Vec<_>>(),
        ))
    }

    /// One batch per chunk, deleted customers left out.
    pub fn export(&self) -> Vec<RecordBatch> {
        let schema = self.export_schema();
        (0..self.n_chunks()).map(|c| self.export_chunk(&schema, c)).collect()
    }

    /// Chunk `c` as a batch of `schema` (from [`Dataset::export_schema`]).
    pub fn export_chunk(&self, schema: &SchemaRef, c: usize) -> RecordBatch {
        {
            {
                let len = (self.rows - c * CHUNK_ROWS).min(CHUNK_ROWS);
                let mut words = zeroed();
                self.live.chunk(c).write_to(&mut words);
                let keep: Vec<bool> = (0..len).map(|o| words[o >> 6] & (1 << (o & 63)) != 0).collect();
                let keep = BooleanArray::from(keep);
                let cols: Vec<ArrayRef> =
                    self.columns
                        .iter()
                        .map(|col| {
                            let full: ArrayRef = match &col.data {
                                ColumnData::Bool(v) => Arc::new(v[c].clone()),
                                ColumnData::Int(v) | ColumnData::Float(v) => v[c].clone(),
                                ColumnData::Str { dict, chunks } => {
                                    let a = chunks[c].as_ref();
                                    let codes = CodeSlice::of(a);
                                    Arc::new(
                                        (0..a.len())
                                            .map(|o| a.is_valid(o).then(|| dict.value(codes.get(o))))
                                            .collect::<StringArray>(),
                                    )
                                }
                                ColumnData::List { dict, chunks } => {
                                    let l = &chunks[c];
                                    let codes = CodeSlice::of(l.values().as_ref());
                                    let offs = l.value_offsets();
                                    let mut b = ListBuilder::new(StringBuilder::new())
                                        .with_field(Field::new("item", DataType::Utf8, false));
                                    for o in 0..l.len() {
                                        if l.is_valid(o) {
                                            for i in offs[o] as usize..offs[o + 1] as usize {
                                                b.values().append_value(dict.value(codes.get(i)));
                                            }
                                        }
                                        b.append(l.is_valid(o));
                                    }
                                    Arc::new(b.finish())
                                }
                            };
                            arrow_select::filter::filter(full.as_ref(), &keep).expect("same length")
                        })
                        .collect();
                RecordBatch::try_new(schema.clone(), cols).expect("export matches its schema")
            }
        }
    }
}
