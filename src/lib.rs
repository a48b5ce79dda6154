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
//! - [`analytics`]: schema description, a segment's breakdown by one attribute, and
//!   pairwise overlaps of segments, from the indexes.
//! - [`plan_cache`]: compiled ad-hoc segment texts (and their counts), bounded, with an
//!   invalidation hook for data changes.
//! - [`metrics`]: Prometheus counters and histograms, and their HTTP endpoint.
//! - [`persist`]: durability: a checksummed, group-committed write-ahead log and Arrow IPC
//!   snapshots.
//! - [`segments`]: saved segments, materialised and kept current on every write, with
//!   their enter / leave events.
//! - [`engine`]: the state machine: table + saved segments + recent events, changed only
//!   by logged mutations applied in commit order.
//! - [`db`]: durability and publication around the engine: group-committed write-ahead
//!   log, copy-on-write versions published by pointer swap (readers never wait for a
//!   write), background snapshots, start-up from snapshot + log replay.
//!
//! None of these modules knows about gRPC. Three do, and only they import tonic / prost:
//! - [`grpc`]: the `segd.v1.SegmentService` adapter: generated proto types, conversions,
//!   the error-to-status mapping.
//! - [`http`]: the same use cases as proto3 JSON over HTTP (grpc-gateway-style paths,
//!   axum), with the gRPC adapter's conversions and codes; and the segment builder page.
//! - [`server`]: runs the gRPC service, health and reflection until shutdown.

pub mod analytics;
pub mod app;
pub mod db;
pub mod engine;
pub mod gen;
pub mod grpc;
pub mod http;
pub mod index;
pub mod metrics;
pub mod naive;
pub mod persist;
pub mod plan_cache;
pub mod query;
pub mod segments;
pub mod server;
pub mod store;
