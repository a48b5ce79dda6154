//! Tiers and levels.
//!
//! - A tier qualifies on a measure: a sum of event amounts over a rolling window of local
//!   days (today and the `window_days − 1` before), e.g. 365-day turnover = purchases −
//!   refunds. Sums are kept in hundredths, per local day.
//! - Upgrades happen at once, when an event raises the measure past a threshold.
//! - Downgrades follow the program's mode: `never`, or `period_end`: at the end of each
//!   qualification period (a calendar month, quarter or year, local) plus the grace days,
//!   a customer drops to the tier the measure qualifies for at that instant. A manual
//!   tier is a floor under both.
//! - Levels follow lifetime earned points of the primary wallet (never the spendable
//!   balance); a refund's reversal lowers them, an expiry or a spend does not.
//!
//! Memory: a measure costs 16 bytes per local day with activity inside its window.

use chrono_tz::Tz;

use super::program::{DowngradeSpec, Program};
use super::time::next_period_end;
use super::DAY_MS;

/// One measure's sums per local day, ascending by day.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Buckets(pub Vec<(i32, i64)>);

impl Buckets {
    pub fn add(&mut self, day: i32, hundredths: i64) {
        match self.0.binary_search_by_key(&day, |b| b.0) {
            Ok(i) => self.0[i].1 = self.0[i].1.saturating_add(hundredths),
            Err(i) => self.0.insert(i, (day, hundredths)),
        }
    }

    /// The sum over the `window` local days ending with `today`, never below zero (a
    /// refund of a purchase that left the window does not push it negative).
    pub fn sum(&self, today: i32, window: u32) -> i64 {
        let from = today - window as i32;
        self.0.iter().filter(|b| b.0 > from && b.0 <= today).map(|b| b.1).sum::<i64>().max(0)
    }

    /// Drops days before `day`.
    pub fn prune(&mut self, day: i32) {
        self.0.retain(|b| b.0 >= day);
    }
}

/// The highest tier whose threshold `value` (hundredths) reaches.
pub fn qualified(program: &Program, value: i64) -> usize {
    program.tier_mins.iter().rposition(|&m| value >= m).unwrap_or(0)
}

/// The instant of the downgrade check after `now`, if the program has them.
pub fn next_check(program: &Program, now: i64) -> Option<i64> {
    match program.spec.tiers.downgrade {
        DowngradeSpec::Never => None,
        DowngradeSpec::PeriodEnd { period, grace_days } => {
            let grace = grace_days as i64 * DAY_MS;
            Some(next_period_end(program.tz, now - grace, period) + grace)
        }
    }
}

/// The level (1-based) for lifetime points, and the points missing to the next one.
pub fn level_of(thresholds: &[i64], lifetime: i64) -> (u32, Option<i64>) {
    let reached = thresholds.iter().take_while(|&&t| lifetime >= t).count().max(1);
    (reached as u32, thresholds.get(reached).map(|&t| t - lifetime))
}

/// A customer's tier after a program change: kept by name when the new program has it
/// (downgrades are the downgrade mode's job, at period ends), raised to what the measure
/// qualifies for under the new thresholds, never below the manual tier.
pub fn retier(new: &Program, held: Option<usize>, manual: Option<usize>, value: i64) -> usize {
    held.unwrap_or(0).max(manual.unwrap_or(0)).max(qualified(new, value))
}

/// The local day index for tier measures.
pub fn today(tz: Tz, ms: i64) -> i32 {
    super::time::day_index(tz, ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gamify::program::{ProgramSpec, DEMO_PROGRAM};
    use crate::gamify::time::QualPeriod;

    #[test]
    fn thresholds_at_their_boundaries() {
        let p = Program::demo();
        let cases = [
            (0, "NONE"),
            (49_999, "NONE"),
            (50_000, "BRONZE"),
            (74_999, "BRONZE"),
            (75_000, "SILVER"),
            (99_999, "SILVER"),
            (100_000, "GOLD"),
            (i64::MAX, "GOLD"),
        ];
        for (v, want) in cases {
            assert_eq!(p.spec.tiers.tiers[qualified(&p, v)].name, want, "{v}");
        }
    }

    #[test]
    fn rolling_window_counts_today_and_the_days_before() {
        let mut b = Buckets::default();
        b.add(100, 500);
        b.add(464, 700);
        b.add(100, 1);
        // A 365-day window ending on day 464 holds days 100..=464.
        assert_eq!(b.sum(464, 365), 1201);
        assert_eq!(b.sum(465, 365), 700);
        assert_eq!(b.sum(99, 365), 0);
        b.add(465, -2000);
        assert_eq!(b.sum(465, 365), 0, "never below zero");
        b.prune(101);
        assert_eq!(b.0, vec![(464, 700), (465, -2000)]);
    }

    #[test]
    fn levels_and_progress() {
        let t = [0, 100, 250];
        assert_eq!(level_of(&t, 0), (1, Some(100)));
        assert_eq!(level_of(&t, 99), (1, Some(1)));
        assert_eq!(level_of(&t, 100), (2, Some(150)));
        assert_eq!(level_of(&t, 10), (1, Some(90)));
        assert_eq!(level_of(&t, 250), (3, None));
        assert_eq!(level_of(&t, -5), (1, Some(105)));
    }

    #[test]
    fn downgrade_checks_fall_at_period_end_plus_grace() {
        let mut s: ProgramSpec = serde_json::from_str(DEMO_PROGRAM).unwrap();
        s.time_zone = "UTC".into();
        s.tiers.downgrade = DowngradeSpec::PeriodEnd { period: QualPeriod::Year, grace_days: 30 };
        let p = Program::new(s.clone()).unwrap();
        let y2027 = 1_798_761_600_000; // 2027-01-01T00:00:00Z
        let check = y2027 + 30 * DAY_MS;
        assert_eq!(next_check(&p, y2027 - 1), Some(check));
        // Inside the grace days the pending check is still the one of 2026's end.
        assert_eq!(next_check(&p, check - 1), Some(check));
        assert_eq!(next_check(&p, check), Some(1_830_297_600_000 + 30 * DAY_MS)); // 2028-01-01 + 30 d
        s.tiers.downgrade = DowngradeSpec::Never;
        assert_eq!(next_check(&Program::new(s).unwrap(), 0), None);
    }

    #[test]
    fn retier_keeps_raises_and_floors() {
        let p = Program::demo();
        assert_eq!(retier(&p, Some(3), None, 0), 3, "held GOLD is kept until a period end");
        assert_eq!(retier(&p, None, None, 80_000), 2, "a removed tier falls to what qualifies");
        assert_eq!(retier(&p, Some(1), Some(2), 0), 2, "manual floor");
        assert_eq!(retier(&p, Some(1), None, 100_000), 3);
    }
}
