//! Rule tables for badges, challenges and streaks through the core's event apply (what
//! the engine calls), each expectation worked out by hand from the calendar: Berlin is
//! UTC+1 until 2026-03-29 02:00, UTC+2 after; New York UTC-5 until 2026-03-08 02:00, UTC-4
//! after; ISO weeks start on Monday 00:00 local time. Every scenario ends with the state
//! encoded and decoded back to itself (the snapshot form).

use std::collections::BTreeMap;

use serde_json::json;

use crate::gamify::program::DEMO_PROGRAM;
use crate::gamify::{
    Achievement, AttrValue, Event, GamifyError, GamifyState, MapFacts, Program, PropValue, Value,
};
use crate::persist::gamify::{decode_state, encode_state};

fn ms(t: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(t).unwrap().timestamp_millis()
}

/// The demo program with these sections instead of its own.
fn program_with(sections: serde_json::Value) -> Result<Program, GamifyError> {
    let mut v: serde_json::Value = serde_json::from_str(DEMO_PROGRAM).unwrap();
    for k in ["badges", "challenges", "streaks"] {
        v[k] = sections.get(k).cloned().unwrap_or(json!([]));
    }
    Program::new(serde_json::from_value(v).map_err(|e| GamifyError::Program(e.to_string()))?)
}

fn program() -> Program {
    program_with(json!({
        "badges": [
            {"id": "first_purchase", "criterion": "purchases >= 1", "reward_points": 10},
            {"id": "regular", "criterion": "streak_login_current >= 3",
             "repeat": {"mode": "repeatable", "max": 2}},
            {"id": "hero", "repeat": {"mode": "repeatable"}},
            {"id": "de_spender", "criterion": "country = 'DE' AND purchase_sum_eur >= 100"}
        ],
        "challenges": [
            {"id": "weekly_buyer", "event": "purchase", "goal": {"mode": "count"}, "target": 2,
             "window": {"mode": "weekly"}, "reward": {"points": 50, "badge": "hero"}},
            {"id": "spring_books", "event": "purchase", "where": "category = 'books'",
             "goal": {"mode": "sum", "property": "amount_eur"}, "target": 100,
             "window": {"mode": "fixed", "start": "2026-03-01T00:00:00+01:00",
                        "end": "2026-04-01T00:00:00+02:00"},
             "reward": {"points": 30}},
            {"id": "vip_reviews", "event": "review", "goal": {"mode": "count"}, "target": 1,
             "window": {"mode": "monthly"}, "eligible": "in_segment('vip')"},
            {"id": "club", "event": "login", "goal": {"mode": "count"}, "target": 2,
             "window": {"mode": "monthly"}, "opt_in": true}
        ],
        "streaks": [
            {"id": "login", "events": ["login"], "unit": "day", "milestones": [2, 3]},
            {"id": "login_f", "events": ["login"], "unit": "day", "freeze_every": 7},
            {"id": "weekly_buy", "events": ["purchase"], "unit": "week", "milestones": [2]}
        ]
    }))
    .unwrap()
}

fn ev(id: &str, customer: u64, kind: &str, at: i64, props: &[(&str, PropValue)]) -> Event {
    Event {
        event_id: id.into(),
        customer_id: customer,
        kind: kind.into(),
        occurred_at_ms: at,
        properties: props.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
    }
}

fn buy(id: &str, customer: u64, at: i64, eur: f64, category: &str) -> Event {
    let props = [("amount_eur", PropValue::Float(eur)), ("category", PropValue::Str(category.into()))];
    ev(id, customer, "purchase", at, &props)
}

/// Applies one event in a batch of its own, logged a second after it occurred; answers
/// the badge, challenge and streak achievements.
fn one(st: &mut GamifyState, p: &Program, f: &MapFacts, e: Event) -> Vec<Achievement> {
    let at = e.occurred_at_ms;
    let out = st.apply_events(p, &[e], f, at + 1_000).unwrap();
    out.achievements
        .into_iter()
        .filter(|a| !matches!(a, Achievement::TierChanged { .. } | Achievement::LevelUp { .. }))
        .collect()
}

fn attr(st: &GamifyState, p: &Program, id: u64, name: &str) -> AttrValue {
    st.attributes(p, id).unwrap().into_iter().find(|a| a.0 == name).unwrap_or_else(|| panic!("{name}")).1
}

