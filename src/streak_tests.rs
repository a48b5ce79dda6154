//! Streak rule tables: every expectation below was worked out by hand from the local
//! calendar (the comments give the local time of each instant).

use chrono_tz::Tz;
use proptest::prelude::*;

use super::*;

fn ms(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
}

fn tz(name: &str) -> Tz {
    name.parse().unwrap()
}

fn daily(freeze_every: Option<u32>) -> StreakRule {
    StreakRule { unit: StreakUnit::Day, freeze_every, milestones: vec![2, 3, 7] }
}

/// Runs events in order; returns (current, longest) and each effect.
fn run(rule: &StreakRule, zone: Tz, instants: &[&str]) -> (u32, u32, Vec<Effect>) {
    let mut s = StreakState::default();
    let mut effects = Vec::new();
    for i in instants {
        let step = apply(rule, &s, ms(i), zone);
        effects.push(step.effect);
        s = step.state;
    }
    (s.current, s.longest, effects)
}

/// (name, zone, freeze_every, event instants, current, longest, effects).
type Row = (&'static str, Tz, Option<u32>, Vec<&'static str>, u32, u32, Vec<Effect>);

#[test]
fn rule_table() {
    use Effect::*;
    let berlin = tz("Europe/Berlin");
    let la = tz("America/Los_Angeles");
    let tokyo = tz("Asia/Tokyo");
    let utc = chrono_tz::UTC;
    #[rustfmt::skip]
    let table: Vec<Row> = vec![
        // Berlin spring-forward day 2026-03-29 has 23 hours: 23:59 CET on the 28th,
        // 23:59 CEST on the 29th (21:59Z) and 00:00 CEST on the 30th (22:00Z) are three days.
        ("berlin spring forward", berlin, None,
         vec!["2026-03-28T22:59:00Z", "2026-03-29T21:59:00Z", "2026-03-29T22:00:00Z"], 3, 3, vec![Started, Extended, Extended]),
        // Berlin fall-back day 2026-10-25 has 25 hours: 00:00 CEST (22:00Z on the 24th)
        // and 23:59 CET (22:59Z on the 25th) are the same day; 23:00Z is the 26th.
        ("berlin fall back", berlin, None,
         vec!["2026-10-24T21:59:00Z", "2026-10-24T22:00:00Z", "2026-10-25T22:59:00Z", "2026-10-25T23:00:00Z"],
         3, 3, vec![Started, Extended, SameUnit, Extended]),
        // Los Angeles 2026-03-08 springs forward: 23:59 PST on the 7th (07:59Z on the 8th),
        // 23:59 PDT on the 8th (06:59Z on the 9th), then 00:00 PDT on the 9th.
        ("los angeles dst", la, None,
         vec!["2026-03-08T07:59:00Z", "2026-03-09T06:59:00Z", "2026-03-09T07:00:00Z"], 3, 3, vec![Started, Extended, Extended]),
        // Tokyo (+09:00): 10:00 on Nov 30 and 00:00 on Dec 1 are two days, though both are
        // Nov 30 in UTC.
        ("tokyo", tokyo, None, vec!["2026-11-30T01:00:00Z", "2026-11-30T15:00:00Z"], 2, 2, vec![Started, Extended]),
        ("same instants in utc", utc, None, vec!["2026-11-30T01:00:00Z", "2026-11-30T15:00:00Z"], 1, 1, vec![Started, SameUnit]),
        // Midnight exactly belongs to the new day; the last millisecond to the old one.
        ("midnight", utc, None,
         vec!["2026-05-01T23:59:59.999Z", "2026-05-02T00:00:00Z", "2026-05-02T23:59:59.999Z"], 2, 2, vec![Started, Extended, SameUnit]),
        // A missed day (May 3) breaks the streak.
        ("missed day", utc, None,
         vec!["2026-05-01T10:00:00Z", "2026-05-02T10:00:00Z", "2026-05-04T10:00:00Z"], 1, 2, vec![Started, Extended, Broke { was: 2 }]),
        // A freeze forgives May 3; the streak counts days with an event: 3.
        ("freeze", utc, Some(7),
         vec!["2026-05-01T10:00:00Z", "2026-05-02T10:00:00Z", "2026-05-04T10:00:00Z"], 3, 3,
         vec![Started, Extended, Froze { missed: day("2026-05-03") }]),
        // Two missed days are not forgiven.
        ("freeze too short", utc, Some(7), vec!["2026-05-01T10:00:00Z", "2026-05-04T10:00:00Z"], 1, 1, vec![Started, Broke { was: 1 }]),
        // One freeze per 7 days: May 3 forgiven, May 6 is only 3 days later: broken.
        ("second freeze too soon", utc, Some(7),
         vec!["2026-05-02T10:00:00Z", "2026-05-04T10:00:00Z", "2026-05-05T10:00:00Z", "2026-05-07T10:00:00Z"], 1, 3,
         vec![Started, Froze { missed: day("2026-05-03") }, Extended, Broke { was: 3 }]),
        // ... and May 10 is 7 days after May 3: forgiven again.
        ("second freeze after 7 days", utc, Some(7),
         vec!["2026-05-02T10:00:00Z", "2026-05-04T10:00:00Z", "2026-05-05T10:00:00Z", "2026-05-06T10:00:00Z",
              "2026-05-07T10:00:00Z", "2026-05-08T10:00:00Z", "2026-05-09T10:00:00Z", "2026-05-11T10:00:00Z"], 8, 8,
         vec![Started, Froze { missed: day("2026-05-03") }, Extended, Extended, Extended, Extended, Extended,
              Froze { missed: day("2026-05-10") }]),
        // A late event for May 3 after May 4 was counted does not repair the gap.
        ("late event", utc, None,
         vec!["2026-05-02T10:00:00Z", "2026-05-04T10:00:00Z", "2026-05-03T10:00:00Z"], 1, 1, vec![Started, Broke { was: 1 }, Late]),
    ];
    for (name, zone, freeze, instants, current, longest, effects) in table {
        let got = run(&daily(freeze), zone, &instants);
        assert_eq!(got, (current, longest, effects), "{name}");
    }
}

