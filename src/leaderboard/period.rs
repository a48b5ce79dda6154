//! Boards per calendar period in the program's time zone, rolled over on logged instants.
//!
//! Period indexes follow `gamify::time::cap_period` (local days since 1970-01-01; ISO
//! weeks, Monday to Sunday, counted from Monday 1969-12-29; months as `year * 12 +
//! month0`), so the two can share one helper after the merge.

use std::collections::VecDeque;

use chrono::{DateTime, Datelike, NaiveDate};
use chrono_tz::Tz;

use super::{Board, BoardError};

/// Most closed periods a board keeps (a year of days).
pub const MAX_KEEP: u32 = 400;

/// A leaderboard's period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Period {
    AllTime,
    Day,
    /// ISO weeks, Monday to Sunday.
    Week,
    Month,
}

/// The local calendar date of an instant (clamped into chrono's range).
pub fn local_date(tz: Tz, ms: i64) -> NaiveDate {
    // 9999-12-31T23:59:59.999Z, as in gamify::time::MAX_MS.
    const MAX_MS: i64 = 253_402_300_799_999;
    let utc = DateTime::from_timestamp_millis(ms.clamp(-MAX_MS, MAX_MS)).unwrap_or_default();
    utc.with_timezone(&tz).date_naive()
}

/// Local days since 1970-01-01.
pub fn day_index(d: NaiveDate) -> i64 {
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()).num_days()
}

/// The index of the period holding `ms`.
pub fn period_index(tz: Tz, ms: i64, p: Period) -> i64 {
    let d = local_date(tz, ms);
    match p {
        Period::AllTime => 0,
        Period::Day => day_index(d),
        // 1970-01-01 was a Thursday: day + 3 counts from Monday 1969-12-29.
        Period::Week => (day_index(d) + 3).div_euclid(7),
        Period::Month => d.year() as i64 * 12 + d.month0() as i64,
    }
}

/// The first instant of a local date (DST gaps at midnight handled there).
pub use crate::gamify::time::start_of_day;

/// The first local date of the period with index `idx` (`None` for all time).
fn first_date(idx: i64, p: Period) -> Option<NaiveDate> {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)?;
    match p {
        Period::AllTime => None,
        Period::Day => epoch.checked_add_signed(chrono::Duration::try_days(idx)?),
        Period::Week => {
            epoch.checked_add_signed(chrono::Duration::try_days(idx.checked_mul(7)?.checked_sub(3)?)?)
        }
        Period::Month => {
            NaiveDate::from_ymd_opt(i32::try_from(idx.div_euclid(12)).ok()?, idx.rem_euclid(12) as u32 + 1, 1)
        }
    }
}

/// `[start, end)` instants of the period with index `idx`: local midnights in `tz`, so a
/// day is 23 or 25 hours long across a DST change. `None` for all time or out of range.
pub fn period_bounds(tz: Tz, idx: i64, p: Period) -> Option<(i64, i64)> {
    Some((start_of_day(tz, first_date(idx, p)?), start_of_day(tz, first_date(idx.checked_add(1)?, p)?)))
}

/// Which period of a board a read means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeriodSel {
    Current,
    /// `Previous(1)` is the calendar period just before the current one (for payouts),
    /// `Previous(2)` the one before, and so on.
    Previous(u32),
}

/// A board per period: the current one and the last `keep` closed ones.
///
/// A period rolls over when an update or [`PeriodBoard::roll_to`] brings a logged
/// instant of a later period (never the wall clock, so replay rolls at the same
/// records). An instant earlier than the current period (a late event) counts in the
/// current period: closed periods are final once they can have been paid out. Periods in
/// which nothing happened are empty boards.
#[derive(Clone, Debug)]
pub struct PeriodBoard {
    pub(crate) period: Period,
    pub(crate) tz: Tz,
    pub(crate) keep: u32,
    pub(crate) index: i64,
    pub(crate) current: Board,
    /// Closed periods, oldest first, each with its index; only non-empty ones are held.
    pub(crate) closed: VecDeque<(i64, Board)>,
}

static EMPTY: std::sync::LazyLock<Board> = std::sync::LazyLock::new(Board::new);

impl PeriodBoard {
    /// A board whose current period holds `now_ms`.
    pub fn new(period: Period, tz: Tz, keep: u32, now_ms: i64) -> Result<Self, BoardError> {
        if keep > MAX_KEEP {
            return Err(BoardError::Keep { got: keep, max: MAX_KEEP });
        }
        let index = period_index(tz, now_ms, period);
        Ok(PeriodBoard { period, tz, keep, index, current: Board::new(), closed: VecDeque::new() })
    }

