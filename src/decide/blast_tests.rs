//! The fast blast ([`Blaster`]) against its oracle, [`decide`] for each member alone over
//! the same table, and the cached draws against the hash itself.

use super::arbitrate::{decide, Context, Request};
use super::campaign::{Blast, BlastBatch, BlastScratch, Blaster};
use super::catalogue::{Catalogue, ContactPolicy};
use super::draws::DrawCache;
use super::facts::DatasetFacts;
use super::hash;
use super::history::{ContactConfig, ContactState, OutcomeKind};
use super::offer::*;
use super::table_tests::{offer, table};
use crate::query::{self, Limits};

const DAY: i64 = 86_400_000;

/// A catalogue exercising every stage: rules of each kind and a saved segment, a hold-out,
/// a cap, suppression, a budget (one offer's spent), adaptive models per segment,
/// attribute value and propensity (NULLs and out-of-range scores), weights, an offer out
/// of its window, one on another channel, and two fallbacks.
fn catalogue() -> Catalogue {
    let mut cat = Catalogue::new(ContactPolicy { control_pct: 7.0, ..ContactPolicy::default() }).unwrap();
    let mut a = offer();
    a.propensity = Propensity::Adaptive { alpha: 2.0, beta: 3.0, per_segment: vec!["opted".into()] };
    a.budget = Some(100_000);
    cat.put(a).unwrap();
    let mut b = Offer::new("basket", &[Channel::Email, Channel::Web]);
    b.value = Value::Attribute { name: "avg_basket_eur".into(), factor: 0.5 };
    b.propensity = Propensity::Attribute("churn_risk".into());
    b.holdout_pct = 35.0;
    b.weights.channel.insert(Channel::Email, 1.5);
    b.weights.placement.insert("banner".into(), 2.0);
    cat.put(b).unwrap();
    let mut c = Offer::new("cheap", &[Channel::Email]);
    c.eligibility = SegmentRef::Where("age < 45".into());
    c.value = Value::Constant(3.0);
    c.propensity = Propensity::Constant(0.2);
    c.lever = 2.5;
    c.cap = Some(Limit { max: 1, window_ms: 3 * DAY });
    cat.put(c).unwrap();
    let mut spent = Offer::new("spent", &[Channel::Email]);
    spent.budget = Some(1);
    cat.put(spent).unwrap();
    let mut late = Offer::new("late", &[Channel::Email]);
    late.start_ms = Some(1_000 * DAY);
    cat.put(late).unwrap();
    cat.put(Offer::new("sms-only", &[Channel::Sms])).unwrap();
    for (id, v) in [("fb-a", 0.1), ("fb-b", 0.2)] {
        let mut f = Offer::new(id, &[Channel::Email, Channel::Web]);
        f.fallback = true;
        f.value = Value::Constant(v);
        f.applicability = SegmentRef::Where("NOT email_opt_in".into());
        cat.put(f).unwrap();
    }
    cat
}

#[test]
fn a_fast_blast_is_each_members_own_decision() {
    let t = table(5_000, 9);
    let cat = catalogue();
    let segs = |id: &str| (id == "opted").then(|| t.opted.clone());
    let limits = Limits::default();
    let facts = DatasetFacts::new(&t.ds, &cat, &segs, &limits).unwrap();
    // A history: decisions for every 7th customer over the last days (caps, the email
    // contact limit), rejects (suppression), accepts (model counts and the budget of
    // "spent", which one acceptance uses up).
    let config = ContactConfig { decision_retention_ms: 30 * DAY, ..ContactConfig::default() };
    let mut st = ContactState::new(config).unwrap();
    let now = 50 * DAY;
    for (i, id) in (1..=5_000u64).step_by(7).enumerate() {
        let at = now - (1 + (i as i64 % 9)) * DAY;
        let channel = if i % 2 == 0 { Channel::Email } else { Channel::Web };
        let ctx = Context { channel, placement: String::new(), intent: String::new(), now_ms: at };
        let r = Request {
            decision_id: id,
            customer_id: id,
            context: ctx,
            max_results: 3,
            counts_as_impression: true,
        };
        let d = decide(&cat, &st, &facts, &r).unwrap();
        let applied = st.apply_decision(&cat, &d.record).unwrap();
        for (k, p) in applied.offers.iter().enumerate() {
            let kind = [OutcomeKind::Reject, OutcomeKind::Accept, OutcomeKind::Click][(i + k) % 3];
            st.record_outcome(id, &p.offer_id, kind, at + 1000).unwrap();
        }
    }
    let members = query::eval::materialize(&t.ds, &query::compile_sql(&t.ds, "age >= 22", &limits).unwrap());
    let draws = DrawCache::default();
    let (mut presented, mut fallbacks, mut controls) = (0, 0, 0);
    for (channel, placement, max_results) in [(Channel::Email, "banner", 2), (Channel::Web, "", 5)] {
        let ctx = Context { channel, placement: placement.into(), intent: String::new(), now_ms: now };
        let blast = Blast {
            first_decision_id: 90_000,
            context: ctx.clone(),
            max_results,
            counts_as_impression: true,
        };
        let b = Blaster::new(&cat, &st, &t.ds, &segs, &limits, &draws, &members, blast).unwrap();
        assert_eq!(b.len(), members.len);
        let batches = b.decide_par(0..b.chunks());
        // Sequential chunks with one scratch give the same batches.
        let mut s = BlastScratch::default();
        for (c, got) in batches.iter().enumerate() {
            let mut one = BlastBatch::default();
            b.decide_chunk(c, &mut one, &mut s);
            assert_eq!((&one.members, &one.scored), (&got.members, &got.scored));
        }
        let mut i = 0u64;
        for batch in &batches {
            for m in &batch.members {
                assert_eq!(m.decision_id, 90_000 + i, "members in row order, numbered from the first id");
                i += 1;
                let req = Request {
                    decision_id: m.decision_id,
                    customer_id: m.customer_id,
                    context: ctx.clone(),
                    max_results,
                    counts_as_impression: true,
                };
                let want = decide(&cat, &st, &facts, &req).unwrap();
                assert_eq!(b.record(batch, m), want.record, "customer {}", m.customer_id);
                let got: Vec<_> = batch.scored[m.presented()].iter().map(|s| b.ranked(s)).collect();
                assert_eq!(got, want.presented, "customer {}", m.customer_id);
                assert_eq!(m.fallback_used(), want.fallback_used);
                presented += (!got.is_empty()) as u32;
                fallbacks += m.fallback_used() as u32;
                controls += m.control_group as u32;
            }
        }
        assert_eq!(i, members.len);
    }
    // The comparison means something only if every path was taken.
    assert!(presented > 100 && fallbacks > 10 && controls > 10, "{presented} {fallbacks} {controls}");
}

#[test]
fn cached_draws_are_the_hash_and_extend_when_customers_are_added() {
    let small = table(3_000, 2);
    let large = table(70_000, 2);
    let draws = DrawCache::new(8);
    for t in [&small, &large, &small] {
        let held = draws.holdout(&t.ds, "spring", 12.5);
        let control = draws.control(&t.ds, 3.0);
        for row in 0..t.ds.rows() as u32 {
            let id = t.ds.id_of(row);
            assert_eq!(held.contains(row), hash::held_out(id, "spring", 12.5), "row {row}");
            assert_eq!(control.contains(row), hash::in_control(id, 3.0), "row {row}");
        }
    }
}
