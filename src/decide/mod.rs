//! Next-best-offer decisions: an offer catalogue, arbitration with an explanation for every
//! offer, contact history with caps, budgets and suppression, adaptive propensities, and
//! exact reach funnels from the bitmaps.
//!
//! The module sits above [`crate::store`], [`crate::index`] and [`crate::query`] and below
//! the engine: it decides and applies, the engine logs. Its state ([`Catalogue`],
//! [`ContactState`]) changes only by applying records in commit order:
//! - [`offer`]: what an offer is, and its validation.
//! - [`catalogue`]: the offers and the contact policy they share.
//! - [`facts`]: what a decision reads about a customer ([`CustomerFacts`]), from a table or
//!   from maps.
//! - [`arbitrate`]: [`decide`]: stages, scores, ranking, the decision record to log.
//! - [`history`]: applying decisions and outcomes: caps, budgets, suppression, models.
//! - [`limits`]: caps, contact limits, suppression and budgets as questions on that state.
//! - [`reach`]: the exact funnel of an offer over the whole base.
//! - [`campaign`]: decisions for every member of a segment.
//! - [`record`]: protobuf record forms of all of the above, for the log and snapshots.
//! - [`shards`]: id-keyed maps split in `Arc`ed shards for cheap copy-on-write versions.
//! - [`hash`]: stable hold-out / control-group draws and sampling seeds.
//!
//! # How the engine drives it
//! - `NextBestOffer`: on a published version, [`decide`] with a [`DatasetFacts`] built
//!   once per (table version, catalogue); then [`ContactState::check_decision`], log the
//!   [`record::DecisionTakenRecord`], and in apply [`ContactState::apply_decision`];
//!   [`Decision::settle`] merges what the apply kept into the answer.
//! - `RecordOutcome`: [`ContactState::check_outcome`], log [`record::OutcomeRecord`], apply
//!   [`ContactState::record_outcome`] (idempotent).
//! - `PutOffer`: [`Offer::validate`], [`ContactConfig::check_offer`] and
//!   [`facts::resolve`] against the current version, log [`record::OfferRecord`], apply
//!   [`Catalogue::put`]. `DeleteSegment` should refuse a segment that
//!   [`Catalogue::offers_using_segment`] names.
//! - Snapshots: [`record::CatalogueRecord`] and [`record::ContactStateRecord`].
//! - `ReachEstimate`: [`reach_estimate`]; `DecideForSegment`: [`decide_for_segment`], each
//!   decision then logged and applied like a single one.
//!
//! Known costs to address with the service: the expiry index is copied whole when the
//! state is cloned for a version; hold-out and control draws in a reach are one SipHash per
//! suitable customer (a per-offer bitmap kept at apply would make them a bitmap AND).

pub mod arbitrate;
pub mod campaign;
pub mod catalogue;
pub mod facts;
pub mod hash;
pub mod history;
pub mod limits;
pub mod offer;
pub mod reach;
pub mod record;
pub mod shards;

pub use arbitrate::{
    decide, Context, DecideError, Decision, DecisionRecord, DropReason, Dropped, ModelKey, Ranked, Request,
    Stage,
};
pub use campaign::{decide_for_segment, Blast};
pub use catalogue::{Catalogue, ContactPolicy};
pub use facts::{CustomerFacts, DatasetFacts, FactsError, MapFacts};
pub use history::{Applied, ContactConfig, ContactState, HistoryError, OutcomeApplied, OutcomeKind};
pub use offer::{
    Channel, ContextWeights, Limit, Offer, OfferError, Propensity, SegmentRef, Suppression, Value,
};
pub use reach::{reach_estimate, Funnel};

#[cfg(test)]
mod table_tests;
#[cfg(test)]
mod tests;