/// Days since 1970-01-01 of a date: the unit index of that day in UTC.
fn day(d: &str) -> i64 {
    (chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap()
        - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap())
    .num_days()
}

#[test]
fn weeks_and_milestones() {
    let rule = StreakRule { unit: StreakUnit::Week, freeze_every: None, milestones: vec![2, 3] };
    let berlin = tz("Europe/Berlin");
    // Sunday 2026-11-29 23:59 and Monday 2026-11-30 00:00 in Berlin are two ISO weeks.
    let mut s = StreakState::default();
    let mut got = Vec::new();
    for i in ["2026-11-29T22:59:00Z", "2026-11-29T23:00:00Z", "2026-12-06T22:59:59Z", "2026-12-07T08:00:00Z"]
    {
        let step = apply(&rule, &s, ms(i), berlin);
        got.push((step.effect, step.milestone));
        s = step.state;
    }
    assert_eq!(
        got,
        vec![
            (Effect::Started, None),
            (Effect::Extended, Some(2)),
            (Effect::SameUnit, None),
            (Effect::Extended, Some(3))
        ]
    );
    // Read side: alive through the next week, gone the week after.
    assert_eq!(current_at(&rule, &s, ms("2026-12-14T10:00:00Z"), berlin), 3);
    assert_eq!(current_at(&rule, &s, ms("2026-12-21T10:00:00Z"), berlin), 0);
}

#[test]
fn current_at_with_a_freeze() {
    let utc = chrono_tz::UTC;
    let s = apply(&daily(Some(7)), &StreakState::default(), ms("2026-05-01T10:00:00Z"), utc).state;
    assert_eq!(current_at(&daily(Some(7)), &s, ms("2026-05-02T23:00:00Z"), utc), 1);
    assert_eq!(current_at(&daily(None), &s, ms("2026-05-03T00:00:00Z"), utc), 0);
    // With a freeze available the streak can still be saved on May 3.
    assert_eq!(current_at(&daily(Some(7)), &s, ms("2026-05-03T00:00:00Z"), utc), 1);
    assert_eq!(current_at(&daily(Some(7)), &s, ms("2026-05-04T00:00:00Z"), utc), 0);
}

#[test]
fn invalid_rules_are_named() {
    let mut r = daily(Some(0));
    assert_eq!(r.validate(), Err(StreakError::FreezeEvery));
    r.freeze_every = None;
    r.milestones = vec![3, 3];
    assert_eq!(r.validate(), Err(StreakError::Milestones(vec![3, 3])));
    r.milestones = vec![0];
    assert!(r.validate().is_err());
    r.milestones = (1..=65).collect();
    assert_eq!(r.validate(), Err(StreakError::TooManyMilestones { got: 65, max: MAX_MILESTONES }));
}

proptest! {
    /// Without freezes, in-order events give the run ending at the last day and the
    /// longest run of consecutive days among the distinct days seen.
    #[test]
    fn runs_of_consecutive_days(steps in prop::collection::vec(0i64..3, 1..80)) {
        let rule = StreakRule { unit: StreakUnit::Day, freeze_every: None, milestones: vec![] };
        let mut days = vec![];
        let mut d = 20_000i64;
        for st in steps { d += st; days.push(d); }
        let mut s = StreakState::default();
        for &d in &days {
            s = apply(&rule, &s, d * 86_400_000 + 3_600_000, chrono_tz::UTC).state;
        }
        let mut distinct = days.clone();
        distinct.dedup();
        let (mut run, mut best) = (0u32, 0u32);
        for (i, &d) in distinct.iter().enumerate() {
            run = if i > 0 && distinct[i - 1] + 1 == d { run + 1 } else { 1 };
            best = best.max(run);
        }
        prop_assert_eq!((s.current, s.longest), (run, best));
    }
}
