//! Golden gamification log records (tests/fixtures/golden/v2-gamify/records.hex: one
//! record of each change kind, hex, one per line, written once by
//! `write_gamify_golden_records`): they decode to the mutations written out below, and a
//! hand-written protobuf reader (no prost, no segd type) finds each field where the log
//! format says it is: `Record.gamify` = 20, then the `ChangeRecord` case and its fields
//! (src/persist/gamify/mod.rs). The current encoder still writes these bytes, except the
//! program's, whose JSON text follows the program's serde form.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use segd::engine::Mutation;
use segd::gamify::{Change, Event, Grant, Program, PropValue, Spend};
use segd::persist::record::{decode_mutation, encode_mutation, FORMAT};

fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden/v2-gamify/records.hex")
}

/// 2026-01-10T12:00:00Z.
const T0: i64 = 1_768_046_400_000;

/// One of each change kind, with every property value kind and edge values.
/// The program the fixture's first record was written with (the demo program of that
/// day, pinned: the demo program itself grows with new sections).
const GOLDEN_PROGRAM: &str = include_str!("../fixtures/golden/v2-gamify/program.json");

fn golden() -> Vec<Mutation> {
    let event = |id: &str, customer_id: u64, kind: &str, props: Vec<(&str, PropValue)>| Event {
        event_id: id.into(),
        customer_id,
        kind: kind.into(),
        occurred_at_ms: T0 - 1,
        properties: props.into_iter().map(|(k, v)| (k.to_string(), v)).collect::<BTreeMap<_, _>>(),
    };
    let g = |c: Change| Mutation::Gamify(c);
    vec![
        g(Change::PutProgram {
            program: Arc::new(Program::from_json(GOLDEN_PROGRAM).unwrap()),
            effective_ms: T0,
        }),
        g(Change::RecordEvents {
            events: vec![
                event(
                    "p-1",
                    7,
                    "purchase",
                    vec![
                        ("amount_eur", PropValue::Float(42.5)),
                        ("category", PropValue::Str("bücher".into())),
                    ],
                ),
                event(
                    "r-1",
                    u64::MAX >> 1,
                    "review",
                    vec![("rating", PropValue::Int(-3)), ("has_photo", PropValue::Bool(true))],
                ),
                event("l-1", 0, "login", vec![]),
            ],
            logged_at_ms: T0,
        }),
        g(Change::SpendPoints {
            spend: Spend { customer_id: 7, wallet: "points".into(), request_id: "s-1".into(), points: 300 },
            logged_at_ms: T0 + 1,
        }),
        g(Change::GrantPoints {
            grant: Grant { customer_id: 8, wallet: "points".into(), request_id: "g-1".into(), points: 1 },
            logged_at_ms: T0 + 2,
        }),
        g(Change::SetManualTier { customer_id: 9, tier: Some("GOLD".into()), logged_at_ms: T0 + 3 }),
        g(Change::SetManualTier { customer_id: 9, tier: None, logged_at_ms: T0 + 4 }),
        g(Change::Tick { now_ms: T0 + 5 }),
    ]
}

fn read_fixture() -> Vec<Vec<u8>> {
    let text = std::fs::read_to_string(path()).expect("the committed golden records");
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| (0..l.len()).step_by(2).map(|i| u8::from_str_radix(&l[i..i + 2], 16).unwrap()).collect())
        .collect()
}

/// A protobuf field as the wire format has it.
#[derive(Debug, Clone, PartialEq)]
enum Wire {
    Varint(u64),
    Fixed64(u64),
    Bytes(Vec<u8>),
}

/// Every field of a message, in order: (number, value). Written from the protobuf
/// encoding spec, independent of prost.
fn fields(mut b: &[u8]) -> Vec<(u64, Wire)> {
    fn varint(b: &mut &[u8]) -> u64 {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = b[0];
            *b = &b[1..];
            v |= ((byte & 0x7f) as u64) << shift;
            if byte & 0x80 == 0 {
                break;
            }
        }
        v
    }
    let mut out = vec![];
    while !b.is_empty() {
        let key = varint(&mut b);
        let value = match key & 7 {
            0 => Wire::Varint(varint(&mut b)),
            1 => {
                let v = u64::from_le_bytes(b[..8].try_into().unwrap());
                b = &b[8..];
                Wire::Fixed64(v)
            }
            2 => {
                let n = varint(&mut b) as usize;
                let v = b[..n].to_vec();
                b = &b[n..];
                Wire::Bytes(v)
            }
            t => panic!("wire type {t} not used by these records"),
        };
        out.push((key >> 3, value));
    }
    out
}

fn one(fs: &[(u64, Wire)], n: u64) -> Wire {
    let hits: Vec<&Wire> = fs.iter().filter(|f| f.0 == n).map(|f| &f.1).collect();
    assert_eq!(hits.len(), 1, "field {n} once in {fs:?}");
    hits[0].clone()
}

fn bytes(w: Wire) -> Vec<u8> {
    match w {
        Wire::Bytes(b) => b,
        other => panic!("{other:?}"),
    }
}

fn text(w: Wire) -> String {
    String::from_utf8(bytes(w)).unwrap()
}

fn int(w: Wire) -> i64 {
    match w {
        Wire::Varint(v) => v as i64,
        other => panic!("{other:?}"),
    }
}

/// The change case of a log record: (ChangeRecord field, its message's fields).
fn change_of(record: &[u8]) -> (u64, Vec<(u64, Wire)>) {
    let top = fields(record);
    assert_eq!(top.len(), 1, "{top:?}");
    let change = fields(&bytes(one(&top, 20)));
    assert_eq!(change.len(), 1, "{change:?}");
    let (case, body) = change[0].clone();
    (case, fields(&bytes(body)))
}