fn int(st: &GamifyState, p: &Program, id: u64, name: &str) -> i64 {
    match attr(st, p, id, name) {
        AttrValue::Int(i) => i,
        other => panic!("{name} = {other:?}"),
    }
}

fn round_trips(st: &GamifyState, p: &Program) {
    let bytes = encode_state(st, p);
    let back = decode_state(&bytes, p).unwrap();
    assert!(back == *st, "the snapshot form gives the state back");
    assert_eq!(encode_state(&back, p), bytes);
}

/// (instant, login (current, longest), login_f (current, longest), achievements).
type StreakRow = (&'static str, (i64, i64), (i64, i64), Vec<Achievement>);
/// (instant, euros, category, progress, completed, achievements).
type SumRow = (&'static str, f64, &'static str, f64, bool, Vec<Achievement>);

fn milestone(c: u64, s: &str, m: u32, at: i64) -> Achievement {
    Achievement::StreakMilestone { customer_id: c, streak: s.into(), milestone: m, at_ms: at }
}

fn badge(c: u64, b: &str, count: u32, at: i64) -> Achievement {
    Achievement::BadgeAwarded { customer_id: c, badge: b.into(), count, at_ms: at }
}

/// Local days in Berlin, a missed day (breaks `login`, frozen by `login_f`), a second
/// missed day within 7 days of the freeze (breaks both), milestones once per run, a
/// repeatable badge up to its bound, and the streak reading 0 at the tick that ends it.
#[test]
fn streaks_count_local_days_with_freezes_and_breaks() {
    let p = program();
    let f = MapFacts::default();
    let mut st = GamifyState::new();
    let c = 1;
    // (instant, login (current, longest), login_f (current, longest), achievements)
    let table: Vec<StreakRow> = vec![
        // Monday 2 March, 23:30 in Berlin.
        ("2026-03-02T22:30:00Z", (1, 1), (1, 1), vec![]),
        // 00:15 on the 3rd in Berlin (still the 2nd in UTC).
        ("2026-03-02T23:15:00Z", (2, 2), (2, 2), vec![milestone(c, "login", 2, ms("2026-03-02T23:15:00Z"))]),
        ("2026-03-03T22:59:59.999Z", (2, 2), (2, 2), vec![]),
        (
            "2026-03-03T23:00:00Z",
            (3, 3),
            (3, 3),
            vec![
                milestone(c, "login", 3, ms("2026-03-03T23:00:00Z")),
                badge(c, "regular", 1, ms("2026-03-03T23:00:00Z")),
            ],
        ),
        // The 5th missed: `login` restarts, `login_f` uses its freeze.
        ("2026-03-06T11:00:00Z", (1, 3), (4, 4), vec![]),
        ("2026-03-07T11:00:00Z", (2, 3), (5, 5), vec![milestone(c, "login", 2, ms("2026-03-07T11:00:00Z"))]),
        (
            "2026-03-08T11:00:00Z",
            (3, 3),
            (6, 6),
            vec![
                milestone(c, "login", 3, ms("2026-03-08T11:00:00Z")),
                badge(c, "regular", 2, ms("2026-03-08T11:00:00Z")),
            ],
        ),
        // The 9th missed, 4 days after the last freeze (one per 7): both restart.
        ("2026-03-10T11:00:00Z", (1, 3), (1, 6), vec![]),
        ("2026-03-11T11:00:00Z", (2, 3), (2, 6), vec![milestone(c, "login", 2, ms("2026-03-11T11:00:00Z"))]),
        // A third run to 3: the milestone again, but `regular` is at its bound of 2.
        ("2026-03-12T11:00:00Z", (3, 3), (3, 6), vec![milestone(c, "login", 3, ms("2026-03-12T11:00:00Z"))]),
    ];
    for (i, (t, login, login_f, want)) in table.into_iter().enumerate() {
        let got = one(&mut st, &p, &f, ev(&format!("l{i}"), c, "login", ms(t), &[]));
        assert_eq!(got, want, "login {i} at {t}");
        let read = |s: &str| {
            (int(&st, &p, c, &format!("streak_{s}_current")), int(&st, &p, c, &format!("streak_{s}_longest")))
        };
        assert_eq!((read("login"), read("login_f")), (login, login_f), "login {i} at {t}");
    }
    assert_eq!(attr(&st, &p, c, "badges"), AttrValue::List(vec!["regular".into()]));
    assert_eq!(int(&st, &p, c, "badge_count"), 1);
    round_trips(&st, &p);
    // Not extended on the 13th: `login` reads 0 from the 14th 00:00 in Berlin; `login_f`
    // may still freeze the 13th (8 days after its last freeze), so it lasts a day more.
    let end = ms("2026-03-13T23:00:00Z");
    assert_eq!(st.next_due_ms(), Some(end));
    assert!(st.tick(&p, end - 1).unwrap().changed.is_empty());
    st.tick(&p, end).unwrap();
    assert_eq!(int(&st, &p, c, "streak_login_current"), 0);
    assert_eq!(int(&st, &p, c, "streak_login_longest"), 3);
    assert_eq!(int(&st, &p, c, "streak_login_f_current"), 3);
    let end_f = ms("2026-03-14T23:00:00Z");
    assert_eq!(st.next_due_ms(), Some(end_f));
    st.tick(&p, end_f).unwrap();
    assert_eq!(int(&st, &p, c, "streak_login_f_current"), 0);
    assert_eq!(int(&st, &p, c, "streak_login_f_longest"), 6);
    // What is left due is the login points' expiry, a year on.
    assert!(st.next_due_ms().unwrap() > ms("2027-01-01T00:00:00Z"));
    round_trips(&st, &p);
}

/// Days in the customer's zone across DST changes: New York's 8 March has 23 hours,
/// Berlin's 29 March too. A customer without a valid zone is counted in Berlin's.
#[test]
fn streak_days_are_the_customer_s_across_dst() {
    let p = program();
    let mut f = MapFacts::default();
    let zone = |z: &str| BTreeMap::from([("time_zone".to_string(), Value::Str(z.into()))]);
    f.customers.insert(2, zone("America/New_York"));
    f.customers.insert(3, BTreeMap::new());
    f.customers.insert(4, zone("Mars/Base"));
    f.customers.insert(5, BTreeMap::new());
    let mut st = GamifyState::new();
    let times = ["2026-03-07T05:30:00Z", "2026-03-09T03:30:00Z", "2026-03-09T04:00:00Z"];
    // New York: 7 March 00:30 EST, 8 March 23:30 EDT, 9 March 00:00 EDT: days 1, 2, 3 (a
    // fixed UTC-5 would see the last two on the same day). Berlin: 7 March 06:30, 9 March
    // 04:30 and 05:00: the 8th missed.
    let want: [(u64, [i64; 3]); 3] = [(2, [1, 2, 3]), (3, [1, 1, 1]), (4, [1, 1, 1])];
    for (i, t) in times.iter().enumerate() {
        for (c, w) in &want {
            one(&mut st, &p, &f, ev(&format!("l{c}-{i}"), *c, "login", ms(t), &[]));
            assert_eq!(int(&st, &p, *c, "streak_login_current"), w[i], "customer {c} at {t}");
        }
    }
    // Berlin: 29 March 00:30 CET, 23:59:59 CEST (the same day), 30 March 00:00 CEST.
    for (i, t) in ["2026-03-28T23:30:00Z", "2026-03-29T21:59:59Z", "2026-03-29T22:00:00Z"].iter().enumerate()
    {
        one(&mut st, &p, &f, ev(&format!("b{i}"), 5, "login", ms(t), &[]));
        assert_eq!(int(&st, &p, 5, "streak_login_current"), [1, 1, 2][i], "at {t}");
    }
    let zone_of = |c: u64| st.customer(c).unwrap().achieve.as_ref().unwrap().streaks[0].tz;
    assert_eq!((zone_of(2), zone_of(4)), (chrono_tz::America::New_York, chrono_tz::Europe::Berlin));
    round_trips(&st, &p);
}

/// A weekly window in Berlin across the DST week: Sunday 23:30 CEST still counts for the
/// old week, Monday 00:00 CEST starts a new one; each completion pays 50 points and the
/// repeatable `hero` badge; the tick at the week's end resets the attribute. Points:
/// `first_purchase` pays 10 at once, purchases' own points stay pending 14 days.
#[test]
fn weekly_challenges_complete_once_per_window_and_reset() {
    let p = program();
    let f = MapFacts::default();
    let mut st = GamifyState::new();
    let c = 3;
    let week1 = ms("2026-03-22T23:00:00Z");
    let week2 = ms("2026-03-29T22:00:00Z");
    let done = |w: i64, at: &str| Achievement::ChallengeCompleted {
        customer_id: c,
        challenge: "weekly_buyer".into(),
        window_start_ms: w,
        at_ms: ms(at),
    };
    // (instant, progress, completed, achievements)
    let table: Vec<(&str, i64, bool, Vec<Achievement>)> = vec![
        ("2026-03-25T10:00:00Z", 1, false, vec![badge(c, "first_purchase", 1, ms("2026-03-25T10:00:00Z"))]),
        (
            "2026-03-29T21:30:00Z",
            2,
            true,
            vec![done(week1, "2026-03-29T21:30:00Z"), badge(c, "hero", 1, ms("2026-03-29T21:30:00Z"))],
        ),
        ("2026-03-29T22:00:00Z", 1, false, vec![milestone(c, "weekly_buy", 2, week2)]),
        (
            "2026-03-30T08:00:00Z",
            2,
            true,
            vec![done(week2, "2026-03-30T08:00:00Z"), badge(c, "hero", 2, ms("2026-03-30T08:00:00Z"))],
        ),
        // A third purchase in the same week adds to the progress, completes nothing.
        ("2026-03-31T08:00:00Z", 3, true, vec![]),
    ];
    for (i, (t, progress, completed, want)) in table.into_iter().enumerate() {
        assert_eq!(one(&mut st, &p, &f, buy(&format!("p{i}"), c, ms(t), 10.0, "toys")), want, "at {t}");
        assert_eq!(int(&st, &p, c, "challenge_weekly_buyer_progress"), progress, "at {t}");
        assert_eq!(
            attr(&st, &p, c, "challenge_weekly_buyer_completed"),
            AttrValue::Bool(completed),
            "at {t}"
        );
    }
    assert_eq!(int(&st, &p, c, "points_balance"), 10 + 50 + 50);
    assert_eq!(int(&st, &p, c, "points_pending"), 50);
    assert_eq!(attr(&st, &p, c, "badges"), AttrValue::List(vec!["first_purchase".into(), "hero".into()]));
    let view = st.achieve_view(&p, Some(c), ms("2026-03-31T09:00:00Z"));
    let hero = view.badges.iter().find(|b| b.id == "hero").unwrap();
    assert_eq!(
        (hero.count, hero.first_awarded_ms, hero.last_awarded_ms),
        (2, ms("2026-03-29T21:30:00Z"), ms("2026-03-30T08:00:00Z"))
    );
    let wb = &view.challenges[0];
    assert_eq!((wb.progress, wb.target, wb.completed, wb.completions), (3.0, 2.0, true, 2));
    assert_eq!(wb.window, Some((week2, ms("2026-04-05T22:00:00Z"))));
    round_trips(&st, &p);
    // Monday 6 April 00:00 CEST: a new week reads 0 (the earliest thing due).
    let next_week = ms("2026-04-05T22:00:00Z");
    assert_eq!(st.next_due_ms(), Some(next_week));
    st.tick(&p, next_week).unwrap();
    assert_eq!(int(&st, &p, c, "challenge_weekly_buyer_progress"), 0);
    assert_eq!(attr(&st, &p, c, "challenge_weekly_buyer_completed"), AttrValue::Bool(false));
    assert_eq!(st.achieve_view(&p, Some(c), next_week).challenges[0].completions, 2);
}

/// A fixed window `[1 March 00:00 CET, 1 April 00:00 CEST)` summing book purchases: the
/// instant before it and its end are outside, the result stays after it; a badge over a
/// table attribute (`country`) and a counter.
#[test]
fn a_fixed_window_sums_matching_events_and_keeps_its_result() {
    let p = program();
    let mut f = MapFacts::default();
    f.customers.insert(4, BTreeMap::from([("country".to_string(), Value::Str("DE".into()))]));
    f.customers.insert(6, BTreeMap::from([("country".to_string(), Value::Str("FR".into()))]));
    let mut st = GamifyState::new();
    let c = 4;
    let won = |at: &str| Achievement::ChallengeCompleted {
        customer_id: c,
        challenge: "spring_books".into(),
        window_start_ms: ms("2026-02-28T23:00:00Z"),
        at_ms: ms(at),
    };
    // (instant, euros, category, progress, completed, achievements other than first_purchase and weekly ones)
    let table: Vec<SumRow> = vec![
        ("2026-02-28T22:59:59.999Z", 60.0, "books", 0.0, false, vec![]),
        (
            "2026-02-28T23:00:00Z",
            60.0,
            "books",
            60.0,
            false,
            vec![badge(c, "de_spender", 1, ms("2026-02-28T23:00:00Z"))],
        ),
        ("2026-03-05T10:00:00Z", 50.0, "toys", 60.0, false, vec![]),
        ("2026-03-10T10:00:00Z", 40.0, "books", 100.0, true, vec![won("2026-03-10T10:00:00Z")]),
        ("2026-03-31T21:59:59.999Z", 10.0, "books", 110.0, true, vec![]),
        ("2026-03-31T22:00:00Z", 10.0, "books", 110.0, true, vec![]),
    ];
    for (i, (t, eur, cat, progress, completed, want)) in table.into_iter().enumerate() {
        let got = one(&mut st, &p, &f, buy(&format!("b{i}"), c, ms(t), eur, cat));
        let got: Vec<Achievement> = got
            .into_iter()
            .filter(|a| match a {
                Achievement::BadgeAwarded { badge, .. } => badge == "de_spender",
                Achievement::ChallengeCompleted { challenge, .. } => challenge == "spring_books",
                _ => false,
            })
            .collect();
        assert_eq!(got, want, "at {t}");
        assert_eq!(attr(&st, &p, c, "challenge_spring_books_progress"), AttrValue::Float(progress), "at {t}");
        assert_eq!(
            attr(&st, &p, c, "challenge_spring_books_completed"),
            AttrValue::Bool(completed),
            "at {t}"
        );
    }
    // Weeks later the window's result is still what it was.
    let later = ms("2026-05-01T00:00:00Z");
    st.tick(&p, later).unwrap();
    let s = &st.achieve_view(&p, Some(c), later).challenges[1];
    assert_eq!((s.id.as_str(), s.progress, s.target, s.completed), ("spring_books", 110.0, 100.0, true));
    // 200 € of toys in France: no de_spender.
    let got = one(&mut st, &p, &f, buy("fr", 6, later, 200.0, "toys"));
    assert_eq!(got, vec![badge(6, "first_purchase", 1, later)]);
    round_trips(&st, &p);
}

/// Eligibility by segment and opt-in: only a `vip` customer's review counts; logins
/// before joining `club` do not; joining twice changes nothing; a join names what is
/// wrong with it.
#[test]
fn eligibility_and_opt_in() {
    let p = program();
    let mut f = MapFacts::default();
    f.customers.insert(7, BTreeMap::new());
    f.customers.insert(8, BTreeMap::new());
    f.segments.insert("vip".into(), [7].into());
    let mut st = GamifyState::new();
    let t = ms("2026-03-02T10:00:00Z");
    let review = |id: &str, c| ev(id, c, "review", t, &[("rating", PropValue::Int(5))]);
    let vip = |c| Achievement::ChallengeCompleted {
        customer_id: c,
        challenge: "vip_reviews".into(),
        window_start_ms: ms("2026-02-28T23:00:00Z"),
        at_ms: t,
    };
    assert_eq!(one(&mut st, &p, &f, review("r7", 7)), vec![vip(7)]);
    assert_eq!(one(&mut st, &p, &f, review("r8", 8)), vec![]);
    assert_eq!(int(&st, &p, 8, "challenge_vip_reviews_progress"), 0);

    one(&mut st, &p, &f, ev("l1", 7, "login", t, &[]));
    assert_eq!(int(&st, &p, 7, "challenge_club_progress"), 0, "not joined yet");
    assert!(!st.achieve_view(&p, Some(7), t).challenges[3].joined);
    let (already, out) = st.join_challenge(&p, 7, "club", &f, t + 1).unwrap();
    assert!(!already && out.changed.len() == 1);
    assert!(st.join_challenge(&p, 7, "club", &f, t + 2).unwrap().0, "a second join is answered as such");
    let club = |at| Achievement::ChallengeCompleted {
        customer_id: 7,
        challenge: "club".into(),
        window_start_ms: ms("2026-02-28T23:00:00Z"),
        at_ms: at,
    };
    assert_eq!(one(&mut st, &p, &f, ev("l2", 7, "login", t + 10, &[])), vec![]);
    assert_eq!(one(&mut st, &p, &f, ev("l3", 7, "login", t + 20, &[])), vec![club(t + 20)]);
    assert!(st.achieve_view(&p, Some(7), t + 30).challenges[3].joined);

    let err = |r: Result<(bool, crate::gamify::Applied), GamifyError>| r.unwrap_err().to_string();
    assert_eq!(err(st.join_challenge(&p, 7, "nope", &f, t)), "unknown challenge 'nope'");
    assert!(err(st.join_challenge(&p, 7, "weekly_buyer", &f, t)).contains("an opt-in challenge"));
    assert!(err(st.join_challenge(&p, 99, "club", &f, t)).contains("unknown customer 99"));
    round_trips(&st, &p);
}

/// What an event's outcome reports as challenge progress (what challenge-progress
/// leaderboards add): (challenge index, amount) exactly when the challenge took the event,
/// worked out by hand. Challenges: 0 weekly_buyer (count), 1 spring_books (books, sum,
/// fixed window March in Berlin), 2 vip_reviews (eligible: vip), 3 club (opt-in).
#[test]
fn an_event_reports_the_progress_its_challenges_took() {
    let p = program();
    let mut f = MapFacts::default();
    for c in [7, 8] {
        f.customers.insert(c, BTreeMap::new());
    }
    f.segments.insert("vip".into(), [8].into());
    let mut st = GamifyState::new();
    let mut steps = |e: Event| -> Vec<(u16, i64)> {
        let at = e.occurred_at_ms;
        let out = st.apply_events(&p, &[e], &f, at + 1_000).unwrap();
        match &out.outcomes[..] {
            [crate::gamify::EventOutcome::Applied { challenges, .. }] => {
                challenges.iter().map(|s| (s.challenge, s.amount)).collect()
            }
            other => panic!("{other:?}"),
        }
    };
    let rows: Vec<(Event, Vec<(u16, i64)>)> = vec![
        // Monday 2 March: both purchase challenges take it, the sum in hundredths.
        (buy("p1", 7, ms("2026-03-02T10:00:00Z"), 40.0, "books"), vec![(0, 1), (1, 4000)]),
        // Not books: only the count.
        (buy("p2", 7, ms("2026-03-03T10:00:00Z"), 10.0, "toys"), vec![(0, 1)]),
        // weekly_buyer is complete (2 of 2): still taken, uncapped; spring_books completes.
        (buy("p3", 7, ms("2026-03-04T10:00:00Z"), 70.5, "books"), vec![(0, 1), (1, 7050)]),
        // 2 April: a new week; after spring_books' window.
        (buy("p4", 7, ms("2026-04-02T10:00:00Z"), 5.0, "books"), vec![(0, 1)]),
        // Logged late, in a week before the one weekly_buyer holds: not taken there;
        // inside spring_books' fixed window, taken.
        (buy("p5", 7, ms("2026-03-27T20:00:00Z"), 2.0, "books"), vec![(1, 200)]),
        // Eligibility: only the vip's review.
        (ev("r7", 7, "review", ms("2026-04-02T11:00:00Z"), &[]), vec![]),
        (ev("r8", 8, "review", ms("2026-04-02T11:00:00Z"), &[]), vec![(2, 1)]),
        // Opt-in: not before the join.
        (ev("l1", 7, "login", ms("2026-04-02T12:00:00Z"), &[]), vec![]),
    ];
    for (e, want) in rows {
        let id = e.event_id.clone();
        assert_eq!(steps(e), want, "{id}");
    }
    st.join_challenge(&p, 7, "club", &f, ms("2026-04-02T12:00:01Z")).unwrap();
    let mut steps = |e: Event| {
        let at = e.occurred_at_ms;
        let out = st.apply_events(&p, &[e], &f, at + 1_000).unwrap();
        out.outcomes
    };
    let got = steps(ev("l2", 7, "login", ms("2026-04-02T12:00:02Z"), &[]));
    let want = crate::gamify::ChallengeStep { challenge: 3, amount: 1 };
    assert!(
        matches!(&got[..], [crate::gamify::EventOutcome::Applied { challenges, .. }] if challenges == &[want])
    );
}

/// A program's sections are validated whole; each error names the item and field.
#[test]
fn bad_sections_are_refused_naming_the_item_and_field() {
    let err = program_with(json!({
        "badges": [
            {"id": "Bad-Id", "criterion": "purchases >="},
            {"id": "twice", "criterion": "purchases > 1", "repeat": {"mode": "repeatable", "max": 0}},
            {"id": "twice", "reward_points": 0}
        ],
        "challenges": [
            {"id": "c1", "event": "teleport", "goal": {"mode": "count"}, "target": 0,
             "window": {"mode": "weekly"}},
            {"id": "c2", "event": "purchase", "where": "colour = 'red'",
             "goal": {"mode": "sum", "property": "category"}, "target": 1.5,
             "window": {"mode": "fixed", "start": "2026-04-01T00:00:00Z", "end": "2026-03-01T00:00:00Z"},
             "reward": {"badge": "nope"}}
        ],
        "streaks": [
            {"id": "s", "events": ["login", "warp"], "unit": "day", "freeze_every": 0, "milestones": [3, 3]}
        ]
    }))
    .unwrap_err()
    .to_string();
    for want in [
        "badges[0] \"Bad-Id\": id must be 1 to 64 lowercase letters",
        "badges[0] \"Bad-Id\": criterion: ",
        "badges[1] \"twice\": repeat.max must be at least 1, got 0",
        "badges[2] \"twice\": id is a duplicate",
        "badges[2] \"twice\": reward_points must be 1 to",
        "challenges[0] \"c1\": event 'teleport' is not an event type",
        "challenges[0] \"c1\": target must be positive",
        "challenges[1] \"c2\": where: 'colour' is not a property of 'purchase'",
        "challenges[1] \"c2\": goal.property 'category' is not a numeric property of 'purchase'",
        "challenges[1] \"c2\": window.start must be before window.end",
        "challenges[1] \"c2\": reward.badge 'nope' is not a badge of the program",
        "streaks[0] \"s\": events[1] 'warp' is not an event type",
        "streaks[0] \"s\": streak freeze_every must be at least 1",
    ] {
        assert!(err.contains(want), "missing {want:?} in {err}");
    }
    // A derived name may not shadow a counter.
    let err = program_with(json!({"streaks": [{"id": "x", "events": ["login"], "unit": "week"}]}))
        .and_then(|_| {
            let mut v: serde_json::Value = serde_json::from_str(DEMO_PROGRAM).unwrap();
            v["counters"] = json!([{"name": "streak_x_current", "event": "login"}]);
            v["streaks"] = json!([{"id": "x", "events": ["login"], "unit": "week"}]);
            Program::new(serde_json::from_value(v).unwrap())
        })
        .unwrap_err()
        .to_string();
    assert!(err.contains("attribute 'streak_x_current' is derived twice"), "{err}");
    // Names a criterion reads must be attributes (the table's or derived ones).
    let p = program_with(json!({"badges": [{"id": "b", "criterion": "purchasez >= 1"}]})).unwrap();
    let e = p.achieve.check_names(&p.spec, &|n| n == "country").unwrap_err();
    assert_eq!(e, "badges[0] \"b\": criterion: 'purchasez' is no customer attribute or gamification value");
    assert_eq!(program().achieve.check_names(&program().spec, &|n| n == "country"), Ok(()));
    // The JSON form round-trips, and a program without the sections writes none of them.
    let p = program();
    assert_eq!(Program::from_json(&p.to_json()).unwrap(), p);
    assert!(!program_with(json!({})).unwrap().to_json().contains("badges"));
}

/// The per-entry costs stated in the module doc of `achieve_state`.
#[test]
fn entry_sizes_are_what_the_doc_says() {
    use std::mem::size_of;
    assert_eq!(size_of::<crate::badge::Held>(), 24);
    assert_eq!(size_of::<crate::gamify::achieve_state::StreakEntry>(), 56);
    assert_eq!(size_of::<crate::gamify::achieve_state::ChallengeEntry>(), 72);
    assert_eq!(size_of::<crate::gamify::achieve_state::CustomerAchieve>(), 72);
}
