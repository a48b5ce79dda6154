//! Record forms of the decision state, for the write-ahead log and snapshots: protobuf
//! messages of their own (field numbers are the compatibility contract), never the
//! in-memory types. Conversions are explicit and destructure every field, so a new field
//! breaks the build until someone decides how it is recorded.
//!
//! - [`offer`]: offers, the contact policy and the catalogue (a `PutOffer` / `SetPolicy`
//!   mutation and the catalogue snapshot section).
//! - [`expr`]: segment predicate trees.
//! - [`state`]: the decision taken, outcomes, and the contact-state snapshot section.
//! - [`change`]: a logged [`crate::decide::Change`] (log record field 30) and the whole
//!   state (snapshot field 30).

pub mod change;
pub mod expr;
pub mod offer;
pub mod state;

pub use change::{decode_change, decode_state, encode_change, encode_state, ChangeRecord, StateRecord};
pub use expr::ExprRecord;
pub use offer::{CatalogueRecord, ContactPolicyRecord, OfferRecord};
pub use state::{ContactStateRecord, DecisionTakenRecord, OutcomeRecord};

/// A record that cannot be turned back into state.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RecordError {
    #[error("record field {0} is missing")]
    Missing(&'static str),
    #[error("record field {field}: unknown value {value}")]
    Unknown { field: &'static str, value: String },
    #[error(transparent)]
    Offer(#[from] crate::decide::offer::OfferError),
}

/// `Some` field or a [`RecordError::Missing`].
pub(crate) fn need<T>(v: Option<T>, field: &'static str) -> Result<T, RecordError> {
    v.ok_or(RecordError::Missing(field))
}

pub(crate) fn channel(s: &str, field: &'static str) -> Result<crate::decide::offer::Channel, RecordError> {
    crate::decide::offer::Channel::parse(s).map_err(|_| RecordError::Unknown { field, value: s.into() })
}

#[cfg(test)]
mod tests;
