//! Every record round-trips exactly through its bytes, and a log of records replayed into a
//! fresh state rebuilds the live state.

use proptest::prelude::*;
use prost::Message;

use super::*;
use crate::decide::arbitrate::{decide, Context, DecisionRecord, Request};
use crate::decide::catalogue::*;
use crate::decide::facts::MapFacts;
use crate::decide::history::{ContactConfig, ContactState, OutcomeKind};
use crate::decide::offer::*;
use crate::query::{self, Expr, Limits};

fn roundtrip<M: Message + Default>(m: &M) -> M {
    M::decode(m.encode_to_vec().as_slice()).unwrap()
}

fn finite() -> impl Strategy<Value = f64> {
    prop_oneof![Just(0.0), Just(1.0), 0.0f64..1e6, (0u64..u64::MAX).prop_map(|b| f64::from_bits(b >> 2))]
        .prop_filter("finite", |x| x.is_finite())
}

fn segment() -> impl Strategy<Value = SegmentRef> {
    prop_oneof![
        Just(SegmentRef::All),
        "[a-z ]{1,20}".prop_map(SegmentRef::Where),
        "[a-z_]{1,8}".prop_map(SegmentRef::Saved),
        Just(SegmentRef::Predicate(sql(
            "age BETWEEN 25 AND 34 AND NOT (country IN ('DE', NULL)) OR x IS NOT NULL"
        ))),
        Just(SegmentRef::Predicate(sql(
            "list_contains(badges, 'vip') AND in_segment('g') AND push_opt_in AND TRUE AND churn_risk > -0.5"
        ))),
    ]
}

fn sql(text: &str) -> Expr {
    query::sql::parse(text, &Limits::default()).unwrap()
}

fn channel() -> impl Strategy<Value = Channel> {
    (0..Channel::ALL.len()).prop_map(|i| Channel::ALL[i])
}

fn limit() -> impl Strategy<Value = Limit> {
    (1u32..100, 1i64..1_000_000_000).prop_map(|(max, window_ms)| Limit { max, window_ms })
}

prop_compose! {
    fn offer()(
        id in "[a-z0-9_.-]{1,12}",
        name in ".{0,12}",
        channels in proptest::collection::vec(channel(), 1..4),
        window in (proptest::option::of(any::<i64>()), proptest::option::of(any::<i64>())),
        rules in (segment(), segment(), segment()),
        value in prop_oneof![finite().prop_map(Value::Constant), ("[a-z_]{1,8}", finite()).prop_map(|(name, factor)| Value::Attribute { name, factor })],
        propensity in prop_oneof![
            (0.0f64..=1.0).prop_map(Propensity::Constant),
            "[a-z]{1,6}".prop_map(Propensity::Attribute),
            (finite(), finite(), proptest::collection::vec("[a-z]{1,4}", 0..3)).prop_map(|(alpha, beta, per_segment)| Propensity::Adaptive { alpha, beta, per_segment }),
        ],
        weights in (proptest::collection::btree_map(channel(), finite(), 0..3), proptest::collection::btree_map("[a-z]{0,5}", finite(), 0..3), proptest::collection::btree_map(".{0,5}", finite(), 0..3)),
        lever in finite(),
        cap in proptest::option::of(limit()),
        budget in proptest::option::of(1u64..u64::MAX),
        suppression in proptest::option::of((1u32..9, 1i64..1_000_000, 1i64..1_000_000, proptest::option::of(1i64..1000))),
        holdout_pct in 0.0f64..=100.0,
        fallback in any::<bool>(),
    ) -> Offer {
        Offer {
            id, name, group: "g".into(), channels, start_ms: window.0, end_ms: window.1,
            eligibility: rules.0, applicability: rules.1, suitability: rules.2, value, propensity,
            weights: ContextWeights { channel: weights.0, placement: weights.1, intent: weights.2 },
            lever, cap, budget,
            suppression: suppression.map(|(after, within_ms, pause_ms, ignore_after_ms)| Suppression { after, within_ms, pause_ms, ignore_after_ms }),
            holdout_pct, fallback,
        }
    }
}

proptest! {
    #[test]
    fn offers_roundtrip(o in offer()) {
        let back = Offer::try_from(roundtrip(&OfferRecord::from(&o))).unwrap();
        prop_assert_eq!(back, o);
    }
}

#[test]
fn expressions_roundtrip() {
    for text in [
        "age >= 30 AND gender = 'F'",
        "NOT (tier = 'NONE') OR total_spend_eur < 100.25",
        "last_purchase_days_ago IS NULL AND x IS NOT NULL",
        "country NOT IN ('DE', 'FR') AND a <> 1 AND b <= 2 AND c > 3 AND d < 4",
        "list_contains(categories_bought, 'books') AND email_opt_in AND in_segment('s1')",
        "NULL OR FALSE",
    ] {
        let e = sql(text);
        assert_eq!(Expr::try_from(roundtrip(&ExprRecord::from(&e))).unwrap(), e, "{text}");
    }
    let bad = ExprRecord {
        node: Some(expr::ExprNode::Cmp(expr::CmpRecord { col: "a".into(), op: 9, value: None })),
    };
    assert_eq!(Expr::try_from(bad), Err(RecordError::Unknown { field: "cmp.op", value: "9".into() }));
}

