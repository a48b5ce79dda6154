//! The decision core over a real generated table: the reach funnel, segment blasts and
//! table-backed facts, each against a row-by-row oracle ([`crate::naive`] over the Arrow
//! batches, with per-customer decisions over map facts).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_array::RecordBatch;

use super::arbitrate::{decide, Context, Request, Stage};
use super::campaign::{decide_for_segment, Blast};
use super::catalogue::*;
use super::facts::{DatasetFacts, MapFacts};
use super::history::{ContactConfig, ContactState, OutcomeKind};
use super::offer::*;
use super::reach::{reach_estimate, Funnel};
use crate::index::Postings;
use crate::query::{self, Expr, Limits};
use crate::store::Dataset;

const DAY: i64 = 86_400_000;

pub(super) struct Table {
    pub(super) batches: Vec<RecordBatch>,
    pub(super) ds: Dataset,
    /// The saved segment "opted": its SQL and members.
    pub(super) opted: Arc<Postings>,
}

pub(super) const OPTED_SQL: &str = "email_opt_in AND NOT (tier = 'NONE')";

pub(super) fn table(rows: usize, seed: u64) -> Table {
    let batches = crate::gen::generate(rows, seed);
    let ds = Dataset::from_batches(crate::gen::schema(), batches.clone().into_iter().map(Ok), "customer_id")
        .unwrap();
    let plan = query::compile_sql(&ds, OPTED_SQL, &Limits::default()).unwrap();
    let opted = Arc::new(query::eval::materialize(&ds, &plan));
    Table { batches, ds, opted }
}

pub(super) fn sql(text: &str) -> Expr {
    query::sql::parse(text, &Limits::default()).unwrap()
}

/// The oracle's facts: every segment of the offer evaluated row by row on the batches.
fn oracle_facts(t: &Table, offer: &Offer) -> MapFacts {
    let exprs: Vec<(SegmentRef, Expr)> = offer
        .rules()
        .iter()
        .filter_map(|(_, seg)| match seg {
            SegmentRef::All => None,
            SegmentRef::Where(w) => Some(((*seg).clone(), sql(w))),
            SegmentRef::Predicate(e) => Some(((*seg).clone(), e.clone())),
            SegmentRef::Saved(id) => {
                assert_eq!(id, "opted");
                Some(((*seg).clone(), sql(OPTED_SQL)))
            }
        })
        .collect();
    let mut facts = MapFacts::default();
    for b in &t.batches {
        let ids = b["customer_id"].as_primitive::<UInt64Type>();
        for row in 0..b.num_rows() {
            let member: Vec<&SegmentRef> = exprs
                .iter()
                .filter(|(_, e)| crate::naive::eval(b, row, e).unwrap() == Some(true))
                .map(|(s, _)| s)
                .collect();
            facts = facts.with(ids.value(row), &member, &[]);
        }
    }
    facts
}

pub(super) fn offer() -> Offer {
    let mut o = Offer::new("spring", &[Channel::Email, Channel::Web]);
    o.eligibility = SegmentRef::Where("age >= 30 OR list_contains(badges, 'vip')".into());
    o.applicability =
        SegmentRef::Predicate(sql("country IN ('DE', 'FR', 'GB') AND last_purchase_days_ago < 200"));
    o.suitability = SegmentRef::Saved("opted".into());
    o.holdout_pct = 20.0;
    o.cap = Some(Limit { max: 1, window_ms: 7 * DAY });
    o.suppression = Some(Suppression { after: 1, within_ms: DAY, pause_ms: 30 * DAY, ignore_after_ms: None });
    o.budget = Some(1_000_000);
    o
}

