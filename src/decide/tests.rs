//! Laws of the decision core, each against hand-computed values or a plain oracle.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Barrier, Mutex};

use proptest::prelude::*;

use super::arbitrate::{decide, decide_with, Context, DecisionRecord, DropReason, ModelKey, Ranked, Request};
use super::catalogue::*;
use super::facts::MapFacts;
use super::history::{ContactConfig, ContactState, OutcomeApplied, OutcomeKind};
use super::offer::*;

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn ctx(channel: Channel, now_ms: i64) -> Context {
    Context { channel, placement: "home".into(), intent: "buy".into(), now_ms }
}

fn req(decision_id: u64, customer_id: u64, context: Context, max_results: usize) -> Request {
    Request { decision_id, customer_id, context, max_results, counts_as_impression: true }
}

fn no_limits() -> ContactPolicy {
    ContactPolicy { channel_limits: BTreeMap::new(), control_pct: 0.0 }
}

fn catalogue(policy: ContactPolicy, offers: Vec<Offer>) -> Catalogue {
    let mut c = Catalogue::new(policy).unwrap();
    for o in offers {
        c.put(o).unwrap();
    }
    c
}

fn state() -> ContactState {
    ContactState::new(ContactConfig::default()).unwrap()
}

fn ranked(id: &str) -> Ranked {
    Ranked {
        offer_id: id.into(),
        priority: 1.0,
        propensity: 1.0,
        weight: 1.0,
        value: 1.0,
        lever: 1.0,
        model: None,
    }
}

/// Applies a decision presenting `offers` to `customer`, as if another call had taken it.
fn present(
    st: &mut ContactState,
    cat: &Catalogue,
    decision_id: u64,
    customer_id: u64,
    offers: &[&str],
    c: Context,
) {
    let rec = DecisionRecord {
        decision_id,
        customer_id,
        context: c,
        counts_as_impression: true,
        control_group: false,
        offers: offers.iter().map(|o| ranked(o)).collect(),
        fallback: None,
    };
    let applied = st.apply_decision(cat, &rec).unwrap();
    assert_eq!(applied.offers.len(), offers.len(), "setup decision kept every offer");
}

/// Every catalogue offer is presented or dropped, exactly once.
fn assert_complete(cat: &Catalogue, presented: &[Ranked], dropped: &[super::Dropped]) {
    let mut seen: Vec<&str> = presented.iter().map(|r| r.offer_id.as_str()).collect();
    seen.extend(dropped.iter().map(|d| d.offer_id.as_str()));
    seen.sort_unstable();
    let all: Vec<&str> = cat.offers().map(|o| o.id.as_str()).collect();
    assert_eq!(seen, all);
}

#[test]
fn priority_is_the_product_of_the_four_factors() {
    let mut a = Offer::new("a", &[Channel::Email]);
    (a.value, a.propensity, a.lever) = (Value::Constant(10.0), Propensity::Constant(0.5), 2.0);
    a.weights.channel.insert(Channel::Email, 1.5);
    a.weights.placement.insert("home".into(), 2.0);
    a.weights.placement.insert("checkout".into(), 9.0);
    let mut b = Offer::new("b", &[Channel::Email]);
    b.value = Value::Attribute { name: "spend".into(), factor: 0.1 };
    b.propensity = Propensity::Attribute("score".into());
    b.weights.intent.insert("buy".into(), 0.5);
    let mut c = Offer::new("c", &[Channel::Email]);
    c.propensity = Propensity::Constant(0.1);
    let cat = catalogue(no_limits(), vec![a, b, c]);
    let facts = MapFacts::default().with(1, &[], &[("spend", 250.0), ("score", 0.8)]);
    let d = decide(&cat, &state(), &facts, &req(7, 1, ctx(Channel::Email, 0), 2)).unwrap();
    // a: 0.5 × (1.5 × 2) × 10 × 2 = 30; b: 0.8 × 0.5 × (250 × 0.1) × 1 = 10; c: 0.1.
    let got: Vec<(&str, f64, f64, f64, f64, f64)> = d
        .presented
        .iter()
        .map(|r| (r.offer_id.as_str(), r.priority, r.propensity, r.weight, r.value, r.lever))
        .collect();
    assert_eq!(got, vec![("a", 30.0, 0.5, 3.0, 10.0, 2.0), ("b", 10.0, 0.8, 0.5, 25.0, 1.0)]);
    assert_eq!(d.dropped.len(), 1);
    assert_eq!(d.dropped[0].offer_id, "c");
    assert_eq!(d.dropped[0].reason, DropReason::LostArbitration { rank: 3, priority: 0.1 });
    assert_eq!(d.record.offers, d.presented);
    assert!(!d.fallback_used);
}

