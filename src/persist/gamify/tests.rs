//! The direct encoder of an events record against prost's bytes of the same record
//! built as messages (the log's general path): they must be identical, so the log's
//! format, its golden fixtures and every reader stay as they were.

use std::collections::BTreeMap;

use proptest::prelude::*;
use prost::Message;

use super::encode_events_in_record;
use crate::engine::Mutation;
use crate::gamify::{Change, Event, PropValue};
use crate::persist::gamify::change::encode_change;
use crate::persist::record::{decode_mutation, encode_mutation, pb, FORMAT};

/// What the general path writes: the `Record` message with the change's bytes.
fn via_message(events: &[Event], logged_at_ms: i64) -> Vec<u8> {
    let change = Change::RecordEvents { events: events.to_vec(), logged_at_ms };
    pb::Record { kind: Some(pb::record::Kind::Gamify(encode_change(&change))) }.encode_to_vec()
}

fn direct(events: &[Event], logged_at_ms: i64) -> Vec<u8> {
    let mut buf = vec![];
    encode_events_in_record(events, logged_at_ms, 20, &mut buf);
    buf
}

fn prop_value() -> impl Strategy<Value = PropValue> {
    prop_oneof![
        any::<bool>().prop_map(PropValue::Bool),
        prop_oneof![Just(0i64), Just(i64::MIN), Just(i64::MAX), Just(-1), any::<i64>()]
            .prop_map(PropValue::Int),
        prop_oneof![Just(0.0), Just(-0.0), Just(f64::NAN), any::<f64>()].prop_map(PropValue::Float),
        prop_oneof![Just(String::new()), "[a-zé]{0,12}", Just("x".repeat(300))].prop_map(PropValue::Str),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    (
        prop_oneof![Just(String::new()), "[a-z0-9-]{1,20}"],
        prop_oneof![Just(0u64), Just(u64::MAX), any::<u64>()],
        prop_oneof![Just(String::new()), Just("purchase".to_string()), "[a-z]{1,8}"],
        prop_oneof![Just(0i64), Just(-1), Just(i64::MIN), any::<i64>()],
        proptest::collection::btree_map(prop_oneof![Just(String::new()), "[a-z_]{1,10}"], prop_value(), 0..4),
    )
        .prop_map(|(event_id, customer_id, kind, occurred_at_ms, properties)| Event {
            event_id,
            customer_id,
            kind,
            occurred_at_ms,
            properties,
        })
}

proptest! {
    #[test]
    fn direct_encoding_is_prosts(events in proptest::collection::vec(event(), 0..5), logged in prop_oneof![Just(0i64), Just(-5), any::<i64>()]) {
        let fast = direct(&events, logged);
        prop_assert_eq!(&fast, &via_message(&events, logged));
        // And the log's entry point appends exactly these bytes.
        let m = Mutation::Gamify(Change::RecordEvents { events, logged_at_ms: logged });
        let mut buf = vec![0xff];
        encode_mutation(&m, &mut buf);
        prop_assert_eq!(&buf[1..], &fast[..]);
    }
}

#[test]
fn a_realistic_batch_round_trips() {
    let events: Vec<Event> = (0..1000u64)
        .map(|i| Event {
            event_id: format!("lg1-{i}"),
            customer_id: 1 + i * 7919 % 1_000_000,
            kind: "purchase".into(),
            occurred_at_ms: 1_780_000_000_000 + i as i64,
            properties: BTreeMap::from([
                ("amount_eur".to_string(), PropValue::Float(i as f64 * 1.25)),
                ("category".to_string(), PropValue::Str(["toys", "books", ""][i as usize % 3].into())),
            ]),
        })
        .collect();
    let m =
        Mutation::Gamify(Change::RecordEvents { events: events.clone(), logged_at_ms: 1_780_000_000_500 });
    let mut buf = vec![];
    encode_mutation(&m, &mut buf);
    assert_eq!(buf, via_message(&events, 1_780_000_000_500));
    assert_eq!(decode_mutation(FORMAT, &buf).unwrap(), m);
}
