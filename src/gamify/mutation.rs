//! [`Change`]: every gamification write as one logged mutation (the engine's
//! `Mutation::Gamify`), its [`ChangeOutcome`], and its log bytes ([`encode_change`] /
//! [`decode_change`]) and snapshot section ([`encode_snapshot`] / [`decode_snapshot`]).
//!
//! Every time a change needs is in it, stamped by the application before it is logged
//! (`logged_at_ms`, a tick's `now_ms`, a program's `effective_ms`): apply never reads a
//! clock, so replay reproduces the state exactly.

use std::sync::Arc;

use prost::Message;

use super::achieve_record::JoinRecord;
use super::record::{
    events_from_record, events_record, EventsRecord, GrantRecord, ManualTierRecord, ProgramRecord,
    SpendRecord, TickRecord,
};
use super::{EventOutcome, GamifyError, GamifyState, Grant, LedgerOutcome, Program, Spend};

/// One gamification write.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// A program version (validated), in force from `effective_ms` (its logged time).
    /// Every customer is re-tiered and re-levelled in the same apply.
    PutProgram {
        program: Arc<Program>,
        effective_ms: i64,
    },
    /// A batch of events, valid whole or rejected whole.
    RecordEvents {
        events: Vec<super::Event>,
        logged_at_ms: i64,
    },
    SpendPoints {
        spend: Spend,
        logged_at_ms: i64,
    },
    GrantPoints {
        grant: Grant,
        logged_at_ms: i64,
    },
    /// `tier: None` clears the manual tier.
    SetManualTier {
        customer_id: u64,
        tier: Option<String>,
        logged_at_ms: i64,
    },
    /// The clock: pending points released, credits expired, downgrade checks run.
    Tick {
        now_ms: i64,
    },
    /// A customer opts in to an opt-in challenge.
    JoinChallenge {
        customer_id: u64,
        challenge: String,
        logged_at_ms: i64,
    },
}

/// What a change did.
#[derive(Clone, Debug, PartialEq)]
pub enum ChangeOutcome {
    /// Customers whose derived attributes changed with the program.
    ProgramPut {
        customers_changed: u64,
    },
    /// Per event of the batch, in order.
    Events(Vec<EventOutcome>),
    Spent(LedgerOutcome),
    Granted(LedgerOutcome),
    ManualTierSet,
    /// Customers the tick visited.
    Ticked {
        customers_changed: u64,
    },
    /// `already`: the customer had joined before (nothing changed).
    Joined {
        already: bool,
    },
    /// Valid against the state before its commit group, no longer when its turn came
    /// (an earlier write of the same group changed what it depends on, e.g. a second
    /// spend of the same points): logged, applied as nothing, answered with the error.
    /// Replay reaches the same verdict, as apply is sequential whatever the grouping.
    Rejected(GamifyError),
}

impl Change {
    /// A one-line description for logs and start-up errors.
    pub fn summary(&self) -> String {
        match self {
            Change::PutProgram { program, effective_ms } => format!(
                "gamify: put program ({} rules, {} tiers) effective {effective_ms}",
                program.spec.rules.len(),
                program.spec.tiers.tiers.len()
            ),
            Change::RecordEvents { events, logged_at_ms } => {
                let ids: Vec<&str> = events.iter().take(3).map(|e| e.event_id.as_str()).collect();
                let more = if events.len() > ids.len() { ", ..." } else { "" };
                format!("gamify: {} events [{}{more}] logged at {logged_at_ms}", events.len(), ids.join(", "))
            }
            Change::SpendPoints { spend, .. } => format!(
                "gamify: spend {} points of customer {} (request '{}')",
                spend.points, spend.customer_id, spend.request_id
            ),
            Change::GrantPoints { grant, .. } => format!(
                "gamify: grant {} points to customer {} (request '{}')",
                grant.points, grant.customer_id, grant.request_id
            ),
            Change::SetManualTier { customer_id, tier, .. } => {
                format!("gamify: manual tier of customer {customer_id} set to {tier:?}")
            }
            Change::Tick { now_ms } => format!("gamify: tick at {now_ms}"),
            Change::JoinChallenge { customer_id, challenge, .. } => {
                format!("gamify: customer {customer_id} joins challenge '{challenge}'")
            }
        }
    }

    /// Customer changes it logs (what `--snapshot-every` counts).
    pub fn changes(&self) -> u64 {
        match self {
            Change::RecordEvents { events, .. } => events.len().max(1) as u64,
            Change::PutProgram { .. }
            | Change::SpendPoints { .. }
            | Change::GrantPoints { .. }
            | Change::SetManualTier { .. }
            | Change::Tick { .. }
            | Change::JoinChallenge { .. } => 1,
        }
    }

    /// Whether the checks of later writes depend on it (a program change: the program
    /// and the columns they are checked against).
    pub fn changes_schema(&self) -> bool {
        match self {
            Change::PutProgram { .. } => true,
            Change::RecordEvents { .. }
            | Change::SpendPoints { .. }
            | Change::GrantPoints { .. }
            | Change::SetManualTier { .. }
            | Change::Tick { .. }
            | Change::JoinChallenge { .. } => false,
        }
    }
}

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
    /// [`super::record::encode_state`]'s bytes, read under `program`.
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
        state: super::record::encode_state(state, program),
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
    let state = super::record::decode_state(&state, &program)?;
    Ok((program, effective_ms, state))
}