/// Equal priorities rank by offer id, explained or not: with 30 offers of priority 1 and
/// two fallbacks, the first five ids are presented and the first fallback id is kept.
#[test]
fn ties_rank_by_id_with_or_without_explanation() {
    let mut offers: Vec<Offer> =
        (0..30).rev().map(|i| Offer::new(&format!("t{i:02}"), &[Channel::Web])).collect();
    for id in ["z1", "z0"] {
        let mut f = Offer::new(id, &[Channel::Web]);
        f.fallback = true;
        offers.push(f);
    }
    let cat = catalogue(no_limits(), offers);
    let facts = MapFacts::default().with(1, &[], &[]);
    let want: Vec<String> = (0..5).map(|i| format!("t{i:02}")).collect();
    for explain in [true, false] {
        let d = decide_with(&cat, &state(), &facts, &req(1, 1, ctx(Channel::Web, 0), 5), explain).unwrap();
        let got: Vec<String> = d.presented.iter().map(|r| r.offer_id.clone()).collect();
        assert_eq!(got, want, "explain {explain}");
        assert_eq!(d.record.fallback.as_ref().map(|f| f.offer_id.as_str()), Some("z0"));
        assert!(!d.fallback_used);
        // 25 losers of arbitration, the other fallback, the unneeded one.
        assert_eq!(d.dropped.len(), if explain { 27 } else { 0 });
    }
}

#[test]
fn every_drop_reason() {
    let gold = SegmentRef::Saved("gold".into());
    let young = SegmentRef::Where("age < 30".into());
    let mut offers = vec![];
    let mut o = |id: &str, edit: &dyn Fn(&mut Offer)| {
        let mut x = Offer::new(id, &[Channel::Web]);
        edit(&mut x);
        offers.push(x);
    };
    o("window", &|x| x.end_ms = Some(100));
    o("channel", &|x| x.channels = vec![Channel::Sms]);
    o("eligible", &|x| x.eligibility = gold.clone());
    o("applicable", &|x| x.applicability = young.clone());
    o("suitable", &|x| x.suitability = SegmentRef::Where("churn_risk < 0.2".into()));
    o("holdout", &|x| x.holdout_pct = 100.0);
    o("budget", &|x| x.budget = Some(1));
    o("cap", &|x| x.cap = Some(Limit { max: 1, window_ms: DAY }));
    o("suppressed", &|x| {
        x.suppression =
            Some(Suppression { after: 1, within_ms: DAY, pause_ms: 3 * DAY, ignore_after_ms: None })
    });
    o("novalue", &|x| x.value = Value::Attribute { name: "missing".into(), factor: 1.0 });
    o("badscore", &|x| x.propensity = Propensity::Attribute("score".into()));
    o("winner", &|x| x.lever = 5.0);
    o("loser", &|x| x.lever = 2.0);
    o("fallback", &|x| x.fallback = true);
    let cat = catalogue(no_limits(), offers);
    let facts = MapFacts::default().with(1, &[], &[("score", 1.5)]).with(2, &[], &[]);
    let mut st = state();
    let now = 10 * DAY;
    present(&mut st, &cat, 100, 2, &["budget"], ctx(Channel::Web, now - HOUR));
    present(&mut st, &cat, 101, 1, &["cap", "suppressed"], ctx(Channel::Web, now - 2 * HOUR));
    assert_eq!(
        st.record_outcome(101, "suppressed", OutcomeKind::Reject, now - HOUR),
        Ok(OutcomeApplied::Recorded)
    );
    let d = decide(&cat, &st, &facts, &req(1, 1, ctx(Channel::Web, now), 1)).unwrap();
    assert_complete(&cat, &d.presented, &d.dropped);
    assert_eq!(d.presented.iter().map(|r| r.offer_id.as_str()).collect::<Vec<_>>(), ["winner"]);
    let reasons: BTreeMap<&str, DropReason> =
        d.dropped.iter().map(|x| (x.offer_id.as_str(), x.reason.clone())).collect();
    let want: BTreeMap<&str, DropReason> = [
        ("window", DropReason::OutsideWindow { start_ms: None, end_ms: Some(100) }),
        ("channel", DropReason::WrongChannel { channel: Channel::Web }),
        ("eligible", DropReason::NotEligible),
        ("applicable", DropReason::NotApplicable),
        ("suitable", DropReason::NotSuitable),
        ("holdout", DropReason::HeldOut { pct: 100.0 }),
        ("budget", DropReason::BudgetSpent { used: 1, budget: 1 }),
        ("cap", DropReason::Capped { shown: 1, max: 1 }),
        ("suppressed", DropReason::Suppressed { until_ms: now - HOUR + 3 * DAY }),
        ("novalue", DropReason::NoScore { field: "value".into(), value: None }),
        ("badscore", DropReason::NoScore { field: "propensity".into(), value: Some(1.5) }),
        ("loser", DropReason::LostArbitration { rank: 2, priority: 2.0 }),
        ("fallback", DropReason::FallbackNotNeeded),
    ]
    .into_iter()
    .collect();
    assert_eq!(reasons, want);
    // The pause ends exactly at its end.
    let later = decide(&cat, &st, &facts, &req(2, 1, ctx(Channel::Web, now - HOUR + 3 * DAY), 25)).unwrap();
    assert!(later.presented.iter().any(|r| r.offer_id == "suppressed"));
}

