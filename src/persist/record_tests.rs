//! Tests of [`super`]: the encoding is pinned to [`FORMAT`], every mutation round-trips,
//! malformed records are named errors, format-1 JSON still decodes.

use super::*;

/// One of every mutation, cell kind, definition kind and expression node.
pub(crate) fn pinned_mutations() -> Vec<Mutation> {
    let cell = |a: &str, v: CellValue| (a.to_string(), v);
    vec![
        Mutation::Upsert(vec![
            CustomerUpdate {
                customer_id: 7,
                attributes: vec![
                    cell("churn_risk", CellValue::Float(-0.0)),
                    cell("tier", CellValue::Str("GOLD é".into())),
                    cell("level", CellValue::Int(-128)),
                    cell("email_opt_in", CellValue::Bool(true)),
                    cell("badges", CellValue::List(vec!["a".into(), String::new()])),
                    cell("city", CellValue::Null),
                ],
            },
            CustomerUpdate { customer_id: u64::MAX >> 1, attributes: vec![] },
        ]),
        Mutation::Delete(vec![1, 300, 0]),
        Mutation::AddAttribute { name: "birthday".into(), kind: NewAttribute::Date },
        Mutation::AddAttribute { name: "seen".into(), kind: NewAttribute::Timestamp },
        Mutation::CreateSegment {
            id: "vips".into(),
            description: "hand-picked".into(),
            definition: Definition::Static,
            members: vec![3, 1, 2],
        },
        Mutation::CreateSegment {
            id: "de".into(),
            description: String::new(),
            definition: Definition::Sql("country = 'DE'".into()),
            members: vec![],
        },
        Mutation::CreateSegment {
            id: "rich".into(),
            description: String::new(),
            definition: Definition::Tree(Expr::And(vec![
                Expr::Cmp { col: "total_spend_eur".into(), op: CmpOp::Ge, value: Literal::Float(100.5) },
                Expr::Not(Box::new(Expr::In {
                    col: "tier".into(),
                    values: vec![Literal::Str("BRONZE".into()), Literal::Null, Literal::Int(-1)],
                    negated: true,
                })),
                Expr::Or(vec![
                    Expr::IsNull { col: "age".into(), negated: false },
                    Expr::Contains { col: "badges".into(), value: Literal::Str("x".into()) },
                    Expr::Column("push_opt_in".into()),
                    Expr::Const(Literal::Bool(false)),
                    Expr::InSegment("vips".into()),
                    Expr::Cmp { col: "a".into(), op: CmpOp::Eq, value: Literal::Int(1) },
                    Expr::Cmp { col: "a".into(), op: CmpOp::Ne, value: Literal::Int(2) },
                    Expr::Cmp { col: "a".into(), op: CmpOp::Lt, value: Literal::Int(3) },
                    Expr::Cmp { col: "a".into(), op: CmpOp::Le, value: Literal::Int(4) },
                    Expr::Cmp { col: "a".into(), op: CmpOp::Gt, value: Literal::Int(5) },
                ]),
            ])),
            members: vec![],
        },
        Mutation::EditMembers { id: "vips".into(), customer_ids: vec![9, 1], add: false },
        Mutation::DeleteSegment { id: "de".into() },
    ]
}

fn encode(m: &Mutation) -> Vec<u8> {
    let mut buf = vec![];
    encode_mutation(m, &mut buf);
    buf
}

#[test]
fn encoding_is_pinned_to_the_format_version() {
    // If this fails, the bytes of existing mutations changed: either undo that, or bump
    // FORMAT (keeping every older format readable), add a golden fixture for the new
    // version under tests/fixtures/golden/, and update this pin.
    let bytes: Vec<u8> = pinned_mutations().iter().flat_map(encode).collect();
    assert_eq!(
        (FORMAT, bytes.len(), format!("{:08x}", crc32fast::hash(&bytes))),
        (2, 429, "b50861b1".to_string()),
        "encoding changed without a format version bump"
    );
}

#[test]
fn bytes_are_plain_protobuf() {
    // Record { delete (2): Delete { customer_ids (1, packed): [1, 300] } }, by hand:
    // tag 2<<3|2 = 0x12, length 5; tag 1<<3|2 = 0x0a, length 3; varint 1; varint 300.
    assert_eq!(encode(&Mutation::Delete(vec![1, 300])), [0x12, 0x05, 0x0a, 0x03, 0x01, 0xac, 0x02]);
    // Record { delete_segment (5): { id (1): "x" } }.
    assert_eq!(encode(&Mutation::DeleteSegment { id: "x".into() }), [0x2a, 0x03, 0x0a, 0x01, b'x']);
}

