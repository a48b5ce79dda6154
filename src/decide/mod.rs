//! Next-best-offer decisions: an offer catalogue, arbitration with an explanation for every
//! offer, contact history with caps, budgets and suppression, adaptive propensities, and
//! exact reach funnels from the bitmaps.
//!
//! The module sits above [`crate::store`], [`crate::index`] and [`crate::query`] and below
//! the engine: it decides and applies, the engine logs. Its state ([`Catalogue`],
//! [`ContactState`]) changes only by applying records in commit order:
//! - [`offer`]: what an offer is, and its validation.
//! - [`catalogue`]: the offers and the contact policy they share.
//! - [`change`]: the subsystem as the engine drives it: [`State`], the logged [`Change`]s,
//!   their check before logging and their apply.
//! - [`facts`]: what a decision reads about a customer ([`CustomerFacts`]), from a table or
//!   from maps.
//! - [`arbitrate`]: [`decide`]: stages, scores, ranking, the decision record to log.
//! - [`history`]: applying decisions and outcomes: caps, budgets, suppression, models.
//! - [`limits`]: caps, contact limits, suppression and budgets as questions on that state.
//! - [`reach`]: the exact funnel of an offer over the whole base.
//! - [`campaign`]: decisions for every member of a segment: [`Blaster`], bitmaps per offer
//!   once per call and a per-member ranking into reused buffers.
//! - [`draws`]: hold-out and control-group draws as cached, append-extended row bitmaps.
//! - [`rules`]: offers' rules compiled once per catalogue and table bindings
//!   ([`RuleCache`]), reused by every decision; memberships read live.
//! - Their protobuf record forms, for the log and snapshots, are [`crate::persist::decide`].
//! - [`idmap`]: id-keyed persistent maps: a version's clone is O(1), a write copies its path.
//! - [`hash`]: stable hold-out / control-group draws and sampling seeds.
//!
//! # How the engine drives it
//! - `NextBestOffer`: on a published version, [`decide_with`] (without `explain`, nothing
//!   is built for offers not presented) with a [`DatasetFacts`] over the
//!   [`RuleCache`]'s rules (compiled once per catalogue and binding generation, saved
//!   segments read from the version); then [`ContactState::check_decision`], log the
//!   [`crate::persist::decide::DecisionTakenRecord`], and in apply [`ContactState::apply_decision`];
//!   [`settle`] merges what the apply kept into the answer (the record itself moves into
//!   the log).
//! - `RecordOutcome`: [`ContactState::check_outcome`], log [`crate::persist::decide::OutcomeRecord`], apply
//!   [`ContactState::record_outcome`] (idempotent).
//! - `PutOffer`: [`Offer::validate`], [`ContactConfig::check_offer`] and
//!   [`facts::resolve`] against the current version, log [`crate::persist::decide::OfferRecord`], apply
//!   [`Catalogue::put`]. `DeleteSegment` should refuse a segment that
//!   [`Catalogue::offers_using_segment`] names.
//! - Snapshots: [`crate::persist::decide::CatalogueRecord`] and [`crate::persist::decide::ContactStateRecord`].
//! - `ReachEstimate`: [`reach_estimate`]; `DecideForSegment`: [`Blaster`] (or
//!   [`decide_for_segment`] when every member's explanation is asked for), each decision
//!   that presents something then logged and applied like a single one.
//! - `GetDecision`: [`ContactState::decision_at`]: a retained decision, from logged
//!   records only.
//!
//! Costs: a version's clone of the state copies no map (the catalogue is shared whole until
//! an offer changes; the per-customer, per-decision and per-offer maps and the expiry index
//! are persistent trees, [`idmap`]); hold-out and control draws
//! are hashed once per customer and offer into cached bitmaps ([`draws`]).

pub mod arbitrate;
pub mod campaign;
pub mod catalogue;
pub mod change;
pub mod draws;
pub mod facts;
pub mod hash;
pub mod history;
pub mod idmap;
pub mod limits;
pub mod offer;
pub mod reach;

pub mod rules;

pub use arbitrate::{
    decide, decide_with, settle, Context, DecideError, Decision, DecisionRecord, DropReason, Dropped,
    ModelKey, Ranked, Request, Stage,
};
pub use campaign::{decide_for_segment, Blast, BlastBatch, BlastScratch, Blaster, Member, Scored};
pub use catalogue::{Catalogue, ContactPolicy};
pub use change::{Change, ChangeError, ChangeOutcome, State};
pub use draws::DrawCache;
pub use facts::{CustomerFacts, DatasetFacts, FactsError, MapFacts};
pub use history::{Applied, ContactConfig, ContactState, HistoryError, OutcomeApplied, OutcomeKind};
pub use offer::{
    Channel, ContextWeights, Limit, Offer, OfferError, Propensity, SegmentRef, Suppression, Value,
};
pub use reach::{reach_estimate, Funnel};
pub use rules::{CompiledRules, Members, RuleCache};

#[cfg(test)]
mod blast_tests;
#[cfg(test)]
mod db_tests;
#[cfg(test)]
mod rules_tests;
#[cfg(test)]
mod table_tests;
#[cfg(test)]
mod tests;