#[test]
fn control_group_contact_limit_fallback_and_deleted() {
    let mut fb = Offer::new("fb", &[Channel::Email]);
    fb.fallback = true;
    let mut only = Offer::new("only", &[Channel::Email]);
    only.eligibility = SegmentRef::Saved("vip".into());
    let vip = SegmentRef::Saved("vip".into());
    let facts = MapFacts::default().with(1, &[&vip], &[]).with(2, &[], &[]);
    // Everyone in the control group: nothing, not even the fallback.
    let ctl = catalogue(ContactPolicy { control_pct: 100.0, ..no_limits() }, vec![fb.clone(), only.clone()]);
    let d = decide(&ctl, &state(), &facts, &req(1, 1, ctx(Channel::Email, 0), 5)).unwrap();
    assert!(d.presented.is_empty() && d.record.control_group);
    assert!(d.dropped.iter().all(|x| x.reason == DropReason::ControlGroup));
    // Nothing qualifies for customer 2: the fallback is presented.
    let cat = catalogue(ContactPolicy::default(), vec![fb, only]);
    let mut st = state();
    let d = decide(&cat, &st, &facts, &req(2, 2, ctx(Channel::Email, 0), 5)).unwrap();
    assert!(d.fallback_used);
    assert_eq!(d.presented.iter().map(|r| r.offer_id.as_str()).collect::<Vec<_>>(), ["fb"]);
    assert_complete(&cat, &d.presented, &d.dropped);
    let applied = st.apply_decision(&cat, &d.record).unwrap();
    assert!(applied.fallback_used);
    // One email per 7 days (the default policy): the next email decision drops everything.
    let d = decide(&cat, &st, &facts, &req(3, 2, ctx(Channel::Email, DAY), 5)).unwrap();
    assert!(d.presented.is_empty());
    let limit = DropReason::ContactLimit { channel: Channel::Email, contacts: 1, max: 1 };
    assert_eq!(d.dropped.iter().find(|x| x.offer_id == "fb").unwrap().reason, limit);
    // Customer 1 is decided "only"; the offer is deleted before the record is applied.
    let mut cat2 = cat.clone();
    let d = decide(&cat2, &st, &facts, &req(4, 1, ctx(Channel::Email, DAY), 5)).unwrap();
    assert_eq!(d.presented[0].offer_id, "only");
    cat2.delete("only").unwrap();
    let mut d2 = d.clone();
    d2.settle(st.apply_decision(&cat2, &d.record).unwrap());
    let gone = d2.dropped.iter().find(|x| x.offer_id == "only").unwrap();
    assert!(gone.at_apply && gone.reason == DropReason::Deleted);
    assert!(d2.fallback_used && d2.presented[0].offer_id == "fb");
    assert!(!d2.dropped.iter().any(|x| x.offer_id == "fb"));
}