    pub fn period(&self) -> Period {
        self.period
    }

    pub fn tz(&self) -> Tz {
        self.tz
    }

    /// The current period's index.
    pub fn index(&self) -> i64 {
        self.index
    }

    /// Closes the current period if `at_ms` lies in a later one; returns whether it did.
    pub fn roll_to(&mut self, at_ms: i64) -> bool {
        let idx = period_index(self.tz, at_ms, self.period);
        if idx <= self.index {
            return false;
        }
        let done = std::mem::take(&mut self.current);
        if !done.is_empty() && self.keep > 0 {
            self.closed.push_back((self.index, done));
        }
        self.index = idx;
        let oldest = idx - self.keep as i64;
        while self.closed.front().is_some_and(|(i, _)| *i < oldest) {
            self.closed.pop_front();
        }
        true
    }

    /// Adds to a row's score in the period holding `at_ms` (or the current one, if
    /// earlier); returns the new score.
    pub fn add(
        &mut self,
        row: u32,
        customer_id: u64,
        delta: i64,
        at_ms: i64,
        seq: u64,
    ) -> Result<i64, BoardError> {
        self.roll_to(at_ms);
        self.current.add(row, customer_id, delta, at_ms, seq)
    }

    /// [`PeriodBoard::add`] for a caller that rolled to `at_ms` already (a batch of
    /// events shares one logged instant): no period lookup per update, which converts
    /// the instant to a local date in the board's time zone.
    pub fn add_rolled(
        &mut self,
        row: u32,
        customer_id: u64,
        delta: i64,
        at_ms: i64,
        seq: u64,
    ) -> Result<i64, BoardError> {
        debug_assert!(period_index(self.tz, at_ms, self.period) <= self.index, "rolled to {at_ms}");
        self.current.add(row, customer_id, delta, at_ms, seq)
    }

    /// [`Board::add_all`] in the current period, for a caller that rolled to every
    /// add's instant already.
    pub fn add_all_rolled(&mut self, row: u32, adds: &[(u64, i64, i64, u64)]) -> Vec<BoardError> {
        debug_assert!(adds.iter().all(|a| period_index(self.tz, a.2, self.period) <= self.index));
        self.current.add_all(row, adds.iter().copied())
    }

    /// Whether `at_ms` lies in a later period than the current one ([`PeriodBoard::roll_to`]
    /// would close it).
    pub fn would_roll(&self, at_ms: i64) -> bool {
        period_index(self.tz, at_ms, self.period) > self.index
    }

    /// Sets a row's score in the current period (after rolling to `at_ms`).
    pub fn set(&mut self, row: u32, customer_id: u64, score: i64, at_ms: i64, seq: u64) {
        self.roll_to(at_ms);
        self.current.set(row, customer_id, score, at_ms, seq);
    }

    /// Takes a row off every period (a deleted customer).
    pub fn remove(&mut self, row: u32) {
        self.current.remove(row);
        for (_, b) in self.closed.iter_mut() {
            b.remove(row);
        }
    }

    /// The board of a period as a read at `now_ms` sees it: when `now_ms` lies in a
    /// period after the current one (nothing logged since it began), that period is the
    /// current one (empty) and the others are counted back from it. Reads only: the
    /// board itself rolls over on logged instants alone.
    pub fn board_at(&self, sel: PeriodSel, now_ms: i64) -> Result<(&Board, i64), BoardError> {
        let now = period_index(self.tz, now_ms, self.period).max(self.index);
        let want = match sel {
            PeriodSel::Current => now,
            PeriodSel::Previous(back) => {
                if back == 0 || back > self.keep || self.period == Period::AllTime {
                    return Err(BoardError::NoSuchPeriod { back, kept: self.keep as usize });
                }
                now - back as i64
            }
        };
        if want == self.index {
            return Ok((&self.current, want));
        }
        Ok((self.closed.iter().find(|(i, _)| *i == want).map_or(&*EMPTY, |(_, b)| b), want))
    }

    /// The board of a period; an empty board for a closed period nothing happened in.
    pub fn board(&self, sel: PeriodSel) -> Result<&Board, BoardError> {
        match sel {
            PeriodSel::Current => Ok(&self.current),
            PeriodSel::Previous(back) => {
                if back == 0 || back > self.keep || self.period == Period::AllTime {
                    return Err(BoardError::NoSuchPeriod { back, kept: self.keep as usize });
                }
                let want = self.index - back as i64;
                Ok(self.closed.iter().find(|(i, _)| *i == want).map_or(&*EMPTY, |(_, b)| b))
            }
        }
    }
}