#[test]
fn golden_gamify_records_decode_to_the_written_changes() {
    let records = read_fixture();
    let want = golden();
    assert_eq!(records.len(), want.len());
    for (bytes, m) in records.iter().zip(&want) {
        assert_eq!(decode_mutation(2, bytes).as_ref(), Ok(m), "{m:?}");
    }
    if FORMAT == 2 {
        // Still written byte for byte (the program's JSON text aside: see the module doc).
        for (bytes, m) in records.iter().zip(&want).skip(1) {
            let mut mine = vec![];
            encode_mutation(m, &mut mine);
            assert_eq!(&mine, bytes, "{m:?}");
        }
    }
}

#[test]
fn golden_gamify_records_by_a_hand_written_protobuf_reader() {
    let r = read_fixture();
    // Program (1): effective_ms (1), JSON text (2).
    let (case, f) = change_of(&r[0]);
    assert_eq!(case, 1);
    assert_eq!(int(one(&f, 1)), T0);
    let json: serde_json::Value = serde_json::from_str(&text(one(&f, 2))).unwrap();
    assert_eq!(json["tiers"]["tiers"][3]["name"], "GOLD");
    assert_eq!(json["time_zone"], "Europe/Berlin");

    // Events (2): logged_at_ms (1), events (2, repeated): id (1), customer (2), type (3),
    // occurred_at_ms (4), properties (5, repeated: key (1), bool 2 / sint64 3 / double 4
    // / string 5), in key order.
    let (case, f) = change_of(&r[1]);
    assert_eq!(case, 2);
    assert_eq!(int(one(&f, 1)), T0);
    let events: Vec<Vec<(u64, Wire)>> =
        f.iter().filter(|x| x.0 == 2).map(|x| fields(&bytes(x.1.clone()))).collect();
    assert_eq!(events.len(), 3);
    assert_eq!(text(one(&events[0], 1)), "p-1");
    assert_eq!(int(one(&events[0], 2)), 7);
    assert_eq!(text(one(&events[0], 3)), "purchase");
    assert_eq!(int(one(&events[0], 4)), T0 - 1);
    let props: Vec<Vec<(u64, Wire)>> =
        events[0].iter().filter(|x| x.0 == 5).map(|x| fields(&bytes(x.1.clone()))).collect();
    assert_eq!(text(one(&props[0], 1)), "amount_eur");
    assert_eq!(one(&props[0], 4), Wire::Fixed64(42.5f64.to_bits()));
    assert_eq!(text(one(&props[1], 1)), "category");
    assert_eq!(text(one(&props[1], 5)), "bücher");
    assert_eq!(int(one(&events[1], 2)) as u64, u64::MAX >> 1);
    let props: Vec<Vec<(u64, Wire)>> =
        events[1].iter().filter(|x| x.0 == 5).map(|x| fields(&bytes(x.1.clone()))).collect();
    assert_eq!(text(one(&props[0], 1)), "has_photo");
    assert_eq!(one(&props[0], 2), Wire::Varint(1));
    assert_eq!(text(one(&props[1], 1)), "rating");
    // sint64 -3, zigzag: 5.
    assert_eq!(one(&props[1], 3), Wire::Varint(5));
    // Customer 0 and no properties: proto3 leaves the defaults out.
    assert!(events[2].iter().all(|x| x.0 != 2 && x.0 != 5), "{:?}", events[2]);

    // Spend (3) and grant (4): logged_at_ms (1), customer (2), wallet (3), request id (4),
    // points (5).
    for (i, case, at, customer, req, points) in [(2, 3, T0 + 1, 7, "s-1", 300), (3, 4, T0 + 2, 8, "g-1", 1)] {
        let (c, f) = change_of(&r[i]);
        assert_eq!(c, case);
        assert_eq!(
            (int(one(&f, 1)), int(one(&f, 2)), text(one(&f, 3)), text(one(&f, 4)), int(one(&f, 5))),
            (at, customer, "points".to_string(), req.to_string(), points)
        );
    }
    // Manual tier (5): logged_at_ms (1), customer (2), tier (3, optional: absent clears).
    let (case, f) = change_of(&r[4]);
    assert_eq!((case, int(one(&f, 1)), int(one(&f, 2)), text(one(&f, 3))), (5, T0 + 3, 9, "GOLD".into()));
    let (case, f) = change_of(&r[5]);
    assert_eq!((case, int(one(&f, 1)), int(one(&f, 2))), (5, T0 + 4, 9));
    assert!(f.iter().all(|x| x.0 != 3));
    // Tick (6): now_ms (1); by hand: 0xa2 0x01 (field 20, bytes), length, 0x32 (field
    // 6, bytes), length, 0x08 (field 1, varint), the varint.
    let (case, f) = change_of(&r[6]);
    assert_eq!((case, int(one(&f, 1))), (6, T0 + 5));
    assert_eq!(&r[6][..2], [0xa2, 0x01]);
}

/// Writes the fixture. Run by hand once (never over an existing file):
/// `cargo test --release --test integration write_gamify_golden_records -- --ignored`.
#[test]
#[ignore = "writes a committed fixture; run by hand once"]
fn write_gamify_golden_records() {
    let p = path();
    assert!(!p.exists(), "{} exists: a golden fixture is never rewritten", p.display());
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    let mut text = String::new();
    for m in golden() {
        let mut b = vec![];
        encode_mutation(&m, &mut b);
        text.extend(b.iter().map(|x| format!("{x:02x}")));
        text.push('\n');
    }
    std::fs::write(p, text).unwrap();
}