#[test]
fn expiry_releases_reservations_and_impressions_can_come_later() {
    let mut o = Offer::new("b", &[Channel::Web]);
    (o.budget, o.cap) = (Some(1), Some(Limit { max: 1, window_ms: DAY }));
    let cat = catalogue(no_limits(), vec![o]);
    let facts = MapFacts::default().with(1, &[], &[]).with(2, &[], &[]);
    let config = ContactConfig { history_ms: 10 * DAY, decision_retention_ms: HOUR };
    let mut st = ContactState::new(config).unwrap();
    let take = |st: &mut ContactState, id: u64, customer: u64, now: i64, impression: bool| {
        let mut r = req(id, customer, ctx(Channel::Web, now), 1);
        r.counts_as_impression = impression;
        let mut d = decide(&cat, st, &facts, &r).unwrap();
        d.settle(st.apply_decision(&cat, &d.record).unwrap());
        d
    };
    // Presented without counting an impression: the budget unit is reserved, no cap used.
    let d = take(&mut st, 1, 1, 0, false);
    assert_eq!(d.presented.len(), 1);
    assert_eq!((st.budget_used("b", 0), st.impressions(1, "b", 0, DAY)), (1, 0));
    assert_eq!(st.decision(1).unwrap().offers[0].ranked, d.presented[0]);
    let d = take(&mut st, 2, 2, 10, true);
    assert_eq!(d.dropped[0].reason, DropReason::BudgetSpent { used: 1, budget: 1 });
    // The decision expires unanswered: its unit comes back, its outcomes are refused.
    let d = take(&mut st, 3, 2, HOUR, true);
    assert_eq!(d.presented[0].offer_id, "b");
    assert!(st.decision(1).is_none());
    assert_eq!(
        st.record_outcome(1, "b", OutcomeKind::Accept, HOUR),
        Err(super::HistoryError::UnknownDecision(1))
    );
    // Customer 2's impression counted at once: capped for a day; then accepted, spent.
    assert_eq!(st.impressions(2, "b", HOUR, DAY), 1);
    st.record_outcome(3, "b", OutcomeKind::Accept, HOUR + 5).unwrap();
    let s = st.stats("b").unwrap();
    assert_eq!((s.accepted, s.reserved), (1, 0));
    let d = take(&mut st, 4, 1, 2 * HOUR, true);
    assert_eq!(d.dropped[0].reason, DropReason::BudgetSpent { used: 1, budget: 1 });
}

#[test]
fn bad_requests_are_named_errors() {
    use super::{DecideError, FactsError};
    let cat = catalogue(no_limits(), vec![Offer::new("a", &[Channel::Web])]);
    let facts = MapFacts::default().with(1, &[], &[]);
    let st = state();
    let call = |r: Request| decide(&cat, &st, &facts, &r).unwrap_err();
    assert_eq!(call(req(1, 1, ctx(Channel::Web, 0), 0)), DecideError::MaxResults(0));
    assert_eq!(call(req(1, 1, ctx(Channel::Web, 0), 26)), DecideError::MaxResults(26));
    assert_eq!(call(req(1, 2, ctx(Channel::Web, 0), 1)), DecideError::Facts(FactsError::UnknownCustomer(2)));
    let mut long = ctx(Channel::Web, 0);
    long.intent = "x".repeat(MAX_TEXT + 1);
    assert_eq!(call(req(1, 1, long, 1)), DecideError::ContextTooLong { field: "intent" });
    assert_eq!(DecideError::MaxResults(26).to_string(), "max_results 26 is not in 1..=25");
}

