//! [`Change`]: every gamification write as one logged mutation (the engine's
//! `Mutation::Gamify`) and its [`ChangeOutcome`]. Their log bytes and the snapshot
//! section are `persist::gamify::change`'s.
//!
//! Every time a change needs is in it, stamped by the application before it is logged
//! (`logged_at_ms`, a tick's `now_ms`, a program's `effective_ms`): apply never reads a
//! clock, so replay reproduces the state exactly.

use std::sync::Arc;

use super::{EventOutcome, GamifyError, Grant, LedgerOutcome, Program, Spend};

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