#[test]
fn every_mutation_round_trips() {
    for m in pinned_mutations() {
        assert_eq!(decode_mutation(FORMAT, &encode(&m)), Ok(m.clone()), "{m:?}");
    }
    // Bit patterns survive exactly.
    for x in [f64::MIN_POSITIVE, -0.0, 1e308, 5e-324, 0.1 + 0.2] {
        let m = Mutation::Upsert(vec![CustomerUpdate {
            customer_id: 1,
            attributes: vec![("f".into(), CellValue::Float(x))],
        }]);
        match decode_mutation(FORMAT, &encode(&m)).unwrap() {
            Mutation::Upsert(b) => match &b[0].attributes[0].1 {
                CellValue::Float(y) => assert_eq!(y.to_bits(), x.to_bits()),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn snapshot_meta_round_trips() {
    let meta = SnapshotMeta {
        id_column: "customer_id".into(),
        segments: vec![
            SegmentMeta {
                id: "vips".into(),
                description: "d".into(),
                definition: Definition::Static,
                members: vec![1, 5, 1 << 40],
            },
            SegmentMeta {
                id: "t".into(),
                description: String::new(),
                definition: Definition::Tree(Expr::Column("b".into())),
                members: vec![],
            },
        ],
        decide: vec![0x0a, 0x00],
        gamify: vec![],
        leaderboards: vec![0x08, 0x07],
    };
    assert_eq!(decode_snapshot_meta(FORMAT, &encode_snapshot_meta(&meta)), Ok(meta));
}

#[test]
fn malformed_records_are_named_errors() {
    assert_eq!(decode_mutation(FORMAT, &[]), Err(DecodeError::Missing("record.kind")));
    // Record { add_attribute (3): { name: "a", kind: 99 } }
    let bytes = [0x1a, 0x05, 0x0a, 0x01, b'a', 0x10, 99];
    assert_eq!(
        decode_mutation(FORMAT, &bytes),
        Err(DecodeError::UnknownEnum { field: "add_attribute.kind", value: 99 })
    );
    // Record { upsert (1): { customers (2)... } } cut short.
    assert!(matches!(decode_mutation(FORMAT, &[0x0a, 0x05, 0x0a]), Err(DecodeError::Protobuf(_))));
    // A cell with no value.
    let m = pb::Record {
        kind: Some(pb::record::Kind::Upsert(pb::Upsert {
            customers: vec![pb::CustomerUpdate {
                customer_id: 1,
                cells: vec![pb::Cell { attribute: "a".into(), value: None }],
            }],
        })),
    };
    assert_eq!(decode_mutation(FORMAT, &m.encode_to_vec()), Err(DecodeError::Missing("cell.value")));
    assert_eq!(decode_mutation(FORMAT + 1, &[]), Err(DecodeError::UnknownFormat(FORMAT + 1)));
    assert_eq!(decode_mutation(0, &[]), Err(DecodeError::UnknownFormat(0)));
}

#[test]
fn format_one_json_records_decode() {
    let json = r#"{"Upsert":[{"customer_id":3,"attributes":[["tier",{"Str":"GOLD"}],["x","Null"],["f",{"Float":0.5}],["l",{"List":["a"]}]]}]}"#;
    assert_eq!(
        decode_mutation(LEGACY_FORMAT, json.as_bytes()),
        Ok(Mutation::Upsert(vec![CustomerUpdate {
            customer_id: 3,
            attributes: vec![
                ("tier".into(), CellValue::Str("GOLD".into())),
                ("x".into(), CellValue::Null),
                ("f".into(), CellValue::Float(0.5)),
                ("l".into(), CellValue::List(vec!["a".into()])),
            ],
        }]))
    );
    let json = r#"{"CreateSegment":{"id":"v","description":"","definition":"Static"}}"#;
    assert_eq!(
        decode_mutation(LEGACY_FORMAT, json.as_bytes()),
        Ok(Mutation::CreateSegment {
            id: "v".into(),
            description: String::new(),
            definition: Definition::Static,
            members: vec![]
        })
    );
    // What the first release logged for a NaN: refused, with the reason.
    let json = r#"{"Upsert":[{"customer_id":7,"attributes":[["churn_risk",{"Float":null}]]}]}"#;
    assert!(
        matches!(decode_mutation(LEGACY_FORMAT, json.as_bytes()), Err(DecodeError::Json(m)) if m.contains("f64"))
    );
}

mod fast_upsert {
    use super::*;
    use proptest::prelude::*;

    fn via_message(m: &Mutation) -> Vec<u8> {
        let mut buf = vec![];
        encode_mutation_via_message(m, &mut buf);
        buf
    }

    fn cell() -> impl Strategy<Value = CellValue> {
        prop_oneof![
            Just(CellValue::Null),
            any::<bool>().prop_map(CellValue::Bool),
            any::<i64>().prop_map(CellValue::Int),
            // NaN is never logged (refused before) and is not equal to itself.
            any::<f64>().prop_filter("not NaN", |x| !x.is_nan()).prop_map(CellValue::Float),
            ".{0,3}".prop_map(CellValue::Str),
            proptest::collection::vec(".{0,2}", 0..3).prop_map(CellValue::List),
        ]
    }

    fn update() -> impl Strategy<Value = CustomerUpdate> {
        // Ids and names at protobuf's edges: 0 and "" are left out, long values take
        // multi-byte lengths and varints.
        let id = prop_oneof![Just(0u64), Just(u64::MAX), any::<u64>(), 0u64..200];
        let name = prop_oneof![Just(String::new()), "[a-z_]{1,8}", Just("x".repeat(200))];
        (id, proptest::collection::vec((name, cell()), 0..4))
            .prop_map(|(customer_id, attributes)| CustomerUpdate { customer_id, attributes })
    }

    #[test]
    fn upsert_fast_path_writes_prost_bytes_for_the_pinned_and_edge_cases() {
        let long = "é".repeat(70_000);
        let mut cases: Vec<Mutation> =
            pinned_mutations().into_iter().filter(|m| matches!(m, Mutation::Upsert(_))).collect();
        cases.push(Mutation::Upsert(vec![]));
        cases.push(Mutation::Upsert(vec![CustomerUpdate {
            customer_id: 1 << 63,
            attributes: vec![
                ("s".into(), CellValue::Str(long.clone())),
                ("l".into(), CellValue::List(vec![long, String::new()])),
                ("i".into(), CellValue::Int(i64::MIN)),
                ("b".into(), CellValue::Bool(false)),
                ("f".into(), CellValue::Float(f64::NAN)),
            ],
        }]));
        for m in &cases {
            assert_eq!(encode(m), via_message(m), "{}", m.summary());
        }
    }

    proptest! {
        #[test]
        fn upsert_fast_path_writes_prost_bytes(batch in proptest::collection::vec(update(), 0..6)) {
            let m = Mutation::Upsert(batch);
            let fast = encode(&m);
            prop_assert_eq!(&fast, &via_message(&m));
            // And appends: what the log's group buffer relies on.
            let mut buf = vec![0xff];
            encode_mutation(&m, &mut buf);
            prop_assert_eq!(&buf[1..], &fast[..]);
        }
    }

    #[test]
    fn fast_decode_reads_upserts_only() {
        for m in pinned_mutations() {
            let bytes = encode(&m);
            let fast = upsert::decode_upsert(&bytes);
            match &m {
                Mutation::Upsert(batch) => assert_eq!(fast.as_ref(), Some(batch)),
                _ => assert_eq!(fast, None, "{}", m.summary()),
            }
            assert_eq!(decode_mutation(FORMAT, &bytes), Ok(m));
        }
        // Forms the fast path leaves to prost: a repeated customer id (the last wins), an
        // unknown field (skipped), a cell with no value (an error).
        let with = |extra: &[u8]| {
            let mut cu = vec![0x08, 0x05];
            cu.extend_from_slice(extra);
            let mut up = vec![0x0a, cu.len() as u8];
            up.extend(cu);
            let mut rec = vec![0x0a, up.len() as u8];
            rec.extend(up);
            rec
        };
        for (extra, want) in [
            (
                &[0x08, 0x06][..],
                Ok(Mutation::Upsert(vec![CustomerUpdate { customer_id: 6, attributes: vec![] }])),
            ),
            (
                &[0x78, 0x01][..],
                Ok(Mutation::Upsert(vec![CustomerUpdate { customer_id: 5, attributes: vec![] }])),
            ),
            (&[0x12, 0x03, 0x0a, 0x01, b'a'][..], Err(DecodeError::Missing("cell.value"))),
        ] {
            let bytes = with(extra);
            assert_eq!(upsert::decode_upsert(&bytes), None);
            assert_eq!(decode_mutation(FORMAT, &bytes), want);
            assert_eq!(decode_mutation_via_message(&bytes), want);
        }
    }

    proptest! {
        #[test]
        fn fast_decode_agrees_with_prost(
            batch in proptest::collection::vec(update(), 0..6),
            damage in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 0..3),
        ) {
            let m = Mutation::Upsert(batch.clone());
            let bytes = encode(&m);
            prop_assert_eq!(upsert::decode_upsert(&bytes), Some(batch));
            prop_assert_eq!(decode_mutation_via_message(&bytes), Ok(m));
            // Damaged bytes: whatever the fast path still reads, prost reads the same
            // (compared re-encoded: a damaged float may be a NaN).
            let mut bad = bytes;
            for (at, b, op) in damage {
                if bad.is_empty() {
                    break;
                }
                let i = at % bad.len();
                match op {
                    0 => bad[i] = b,
                    1 => bad.truncate(i),
                    _ => bad.insert(i, b),
                }
            }
            if let Some(fast) = upsert::decode_upsert(&bad) {
                let slow = decode_mutation_via_message(&bad).map(|m| encode(&m));
                prop_assert_eq!(slow, Ok(encode(&Mutation::Upsert(fast))));
            }
        }
    }
}