#[test]
fn a_decision_is_fetched_until_its_retention_ends() {
    let cat = catalogue(no_limits(), vec![Offer::new("a", &[Channel::Web])]);
    let mut st = ContactState::new(ContactConfig { history_ms: DAY, decision_retention_ms: HOUR }).unwrap();
    present(&mut st, &cat, 5, 1, &["a"], ctx(Channel::Web, 1000));
    let d = st.decision_at(5, 1000 + HOUR - 1).unwrap();
    assert_eq!((d.customer_id, d.offers[0].ranked.offer_id.as_str()), (1, "a"));
    assert!(st.decision_at(5, 1000 + HOUR).is_none());
}

#[test]
fn history_must_cover_every_window() {
    let config = ContactConfig { history_ms: 10 * DAY, decision_retention_ms: DAY };
    config.validate().unwrap();
    let mut o = Offer::new("o", &[Channel::Web]);
    o.cap = Some(Limit { max: 1, window_ms: 11 * DAY });
    let e = config.check_offer(&o).unwrap_err();
    assert!(
        matches!(&e, OfferError::Invalid { offer, field, .. } if offer == "o" && field == "cap.window_ms"),
        "{e}"
    );
    o.cap = None;
    o.suppression =
        Some(Suppression { after: 1, within_ms: 4 * DAY, pause_ms: 5 * DAY, ignore_after_ms: Some(2 * DAY) });
    assert!(
        matches!(config.check_offer(&o), Err(OfferError::Invalid { field, .. }) if field == "suppression")
    );
    o.suppression =
        Some(Suppression { after: 1, within_ms: 4 * DAY, pause_ms: 5 * DAY, ignore_after_ms: Some(DAY) });
    config.check_offer(&o).unwrap();
    config.check_policy(&ContactPolicy::default()).unwrap();
    let p = ContactPolicy {
        channel_limits: [(Channel::Sms, Limit { max: 1, window_ms: 30 * DAY })].into(),
        control_pct: 0.0,
    };
    assert!(
        matches!(config.check_policy(&p), Err(OfferError::Policy { field, .. }) if field == "channel_limits.sms.window_ms")
    );
    let bad = ContactConfig { history_ms: 0, decision_retention_ms: DAY };
    assert!(matches!(bad.validate(), Err(OfferError::Policy { field, .. }) if field == "history_ms"));
    // The catalogue names the offers that read a saved segment.
    let mut a = Offer::new("reads", &[Channel::Web]);
    a.suitability = SegmentRef::Where("in_segment('gold')".into());
    let cat = catalogue(no_limits(), vec![a, Offer::new("other", &[Channel::Web])]);
    assert_eq!(cat.offers_using_segment("gold"), ["reads"]);
}

#[test]
fn holdout_share_is_binomial_and_stable() {
    let (n, pct) = (100_000u64, 10.0);
    let held: HashSet<u64> = (1..=n).filter(|&id| super::hash::held_out(id, "spring", pct)).collect();
    let (mean, sd) = (n as f64 * 0.1, (n as f64 * 0.1 * 0.9).sqrt());
    assert!((held.len() as f64 - mean).abs() < 4.0 * sd, "{} held out of {n}", held.len());
    // Another offer draws another (independent) set.
    let other = (1..=n).filter(|&id| super::hash::held_out(id, "summer", pct) && held.contains(&id)).count();
    let (m2, sd2) = (n as f64 * 0.01, (n as f64 * 0.01 * 0.99).sqrt());
    assert!((other as f64 - m2).abs() < 4.0 * sd2, "{other} in both");
}

