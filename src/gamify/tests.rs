//! Scenario tests of the gamification core on the demo program (Europe/Berlin), each
//! against figures computed by hand in the comments.

use std::collections::BTreeMap;

use chrono::DateTime;

use super::program::{DowngradeSpec, ExpirySpec, ProgramSpec, TierSpec, DEMO_PROGRAM};

use super::view::EntryKind;
use super::*;
use crate::persist::gamify as record;

fn ms(s: &str) -> i64 {
    DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
}

fn facts() -> MapFacts {
    let mut f = MapFacts::default();
    for id in 1..=9 {
        f.customers.insert(id, BTreeMap::from([("country".to_string(), Value::Str("DE".into()))]));
    }
    f
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

fn buy(id: &str, customer: u64, at: i64, eur: f64) -> Event {
    ev(id, customer, "purchase", at, &[("amount_eur", PropValue::Float(eur))])
}

fn refund(id: &str, customer: u64, at: i64, of: &str, eur: f64) -> Event {
    ev(
        id,
        customer,
        "refund",
        at,
        &[("original_event_id", PropValue::Str(of.into())), ("amount_eur", PropValue::Float(eur))],
    )
}

fn spec() -> ProgramSpec {
    serde_json::from_str(DEMO_PROGRAM).unwrap()
}

fn attr(st: &GamifyState, p: &Program, id: u64, name: &str) -> AttrValue {
    st.attributes(p, id).unwrap().into_iter().find(|a| a.0 == name).unwrap().1
}

fn int(st: &GamifyState, p: &Program, id: u64, name: &str) -> i64 {
    match attr(st, p, id, name) {
        AttrValue::Int(i) => i,
        other => panic!("{name} = {other:?}"),
    }
}

fn tier(st: &GamifyState, p: &Program, id: u64) -> String {
    match attr(st, p, id, "tier") {
        AttrValue::Str(s) => s,
        other => panic!("tier = {other:?}"),
    }
}

fn apply(st: &mut GamifyState, p: &Program, events: &[Event], logged: i64) -> Applied {
    st.apply_events(p, events, &facts(), logged).unwrap()
}

#[test]
fn purchase_points_are_pending_for_14_days() {
    let p = Program::demo();
    let mut st = GamifyState::new();
    let t = ms("2026-03-02T10:00:00Z");
    let out = apply(&mut st, &p, &[buy("p1", 1, t, 120.50)], t);
    assert_eq!(
        out.outcomes,
        vec![EventOutcome::Applied { credited: 120, reversed: 0, shortfall: 0, challenges: vec![] }]
    );
    let badge =
        Achievement::BadgeAwarded { customer_id: 1, badge: "first_purchase".into(), count: 1, at_ms: t };
    assert_eq!(
        out.achievements,
        vec![Achievement::LevelUp { customer_id: 1, from: 1, to: 2, at_ms: t }, badge]
    );
    assert!(out.created.is_empty());
    let want = vec![
        ("points_balance".to_string(), AttrValue::Int(0)),
        ("points_pending".to_string(), AttrValue::Int(120)),
        ("lifetime_points".to_string(), AttrValue::Int(120)),
        ("points_expiring_30d".to_string(), AttrValue::Int(0)),
        ("tier".to_string(), AttrValue::Str("NONE".into())),
        ("level".to_string(), AttrValue::Int(2)),
        ("purchases".to_string(), AttrValue::Int(1)),
        ("purchase_sum_eur".to_string(), AttrValue::Float(120.5)),
        ("logins".to_string(), AttrValue::Int(0)),
        ("reviews".to_string(), AttrValue::Int(0)),
        // The demo's badges, streak and challenges (books_month is opt-in: nothing yet).
        ("badges".to_string(), AttrValue::List(vec!["first_purchase".into()])),
        ("badge_count".to_string(), AttrValue::Int(1)),
        ("streak_daily_login_current".to_string(), AttrValue::Int(0)),
        ("streak_daily_login_longest".to_string(), AttrValue::Int(0)),
        ("challenge_weekly_reviews_progress".to_string(), AttrValue::Int(0)),
        ("challenge_weekly_reviews_completed".to_string(), AttrValue::Bool(false)),
        ("challenge_books_month_progress".to_string(), AttrValue::Float(0.0)),
        ("challenge_books_month_completed".to_string(), AttrValue::Bool(false)),
    ];
    assert_eq!(out.changed.len(), 1);
    assert_eq!(out.changed[0].customer_id, 1);
    assert_eq!(out.changed[0].named(&p), want);
    let day14 = t + 14 * DAY_MS;
    assert!(st.tick(&p, day14 - 1).unwrap().changed.is_empty());
    let out = st.tick(&p, day14).unwrap();
    assert_eq!(out.changed.len(), 1);
    assert_eq!((int(&st, &p, 1, "points_balance"), int(&st, &p, 1, "points_pending")), (120, 0));
    st.check_invariants().unwrap();
}

#[test]
fn points_expire_at_the_end_of_the_month_12_months_later_only_unspent() {
    let p = Program::demo();
    let mut st = GamifyState::new();
    let t = ms("2026-03-15T12:00:00Z");
    apply(&mut st, &p, &[buy("p1", 1, t, 50.0)], t);
    st.tick(&p, t + 14 * DAY_MS).unwrap();
    let s = Spend { customer_id: 1, wallet: "points".into(), request_id: "s1".into(), points: 20 };
    st.spend(&p, &s, t + 15 * DAY_MS).unwrap();
    // March 2027 ends at 2027-04-01 00:00 in Berlin (CEST, +02:00).
    let exp = ms("2027-04-01T00:00:00+02:00");
    let enters = exp - 30 * DAY_MS;
    st.tick(&p, enters - 1).unwrap();
    assert_eq!(int(&st, &p, 1, "points_expiring_30d"), 0);
    let out = st.tick(&p, enters).unwrap();
    assert_eq!(out.changed.len(), 1, "the 30-day figure moved by itself");
    assert_eq!(int(&st, &p, 1, "points_expiring_30d"), 30);
    st.tick(&p, exp - 1).unwrap();
    assert_eq!(int(&st, &p, 1, "points_balance"), 30);
    st.tick(&p, exp).unwrap();
    assert_eq!(int(&st, &p, 1, "points_balance"), 0);
    assert_eq!(int(&st, &p, 1, "lifetime_points"), 50);
    let page = st.ledger(&p, 1, "points", None, 10).unwrap();
    let kinds: Vec<(i64, bool)> =
        page.entries.iter().map(|e| (e.points, matches!(e.kind, EntryKind::Expiry))).collect();
    assert_eq!(kinds, vec![(50, false), (-20, false), (-30, true)]);
    assert_eq!(page.entries[2].at_ms, exp);
    st.check_invariants().unwrap();
}

#[test]
fn other_expiry_modes() {
    let mut s = spec();
    s.time_zone = "UTC".into();
    s.wallets[0].expiry = ExpirySpec::AfterDays { days: 10 };
    s.rules.iter_mut().for_each(|r| r.pending_days = 0);
    let p = Program::new(s.clone()).unwrap();
    let mut st = GamifyState::new();
    let t = ms("2026-06-01T08:00:00Z");
    apply(&mut st, &p, &[ev("l1", 1, "login", t, &[])], t);
    st.tick(&p, t + 10 * DAY_MS - 1).unwrap();
    assert_eq!(int(&st, &p, 1, "points_balance"), 5);
    st.tick(&p, t + 10 * DAY_MS).unwrap();
    assert_eq!(int(&st, &p, 1, "points_balance"), 0);

    s.wallets[0].expiry = ExpirySpec::EndOfYear { years: 1 };
    let p = Program::new(s.clone()).unwrap();
    let mut st = GamifyState::new();
    apply(&mut st, &p, &[ev("l1", 1, "login", t, &[])], t);
    let e = &st.ledger(&p, 1, "points", None, 1).unwrap().entries[0];
    assert!(
        matches!(e.kind, EntryKind::Credit { expires_ms: Some(x), .. } if x == ms("2028-01-01T00:00:00Z"))
    );

    s.wallets[0].expiry = ExpirySpec::Never;
    let p = Program::new(s).unwrap();
    let mut st = GamifyState::new();
    apply(&mut st, &p, &[ev("l1", 1, "login", t, &[])], t);
    st.tick(&p, ms("2099-01-01T00:00:00Z")).unwrap();
    assert_eq!(int(&st, &p, 1, "points_balance"), 5);
    assert_eq!(st.state_of(&p, 1, t).unwrap().wallets[0].next_expiry, None);
}

#[test]
fn tiers_upgrade_at_once_at_their_exact_thresholds() {
    let p = Program::demo();
    let mut st = GamifyState::new();
    let t = ms("2026-03-02T10:00:00Z");
    apply(&mut st, &p, &[buy("a", 1, t, 499.99)], t);
    assert_eq!(tier(&st, &p, 1), "NONE");
    let out = apply(&mut st, &p, &[buy("b", 1, t + 1, 0.01)], t + 1);
    assert!(out.achievements.contains(&Achievement::TierChanged {
        customer_id: 1,
        from: "NONE".into(),
        to: "BRONZE".into(),
        reason: TierReason::Qualified,
        at_ms: t + 1
    }));
    apply(&mut st, &p, &[buy("c", 1, t + 2, 250.0)], t + 2);
    assert_eq!(tier(&st, &p, 1), "SILVER");
    apply(&mut st, &p, &[buy("d", 1, t + 3, 249.99)], t + 3);
    assert_eq!(tier(&st, &p, 1), "SILVER", "999.99 €");
    apply(&mut st, &p, &[buy("e", 1, t + 4, 0.01)], t + 4);
    assert_eq!(tier(&st, &p, 1), "GOLD");
    // A refund lowers the measure, not the tier: downgrades wait for the period end.
    apply(&mut st, &p, &[refund("r", 1, t + 5, "c", 250.0)], t + 5);
    assert_eq!(tier(&st, &p, 1), "GOLD");
    let v = st.state_of(&p, 1, t + 5).unwrap().tier;
    assert_eq!((v.measure, v.qualifies_for.as_str(), v.next.clone()), (750.0, "SILVER", None));
    // 2026 ends at 2027-01-01 00:00 CET; + 30 days of grace.
    assert_eq!(v.next_downgrade_check_ms, Some(ms("2027-01-31T00:00:00+01:00")));
}

#[test]
fn downgrades_at_period_end_plus_grace_with_a_manual_floor() {
    let p = Program::demo();
    let mut st = GamifyState::new();
    let t = ms("2026-01-10T12:00:00Z");
    // 1: GOLD from a purchase that leaves the 365-day window before the check.
    // 2: the same, with a manual SILVER floor.
    // 3: the same, and 600 € within the grace days.
    apply(&mut st, &p, &[buy("a1", 1, t, 1000.0), buy("a2", 2, t, 1000.0), buy("a3", 3, t, 1000.0)], t);
    st.set_manual_tier(&p, 2, Some("SILVER"), &facts(), t).unwrap();
    assert_eq!(st.customer(2).unwrap().tier, 3, "a floor below the tier changes nothing");
    // The first check (end of 2025 + 30 days) still sees the purchase.
    st.tick(&p, ms("2026-02-15T00:00:00Z")).unwrap();
    assert_eq!(tier(&st, &p, 1), "GOLD");
    let g = ms("2027-01-20T12:00:00Z");
    apply(&mut st, &p, &[buy("b3", 3, g, 600.0)], g);
    let check = ms("2027-01-31T00:00:00+01:00");
    st.tick(&p, check - 1).unwrap();
    assert_eq!(
        (tier(&st, &p, 1), tier(&st, &p, 2), tier(&st, &p, 3)),
        ("GOLD".into(), "GOLD".into(), "GOLD".into())
    );
    let out = st.tick(&p, check).unwrap();
    assert_eq!(
        (tier(&st, &p, 1), tier(&st, &p, 2), tier(&st, &p, 3)),
        ("NONE".into(), "SILVER".into(), "BRONZE".into())
    );
    assert!(out.achievements.contains(&Achievement::TierChanged {
        customer_id: 1,
        from: "GOLD".into(),
        to: "NONE".into(),
        reason: TierReason::PeriodEnd,
        at_ms: check
    }));
    // Only customers 1 and 2 were due, and 3: nobody else is visited.
    assert_eq!(out.achievements.len(), 3);
    st.check_invariants().unwrap();

    // Under `never`, nothing drops.
    let mut s = spec();
    s.tiers.downgrade = DowngradeSpec::Never;
    let p = Program::new(s).unwrap();
    let mut st = GamifyState::new();
    apply(&mut st, &p, &[buy("a1", 1, t, 1000.0)], t);
    st.tick(&p, check).unwrap();
    assert_eq!(tier(&st, &p, 1), "GOLD");
    assert_eq!(st.state_of(&p, 1, check).unwrap().tier.next_downgrade_check_ms, None);
}

#[test]
fn a_manual_tier_raises_at_once_and_is_a_floor() {
    let p = Program::demo();
    let mut st = GamifyState::new();
    let t = ms("2026-03-02T10:00:00Z");
    let out = st.set_manual_tier(&p, 4, Some("SILVER"), &facts(), t).unwrap();
    assert_eq!(
        out.achievements,
        vec![Achievement::TierChanged {
            customer_id: 4,
            from: "NONE".into(),
            to: "SILVER".into(),
            reason: TierReason::Manual,
            at_ms: t
        }]
    );
    assert_eq!(st.state_of(&p, 4, t).unwrap().tier.next_downgrade_check_ms, None, "nothing to drop to");
    assert_eq!(
        st.set_manual_tier(&p, 4, Some("PLATINUM"), &facts(), t),
        Err(GamifyError::UnknownTier("PLATINUM".into()))
    );
    assert_eq!(st.set_manual_tier(&p, 42, Some("GOLD"), &facts(), t), Err(GamifyError::UnknownCustomer(42)));
}

#[test]
fn refunds_reverse_points_and_record_the_shortfall() {
    let p = Program::demo();
    let mut st = GamifyState::new();
    let t = ms("2026-03-02T10:00:00Z");
    apply(&mut st, &p, &[buy("p1", 1, t, 100.0), buy("p2", 1, t, 80.0)], t);
    let later = t + 14 * DAY_MS;
    st.tick(&p, later).unwrap();
    let s = Spend { customer_id: 1, wallet: "points".into(), request_id: "s1".into(), points: 170 };
    st.spend(&p, &s, later).unwrap();
    // Spent 170 of 180: both credits expire together, p1 is first (lower seq): p1 100,
    // p2 70; 10 of p2 left.
    // Partial refund of p2: 20 of 80 € = a quarter of 80 points = 20: 10 from p2, 10 short.
    let out = apply(&mut st, &p, &[refund("r1", 1, later + 1, "p2", 20.0)], later + 1);
    assert_eq!(
        out.outcomes,
        vec![EventOutcome::Applied { credited: 0, reversed: 20, shortfall: 10, challenges: vec![] }]
    );
    // Full refund of p1: 100 points, nothing left anywhere.
    let out = apply(&mut st, &p, &[refund("r2", 1, later + 2, "p1", 100.0)], later + 2);
    assert_eq!(
        out.outcomes,
        vec![EventOutcome::Applied { credited: 0, reversed: 100, shortfall: 100, challenges: vec![] }]
    );
    assert_eq!(int(&st, &p, 1, "points_balance"), 0);
    assert_eq!(int(&st, &p, 1, "lifetime_points"), 60);
    assert_eq!(st.state_of(&p, 1, later + 2).unwrap().tier.measure, 60.0, "180 - 20 - 100 €");
    let page = st.ledger(&p, 1, "points", None, 10).unwrap();
    let shortfalls: Vec<i64> = page
        .entries
        .iter()
        .filter_map(|e| match e.kind {
            EntryKind::Reversal { shortfall } => Some(shortfall),
            _ => None,
        })
        .collect();
    assert_eq!(shortfalls, vec![10, 100], "p1's reversal took nothing: all of it is short");
    st.check_invariants().unwrap();
}

#[test]
fn duplicates_change_nothing_within_the_dedup_window() {
    let p = Program::demo();
    let mut st = GamifyState::new();
    let t = ms("2026-03-02T10:00:00Z");
    let r = |at| ev("r1", 1, "review", at, &[("rating", PropValue::Int(5))]);
    // A rated review is progress toward weekly_reviews, the demo's first challenge.
    let rated = vec![ChallengeStep { challenge: 0, amount: 1 }];
    let out = apply(&mut st, &p, &[r(t), r(t)], t);
    assert_eq!(
        out.outcomes,
        vec![
            EventOutcome::Applied { credited: 20, reversed: 0, shortfall: 0, challenges: rated.clone() },
            EventOutcome::Duplicate
        ]
    );
    let before = st.clone();
    let out = apply(&mut st, &p, &[r(t + 6 * DAY_MS)], t + 6 * DAY_MS);
    assert_eq!(out.outcomes, vec![EventOutcome::Duplicate]);
    assert!(out.changed.is_empty() && out.achievements.is_empty());
    assert_eq!(st.customers, before.customers);
    // Past the window (by logged time) the id is forgotten.
    let out = apply(&mut st, &p, &[r(t + 7 * DAY_MS + 1)], t + 7 * DAY_MS + 1);
    assert_eq!(
        out.outcomes,
        vec![EventOutcome::Applied { credited: 20, reversed: 0, shortfall: 0, challenges: rated.clone() }]
    );
}

#[test]
fn a_batch_with_one_bad_event_is_rejected_whole() {
    let p = Program::demo();
    let mut st = GamifyState::new();
    let t = ms("2026-03-02T10:00:00Z");
    apply(&mut st, &p, &[buy("p0", 1, t, 10.0)], t);
    let before = st.clone();
    let cases: Vec<(Event, &str)> = vec![
        (buy("x", 1, t, f64::NAN), "finite number"),
        (buy("x", 1, t, f64::INFINITY), "finite number"),
        (ev("x", 1, "teleport", t, &[]), "not an event type"),
        (ev("x", 1, "purchase", t, &[]), "required property 'amount_eur'"),
        (buy("x", 1, t - 7 * DAY_MS - 1, 1.0), "dedup window"),
        (buy("x", 1, t + 5 * 60_000 + 1, 1.0), "clock skew"),
        (buy(&"x".repeat(129), 1, t, 1.0), "1 to 128 bytes"),
    ];
    for (bad, msg) in cases {
        let err = st.apply_events(&p, &[buy("ok", 1, t, 5.0), bad], &facts(), t).unwrap_err();
        assert!(matches!(&err, GamifyError::Event { index: 1, .. }), "{err}");
        assert!(err.to_string().contains(msg), "{err} lacks {msg}");
        assert_eq!(st, before);
    }
    let mut s = spec();
    s.unknown_customers = program::UnknownCustomers::Reject;
    let strict = Program::new(s).unwrap();
    let err = st.apply_events(&strict, &[buy("x", 77, t, 1.0)], &facts(), t).unwrap_err();
    assert!(err.to_string().contains("customer 77 is unknown"), "{err}");
    // The demo program creates unknown customers.
    let out = st.apply_events(&p, &[buy("x", 77, t, 1.0), buy("y", 77, t, 1.0)], &facts(), t).unwrap();
    assert_eq!(out.created, vec![77]);
    let too_many: Vec<Event> = (0..10_001).map(|i| buy(&format!("b{i}"), 1, t, 1.0)).collect();
    assert!(matches!(
        st.apply_events(&p, &too_many, &facts(), t),
        Err(GamifyError::BatchTooLarge { got: 10_001, limit: 10_000 })
    ));
}

#[test]
fn spends_are_idempotent_and_refused_when_short() {
    let p = Program::demo();
    let mut st = GamifyState::new();
    let t = ms("2026-03-02T10:00:00Z");
    let g = Grant { customer_id: 1, wallet: "points".into(), request_id: "g1".into(), points: 50 };
    let (o, out) = st.grant(&p, &g, &facts(), t).unwrap();
    assert!(!o.duplicate);
    assert_eq!(out.changed.len(), 1);
    assert!(st.grant(&p, &g, &facts(), t).unwrap().0.duplicate);
    let s = |id: &str, n| Spend { customer_id: 1, wallet: "points".into(), request_id: id.into(), points: n };
    let (o, _) = st.spend(&p, &s("r1", 30), t).unwrap();
    assert!(!o.duplicate);
    let (again, out) = st.spend(&p, &s("r1", 30), t).unwrap();
    assert_eq!((again.seq, again.duplicate, out), (o.seq, true, Applied::default()));
    assert_eq!(int(&st, &p, 1, "points_balance"), 20);
    assert_eq!(
        st.spend(&p, &s("r2", 21), t),
        Err(GamifyError::InsufficientPoints {
            customer_id: 1,
            wallet: "points".into(),
            available: 20,
            requested: 21
        })
    );
    assert_eq!(
        st.spend(&p, &s("r1", 31), t),
        Err(GamifyError::RequestIdReused { customer_id: 1, request_id: "r1".into() })
    );
    assert!(matches!(st.spend(&p, &s("r3", 0), t), Err(GamifyError::BadRequest { field: "points", .. })));
    assert_eq!(
        st.spend(&p, &Spend { wallet: "miles".into(), ..s("r4", 1) }, t),
        Err(GamifyError::UnknownWallet("miles".into()))
    );
    assert_eq!(int(&st, &p, 1, "points_balance"), 20);
}

#[test]
fn customer_conditions_see_the_batch_s_earlier_events() {
    let p = Program::demo();
    let mut st = GamifyState::new();
    let t = ms("2026-03-02T10:00:00Z");
    let books = ev(
        "p2",
        1,
        "purchase",
        t,
        &[("amount_eur", PropValue::Float(20.0)), ("category", PropValue::Str("books".into()))],
    );
    let out = apply(&mut st, &p, &[buy("p1", 1, t, 1000.0), books], t);
    // p1: 1000 points and GOLD; p2: 20 points + 25 × 2 (GOLD) bonus.
    assert_eq!(
        out.outcomes[1],
        EventOutcome::Applied { credited: 70, reversed: 0, shortfall: 0, challenges: vec![] }
    );
}

#[test]
fn daily_caps_follow_the_program_s_midnight() {
    let p = Program::demo();
    let mut st = GamifyState::new();
    let a = ms("2026-03-02T22:30:00Z"); // 23:30 in Berlin
    let events = [
        ev("l1", 1, "login", a, &[]),
        ev("l2", 1, "login", a + 900_000, &[]),
        ev("l3", 1, "login", a + 3_600_000, &[]),
    ];
    let out = apply(&mut st, &p, &events, a + 3_600_000);
    let credited: Vec<i64> = out
        .outcomes
        .iter()
        .map(|o| match o {
            EventOutcome::Applied { credited, .. } => *credited,
            EventOutcome::Duplicate => -1,
        })
        .collect();
    assert_eq!(credited, vec![5, 0, 5], "l3 is at 00:30 the next day in Berlin");
}

#[test]
fn level_progress() {
    let p = Program::demo();
    let mut st = GamifyState::new();
    let t = ms("2026-03-02T10:00:00Z");
    let g = Grant { customer_id: 1, wallet: "points".into(), request_id: "g".into(), points: 760 };
    let (_, out) = st.grant(&p, &g, &facts(), t).unwrap();
    assert_eq!(out.achievements, vec![Achievement::LevelUp { customer_id: 1, from: 1, to: 5, at_ms: t }]);
    let l = st.state_of(&p, 1, t).unwrap().level;
    assert_eq!((l.level, l.lifetime_points, l.to_next), (5, 760, Some((240, 6))));
}

#[test]
fn preview_counts_exactly_what_apply_does() {
    let p = Program::demo();
    let mut st = GamifyState::new();
    let t = ms("2026-03-02T10:00:00Z");
    let buys = [buy("a", 1, t, 200.0), buy("b", 2, t, 600.0), buy("c", 3, t, 800.0), buy("d", 4, t, 1100.0)];
    apply(&mut st, &p, &buys, t);
    let mut s = spec();
    s.tiers.tiers = vec![
        TierSpec { name: "NONE".into(), min: 0.0 },
        TierSpec { name: "BRONZE".into(), min: 150.0 },
        TierSpec { name: "GOLD".into(), min: 1200.0 },
    ];
    s.levels.thresholds = vec![0, 1000, 2000];
    let new = Program::new(s).unwrap();
    let m = st.preview(&p, &new).unwrap();
    // 1: NONE, 200 € -> BRONZE. 2: BRONZE kept. 3: SILVER is gone; 800 € -> BRONZE.
    // 4: GOLD kept (held; 1100 < 1200 waits for the period end).
    let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
    let want = BTreeMap::from([
        (pair("NONE", "BRONZE"), 1),
        (pair("BRONZE", "BRONZE"), 1),
        (pair("SILVER", "BRONZE"), 1),
        (pair("GOLD", "GOLD"), 1),
    ]);
    assert_eq!(m.tiers, want);
    // Levels from 200, 600, 800, 1100 points: 2, 4, 5, 6 -> 1, 1, 1, 2.
    assert_eq!(m.levels, BTreeMap::from([((2, 1), 1), ((4, 1), 1), ((5, 1), 1), ((6, 2), 1)]));
    let out = st.apply_program(&p, &new, t + 1).unwrap();
    let mut counted = BTreeMap::new();
    for id in 1..=4u64 {
        let c = st.customer(id).unwrap();
        let before = ["NONE", "BRONZE", "SILVER", "GOLD"][[0, 1, 2, 3][id as usize - 1]];
        *counted.entry(pair(before, &new.spec.tiers.tiers[c.tier as usize].name)).or_insert(0u64) += 1;
    }
    assert_eq!(counted, m.tiers);
    assert_eq!(out.changed.len(), 4, "every level changed");
    // A manual tier the new program drops is refused.
    st.set_manual_tier(&new, 1, Some("BRONZE"), &facts(), t + 2).unwrap();
    let err = st.preview(&new, &p).map(|_| ());
    assert_eq!(err, Ok(()));
    let mut s = spec();
    s.tiers.tiers.remove(1);
    let err = st.apply_program(&new, &Program::new(s).unwrap(), t + 3).unwrap_err();
    assert!(err.to_string().contains("drops tier 'BRONZE'"), "{err}");
}

#[test]
fn id_ranges_hold_every_customer_once() {
    use super::state::{Customer, Customers};
    let sets: [Vec<u64>; 5] = [
        vec![],
        vec![7],
        vec![0, u64::MAX],
        (1..=1000).collect(),
        (0..500u64).map(|k| k.wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect(),
    ];
    for ids in sets {
        let mut cs = Customers::default();
        for &id in &ids {
            cs.insert(id, Customer::new());
        }
        for parts in [1, 3, 64, 10_000] {
            let ranges = cs.id_ranges(parts);
            assert!(ranges.windows(2).all(|w| w[0].1 < w[1].0), "ascending and disjoint: {ranges:?}");
            let mut seen: Vec<u64> =
                ranges.iter().flat_map(|&(a, b)| cs.range(a, b).map(|(k, _)| *k)).collect();
            let mut want = ids.clone();
            want.sort_unstable();
            want.dedup();
            seen.dedup();
            assert_eq!(seen, want, "{parts} parts");
        }
    }
}

#[test]
fn a_program_dropping_a_wallet_with_points_is_refused() {
    // The preview's shortcut skips the customers when no tier or wallet of the old
    // program is dropped; here one is, and the customer holding points refuses it.
    let p = Program::demo();
    let mut st = GamifyState::new();
    let t = ms("2026-03-02T10:00:00Z");
    let g = Grant { customer_id: 1, wallet: "points".into(), request_id: "g".into(), points: 10 };
    st.grant(&p, &g, &facts(), t).unwrap();
    let mut s = spec();
    s.wallets[0].id = "stars".into();
    let new = Program::new(s).unwrap();
    for err in [st.preview(&p, &new).map(|_| ()).unwrap_err(), st.apply_program(&p, &new, t + 1).unwrap_err()]
    {
        assert!(err.to_string().contains("drops wallet 'points'"), "{err}");
    }
}

#[test]
fn ledger_pages() {
    let p = Program::demo();
    let mut st = GamifyState::new();
    let t = ms("2026-03-02T10:00:00Z");
    for i in 0..5 {
        let g = Grant { customer_id: 1, wallet: "points".into(), request_id: format!("g{i}"), points: 10 };
        st.grant(&p, &g, &facts(), t).unwrap();
    }
    st.spend(&p, &Spend { customer_id: 1, wallet: "points".into(), request_id: "s".into(), points: 15 }, t)
        .unwrap();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = st.ledger(&p, 1, "points", after, 2).unwrap();
        seen.extend(page.entries.iter().map(|e| (e.seq, e.points)));
        match page.next_after {
            Some(s) => after = Some(s),
            None => break,
        }
    }
    assert_eq!(seen, vec![(0, 10), (1, 10), (2, 10), (3, 10), (4, 10), (5, -15)]);
    assert!(st.ledger(&p, 1, "points", None, 0).is_err());
    assert!(st.ledger(&p, 2, "points", None, 5).unwrap().entries.is_empty());
}

#[test]
fn generated_year_round_trips_and_keeps_the_invariants() {
    let p = Program::demo();
    let mut st = GamifyState::new();
    let start = ms("2026-01-01T00:00:00Z");
    let cfg = gen::GenConfig { customers: 40, events: 4_000, seed: 3, start_ms: start, span_days: 120 };
    let events: Vec<Event> = gen::EventGen::new(cfg).collect();
    for chunk in events.chunks(100) {
        let logged = chunk.last().unwrap().occurred_at_ms;
        st.apply_events(&p, chunk, &MapFacts::default(), logged).unwrap();
        st.tick(&p, logged).unwrap();
    }
    st.tick(&p, start + 500 * DAY_MS).unwrap();
    st.check_invariants().unwrap();
    let bytes = record::encode_state(&st, &p);
    let back = record::decode_state(&bytes, &p).unwrap();
    assert_eq!(back, st);
    assert_eq!(record::encode_state(&back, &p), bytes);
    let (evs, logged) = record::decode_events(&record::encode_events(&events[..500], 42)).unwrap();
    assert_eq!((evs.as_slice(), logged), (&events[..500], 42));
    assert!(matches!(record::decode_state(&bytes[..bytes.len() / 2], &p), Err(GamifyError::Corrupt(_))));
}

/// The per-structure costs stated in the module doc.
#[test]
fn structure_sizes_are_what_the_doc_says() {
    use std::mem::size_of;
    assert_eq!(size_of::<ledger::Credit>(), 88);
    assert_eq!(size_of::<ledger::Debit>(), 72);
    assert!(size_of::<state::Customer>() <= 144, "{}", size_of::<state::Customer>());
    assert_eq!(size_of::<(i32, i64)>(), 16);
    assert_eq!(size_of::<rules::CapUse>(), 16);
    assert_eq!(size_of::<(u16, i64)>(), 16);
}

#[test]
fn preview_over_many_customers_counts_what_apply_does() {
    // More customers than one of the preview's parallel parts, so the parts' counts are
    // added up; apply_program on a copy is the oracle. Ids are dense at first, then
    // sparse up to the largest id, so the preview's id ranges are uneven and some empty.
    let p = Program::demo();
    let mut st = GamifyState::new();
    let t = ms("2026-03-02T10:00:00Z");
    let n = 10_000u64;
    let id_of = |k: u64| if k <= 8_000 { k } else { u64::MAX - (n - k) * 1_000_000_007 };
    let mut f = MapFacts::default();
    for id in (1..=n).map(id_of) {
        f.customers.insert(id, BTreeMap::from([("country".to_string(), Value::Str("DE".into()))]));
    }
    let buys: Vec<Event> =
        (1..=n).map(|k| buy(&format!("m{k}"), id_of(k), t, (k * 37 % 1500) as f64)).collect();
    for part in buys.chunks(1000) {
        st.apply_events(&p, part, &f, t).unwrap();
    }
    let mut s = spec();
    s.tiers.tiers[2].min = 600.0;
    s.tiers.tiers[3].min = 900.0;
    s.levels.thresholds = vec![0, 300, 700, 1200];
    let new = Program::new(s).unwrap();
    let m = st.preview(&p, &new).unwrap();
    let before: Vec<(String, u32)> = (1..=n)
        .map(|k| {
            let c = st.customer(id_of(k)).unwrap();
            (p.spec.tiers.tiers[c.tier as usize].name.clone(), c.level)
        })
        .collect();
    let mut after = st.clone();
    after.apply_program(&p, &new, t + 1).unwrap();
    let (mut tiers, mut levels) = (BTreeMap::new(), BTreeMap::new());
    for (id, (tier, level)) in (1..=n).map(id_of).zip(before) {
        let c = after.customer(id).unwrap();
        *tiers.entry((tier, new.spec.tiers.tiers[c.tier as usize].name.clone())).or_insert(0u64) += 1;
        *levels.entry((level, c.level)).or_insert(0u64) += 1;
    }
    assert_eq!(m.tiers, tiers);
    assert_eq!(m.levels, levels);
    assert_eq!(m.tiers.values().sum::<u64>(), n);
}
