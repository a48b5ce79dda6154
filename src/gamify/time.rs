//! Calendar arithmetic in the program's time zone. Day, week and month boundaries (caps,
//! expiry at the end of a month, qualification periods) are local midnights; a rolling
//! window counts local days.

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

/// The latest instant an event or record may carry: 9999-12-31T23:59:59.999Z. Keeping
/// instants below it keeps every derived date (expiry years later) inside chrono's range.
pub const MAX_MS: i64 = 253_402_300_799_999;

/// The local calendar date of an instant.
pub fn local_date(tz: Tz, ms: i64) -> NaiveDate {
    let utc = DateTime::from_timestamp_millis(ms.clamp(0, MAX_MS)).unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    utc.with_timezone(&tz).date_naive()
}

/// Local days since 1970-01-01.
pub fn day_index(tz: Tz, ms: i64) -> i32 {
    days_since_epoch(local_date(tz, ms))
}

pub fn days_since_epoch(d: NaiveDate) -> i32 {
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()).num_days() as i32
}

/// The first instant of a local date. Where midnight falls in a DST gap (some zones
/// change at 00:00), the day starts at the first local time that exists.
pub fn start_of_day(tz: Tz, d: NaiveDate) -> i64 {
    for minutes in (0..=180).step_by(15) {
        let t = d.and_hms_opt(0, 0, 0).unwrap_or_default() + chrono::Duration::minutes(minutes);
        if let Some(dt) = tz.from_local_datetime(&t).earliest() {
            return dt.timestamp_millis();
        }
    }
    // No zone has a gap of three hours; fall back to UTC midnight rather than panic.
    d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc().timestamp_millis()
}

fn first_of_month(year: i32, month0: i32) -> NaiveDate {
    let y = year + month0.div_euclid(12);
    let m = month0.rem_euclid(12) as u32 + 1;
    NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(NaiveDate::MAX)
}

/// The end (exclusive: the next month's first local midnight) of the month that holds
/// the local date `months` months after `ms`.
pub fn end_of_month_after(tz: Tz, ms: i64, months: u32) -> i64 {
    let d = local_date(tz, ms);
    start_of_day(tz, first_of_month(d.year(), d.month0() as i32 + months as i32 + 1))
}

/// The end (the next year's first local midnight) of the year `years` years after `ms`.
pub fn end_of_year_after(tz: Tz, ms: i64, years: u32) -> i64 {
    let d = local_date(tz, ms);
    start_of_day(tz, first_of_month(d.year() + years as i32 + 1, 0))
}

/// A calendar period for caps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CapPeriod {
    Day,
    /// ISO weeks, Monday to Sunday.
    Week,
    Month,
}

/// The index of the period holding `ms` (days, weeks or months since 1970).
pub fn cap_period(tz: Tz, ms: i64, p: CapPeriod) -> i32 {
    let d = local_date(tz, ms);
    match p {
        CapPeriod::Day => days_since_epoch(d),
        // 1970-01-01 was a Thursday: day + 3 counts from Monday 1969-12-29.
        CapPeriod::Week => (days_since_epoch(d) + 3).div_euclid(7),
        CapPeriod::Month => d.year() * 12 + d.month0() as i32,
    }
}

/// The first instant after the period with index `idx` (so a period is over when a tick
/// reaches it).
pub fn cap_period_end(tz: Tz, idx: i32, p: CapPeriod) -> i64 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    match p {
        CapPeriod::Day => start_of_day(tz, epoch + chrono::Duration::days(idx as i64 + 1)),
        CapPeriod::Week => start_of_day(tz, epoch + chrono::Duration::days((idx as i64 + 1) * 7 - 3)),
        CapPeriod::Month => start_of_day(tz, first_of_month(0, idx + 1)),
    }
}

/// A tier qualification period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QualPeriod {
    Month,
    Quarter,
    Year,
}

use serde::{Deserialize, Serialize};

/// The first period boundary strictly after `ms`.
pub fn next_period_end(tz: Tz, ms: i64, p: QualPeriod) -> i64 {
    let d = local_date(tz, ms);
    let m0 = d.month0() as i32;
    let next = match p {
        QualPeriod::Month => first_of_month(d.year(), m0 + 1),
        QualPeriod::Quarter => first_of_month(d.year(), m0 - m0 % 3 + 3),
        QualPeriod::Year => first_of_month(d.year() + 1, 0),
    };
    let end = start_of_day(tz, next);
    if end > ms {
        end
    } else {
        // Only when the local date lies in a DST fold at the boundary.
        next_period_end(tz, end + 1, p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    #[test]
    fn end_of_month_in_berlin() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        // 2026-03-15 + 12 months = March 2027; it ends at 2027-04-01 00:00 CEST (+02:00).
        assert_eq!(end_of_month_after(tz, ms("2026-03-15T12:00:00Z"), 12), ms("2027-04-01T00:00:00+02:00"));
        // 23:30 UTC on Jan 31 is already Feb 1 in Berlin.
        assert_eq!(end_of_month_after(tz, ms("2026-01-31T23:30:00Z"), 0), ms("2026-03-01T00:00:00+01:00"));
        assert_eq!(end_of_year_after(tz, ms("2026-06-01T00:00:00Z"), 1), ms("2028-01-01T00:00:00+01:00"));
    }

    #[test]
    fn periods() {
        let tz: Tz = "UTC".parse().unwrap();
        // 2026-11-30 is a Monday; 2026-11-29 a Sunday.
        let mon = cap_period(tz, ms("2026-11-30T00:00:00Z"), CapPeriod::Week);
        assert_eq!(cap_period(tz, ms("2026-11-29T23:59:59Z"), CapPeriod::Week), mon - 1);
        assert_eq!(cap_period(tz, ms("2026-12-06T23:59:59Z"), CapPeriod::Week), mon);
        assert_eq!(cap_period_end(tz, mon, CapPeriod::Week), ms("2026-12-07T00:00:00Z"));
        let m = cap_period(tz, ms("2026-02-10T00:00:00Z"), CapPeriod::Month);
        assert_eq!(cap_period_end(tz, m, CapPeriod::Month), ms("2026-03-01T00:00:00Z"));
        assert_eq!(
            next_period_end(tz, ms("2026-02-10T00:00:00Z"), QualPeriod::Quarter),
            ms("2026-04-01T00:00:00Z")
        );
        assert_eq!(
            next_period_end(tz, ms("2026-12-31T23:59:59Z"), QualPeriod::Year),
            ms("2027-01-01T00:00:00Z")
        );
        assert_eq!(
            next_period_end(tz, ms("2027-01-01T00:00:00Z"), QualPeriod::Month),
            ms("2027-02-01T00:00:00Z")
        );
    }

    #[test]
    fn midnight_in_a_dst_gap() {
        // Chile's clocks jumped from 2022-09-11 00:00 to 01:00 (America/Santiago).
        let tz: Tz = "America/Santiago".parse().unwrap();
        let d = NaiveDate::from_ymd_opt(2022, 9, 11).unwrap();
        assert_eq!(start_of_day(tz, d), ms("2022-09-11T01:00:00-03:00"));
    }
}
