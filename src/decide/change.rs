//! The decision subsystem as the engine sees it: one [`State`] (the catalogue and the
//! contact history) changed only by logged [`Change`]s, checked before they are logged
//! ([`State::check`]) and applied in commit order ([`State::apply`]).
//!
//! Commit groups: every mutation of a group is checked against the state before the group,
//! so a change whose validity another can depend on (an offer put or deleted, the contact
//! policy set) ends its group ([`Change::changes_catalogue`]). Decisions and outcomes do
//! not: applying a decision re-checks its limits in commit order, and an outcome whose
//! decision lapsed between its check and its apply (an earlier record of the same group
//! moved the clock past the decision's retention) is applied as nothing
//! ([`ChangeOutcome::OutcomeLapsed`]), so apply never fails for a checked change.

use std::sync::Arc;

use super::arbitrate::DecisionRecord;
use super::catalogue::{Catalogue, ContactPolicy, MAX_OFFERS};
use super::facts::{self, FactsError};
use super::history::{Applied, ContactConfig, ContactState, HistoryError, OutcomeApplied, OutcomeKind};
use super::offer::{Offer, OfferError};
use crate::query::plan::Segments;
use crate::query::Limits;
use crate::store::Dataset;

/// One logged change of the decision state. Times in it were stamped before logging.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// Adds or replaces an offer.
    PutOffer(Box<Offer>),
    DeleteOffer(String),
    SetContactPolicy(ContactPolicy),
    /// A decision taken (`NextBestOffer`, or one member of `DecideForSegment`).
    DecisionTaken(DecisionRecord),
    /// An outcome of a presented offer; idempotent per (decision, offer, outcome).
    RecordOutcome {
        decision_id: u64,
        offer_id: String,
        kind: OutcomeKind,
        at_ms: i64,
    },
}

impl Change {
    /// Whether the validity of a later change can depend on this one: ends a commit group.
    pub fn changes_catalogue(&self) -> bool {
        match self {
            Change::PutOffer(_) | Change::DeleteOffer(_) | Change::SetContactPolicy(_) => true,
            Change::DecisionTaken(_) | Change::RecordOutcome { .. } => false,
        }
    }

    /// One line for logs and start-up errors.
    pub fn summary(&self) -> String {
        match self {
            Change::PutOffer(o) => format!("put offer '{}'", o.id),
            Change::DeleteOffer(id) => format!("delete offer '{id}'"),
            Change::SetContactPolicy(_) => "set contact policy".into(),
            Change::DecisionTaken(d) => format!(
                "decision {} for customer {} ({} offers{})",
                d.decision_id,
                d.customer_id,
                d.offers.len(),
                if d.fallback.is_some() { " + fallback" } else { "" }
            ),
            Change::RecordOutcome { decision_id, offer_id, kind, .. } => {
                format!("outcome {kind:?} of offer '{offer_id}' in decision {decision_id}")
            }
        }
    }
}

/// What applying a change did.
#[derive(Clone, Debug, PartialEq)]
pub enum ChangeOutcome {
    OfferPut {
        replaced: bool,
    },
    OfferDeleted,
    PolicySet,
    /// What the decision kept in commit order.
    Decided(Applied),
    Outcome(OutcomeApplied),
    /// The outcome's decision lapsed between the check and the apply: nothing changed.
    OutcomeLapsed(HistoryError),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChangeError {
    #[error(transparent)]
    Offer(#[from] OfferError),
    #[error(transparent)]
    Facts(#[from] FactsError),
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error("segment '{segment}' is used by offer(s) {}; change or delete them first", offers.join(", "))]
    SegmentInUse { segment: String, offers: Vec<String> },
}

/// The decision state of one engine version. The engine holds it behind an `Arc`, so a
/// commit group without decision changes shares it whole; one with changes clones it
/// once, which copies no map (see [`ContactState`] and [`Catalogue`]).
#[derive(Clone, Debug, PartialEq)]
pub struct State {
    catalogue: Catalogue,
    contacts: ContactState,
}

impl Default for State {
    /// No offers, the default contact policy, the default history retention.
    fn default() -> Self {
        let contacts = ContactState::new(ContactConfig::default()).expect("the default config is valid");
        State { catalogue: Catalogue::default(), contacts }
    }
}

impl State {
    pub fn new(catalogue: Catalogue, contacts: ContactState) -> State {
        State { catalogue, contacts }
    }

    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    pub fn contacts(&self) -> &ContactState {
        &self.contacts
    }

    /// Whether nothing was ever changed (a snapshot then writes no decision section).
    pub fn is_pristine(&self) -> bool {
        *self == State::default()
    }

    /// Whether `c` would apply, against this version and its table (`segs`: saved
    /// segments, for offers' rules). Nothing changes.
    pub fn check(&self, ds: &Dataset, segs: Segments<'_>, c: &Change) -> Result<(), ChangeError> {
        match c {
            Change::PutOffer(o) => {
                o.validate()?;
                self.contacts.config.check_offer(o)?;
                facts::resolve(ds, o, segs, &Limits::default())?;
                if self.catalogue.get(&o.id).is_none() && self.catalogue.len() >= MAX_OFFERS {
                    return Err(OfferError::TooMany(MAX_OFFERS).into());
                }
            }
            Change::DeleteOffer(id) => {
                if self.catalogue.get(id).is_none() {
                    return Err(OfferError::NotFound(id.clone()).into());
                }
            }
            Change::SetContactPolicy(p) => {
                p.validate()?;
                self.contacts.config.check_policy(p)?;
            }
            Change::DecisionTaken(d) => self.contacts.check_decision(d)?,
            Change::RecordOutcome { decision_id, offer_id, at_ms, .. } => {
                self.contacts.check_outcome(*decision_id, offer_id, *at_ms)?
            }
        }
        Ok(())
    }

    /// Whether saved segment `id` may be deleted: no offer may read it.
    pub fn check_delete_segment(&self, id: &str) -> Result<(), ChangeError> {
        let offers = self.catalogue.offers_using_segment(id);
        if offers.is_empty() {
            return Ok(());
        }
        Err(ChangeError::SegmentInUse { segment: id.into(), offers })
    }

    /// Applies a logged change (checked before it was logged).
    pub fn apply(&mut self, c: &Change) -> Result<ChangeOutcome, ChangeError> {
        Ok(match c {
            Change::PutOffer(o) => {
                let replaced = self.catalogue.get(&o.id).is_some();
                self.catalogue.put(Offer::clone(o))?;
                ChangeOutcome::OfferPut { replaced }
            }
            Change::DeleteOffer(id) => {
                self.catalogue.delete(id)?;
                ChangeOutcome::OfferDeleted
            }
            Change::SetContactPolicy(p) => {
                self.catalogue.set_policy(p.clone())?;
                ChangeOutcome::PolicySet
            }
            Change::DecisionTaken(d) => {
                ChangeOutcome::Decided(self.contacts.apply_decision(&self.catalogue, d)?)
            }
            Change::RecordOutcome { decision_id, offer_id, kind, at_ms } => {
                match self.contacts.record_outcome(*decision_id, offer_id, *kind, *at_ms) {
                    Ok(o) => ChangeOutcome::Outcome(o),
                    Err(e) => ChangeOutcome::OutcomeLapsed(e),
                }
            }
        })
    }
}

/// Applies `c` to the state behind `state`, cloning it first if a published version
/// shares it (the engine's one call).
pub fn apply_shared(state: &mut Arc<State>, c: &Change) -> Result<ChangeOutcome, ChangeError> {
    Arc::make_mut(state).apply(c)
}
