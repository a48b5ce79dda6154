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
//!   snapshots; [`persist::record`] is the versioned on-disk record format (the
//!   `segd.log.v1` protobuf schema in proto/segd/log/v1, with explicit conversions),
//!   [`persist::gamify`], [`persist::decide`] and [`persist::leaderboard`] the record
//!   forms of the gamification state, the decision state and the leaderboards, and
//!   `persist::legacy` reads the first release's JSON records.
//! - [`gamify`]: gamification core: a declarative program, events, a points ledger with
//!   pending windows and expiry, earning rules, tiers and levels; pure and deterministic
//!   (time only from events and logged records). Its snapshot / log records are
//!   [`persist::gamify`]'s protobuf messages. The program's badges,
//!   challenges and streaks ([`gamify::achieve`]) are applied per customer at each event
//!   ([`gamify::achieve_state`], with [`badge`], [`challenge`] and [`streak`] below).
//!   [`gamify::memory`]: the state's bytes by structure (the metrics endpoint's).
//! - [`leaderboard`]: exact leaderboards per period in the program's time zone, read whole
//!   or within any row bitmap (a segment, an ad-hoc `where`) with no copy per scope;
//!   [`leaderboard::live`]: the boards a program defines (its `leaderboards` section,
//!   [`gamify::leaderboards`]), kept from logged changes outside the engine's versions.
//! - [`badge`]: badges awarded on a criterion's rising edge (once, or repeatable up to a
//!   bound), kept per customer by interned key; pure, like the two below.
//! - [`streak`]: consecutive days / weeks with a qualifying event in the customer's time
//!   zone, with freezes and milestones; pure functions.
//! - [`challenge`]: challenge windows (fixed, each week, each month) and progress toward a
//!   count or sum target, completed once per window; pure functions.
//! - [`segments`]: saved segments, materialised and kept current on every write, with
//!   their enter / leave events.
//! - [`engine`]: the state machine: table + saved segments + recent events, changed only
//!   by logged mutations applied in commit order; each mutation's segment events are
//!   derived from it alone, whatever the grouping (`engine_tests.rs`: the oracle).
//!   `engine_gamify.rs`: its gamification part (`Mutation::Gamify`): the program and
//!   state, derived attributes written to indexed columns in the same apply (the program
//!   owns those columns: a PutProgram rewrites them for every customer), achievements
//!   (`engine_achieve_tests.rs`: badges, challenges and streaks through it).
//!   `engine_boards.rs`: the leaderboards, shared by every version and moved in log order
//!   after each gamification change (and a delete).
//! - [`decide`]: next-best-offer decisions: the offer catalogue and contact policy,
//!   arbitration with an explanation per offer, contact history (caps, budgets,
//!   suppression, adaptive models) in persistent maps versions share, reach funnels,
//!   campaign blasts over a segment ([`decide::campaign`]: per-offer bitmaps once per call),
//!   hold-out / control draws as cached row bitmaps ([`decide::draws`]), offers' rules
//!   compiled once and reused by single decisions ([`decide::rules`]) (their protobuf
//!   record forms are [`persist::decide`]'s); [`decide::change`] is what the engine holds
//!   ([`decide::State`]) and applies ([`decide::Change`], `Mutation::Decide`).
//! - [`db`]: durability and publication around the engine: group-committed write-ahead
//!   log (optionally also a replicated log behind `db/sink.rs`, or, for a cluster member,
//!   a shared log written first: `db/cluster.rs`'s committer), copy-on-write versions
//!   published by pointer swap (readers never wait for a write) with their events,
//!   background snapshots, start-up from snapshot + log replay. `db/guard.rs`: apply under `catch_unwind`; a failed apply stops writes (the
//!   health signal) and replay names the record (`--skip-sequence`).
//! - [`app`]: the application core: one [`app::App`] owning the state (a [`db::Db`] or
//!   a fixed table), the plan cache, the limits ([`app::Config`]) and the commit watch,
//!   with one method per use case, typed inputs and results, and [`app::AppError`].
//!
//! None of these modules knows about a transport. These do, and only they import tonic /
//! prost / axum (except [`persist`], whose record forms use prost for storage, not for
//! any API); they
//! translate and call [`app::App`]:
//! - [`grpc`]: the `segd.v1.SegmentService` / `CustomerService` / `DecisionService` /
//!   `EventService` / `GamificationService` / `LeaderboardService` / `ReplicaService` adapters: generated proto types, conversions (`TryFrom`), the one error-to-status
//!   mapping.
//! - [`http`]: the same use cases as proto3 JSON over HTTP/1.1 (grpc-gateway-style paths;
//!   `http/gamify.rs` the event and gamification ones, `http/decide.rs` the DecisionService),
//!   with the gRPC adapter's conversions and codes, and the segment builder page at `/`.
//! - [`metrics`]: per-RPC counters and histograms (`prometheus-client`, labels from
//!   [`metrics::Rpc`]), the HTTP API's per-route requests, and the axum `/metrics`
//!   endpoint.
//! - [`server`]: runs the gRPC services, health and reflection until shutdown.
//! - [`security`]: TLS (rustls) and the optional bearer token, for both listeners; the
//!   checks are a tower layer around every gRPC service (`grpc/auth.rs`) and an axum
//!   middleware around every HTTP route (`http/guard.rs`).
//! - [`replica`]: replication over NATS JetStream: the primary's commit groups stored in a
//!   stream before they are acknowledged (a [`db::GroupSink`], `db/sink.rs`), and read
//!   replicas following that stream through their own committer; or cluster members,
//!   each following the stream and storing its own writes in it first (a
//!   [`db::SharedLog`]) ([`app::replica::ReplicaStatus`] is what the application sees of it);
//!   [`replica::events`]: saved segments' events and achievements published to JetStream
//!   subjects for durable consumers (`--publish-events`), idempotently by message id.
//!
//! Layering: transports ([`grpc`], [`http`], [`server`], [`metrics`], [`security`]) → [`app`] → [`db`] →
//! [`engine`] → [`store`] / [`index`] / [`segments`] / [`query`] / [`analytics`] /
//! [`persist`].

pub mod analytics;
pub mod app;
pub mod badge;
pub mod challenge;
pub mod db;
pub mod decide;
pub mod engine;
pub mod gamify;
pub mod gen;
pub mod grpc;
pub mod http;
pub mod index;
pub mod leaderboard;
pub mod metrics;
pub mod naive;
pub mod persist;
pub mod plan_cache;
pub mod query;
pub mod replica;
pub mod security;
pub mod segments;
pub mod server;
pub mod store;
pub mod streak;