#[test]
fn reach_funnel_equals_the_row_by_row_oracle() {
    let t = table(6_000, 11);
    let o = offer();
    let policy = ContactPolicy { control_pct: 10.0, ..ContactPolicy::default() };
    let mut cat = Catalogue::new(policy.clone()).unwrap();
    cat.put(o.clone()).unwrap();
    let mut other = Offer::new("other", &[Channel::Email]);
    other.lever = 10.0;
    cat.put(other).unwrap();
    let segs = |id: &str| (id == "opted").then(|| t.opted.clone());
    let facts = DatasetFacts::new(&t.ds, &cat, &segs, &Limits::default()).unwrap();
    // A history for a tenth of the customers: contacted on email two days ago (shown
    // "spring", so capped, or only "other", so merely over the contact limit), or shown
    // "spring" ten days ago and rejected it (suppressed, no longer capped or limited).
    let config = ContactConfig { decision_retention_ms: 30 * DAY, ..ContactConfig::default() };
    let mut st = ContactState::new(config).unwrap();
    let now = 100 * DAY;
    for id in (1..=6_000u64).step_by(10) {
        let rejects = id % 30 == 11;
        let at = if rejects { now - 10 * DAY } else { now - 2 * DAY };
        let c =
            Context { channel: Channel::Email, placement: String::new(), intent: String::new(), now_ms: at };
        let max_results = if id % 3 == 0 { 1 } else { 2 };
        let r = Request {
            decision_id: id,
            customer_id: id,
            context: c,
            max_results,
            counts_as_impression: id % 20 == 1,
        };
        let d = decide(&cat, &st, &facts, &r).unwrap();
        st.apply_decision(&cat, &d.record).unwrap();
        if rejects && d.presented.iter().any(|r| r.offer_id == "spring") {
            st.record_outcome(id, "spring", OutcomeKind::Reject, now - 9 * DAY).unwrap();
        } else if d.presented.iter().any(|r| r.offer_id == "other") {
            st.record_outcome(id, "other", OutcomeKind::Impression, at).unwrap();
        }
    }
    // Variants: as built; no hold-out and no control group (no per-customer hashing); the
    // budget exactly spent by the open reservations.
    let mut plain = o.clone();
    plain.holdout_pct = 0.0;
    let mut spent = o.clone();
    spent.budget = Some(st.budget_used("spring", now));
    assert!(st.budget_used("spring", now) > 0);
    let no_control = ContactPolicy { control_pct: 0.0, ..policy.clone() };
    let draws = super::DrawCache::default();
    for (o, policy) in [(&o, &policy), (&plain, &no_control), (&spent, &policy)] {
        for (channel, at) in [
            (Channel::Email, now),
            (Channel::Web, now),
            (Channel::Sms, now),
            (Channel::Email, now + 40 * DAY),
        ] {
            let ctx = Context { channel, placement: String::new(), intent: String::new(), now_ms: at };
            let got = reach_estimate(&t.ds, &segs, &Limits::default(), o, policy, &ctx, &st, &draws).unwrap();
            let want = oracle_funnel(&t, o, policy, &st, &ctx);
            assert_eq!(got, want, "{} {channel} at {at}", o.id);
            if std::ptr::eq(o, &plain) && channel == Channel::Email && at == now {
                // The history must matter for the test to mean anything.
                assert!(
                    want.within_budget > want.not_capped && want.not_capped > want.within_contact_policy,
                    "{want:?}"
                );
                assert!(want.within_contact_policy > want.not_suppressed, "{want:?}");
            }
        }
    }
}

/// The funnel by deciding for each customer alone over row-by-row facts: a customer passes
/// every stage before the one that dropped it.
fn oracle_funnel(t: &Table, o: &Offer, policy: &ContactPolicy, st: &ContactState, ctx: &Context) -> Funnel {
    let mut cat = Catalogue::new(policy.clone()).unwrap();
    cat.put(o.clone()).unwrap();
    let facts = oracle_facts(t, o);
    let mut dropped_at: BTreeMap<Stage, u64> = BTreeMap::new();
    let mut presented = 0;
    for &id in facts.customers.keys() {
        let r = Request {
            decision_id: 0,
            customer_id: id,
            context: ctx.clone(),
            max_results: 1,
            counts_as_impression: true,
        };
        let d = decide(&cat, st, &facts, &r).unwrap();
        match d.dropped.first() {
            Some(x) => *dropped_at.entry(x.reason.stage()).or_default() += 1,
            None => presented += 1,
        }
    }
    let passed = |s: Stage| {
        presented
            + dropped_at
                .range((std::ops::Bound::Excluded(s), std::ops::Bound::Unbounded))
                .map(|x| x.1)
                .sum::<u64>()
    };
    let f = Funnel {
        customers: facts.customers.len() as u64,
        in_window: passed(Stage::Window),
        on_channel: passed(Stage::Channel),
        eligible: passed(Stage::Eligibility),
        applicable: passed(Stage::Applicability),
        suitable: passed(Stage::Suitability),
        not_control: passed(Stage::ControlGroup),
        not_held_out: passed(Stage::HoldOut),
        within_budget: passed(Stage::Budget),
        not_capped: passed(Stage::Cap),
        within_contact_policy: passed(Stage::ContactPolicy),
        not_suppressed: passed(Stage::Suppression),
    };
    assert_eq!(f.not_suppressed, presented);
    f
}