/// Decisions taken concurrently on stale versions, applied one at a time as the
/// committer does: a cap and a budget are never exceeded, although every decision
/// proposed the offers.
#[test]
fn caps_and_budgets_hold_under_concurrent_decisions() {
    let mut capped = Offer::new("capped", &[Channel::App]);
    capped.cap = Some(Limit { max: 2, window_ms: DAY });
    let mut budgeted = Offer::new("budgeted", &[Channel::App]);
    budgeted.budget = Some(5);
    let cat = Arc::new(catalogue(no_limits(), vec![capped, budgeted]));
    let facts = Arc::new((1..=3).fold(MapFacts::default(), |f, id| f.with(id, &[], &[])));
    let committed = Arc::new(Mutex::new(state()));
    let (threads, per_thread) = (8u64, 12u64);
    let start = Arc::new(Barrier::new(threads as usize));
    let proposed = Arc::new(Mutex::new(0u32));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (cat, facts, committed, start, proposed) =
                (cat.clone(), facts.clone(), committed.clone(), start.clone(), proposed.clone());
            std::thread::spawn(move || {
                // Every thread reads the same initial version first: all its decisions
                // propose both offers, and only the apply can say no.
                let mut version = committed.lock().unwrap().clone();
                start.wait();
                let mut presented = vec![];
                for i in 0..per_thread {
                    let id = t * 1000 + i;
                    let d = decide(
                        &cat,
                        &version,
                        &*facts,
                        &req(id, 1 + (id % 3), ctx(Channel::App, 1000 + i as i64), 5),
                    )
                    .unwrap();
                    *proposed.lock().unwrap() +=
                        d.presented.iter().filter(|r| r.offer_id == "capped").count() as u32;
                    let mut st = committed.lock().unwrap();
                    let mut d2 = d.clone();
                    d2.settle(st.apply_decision(&cat, &d.record).unwrap());
                    presented.push(d2);
                    if i % 4 == 3 {
                        version = st.clone(); // sometimes a fresher version
                    }
                }
                presented
            })
        })
        .collect();
    let decisions: Vec<_> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let mut st = committed.lock().unwrap();
    assert!(
        *proposed.lock().unwrap() > 6,
        "the test must race: stale versions propose more than the caps allow"
    );
    for customer in 1..=3 {
        let shown = st.impressions(customer, "capped", 1000 + per_thread as i64, DAY);
        assert_eq!(shown, 2, "customer {customer}");
    }
    let kept: Vec<(u64, bool)> = decisions
        .iter()
        .map(|d| (d.record.decision_id, d.presented.iter().any(|r| r.offer_id == "budgeted")))
        .collect();
    assert_eq!(kept.iter().filter(|k| k.1).count(), 5);
    assert_eq!(st.budget_used("budgeted", 5000), 5);
    for (id, _) in kept.iter().filter(|k| k.1) {
        st.record_outcome(*id, "budgeted", OutcomeKind::Accept, 5000).unwrap();
    }
    assert_eq!((st.stats("budgeted").unwrap().accepted, st.stats("budgeted").unwrap().reserved), (5, 0));
    // Every answer explains every offer.
    for d in &decisions {
        assert_complete(&cat, &d.presented, &d.dropped);
    }
}

#[test]
fn outcomes_are_idempotent_and_checked() {
    let cat =
        catalogue(no_limits(), vec![Offer::new("a", &[Channel::Web]), Offer::new("b", &[Channel::Web])]);
    let mut st = state();
    present(&mut st, &cat, 1, 9, &["a"], ctx(Channel::Web, 1000));
    assert_eq!(st.record_outcome(1, "a", OutcomeKind::Click, 1500), Ok(OutcomeApplied::Recorded));
    let before = st.clone();
    assert_eq!(st.record_outcome(1, "a", OutcomeKind::Click, 1600), Ok(OutcomeApplied::Duplicate));
    assert_eq!(st, before);
    use super::history::HistoryError as H;
    assert_eq!(st.record_outcome(2, "a", OutcomeKind::Accept, 1500), Err(H::UnknownDecision(2)));
    assert_eq!(
        st.record_outcome(1, "b", OutcomeKind::Accept, 1500),
        Err(H::NotPresented { decision: 1, offer: "b".into() })
    );
    assert_eq!(
        st.record_outcome(1, "a", OutcomeKind::Accept, 999),
        Err(H::BeforeDecision { at_ms: 999, decision_at_ms: 1000 })
    );
    let expires_ms = 1000 + ContactConfig::default().decision_retention_ms;
    assert_eq!(
        st.record_outcome(1, "a", OutcomeKind::Accept, expires_ms),
        Err(H::AfterExpiry { decision: 1, at_ms: expires_ms, expires_ms })
    );
    assert_eq!(
        st.apply_decision(&cat, &DecisionRecord { offers: vec![], ..st_record(1) }),
        Err(H::DuplicateDecision(1))
    );
}

