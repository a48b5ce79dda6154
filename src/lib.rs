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
//! - [`persist`]: durability: a checksummed, group-committed write-ahead log and Arrow IPC
//!   snapshots.
//! - [`segments`]: saved segments, materialised and kept current on every write, with
//!   their enter / leave events.
//! - [`engine`]: the state machine: table + saved segments + recent events, changed only
//!   by logged mutations applied in commit order.
//! - [`db`]: durability and publication around the engine: group-committed write-ahead
//!   log, copy-on-write versions published by pointer swap (readers never wait for a
//!   write), background snapshots, start-up from snapshot + log replay.
//! - [`app`]: the application core: one [`app::App`] owning the state (a [`db::Db`] or
//!   a fixed table), the plan cache, the limits ([`app::Config`]) and the commit watch,
//!   with one method per use case, typed inputs and results, and [`app::AppError`].
//!
//! None of these modules knows about a transport. These do, and only they import tonic /
//! prost / axum; they translate and call [`app::App`]:
//! - [`grpc`]: the `segd.v1.SegmentService` / `CustomerService` adapters: generated proto
//!   types, conversions (`TryFrom`), the one error-to-status mapping.
//! - [`http`]: the same use cases as proto3 JSON over HTTP/1.1 (grpc-gateway-style paths),
//!   with the gRPC adapter's conversions and codes, and the segment builder page at `/`.
//! - [`metrics`]: per-RPC counters and histograms (`prometheus-client`, labels from
//!   [`metrics::Rpc`]) and the axum `/metrics` endpoint.
//! - [`server`]: runs the gRPC services, health and reflection until shutdown.
//!
//! Layering: transports ([`grpc`], [`http`], [`server`], [`metrics`]) → [`app`] → [`db`] →
//! [`engine`] → [`store`] / [`index`] / [`segments`] / [`query`] / [`analytics`] /
//! [`persist`].

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