#[test]
fn a_blast_is_each_members_decision_in_row_order() {
    let t = table(3_000, 5);
    let mut cat = Catalogue::new(ContactPolicy { control_pct: 5.0, ..ContactPolicy::default() }).unwrap();
    let mut a = offer();
    a.propensity = Propensity::adaptive_default();
    cat.put(a.clone()).unwrap();
    let mut b = Offer::new("basket", &[Channel::Email]);
    b.value = Value::Attribute { name: "avg_basket_eur".into(), factor: 0.5 };
    b.propensity = Propensity::Attribute("churn_risk".into());
    cat.put(b).unwrap();
    let segs = |id: &str| (id == "opted").then(|| t.opted.clone());
    let facts = DatasetFacts::new(&t.ds, &cat, &segs, &Limits::default()).unwrap();
    let st = ContactState::new(ContactConfig::default()).unwrap();
    let ctx =
        Context { channel: Channel::Email, placement: "banner".into(), intent: String::new(), now_ms: 5 };
    let blast =
        Blast { first_decision_id: 500, context: ctx.clone(), max_results: 2, counts_as_impression: true };
    let got: Vec<_> =
        decide_for_segment(&cat, &st, &facts, &t.ds, &t.opted, blast).map(Result::unwrap).collect();
    // Oracle: the members by the row-by-row evaluator, in row order, and
    // each one's decision over map facts built the same way (numbers from the batches).
    let mut ofacts = oracle_facts(&t, &a);
    let b0 = &t.batches[0];
    let basket = b0["avg_basket_eur"].as_primitive::<arrow_array::types::Float64Type>();
    let churn = b0["churn_risk"].as_primitive::<arrow_array::types::Float64Type>();
    let ids = b0["customer_id"].as_primitive::<UInt64Type>();
    let members: Vec<u64> = (0..b0.num_rows())
        .filter(|&r| crate::naive::eval(b0, r, &sql(OPTED_SQL)).unwrap() == Some(true))
        .map(|r| ids.value(r))
        .collect();
    for r in 0..b0.num_rows() {
        let c = ofacts.customers.get_mut(&ids.value(r)).unwrap();
        c.numbers.insert("avg_basket_eur".into(), basket.value(r));
        c.numbers.insert("churn_risk".into(), churn.value(r));
    }
    assert_eq!(got.iter().map(|d| d.record.customer_id).collect::<Vec<_>>(), members);
    for (i, (d, id)) in got.iter().zip(&members).enumerate() {
        let req = Request {
            decision_id: 500 + i as u64,
            customer_id: *id,
            context: ctx.clone(),
            max_results: 2,
            counts_as_impression: true,
        };
        assert_eq!(d, &decide(&cat, &st, &ofacts, &req).unwrap(), "customer {id}");
    }
    assert!(got.iter().any(|d| d.presented.len() == 2), "some members get both offers");
}

#[test]
fn holdout_is_stable_when_customers_are_added() {
    let small = table(2_000, 3);
    let large = table(4_000, 4);
    let mut o = Offer::new("h", &[Channel::Web]);
    o.holdout_pct = 30.0;
    let mut cat = Catalogue::new(ContactPolicy::default()).unwrap();
    cat.put(o).unwrap();
    let st = ContactState::new(ContactConfig::default()).unwrap();
    let held = |t: &Table, id: u64| {
        let facts = DatasetFacts::new(&t.ds, &cat, &|_| None, &Limits::default()).unwrap();
        let ctx =
            Context { channel: Channel::Web, placement: String::new(), intent: String::new(), now_ms: 0 };
        let d = decide(
            &cat,
            &st,
            &facts,
            &Request {
                decision_id: id,
                customer_id: id,
                context: ctx,
                max_results: 1,
                counts_as_impression: false,
            },
        )
        .unwrap();
        d.presented.is_empty()
    };
    let mut n = 0;
    for id in 1..=2_000 {
        let h = held(&small, id);
        assert_eq!(h, held(&large, id), "customer {id}");
        n += h as u32;
    }
    // 30% of 2,000 within 4 standard deviations.
    let sd = (2_000.0f64 * 0.3 * 0.7).sqrt();
    assert!((n as f64 - 600.0).abs() < 4.0 * sd, "{n} held out");
}

#[test]
fn table_facts_name_bad_attributes_and_segments() {
    let t = table(100, 1);
    let mut cat = Catalogue::new(ContactPolicy::default()).unwrap();
    let mut o = Offer::new("x", &[Channel::Web]);
    o.value = Value::Attribute { name: "country".into(), factor: 1.0 };
    cat.put(o.clone()).unwrap();
    let e = DatasetFacts::new(&t.ds, &cat, &|_| None, &Limits::default()).err().unwrap();
    assert_eq!(
        e.to_string(),
        "offer 'x': value.attribute: attribute 'country' is not a numeric column (it is string)"
    );
    o.value = Value::Constant(1.0);
    o.eligibility = SegmentRef::Saved("nope".into());
    cat.put(o).unwrap();
    let e = DatasetFacts::new(&t.ds, &cat, &|_| None, &Limits::default()).err().unwrap();
    assert!(
        matches!(&e, super::FactsError::Segment { offer, field, .. } if offer == "x" && field == "eligibility"),
        "{e}"
    );
}
