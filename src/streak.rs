//! Streaks: consecutive days (or ISO weeks) with a qualifying event, counted in the
//! customer's time zone (the caller passes it: the customer's attribute, else the
//! program's), current and longest, with an optional freeze and milestones.
//!
//! Pure functions over (rule, state, logged instant, zone): no clock, so replay gives the
//! same streaks. Units are local calendar days: an event at 00:00:00.000 local time counts
//! for the new day, and a day is 23 or 25 hours long across a DST change. A customer
//! whose zone changes is counted in the zone in force at each event.
//!
//! # Order
//! Events are taken in log order. An event for a unit before the last counted one (a late,
//! out-of-order arrival) changes nothing: it cannot repair a gap after the fact, so a
//! streak never depends on arrival timing once a later unit has been counted. A second
//! event in the same unit changes nothing either.
//!
//! # Freeze
//! With `freeze_every: Some(n)`, a gap of exactly one missed unit is forgiven when no
//! freeze was used in the `n` units before the missed one; the missed unit does not count
//! toward the streak (a streak counts units with an event). A longer gap breaks it.
//!
//! # Milestones
//! Reported when `current` reaches the value, once per streak run: a broken streak that
//! climbs back to 7 reports 7 again (awarding a badge once is the badge's rule).

use chrono_tz::Tz;

use crate::leaderboard::period::{period_bounds, period_index, Period};

/// The most milestones one streak may list.
pub const MAX_MILESTONES: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreakUnit {
    Day,
    /// ISO weeks, Monday to Sunday.
    Week,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreakRule {
    pub unit: StreakUnit,
    /// One missed unit forgiven per this many units.
    pub freeze_every: Option<u32>,
    /// Strictly ascending, each ≥ 1.
    pub milestones: Vec<u32>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StreakError {
    #[error("streak freeze_every must be at least 1, got 0")]
    FreezeEvery,
    #[error("streak milestones must be ≥ 1 and strictly ascending: {0:?}")]
    Milestones(Vec<u32>),
    #[error("streak lists {got} milestones, at most {max}")]
    TooManyMilestones { got: usize, max: usize },
}

impl StreakRule {
    pub fn validate(&self) -> Result<(), StreakError> {
        if self.freeze_every == Some(0) {
            return Err(StreakError::FreezeEvery);
        }
        if self.milestones.len() > MAX_MILESTONES {
            return Err(StreakError::TooManyMilestones { got: self.milestones.len(), max: MAX_MILESTONES });
        }
        if self.milestones.first() == Some(&0) || self.milestones.windows(2).any(|w| w[0] >= w[1]) {
            return Err(StreakError::Milestones(self.milestones.clone()));
        }
        Ok(())
    }
}

/// One customer's streak. Unit indexes: local days since 1970-01-01, or ISO weeks since
/// the week of 1970-01-01.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreakState {
    pub last_unit: Option<i64>,
    pub current: u32,
    pub longest: u32,
    /// The missed unit the last freeze forgave.
    pub last_freeze: Option<i64>,
}

/// What an event did to a streak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    Started,
    Extended,
    /// Extended across one missed unit, which a freeze forgave.
    Froze {
        missed: i64,
    },
    /// The gap was too long: the streak restarted at 1.
    Broke {
        was: u32,
    },
    SameUnit,
    /// The event's unit is before the last counted one.
    Late,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub state: StreakState,
    pub effect: Effect,
    /// The milestone `current` reached with this event, if any.
    pub milestone: Option<u32>,
}

/// The unit index of an instant in a zone.
pub fn unit_index(unit: StreakUnit, at_ms: i64, tz: Tz) -> i64 {
    period_index(
        tz,
        at_ms,
        match unit {
            StreakUnit::Day => Period::Day,
            StreakUnit::Week => Period::Week,
        },
    )
}

fn freeze_available(rule: &StreakRule, s: &StreakState, missed: i64) -> bool {
    rule.freeze_every.is_some_and(|n| s.last_freeze.is_none_or(|f| missed - f >= n as i64))
}

/// Applies a qualifying event at `at_ms` (a logged instant) in the customer's zone.
pub fn apply(rule: &StreakRule, state: &StreakState, at_ms: i64, tz: Tz) -> Step {
    let u = unit_index(rule.unit, at_ms, tz);
    let mut s = *state;
    let effect = match s.last_unit {
        None => {
            s.current = 1;
            Effect::Started
        }
        Some(l) if u < l => Effect::Late,
        Some(l) if u == l => Effect::SameUnit,
        Some(l) if u == l + 1 => {
            s.current = s.current.saturating_add(1);
            Effect::Extended
        }
        Some(l) if u == l + 2 && freeze_available(rule, &s, l + 1) => {
            s.current = s.current.saturating_add(1);
            s.last_freeze = Some(l + 1);
            Effect::Froze { missed: l + 1 }
        }
        Some(_) => {
            let was = s.current;
            s.current = 1;
            Effect::Broke { was }
        }
    };
    let counted =
        matches!(effect, Effect::Started | Effect::Extended | Effect::Froze { .. } | Effect::Broke { .. });
    if counted {
        s.last_unit = Some(u);
        s.longest = s.longest.max(s.current);
    }
    let milestone = if counted { rule.milestones.iter().copied().find(|&m| m == s.current) } else { None };
    Step { state: s, effect, milestone }
}

/// The streak as it stands at `now_ms` (a logged instant) for reads and segments: the
/// current count while it can still be extended (the last unit is this one or the
/// previous one, or the one before that with a freeze available), else 0.
pub fn current_at(rule: &StreakRule, state: &StreakState, now_ms: i64, tz: Tz) -> u32 {
    let Some(l) = state.last_unit else { return 0 };
    let n = unit_index(rule.unit, now_ms, tz);
    if n <= l + 1 || (n == l + 2 && freeze_available(rule, state, l + 1)) {
        state.current
    } else {
        0
    }
}

/// The first instant [`current_at`] answers 0 for this state (None: never, or out of
/// range): the start of the unit after the last one that could still extend the streak.
/// The engine's agenda visits the customer then, so the derived attribute follows.
pub fn breaks_at(rule: &StreakRule, state: &StreakState, tz: Tz) -> Option<i64> {
    let l = state.last_unit?;
    if state.current == 0 {
        return None;
    }
    let first_zero = if freeze_available(rule, state, l + 1) { l + 3 } else { l + 2 };
    let p = match rule.unit {
        StreakUnit::Day => Period::Day,
        StreakUnit::Week => Period::Week,
    };
    period_bounds(tz, first_zero, p).map(|b| b.0)
}

#[cfg(test)]
#[path = "streak_tests.rs"]
mod tests;
