//! The log form of a gamification [`Change`] ([`encode_change`] / [`decode_change`]) and
//! the gamification snapshot section ([`encode_snapshot`] / [`decode_snapshot`]).

use prost::Message;

use super::achieve::JoinRecord;
use super::{
    events_from_record, events_record, EventsRecord, GrantRecord, ManualTierRecord, ProgramRecord,
    SpendRecord, TickRecord,
};
use std::sync::Arc;

use crate::gamify::{Change, GamifyError, GamifyState, Program};

/// The log form of a [`Change`]: one case per kind.
#[derive(Clone, PartialEq, Message)]
pub struct ChangeRecord {
    #[prost(oneof = "ChangeKind", tags = "1, 2, 3, 4, 5, 6, 20")]
    pub kind: Option<ChangeKind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum ChangeKind {
    #[prost(message, tag = "1")]
    Program(ProgramRecord),
    #[prost(message, tag = "2")]
    Events(EventsRecord),
    #[prost(message, tag = "3")]
    Spend(SpendRecord),
    #[prost(message, tag = "4")]
    Grant(GrantRecord),
    #[prost(message, tag = "5")]
    ManualTier(ManualTierRecord),
    #[prost(message, tag = "6")]
    Tick(TickRecord),
    #[prost(message, tag = "20")]
    Join(JoinRecord),
}

/// A snapshot's gamification section: the program in force and every customer's state.
#[derive(Clone, PartialEq, Message)]
pub struct SnapshotRecord {
    #[prost(message, optional, tag = "1")]
    pub program: Option<ProgramRecord>,
    /// [`super::encode_state`]'s bytes, read under `program`.
    #[prost(bytes = "vec", tag = "2")]
    pub state: Vec<u8>,
}

fn corrupt(what: impl Into<String>) -> GamifyError {
    GamifyError::Corrupt(what.into())
}

pub fn encode_change(c: &Change) -> Vec<u8> {
    let kind = match c {
        Change::PutProgram { program, effective_ms } => {
            ChangeKind::Program(ProgramRecord { effective_ms: *effective_ms, json: program.to_json() })
        }
        Change::RecordEvents { events, logged_at_ms } => {
            ChangeKind::Events(events_record(events, *logged_at_ms))
        }
        Change::SpendPoints { spend, logged_at_ms } => ChangeKind::Spend((spend, *logged_at_ms).into()),
        Change::GrantPoints { grant, logged_at_ms } => ChangeKind::Grant((grant, *logged_at_ms).into()),
        Change::SetManualTier { customer_id, tier, logged_at_ms } => {
            ChangeKind::ManualTier(ManualTierRecord {
                logged_at_ms: *logged_at_ms,
                customer_id: *customer_id,
                tier: tier.clone(),
            })
        }
        Change::Tick { now_ms } => ChangeKind::Tick(TickRecord { now_ms: *now_ms }),
        Change::JoinChallenge { customer_id, challenge, logged_at_ms } => ChangeKind::Join(JoinRecord {
            logged_at_ms: *logged_at_ms,
            customer_id: *customer_id,
            challenge: challenge.clone(),
        }),
    };
    ChangeRecord { kind: Some(kind) }.encode_to_vec()
}

pub fn decode_change(bytes: &[u8]) -> Result<Change, GamifyError> {
    let ChangeRecord { kind } = ChangeRecord::decode(bytes).map_err(|e| corrupt(e.to_string()))?;
    Ok(match kind.ok_or_else(|| corrupt("change record without a kind"))? {
        ChangeKind::Program(ProgramRecord { effective_ms, json }) => {
            Change::PutProgram { program: Arc::new(Program::from_json(&json)?), effective_ms }
        }
        ChangeKind::Events(rec) => {
            let (events, logged_at_ms) = events_from_record(rec)?;
            Change::RecordEvents { events, logged_at_ms }
        }
        ChangeKind::Spend(r) => {
            let (spend, logged_at_ms) = r.into();
            Change::SpendPoints { spend, logged_at_ms }
        }
        ChangeKind::Grant(r) => {
            let (grant, logged_at_ms) = r.into();
            Change::GrantPoints { grant, logged_at_ms }
        }
        ChangeKind::ManualTier(ManualTierRecord { logged_at_ms, customer_id, tier }) => {
            Change::SetManualTier { customer_id, tier, logged_at_ms }
        }
        ChangeKind::Tick(TickRecord { now_ms }) => Change::Tick { now_ms },
        ChangeKind::Join(JoinRecord { logged_at_ms, customer_id, challenge }) => {
            Change::JoinChallenge { customer_id, challenge, logged_at_ms }
        }
    })
}

/// The snapshot section of a program in force (`effective_ms`) and its state.
pub fn encode_snapshot(program: &Program, effective_ms: i64, state: &GamifyState) -> Vec<u8> {
    SnapshotRecord {
        program: Some(ProgramRecord { effective_ms, json: program.to_json() }),
        state: super::encode_state(state, program),
    }
    .encode_to_vec()
}

/// Reads [`encode_snapshot`]'s bytes: (program, effective_ms, state).
pub fn decode_snapshot(bytes: &[u8]) -> Result<(Program, i64, GamifyState), GamifyError> {
    let SnapshotRecord { program, state } =
        SnapshotRecord::decode(bytes).map_err(|e| corrupt(e.to_string()))?;
    let ProgramRecord { effective_ms, json } =
        program.ok_or_else(|| corrupt("snapshot without a program"))?;
    let program = Program::from_json(&json)?;
    let state = super::decode_state(&state, &program)?;
    Ok((program, effective_ms, state))
}
