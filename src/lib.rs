//! segd: customer segments counted exactly, in milliseconds, from bitmap indexes over
//! Arrow columns held in memory.
//!
//! # Layout
//! - [`index`]: the bitmap layer: 2^16-row containers ([`index::container`]), per-value
//!   postings, exact range indexes ([`index::range`]).
//! - [`store`]: the customer table: Arrow column chunks, loading Parquet / Arrow IPC,
//!   the external-id map, and index building.
//! - [`query`]: the segment language (SQL `WHERE` text or a JSON tree) parsed to one
//!   expression, planned against the store, evaluated chunk by chunk in parallel.
//! - [`gen`]: a synthetic customer table with the benchmark kit's schema.
//! - [`naive`]: a row-by-row SQL evaluator over Arrow batches: the tests' oracle.
//!
//! None of these modules knows about gRPC.

pub mod gen;
pub mod index;
pub mod naive;
pub mod query;
pub mod store;
