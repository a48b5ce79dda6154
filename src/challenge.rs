//! Challenge windows and progress: a count or sum of matching events reaching a target
//! within a window that is fixed or recurs each week or each month in the program's time
//! zone. Which events match (the segment language over event properties), eligibility and
//! rewards are the caller's; this module is the window arithmetic and the accounting.
//!
//! Pure functions over logged instants. Progress resets when an event falls in a new
//! window; a read in a later window sees 0 ([`progress_at`]) without any write. A window
//! completes at most once: later events still add to the progress shown, but never
//! complete it again. An event for an earlier window than the one progress holds (a late
//! arrival after a reset) changes nothing, so a closed window's result is final.

use chrono_tz::Tz;

use crate::leaderboard::period::{period_bounds, period_index, Period};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowKind {
    /// `[start_ms, end_ms)`.
    Fixed { start_ms: i64, end_ms: i64 },
    /// ISO weeks, from Monday 00:00 local time.
    Weekly,
    /// From the 1st 00:00 local time.
    Monthly,
}

/// One occurrence of a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// 0 for a fixed window; the ISO week or month index (as in
    /// [`crate::leaderboard::period::period_index`]) for a recurring one.
    pub index: i64,
    pub start_ms: i64,
    /// Exclusive.
    pub end_ms: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Goal {
    /// Matching events.
    Count,
    /// The sum of a numeric property of matching events (in the property's integer unit,
    /// e.g. cents).
    Sum,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChallengeSpec {
    pub window: WindowKind,
    pub goal: Goal,
    pub target: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChallengeError {
    #[error("challenge target must be at least 1, got {0}")]
    Target(i64),
    #[error("challenge window start {start_ms} must be before its end {end_ms}")]
    Window { start_ms: i64, end_ms: i64 },
    #[error("challenge progress would overflow: {value} + {amount}")]
    Overflow { value: i64, amount: i64 },
}

impl ChallengeSpec {
    pub fn validate(&self) -> Result<(), ChallengeError> {
        if self.target < 1 {
            return Err(ChallengeError::Target(self.target));
        }
        if let WindowKind::Fixed { start_ms, end_ms } = self.window {
            if start_ms >= end_ms {
                return Err(ChallengeError::Window { start_ms, end_ms });
            }
        }
        Ok(())
    }
}

/// The window holding `at_ms`, if any (a fixed window holds only its own range).
pub fn window_at(kind: WindowKind, tz: Tz, at_ms: i64) -> Option<Window> {
    let p = match kind {
        WindowKind::Fixed { start_ms, end_ms } => {
            return (start_ms..end_ms).contains(&at_ms).then_some(Window { index: 0, start_ms, end_ms });
        }
        WindowKind::Weekly => Period::Week,
        WindowKind::Monthly => Period::Month,
    };
    let index = period_index(tz, at_ms, p);
    let (start_ms, end_ms) = period_bounds(tz, index, p)?;
    Some(Window { index, start_ms, end_ms })
}

/// The `[start, end)` instants of window `index` (0 for a fixed window).
pub fn window_bounds(kind: WindowKind, tz: Tz, index: i64) -> Option<(i64, i64)> {
    match kind {
        WindowKind::Fixed { start_ms, end_ms } => Some((start_ms, end_ms)),
        WindowKind::Weekly => period_bounds(tz, index, Period::Week),
        WindowKind::Monthly => period_bounds(tz, index, Period::Month),
    }
}

/// One customer's progress on one challenge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// The window the progress belongs to (None before the first event).
    pub window: Option<i64>,
    pub value: i64,
    pub completed: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    Counted,
    /// The event is outside a fixed window.
    OutsideWindow,
    /// The event is in an earlier window than the progress holds.
    Late,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub progress: Progress,
    pub effect: Effect,
    /// This event completed the window.
    pub completed_now: bool,
}

/// Records a matching event at `at_ms` (a logged instant). `amount` is the summed
/// property for [`Goal::Sum`] (negative amounts, e.g. refunds, lower the progress but
/// never undo a completion) and ignored for [`Goal::Count`].
pub fn record(
    spec: &ChallengeSpec,
    p: &Progress,
    at_ms: i64,
    amount: i64,
    tz: Tz,
) -> Result<Step, ChallengeError> {
    let Some(w) = window_at(spec.window, tz, at_ms) else {
        return Ok(Step { progress: *p, effect: Effect::OutsideWindow, completed_now: false });
    };
    let mut next = match p.window {
        Some(cur) if w.index < cur => {
            return Ok(Step { progress: *p, effect: Effect::Late, completed_now: false })
        }
        Some(cur) if w.index == cur => *p,
        _ => Progress { window: Some(w.index), value: 0, completed: false },
    };
    let add = match spec.goal {
        Goal::Count => 1,
        Goal::Sum => amount,
    };
    next.value =
        next.value.checked_add(add).ok_or(ChallengeError::Overflow { value: next.value, amount: add })?;
    let completed_now = !next.completed && next.value >= spec.target;
    next.completed |= completed_now;
    Ok(Step { progress: next, effect: Effect::Counted, completed_now })
}

/// Progress as it stands at `now_ms` (a logged instant): the stored progress while its
/// window is the current one, else a fresh window's (0, not completed).
pub fn progress_at(spec: &ChallengeSpec, p: &Progress, now_ms: i64, tz: Tz) -> Progress {
    match (window_at(spec.window, tz, now_ms), p.window) {
        (Some(w), Some(cur)) if w.index == cur => *p,
        // After a fixed window ends, its result stays readable.
        (None, Some(_)) if matches!(spec.window, WindowKind::Fixed { end_ms, .. } if now_ms >= end_ms) => *p,
        _ => Progress::default(),
    }
}

#[cfg(test)]
#[path = "challenge_tests.rs"]
mod tests;