#[test]
fn unknown_codes_are_errors_naming_the_field() {
    let mut r = OfferRecord::from(&Offer::new("a", &[Channel::Web]));
    r.channels.push("fax".into());
    assert_eq!(Offer::try_from(r), Err(RecordError::Unknown { field: "channels", value: "fax".into() }));
    let mut r = OfferRecord::from(&Offer::new("a", &[Channel::Web]));
    r.value = None;
    assert_eq!(Offer::try_from(r), Err(RecordError::Missing("value")));
    assert_eq!(
        OutcomeRecord { outcome: 0, ..OutcomeRecord::new(1, "a", OutcomeKind::Click, 0) }.kind(),
        Err(RecordError::Unknown { field: "outcome", value: "0".into() })
    );
}

#[test]
fn catalogue_roundtrips() {
    let mut cat = Catalogue::new(ContactPolicy { control_pct: 2.5, ..ContactPolicy::default() }).unwrap();
    let mut o = Offer::new("x", &[Channel::Sms, Channel::App]);
    o.propensity = Propensity::adaptive_default();
    o.cap = Some(Limit { max: 3, window_ms: 86_400_000 });
    cat.put(o).unwrap();
    cat.put(Offer::new("y", &[Channel::Mail])).unwrap();
    assert_eq!(Catalogue::try_from(roundtrip(&CatalogueRecord::from(&cat))).unwrap(), cat);
}

#[derive(Clone, Debug)]
enum Op {
    Decide { customer: u64, channel: usize, impression: bool, max: usize },
    Outcome { pick: usize, offer: usize, kind: usize, later: i64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1u64..8, 0usize..3, any::<bool>(), 1usize..4).prop_map(|(customer, channel, impression, max)| {
            Op::Decide { customer, channel, impression, max }
        }),
        (any::<usize>(), 0usize..4, 0usize..5, 0i64..100_000)
            .prop_map(|(pick, offer, kind, later)| Op::Outcome { pick, offer, kind, later }),
    ]
}

/// A log entry as the engine would write it.
enum Logged {
    Decision(Vec<u8>),
    Outcome(Vec<u8>),
}

proptest! {
    /// Live: decide, log the record's bytes, apply; outcomes likewise. Replaying the bytes
    /// into a fresh state gives the live state, and so does a snapshot taken midway plus
    /// the rest of the log; the snapshot's bytes are a function of the state.
    #[test]
    fn a_replayed_log_rebuilds_the_state(ops in proptest::collection::vec(op(), 1..60), cut in 0usize..60) {
        let mut cat = Catalogue::new(ContactPolicy { control_pct: 10.0, ..ContactPolicy::default() }).unwrap();
        let chans = [Channel::Email, Channel::Web, Channel::Sms];
        for (i, edit) in [0, 1, 2, 3].into_iter().enumerate() {
            let mut o = Offer::new(&format!("o{i}"), &chans);
            match edit {
                0 => o.cap = Some(Limit { max: 2, window_ms: 50_000 }),
                1 => o.budget = Some(3),
                2 => o.suppression = Some(Suppression { after: 2, within_ms: 40_000, pause_ms: 30_000, ignore_after_ms: Some(5_000) }),
                _ => o.propensity = Propensity::Adaptive { alpha: 1.0, beta: 1.0, per_segment: vec!["vip".into()] },
            }
            cat.put(o).unwrap();
        }
        let vip = SegmentRef::Saved("vip".into());
        let facts = (1..8u64).fold(MapFacts::default(), |f, id| if id < 4 { f.with(id, &[&vip], &[]) } else { f.with(id, &[], &[]) });
        let config = ContactConfig { history_ms: 200_000, decision_retention_ms: 60_000 };
        let mut live = ContactState::new(config).unwrap();
        let mut log = vec![];
        let mut ids = vec![];
        let mut snapshot = None;
        for (i, op) in ops.iter().enumerate() {
            if i == cut {
                snapshot = Some((ContactStateRecord::from(&live).encode_to_vec(), log.len()));
            }
            let now = i as i64 * 3_000;
            match *op {
                Op::Decide { customer, channel, impression, max } => {
                    let ctx = Context { channel: chans[channel], placement: "p".into(), intent: String::new(), now_ms: now };
                    let r = Request { decision_id: i as u64 + 1, customer_id: customer, context: ctx, max_results: max, counts_as_impression: impression };
                    let d = decide(&cat, &live, &facts, &r).unwrap();
                    let bytes = DecisionTakenRecord::from(&d.record).encode_to_vec();
                    let rec = DecisionRecord::try_from(DecisionTakenRecord::decode(bytes.as_slice()).unwrap()).unwrap();
                    prop_assert_eq!(&rec, &d.record);
                    live.apply_decision(&cat, &rec).unwrap();
                    log.push(Logged::Decision(bytes));
                    ids.push(r.decision_id);
                }
                Op::Outcome { pick, offer, kind, later } => {
                    if ids.is_empty() { continue; }
                    let (id, offer, at) = (ids[pick % ids.len()], format!("o{offer}"), now + later);
                    let kind = OutcomeKind::ALL[kind];
                    // Only what the check accepts is logged.
                    if live.check_outcome(id, &offer, at).is_ok() {
                        live.record_outcome(id, &offer, kind, at).unwrap();
                        log.push(Logged::Outcome(OutcomeRecord::new(id, &offer, kind, at).encode_to_vec()));
                    }
                }
            }
        }
        let replay = |mut st: ContactState, entries: &[Logged]| {
            for e in entries {
                match e {
                    Logged::Decision(b) => {
                        let rec = DecisionRecord::try_from(DecisionTakenRecord::decode(b.as_slice()).unwrap()).unwrap();
                        st.apply_decision(&cat, &rec).unwrap();
                    }
                    Logged::Outcome(b) => {
                        let r = OutcomeRecord::decode(b.as_slice()).unwrap();
                        st.record_outcome(r.decision_id, &r.offer_id, r.kind().unwrap(), r.at_ms).unwrap();
                    }
                }
            }
            st
        };
        let fresh = replay(ContactState::new(config).unwrap(), &log);
        prop_assert_eq!(&fresh, &live);
        if let Some((bytes, at)) = snapshot {
            let restored = ContactState::try_from(ContactStateRecord::decode(bytes.as_slice()).unwrap()).unwrap();
            prop_assert_eq!(ContactStateRecord::from(&restored).encode_to_vec(), bytes);
            prop_assert_eq!(&replay(restored, &log[at..]), &live);
        }
        let whole = ContactStateRecord::from(&live);
        prop_assert_eq!(&ContactState::try_from(roundtrip(&whole)).unwrap(), &live);
    }
}

