//! A [`Change`] as the bytes of one log record (`segd.log.v1.Record` field 30 carries
//! them), and the whole [`State`] as the snapshot's decision section (`SnapshotMeta`
//! field 30).

use prost::Message;

use super::offer::{CatalogueRecord, ContactPolicyRecord, OfferRecord};
use super::state::{outcome_code, outcome_kind, ContactStateRecord, DecisionTakenRecord, OutcomeRecord};
use super::{need, RecordError};
use crate::decide::change::{Change, State};

#[derive(Clone, PartialEq, prost::Message)]
pub struct ChangeRecord {
    #[prost(oneof = "ChangeKind", tags = "1, 2, 3, 4, 5")]
    pub kind: Option<ChangeKind>,
}

// A record lives only while it is encoded or decoded: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum ChangeKind {
    #[prost(message, tag = "1")]
    PutOffer(OfferRecord),
    #[prost(string, tag = "2")]
    DeleteOffer(String),
    #[prost(message, tag = "3")]
    SetContactPolicy(ContactPolicyRecord),
    #[prost(message, tag = "4")]
    DecisionTaken(DecisionTakenRecord),
    #[prost(message, tag = "5")]
    Outcome(OutcomeRecord),
}

/// The snapshot section: the catalogue and the contact state.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StateRecord {
    #[prost(message, optional, tag = "1")]
    pub catalogue: Option<CatalogueRecord>,
    #[prost(message, optional, tag = "2")]
    pub contacts: Option<ContactStateRecord>,
}

/// Why record bytes are not a change or a state.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("not a valid protobuf message: {0}")]
    Protobuf(String),
    #[error(transparent)]
    Record(#[from] RecordError),
}

impl From<&Change> for ChangeRecord {
    fn from(c: &Change) -> Self {
        let kind = match c {
            Change::PutOffer(o) => ChangeKind::PutOffer(o.as_ref().into()),
            Change::DeleteOffer(id) => ChangeKind::DeleteOffer(id.clone()),
            Change::SetContactPolicy(p) => ChangeKind::SetContactPolicy(p.into()),
            Change::DecisionTaken(d) => ChangeKind::DecisionTaken(d.into()),
            Change::RecordOutcome { decision_id, offer_id, kind, at_ms } => {
                ChangeKind::Outcome(OutcomeRecord {
                    decision_id: *decision_id,
                    offer_id: offer_id.clone(),
                    outcome: outcome_code(*kind),
                    at_ms: *at_ms,
                })
            }
        };
        ChangeRecord { kind: Some(kind) }
    }
}

impl TryFrom<ChangeRecord> for Change {
    type Error = RecordError;

    fn try_from(r: ChangeRecord) -> Result<Self, RecordError> {
        let ChangeRecord { kind } = r;
        Ok(match need(kind, "change.kind")? {
            ChangeKind::PutOffer(o) => Change::PutOffer(Box::new(o.try_into()?)),
            ChangeKind::DeleteOffer(id) => Change::DeleteOffer(id),
            ChangeKind::SetContactPolicy(p) => Change::SetContactPolicy(p.try_into()?),
            ChangeKind::DecisionTaken(d) => Change::DecisionTaken(d.try_into()?),
            ChangeKind::Outcome(OutcomeRecord { decision_id, offer_id, outcome, at_ms }) => {
                Change::RecordOutcome { decision_id, offer_id, kind: outcome_kind(outcome)?, at_ms }
            }
        })
    }
}

/// The log record bytes of a change.
pub fn encode_change(c: &Change) -> Vec<u8> {
    ChangeRecord::from(c).encode_to_vec()
}

pub fn decode_change(bytes: &[u8]) -> Result<Change, DecodeError> {
    let r = ChangeRecord::decode(bytes).map_err(|e| DecodeError::Protobuf(e.to_string()))?;
    Ok(r.try_into()?)
}

/// The snapshot section of a state: empty for a state never changed (so a data dir that
/// never used decisions writes the same snapshot bytes as before they existed).
pub fn encode_state(s: &State) -> Vec<u8> {
    if s.is_pristine() {
        return vec![];
    }
    StateRecord { catalogue: Some(s.catalogue().into()), contacts: Some(s.contacts().into()) }.encode_to_vec()
}

/// The state of a snapshot section (empty: the pristine state).
pub fn decode_state(bytes: &[u8]) -> Result<State, DecodeError> {
    if bytes.is_empty() {
        return Ok(State::default());
    }
    let StateRecord { catalogue, contacts } =
        StateRecord::decode(bytes).map_err(|e| DecodeError::Protobuf(e.to_string()))?;
    Ok(State::new(
        need(catalogue, "state.catalogue")?.try_into()?,
        need(contacts, "state.contacts")?.try_into()?,
    ))
}