fn st_record(decision_id: u64) -> DecisionRecord {
    DecisionRecord {
        decision_id,
        customer_id: 9,
        context: ctx(Channel::Web, 0),
        counts_as_impression: true,
        control_group: false,
        offers: vec![],
        fallback: None,
    }
}

#[test]
fn ignores_count_towards_suppression_once_old_enough() {
    let mut o = Offer::new("a", &[Channel::Push]);
    o.suppression =
        Some(Suppression { after: 2, within_ms: DAY, pause_ms: 2 * DAY, ignore_after_ms: Some(HOUR) });
    let cat = catalogue(no_limits(), vec![o]);
    let facts = MapFacts::default().with(1, &[], &[]);
    let mut st = state();
    present(&mut st, &cat, 1, 1, &["a"], ctx(Channel::Push, 0));
    present(&mut st, &cat, 2, 1, &["a"], ctx(Channel::Push, 10 * 60_000));
    st.record_outcome(2, "a", OutcomeKind::Click, 20 * 60_000).unwrap();
    present(&mut st, &cat, 3, 1, &["a"], ctx(Channel::Push, 30 * 60_000));
    let at = |now| decide(&cat, &st, &facts, &req(99, 1, ctx(Channel::Push, now), 1)).unwrap();
    // Ignores become ignores an hour after their impression: 1 h (first), 1.5 h (third).
    assert_eq!(at(HOUR + 29 * 60_000).presented.len(), 1);
    let d = at(HOUR + 30 * 60_000);
    assert_eq!(d.dropped[0].reason, DropReason::Suppressed { until_ms: HOUR + 30 * 60_000 + 2 * DAY });
}

#[derive(Clone, Debug)]
enum Op {
    Decide { customer: u64, impression: bool },
    Outcome { pick: usize, kind: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1u64..=6, any::<bool>()).prop_map(|(customer, impression)| Op::Decide { customer, impression }),
        (any::<usize>(), 0usize..5).prop_map(|(pick, kind)| Op::Outcome { pick, kind }),
    ]
}