/// The log record bytes of decision changes, written out by hand from the protobuf wire
/// format (not from the encoder): `segd.log.v1.Record` field 30 (tag 30<<3|2 = 0xf2 0x01)
/// holds the `ChangeRecord` bytes.
#[test]
fn log_records_are_plain_protobuf_in_field_30() {
    use crate::engine::Mutation;
    use crate::persist::record::{decode_mutation, encode_mutation, FORMAT};
    let enc = |m: &Mutation| {
        let mut b = vec![];
        encode_mutation(m, &mut b);
        b
    };
    // ChangeRecord { delete_offer (2): "x" } = 0x12 0x01 'x'.
    let del = Mutation::Decide(crate::decide::Change::DeleteOffer("x".into()));
    let bytes = [0xf2, 0x01, 0x03, 0x12, 0x01, b'x'];
    assert_eq!(enc(&del), bytes);
    assert_eq!(decode_mutation(FORMAT, &bytes), Ok(del));
    // ChangeRecord { outcome (5): { decision_id (1): 7, offer_id (2): "o", outcome (3): 3
    // (ACCEPT), at_ms (4): 1000 (varint 0xe8 0x07) } }.
    let out = Mutation::Decide(crate::decide::Change::RecordOutcome {
        decision_id: 7,
        offer_id: "o".into(),
        kind: OutcomeKind::Accept,
        at_ms: 1000,
    });
    let inner = [0x08, 7, 0x12, 0x01, b'o', 0x18, 3, 0x20, 0xe8, 0x07];
    let mut bytes = vec![0xf2, 0x01, 2 + inner.len() as u8, 0x2a, inner.len() as u8];
    bytes.extend(inner);
    assert_eq!(enc(&out), bytes);
    assert_eq!(decode_mutation(FORMAT, &bytes), Ok(out));
    // A change record that is not one is a named error, never a panic.
    assert!(matches!(
        decode_mutation(FORMAT, &[0xf2, 0x01, 0x00]),
        Err(crate::persist::record::DecodeError::Decide(m)) if m.contains("change.kind")
    ));
}

/// A snapshot's decision section round-trips, and a state never changed writes none (so
/// data dirs that never used decisions keep their snapshot bytes).
#[test]
fn the_state_section_round_trips_and_is_empty_when_pristine() {
    use crate::decide::change::State;
    assert!(encode_state(&State::default()).is_empty());
    assert_eq!(decode_state(&[]), Ok(State::default()));
    let mut s = State::default();
    s.apply(&crate::decide::Change::PutOffer(Box::new(Offer::new("o1", &[Channel::Sms])))).unwrap();
    let bytes = encode_state(&s);
    assert!(!bytes.is_empty());
    assert_eq!(decode_state(&bytes), Ok(s));
}
