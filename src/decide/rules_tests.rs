//! Decisions from cached rules ([`RuleCache`]) stay exact as the state changes under them:
//! every customer's whole decision equals the one taken from an oracle built by another
//! evaluator (each rule compiled afresh against the version and materialised as a bitmap,
//! [`eval::materialize`], into [`MapFacts`]), after writes that flip a rule for a customer
//! (an attribute, a saved segment's membership, a value new to a dictionary) and after an
//! offer is replaced; and the cache is reused exactly when nothing it binds changed.

use std::collections::HashMap;
use std::sync::Arc;

use super::arbitrate::{decide, Context, Decision, DropReason, Request};
use super::change::Change;
use super::facts::{compile, number_at, numeric_column, segment_key, DatasetFacts, MapCustomer, MapFacts};
use super::offer::*;
use super::rules::{CompiledRules, RuleCache};
use crate::engine::tests::table;
use crate::engine::{Engine, Mutation};
use crate::query::{eval, Limits};
use crate::segments::Definition;
use crate::store::mutate::{CellValue, CustomerUpdate};

const ROWS: usize = 1_500;
const NOW: i64 = 1_750_000_000_000;

/// "a": age < 60; "b": the saved segment "opted", adaptive per "opted"; "c": a country
/// no customer has yet, applicable to `in_segment('opted') OR age >= 70`; "fb": fallback.
fn offers() -> Vec<Offer> {
    let mut a = Offer::new("a", &[Channel::Web]);
    a.eligibility = SegmentRef::Where("age < 60".into());
    a.value = Value::Attribute { name: "avg_basket_eur".into(), factor: 0.1 };
    a.holdout_pct = 10.0;
    let mut b = Offer::new("b", &[Channel::Web]);
    b.eligibility = SegmentRef::Saved("opted".into());
    b.propensity = Propensity::Adaptive { alpha: 2.0, beta: 3.0, per_segment: vec!["opted".into()] };
    let mut c = Offer::new("c", &[Channel::Web]);
    c.eligibility = SegmentRef::Where("country = 'Atlantis'".into());
    c.applicability = SegmentRef::Where("in_segment('opted') OR age >= 70".into());
    c.propensity = Propensity::Attribute("churn_risk".into());
    let mut fb = Offer::new("fb", &[Channel::Web]);
    fb.fallback = true;
    fb.value = Value::Constant(0.01);
    vec![a, b, c, fb]
}

fn engine() -> (Engine, u64) {
    let mut eng = Engine::new(table(ROWS), 100, 1000);
    let mut seq = 0;
    let create = Mutation::CreateSegment {
        id: "opted".into(),
        description: String::new(),
        definition: Definition::Sql("email_opt_in".into()),
        members: vec![],
    };
    for m in std::iter::once(create)
        .chain(offers().into_iter().map(|o| Mutation::Decide(Change::PutOffer(Box::new(o)))))
    {
        seq += 1;
        eng.apply(seq, &m).unwrap();
    }
    (eng, seq)
}

/// What every customer is, from bitmaps of freshly compiled rules.
fn oracle(eng: &Engine) -> MapFacts {
    let ds = eng.data();
    let segs = |s: &str| eng.segments().members_of(s);
    let mut sets = vec![];
    for o in eng.decide().catalogue().offers() {
        for (_, seg) in o.rules() {
            if !matches!(seg, SegmentRef::All) {
                let plan = compile(ds, seg, &segs, &Limits::default()).unwrap();
                sets.push((segment_key(seg), eval::materialize(ds, &plan)));
            }
        }
    }
    sets.push((segment_key(&SegmentRef::Saved("opted".into())), (*segs("opted").unwrap()).clone()));
    let numbers: Vec<(&str, usize)> =
        ["avg_basket_eur", "churn_risk"].into_iter().map(|n| (n, numeric_column(ds, n).unwrap())).collect();
    let mut customers = HashMap::new();
    for row in 0..ds.rows() as u32 {
        if !ds.live.contains(row) {
            continue;
        }
        let c = MapCustomer {
            segments: sets.iter().filter(|(_, p)| p.contains(row)).map(|(k, _)| k.clone()).collect(),
            numbers: numbers
                .iter()
                .filter_map(|&(n, col)| number_at(ds, col, row).map(|x| (n.to_string(), x)))
                .collect(),
        };
        customers.insert(ds.id_of(row), c);
    }
    MapFacts { customers }
}

fn request(customer_id: u64) -> Request {
    let context =
        Context { channel: Channel::Web, placement: "home".into(), intent: String::new(), now_ms: NOW };
    Request {
        decision_id: customer_id * 7 + 1,
        customer_id,
        context,
        max_results: 3,
        counts_as_impression: true,
    }
}

/// Rules from the cache for this version.
fn cached(cache: &RuleCache, eng: &Engine) -> Arc<CompiledRules> {
    let segs = |s: &str| eng.segments().members_of(s);
    cache.get(eng.data(), eng.decide().catalogue(), &segs, &Limits::default()).unwrap()
}

