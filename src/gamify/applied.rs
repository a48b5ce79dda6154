//! What a mutation reports to the engine: per event outcomes, customers to create, the
//! derived attribute values to write into indexed columns, and achievements in order.

use super::AttrValue;

/// Why a customer's tier changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TierReason {
    /// An event raised the measure.
    Qualified,
    /// A downgrade check at a period end (+ grace).
    PeriodEnd,
    /// A manual tier was set above the current one.
    Manual,
    /// A program change.
    Program,
}

/// Something worth telling the customer, in the order it happened.
#[derive(Clone, Debug, PartialEq)]
pub enum Achievement {
    TierChanged {
        customer_id: u64,
        from: String,
        to: String,
        reason: TierReason,
        at_ms: i64,
    },
    LevelUp {
        customer_id: u64,
        from: u32,
        to: u32,
        at_ms: i64,
    },
    /// A badge awarded; `count` is its awards so far, this one included.
    BadgeAwarded {
        customer_id: u64,
        badge: String,
        count: u32,
        at_ms: i64,
    },
    /// A challenge's window completed (`window_start_ms`: the window's first instant).
    ChallengeCompleted {
        customer_id: u64,
        challenge: String,
        window_start_ms: i64,
        at_ms: i64,
    },
    /// A streak reached one of its milestones.
    StreakMilestone {
        customer_id: u64,
        streak: String,
        milestone: u32,
        at_ms: i64,
    },
}

/// What happened to one event of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventOutcome {
    /// Applied: the points it credited (after caps), and for a refund the points reversed
    /// and the shortfall; `challenges`: the progress it made (empty: none), which
    /// challenge-progress leaderboards take as their delta.
    Applied { credited: i64, reversed: i64, shortfall: i64, challenges: Vec<ChallengeStep> },
    /// Its `event_id` was seen within the dedup window: nothing changed.
    Duplicate,
}

/// An event counted toward a challenge: exactly what the challenge's progress took (its
/// type, `where`, opt-in, eligibility and window held, the event was not late for the
/// window), whether or not the target was already reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChallengeStep {
    /// Index into the applying program's `achieve.challenges`.
    pub challenge: u16,
    /// What the progress took: 1 for a count goal, the property in hundredths for a sum.
    pub amount: i64,
}

/// The new derived attribute values of one customer, for the engine's indexed columns.
#[derive(Clone, Debug, PartialEq)]
pub struct CustomerAttrs {
    pub customer_id: u64,
    /// `points_balance`, `points_pending`, `lifetime_points`, `points_expiring_30d`,
    /// `tier`, `level`, then the program's counters in program order, then the badges',
    /// streaks' and challenges' attributes ([`super::achieve::Achieve::columns`]): one
    /// per name of [`super::Program::attr_names`], in its order.
    pub values: Vec<AttrValue>,
}

impl CustomerAttrs {
    /// The values with their names (`program`: the one that produced them).
    pub fn named(&self, program: &super::Program) -> Vec<(String, AttrValue)> {
        program.attr_names.iter().cloned().zip(self.values.iter().cloned()).collect()
    }
}

/// The effects of one mutation, for the engine to write in the same apply.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Applied {
    /// Per event of the batch, in order (empty for other mutations).
    pub outcomes: Vec<EventOutcome>,
    /// Customers segd must create (unknown customers under `unknown_customers: create`).
    pub created: Vec<u64>,
    /// Customers the mutation touched, ascending by id, with all their derived values
    /// (after a program change: only those whose values changed).
    pub changed: Vec<CustomerAttrs>,
    pub achievements: Vec<Achievement>,
}
