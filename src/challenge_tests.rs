//! Challenge windows and progress by rule table; every instant's local time is worked out
//! by hand in the comments.

use chrono_tz::Tz;

use super::*;

fn ms(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
}

/// (window, zone, instant, expected [start, end)).
type Row = (WindowKind, Tz, &'static str, Option<(&'static str, &'static str)>);

#[test]
fn window_table() {
    let berlin: Tz = "Europe/Berlin".parse().unwrap();
    let la: Tz = "America/Los_Angeles".parse().unwrap();
    let fixed =
        WindowKind::Fixed { start_ms: ms("2026-12-01T00:00:00Z"), end_ms: ms("2026-12-24T00:00:00Z") };
    #[rustfmt::skip]
    let table: Vec<Row> = vec![
        // The week of Berlin's spring-forward: Monday 03-23 00:00 CET to Monday 03-30
        // 00:00 CEST, 167 hours.
        (WindowKind::Weekly, berlin, "2026-03-29T12:00:00Z", Some(("2026-03-23T00:00:00+01:00", "2026-03-30T00:00:00+02:00"))),
        // Sunday 23:59:59.999 local is still the week; Monday 00:00 local starts the next.
        (WindowKind::Weekly, berlin, "2026-11-29T22:59:59.999Z", Some(("2026-11-23T00:00:00+01:00", "2026-11-30T00:00:00+01:00"))),
        (WindowKind::Weekly, berlin, "2026-11-29T23:00:00Z", Some(("2026-11-30T00:00:00+01:00", "2026-12-07T00:00:00+01:00"))),
        // November in Los Angeles starts in PDT and ends in PST (DST ended Nov 1 at 02:00).
        (WindowKind::Monthly, la, "2026-11-15T00:00:00Z", Some(("2026-11-01T00:00:00-07:00", "2026-12-01T00:00:00-08:00"))),
        // 2026-12-01T05:00Z is still Nov 30 21:00 in Los Angeles.
        (WindowKind::Monthly, la, "2026-12-01T05:00:00Z", Some(("2026-11-01T00:00:00-07:00", "2026-12-01T00:00:00-08:00"))),
        (fixed, berlin, "2026-12-01T00:00:00Z", Some(("2026-12-01T00:00:00Z", "2026-12-24T00:00:00Z"))),
        (fixed, berlin, "2026-11-30T23:59:59.999Z", None),
        (fixed, berlin, "2026-12-24T00:00:00Z", None),
    ];
    for (kind, zone, at, want) in table {
        let got = window_at(kind, zone, ms(at)).map(|w| (w.start_ms, w.end_ms));
        assert_eq!(got, want.map(|(s, e)| (ms(s), ms(e))), "{kind:?} at {at}");
    }
}

#[test]
fn weekly_count_resets_and_completes_once_per_window() {
    let utc = chrono_tz::UTC;
    let spec = ChallengeSpec { window: WindowKind::Weekly, goal: Goal::Count, target: 3 };
    // 2026-11-30 is a Monday.
    #[rustfmt::skip]
    let events: Vec<(&str, Effect, i64, bool, bool)> = vec![
        ("2026-11-30T00:00:00Z", Effect::Counted, 1, false, false),
        ("2026-12-02T10:00:00Z", Effect::Counted, 2, false, false),
        ("2026-12-06T23:59:59Z", Effect::Counted, 3, true, true),
        // A fourth event in the same week adds progress but completes nothing.
        ("2026-12-06T23:59:59.999Z", Effect::Counted, 4, true, false),
        // A new week resets.
        ("2026-12-07T00:00:00Z", Effect::Counted, 1, false, false),
        // A late event from the previous week changes nothing.
        ("2026-12-05T10:00:00Z", Effect::Late, 1, false, false),
        ("2026-12-08T00:00:00Z", Effect::Counted, 2, false, false),
        ("2026-12-09T00:00:00Z", Effect::Counted, 3, true, true),
    ];
    let mut p = Progress::default();
    for (at, effect, value, completed, now) in events {
        let step = record(&spec, &p, ms(at), 999, utc).unwrap();
        assert_eq!(
            (step.effect, step.progress.value, step.progress.completed, step.completed_now),
            (effect, value, completed, now),
            "{at}"
        );
        p = step.progress;
    }
    // Read in the following week: a fresh window.
    assert_eq!(progress_at(&spec, &p, ms("2026-12-14T00:00:00Z"), utc), Progress::default());
    assert_eq!(progress_at(&spec, &p, ms("2026-12-13T23:59:59Z"), utc), p);
}

#[test]
fn fixed_sum_with_a_refund() {
    let utc = chrono_tz::UTC;
    let spec = ChallengeSpec {
        window: WindowKind::Fixed {
            start_ms: ms("2026-12-01T00:00:00Z"),
            end_ms: ms("2026-12-24T00:00:00Z"),
        },
        goal: Goal::Sum,
        target: 10_000,
    };
    let mut p = Progress::default();
    // Before the window: nothing.
    let s = record(&spec, &p, ms("2026-11-30T12:00:00Z"), 50_000, utc).unwrap();
    assert_eq!((s.effect, s.progress), (Effect::OutsideWindow, Progress::default()));
    let mut completions = 0;
    for (at, cents) in [
        ("2026-12-01T09:00:00Z", 6_000),
        ("2026-12-02T09:00:00Z", 4_000),
        ("2026-12-03T09:00:00Z", -5_000),
        ("2026-12-04T09:00:00Z", 5_000),
    ] {
        let s = record(&spec, &p, ms(at), cents, utc).unwrap();
        completions += s.completed_now as u32;
        p = s.progress;
    }
    // 6,000 + 4,000 reaches 10,000 (completed); a refund of 5,000 and a new 5,000 do not
    // complete it again.
    assert_eq!((p.value, p.completed, completions), (10_000, true, 1));
    // The result stays readable after the window; before it, nothing shows.
    assert_eq!(progress_at(&spec, &p, ms("2027-01-01T00:00:00Z"), utc), p);
    assert_eq!(progress_at(&spec, &p, ms("2026-11-01T00:00:00Z"), utc), Progress::default());
    assert_eq!(
        record(
            &spec,
            &Progress { window: Some(0), value: i64::MAX, completed: true },
            ms("2026-12-05T00:00:00Z"),
            1,
            utc
        ),
        Err(ChallengeError::Overflow { value: i64::MAX, amount: 1 })
    );
}

#[test]
fn invalid_specs_are_named() {
    let mut spec = ChallengeSpec { window: WindowKind::Monthly, goal: Goal::Count, target: 0 };
    assert_eq!(spec.validate(), Err(ChallengeError::Target(0)));
    spec.target = 1;
    assert_eq!(spec.validate(), Ok(()));
    spec.window = WindowKind::Fixed { start_ms: 5, end_ms: 5 };
    assert_eq!(spec.validate(), Err(ChallengeError::Window { start_ms: 5, end_ms: 5 }));
}