fn decide_cached(cache: &RuleCache, eng: &Engine, customer: u64) -> Decision {
    let members = |s: &str| eng.segments().get(s).ok().map(|m| &*m.members);
    let facts = DatasetFacts::with_rules(eng.data(), cached(cache, eng), &members);
    let st = eng.decide();
    decide(st.catalogue(), st.contacts(), &facts, &request(customer)).unwrap()
}

/// Every customer's decision from the cache equals the oracle's, with facts built per
/// decision (as the service does) and with one facts for every customer (its per-row
/// memo must not leak from the first customer to the others).
fn assert_exact(cache: &RuleCache, eng: &Engine) {
    let oracle = oracle(eng);
    let st = eng.decide();
    let members = |s: &str| eng.segments().get(s).ok().map(|m| &*m.members);
    let shared = DatasetFacts::with_rules(eng.data(), cached(cache, eng), &members);
    for &id in oracle.customers.keys() {
        let want = decide(st.catalogue(), st.contacts(), &oracle, &request(id)).unwrap();
        assert_eq!(decide_cached(cache, eng, id), want, "customer {id}");
        assert_eq!(
            decide(st.catalogue(), st.contacts(), &shared, &request(id)).unwrap(),
            want,
            "customer {id}"
        );
    }
}

fn reason(d: &Decision, offer: &str) -> Option<DropReason> {
    d.dropped.iter().find(|x| x.offer_id == offer).map(|x| x.reason.clone())
}

fn upsert(eng: &mut Engine, seq: &mut u64, id: u64, attrs: Vec<(&str, CellValue)>) {
    *seq += 1;
    let attributes = attrs.into_iter().map(|(a, v)| (a.to_string(), v)).collect();
    eng.apply(*seq, &Mutation::Upsert(vec![CustomerUpdate { customer_id: id, attributes }])).unwrap();
}

fn cell(eng: &Engine, id: u64, attr: &str) -> CellValue {
    eng.data().customer(id).unwrap().into_iter().find(|(a, _)| a == attr).unwrap().1
}

#[test]
fn cached_rules_decide_exactly_as_the_state_changes() {
    let (mut eng, mut seq) = engine();
    let cache = RuleCache::default();
    let first = cached(&cache, &eng);
    assert_exact(&cache, &eng);
    let ids: Vec<u64> = (1..=ROWS as u64).collect();
    let young = *ids.iter().find(|&&i| matches!(cell(&eng, i, "age"), CellValue::Int(a) if a < 60)).unwrap();
    let not_opted = *ids
        .iter()
        .find(|&&i| i != young && cell(&eng, i, "email_opt_in") == CellValue::Bool(false))
        .unwrap();
    assert_ne!(reason(&decide_cached(&cache, &eng, young), "a"), Some(DropReason::NotEligible));
    assert_eq!(reason(&decide_cached(&cache, &eng, not_opted), "b"), Some(DropReason::NotEligible));

    // An attribute and a saved segment's membership change: the compiled rules still fit
    // (nothing they bind changed), and the very next decision sees both writes.
    upsert(&mut eng, &mut seq, young, vec![("age", CellValue::Int(75))]);
    upsert(&mut eng, &mut seq, not_opted, vec![("email_opt_in", CellValue::Bool(true))]);
    assert!(Arc::ptr_eq(&first, &cached(&cache, &eng)), "recompiled without cause");
    assert_eq!(reason(&decide_cached(&cache, &eng, young), "a"), Some(DropReason::NotEligible));
    assert_ne!(reason(&decide_cached(&cache, &eng, not_opted), "b"), Some(DropReason::NotEligible));
    assert_exact(&cache, &eng);

    // A value new to the dictionary: "c" was compiled when no code named it.
    assert_eq!(reason(&decide_cached(&cache, &eng, not_opted), "c"), Some(DropReason::NotEligible));
    upsert(&mut eng, &mut seq, not_opted, vec![("country", CellValue::Str("Atlantis".into()))]);
    let rebound = cached(&cache, &eng);
    assert!(!Arc::ptr_eq(&first, &rebound), "a new dictionary value must rebind");
    let d = decide_cached(&cache, &eng, not_opted);
    assert!(!matches!(reason(&d, "c"), Some(DropReason::NotEligible | DropReason::NotApplicable)), "{d:?}");
    assert_exact(&cache, &eng);

    // Decisions taken change no binding; a replaced offer is recompiled.
    seq += 1;
    let record = decide_cached(&cache, &eng, young).record;
    eng.apply(seq, &Mutation::Decide(Change::DecisionTaken(record))).unwrap();
    assert!(Arc::ptr_eq(&rebound, &cached(&cache, &eng)));
    let mut a = offers().remove(0);
    a.eligibility = SegmentRef::Where("age >= 60".into());
    seq += 1;
    eng.apply(seq, &Mutation::Decide(Change::PutOffer(Box::new(a)))).unwrap();
    assert_ne!(reason(&decide_cached(&cache, &eng, young), "a"), Some(DropReason::NotEligible));
    assert_exact(&cache, &eng);
}