proptest! {
    /// After any sequence of decisions and outcomes, each adaptive model's counts are the
    /// oracle's: trials = (decision, offer) pairs shown (by the decision when it counts as an
    /// impression, else by their first outcome), successes = pairs with ACCEPT or CONVERT.
    #[test]
    fn adaptive_counts_match_the_oracle(ops in proptest::collection::vec(op(), 1..80)) {
        let s1 = SegmentRef::Saved("s1".into());
        let mut o = Offer::new("ad", &[Channel::Web]);
        o.propensity = Propensity::Adaptive { alpha: 2.0, beta: 3.0, per_segment: vec!["s1".into()] };
        let cat = catalogue(no_limits(), vec![o]);
        let facts = (1..=6u64).fold(MapFacts::default(), |f, id| if id.is_multiple_of(2) { f.with(id, &[&s1], &[]) } else { f.with(id, &[], &[]) });
        let key_of = |customer: u64| if customer.is_multiple_of(2) { ModelKey::Segment("s1".into()) } else { ModelKey::Offer };
        let mut st = state();
        let mut decisions: Vec<(u64, u64)> = vec![];
        let mut shown: HashSet<u64> = HashSet::new();
        let mut success: HashSet<u64> = HashSet::new();
        for (i, op) in ops.into_iter().enumerate() {
            let now = i as i64 * 1000;
            match op {
                Op::Decide { customer, impression } => {
                    let mut r = req(i as u64, customer, ctx(Channel::Web, now), 1);
                    r.counts_as_impression = impression;
                    let d = decide(&cat, &st, &facts, &r).unwrap();
                    prop_assert_eq!(d.presented[0].model.clone(), Some(key_of(customer)));
                    st.apply_decision(&cat, &d.record).unwrap();
                    decisions.push((i as u64, customer));
                    if impression { shown.insert(i as u64); }
                }
                Op::Outcome { pick, kind } => {
                    if decisions.is_empty() { continue; }
                    let (id, _) = decisions[pick % decisions.len()];
                    let kind = OutcomeKind::ALL[kind];
                    st.record_outcome(id, "ad", kind, now).unwrap();
                    shown.insert(id);
                    if matches!(kind, OutcomeKind::Accept | OutcomeKind::Convert) { success.insert(id); }
                }
            }
        }
        for key in [ModelKey::Offer, ModelKey::Segment("s1".into())] {
            let mine = |id: &u64| key_of(decisions.iter().find(|d| d.0 == *id).unwrap().1) == key;
            let want = (shown.iter().filter(|i| mine(i)).count() as u64, success.iter().filter(|i| mine(i)).count() as u64);
            let got = st.model("ad", &key);
            prop_assert_eq!((got.trials, got.successes), want, "{:?}", key);
        }
    }

    /// Every offer of a random catalogue is presented or dropped exactly once, presented
    /// offers are in priority order with priority = the product of their factors, and the
    /// same holds after the record is applied to a state that changed meanwhile.
    #[test]
    fn every_offer_is_explained(
        specs in proptest::collection::vec((0u8..8, 0u8..4, 0.0f64..1.0, 0u8..3), 1..30),
        max in 1usize..6,
        customer in 1u64..4,
    ) {
        let segs = [SegmentRef::Saved("a".into()), SegmentRef::Where("b".into())];
        let mut offers = vec![];
        for (i, (kind, rule, x, ch)) in specs.iter().enumerate() {
            let mut o = Offer::new(&format!("o{i:02}"), &[[Channel::Web, Channel::Sms, Channel::Email][*ch as usize]]);
            o.propensity = Propensity::Constant(*x);
            match kind {
                0 => o.cap = Some(Limit { max: 1, window_ms: DAY }),
                1 => o.budget = Some(2),
                2 => o.holdout_pct = 50.0,
                3 => o.fallback = true,
                4 => o.end_ms = Some(5),
                5 => o.propensity = Propensity::adaptive_default(),
                6 => o.suppression = Some(Suppression { after: 1, within_ms: DAY, pause_ms: DAY, ignore_after_ms: Some(1) }),
                _ => o.value = Value::Attribute { name: "v".into(), factor: 2.0 },
            }
            match rule {
                0 => o.eligibility = segs[0].clone(),
                1 => o.suitability = segs[1].clone(),
                _ => {}
            }
            offers.push(o);
        }
        let cat = catalogue(ContactPolicy { control_pct: 10.0, ..ContactPolicy::default() }, offers);
        let facts = MapFacts::default().with(1, &[&segs[0]], &[("v", 3.0)]).with(2, &[&segs[1]], &[]).with(3, &segs.iter().collect::<Vec<_>>(), &[("v", 1.0)]);
        let mut st = state();
        let mut next = 1000;
        for round in 0..3 {
            let asked = req(next, customer, ctx(Channel::Web, 10 + round), max);
            let d = decide(&cat, &st, &facts, &asked).unwrap();
            next += 1;
            assert_complete(&cat, &d.presented, &d.dropped);
            // Unexplained: the same record and answer, nothing listed as dropped.
            let plain = decide_with(&cat, &st, &facts, &asked, false).unwrap();
            prop_assert_eq!(&plain.record, &d.record);
            prop_assert_eq!(&plain.presented, &d.presented);
            prop_assert_eq!(plain.fallback_used, d.fallback_used);
            prop_assert!(plain.dropped.is_empty(), "{:?}", plain.dropped);
            prop_assert!(d.presented.len() <= max);
            for w in d.presented.windows(2) { prop_assert!(w[0].priority >= w[1].priority); }
            for r in &d.presented { prop_assert_eq!(r.priority, r.propensity * r.weight * r.value * r.lever); }
            // Another decision for the same customer commits first.
            let other = decide(&cat, &st, &facts, &req(next, customer, ctx(Channel::Web, 10 + round), 25)).unwrap();
            next += 1;
            st.apply_decision(&cat, &other.record).unwrap();
            let mut settled = d.clone();
            settled.settle(st.apply_decision(&cat, &d.record).unwrap());
            assert_complete(&cat, &settled.presented, &settled.dropped);
        }
    }
}
