//! Data dirs written by earlier versions keep opening, decoded to exactly what was
//! written (expected values below are written out by hand, not read from the code):
//! - tests/fixtures/golden/v2: record format 2 (protobuf), a snapshot and a log.
//! - tests/fixtures/legacy-json: the first release's JSON format 1; it opens, and is
//!   rewritten in the current format at once, so its JSON is read only once.

use std::path::{Path, PathBuf};

use segd::db::{Db, DbError, DbOptions};
use segd::engine::Mutation;
use segd::persist::record::{
    decode_mutation, decode_snapshot_meta, encode_mutation, SegmentMeta, SnapshotMeta, FORMAT, LEGACY_FORMAT,
};
use segd::persist::{read_latest_snapshot, Wal, WalOptions};
use segd::query::ast::{CmpOp, Expr, Literal};
use segd::segments::Definition;
use segd::store::mutate::{CellValue, CustomerUpdate, NewAttribute};
use segd::store::Dataset;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// A private copy of a fixture (opening a data dir writes to it).
fn copy_of(name: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for sub in ["wal", "snapshots"] {
        std::fs::create_dir_all(tmp.path().join(sub)).unwrap();
        for f in std::fs::read_dir(fixture(name).join(sub)).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), tmp.path().join(sub).join(f.file_name())).unwrap();
        }
    }
    tmp
}

fn open(dir: &Path, import: impl FnOnce() -> Result<Dataset, DbError>) -> Db {
    let opts = DbOptions { data_dir: dir.to_path_buf(), ..DbOptions::default() };
    Db::open(opts, import, |_| {}).unwrap()
}

fn no_import() -> Result<Dataset, DbError> {
    panic!("a fixture has a snapshot: nothing is imported")
}

fn up(id: u64, attrs: Vec<(&str, CellValue)>) -> CustomerUpdate {
    CustomerUpdate {
        customer_id: id,
        attributes: attrs.into_iter().map(|(a, v)| (a.to_string(), v)).collect(),
    }
}

fn s(v: &str) -> CellValue {
    CellValue::Str(v.into())
}

fn rich_tree() -> Expr {
    Expr::And(vec![
        Expr::Cmp { col: "total_spend_eur".into(), op: CmpOp::Gt, value: Literal::Float(100.5) },
        Expr::Not(Box::new(Expr::In {
            col: "tier".into(),
            values: vec![Literal::Str("BRONZE".into()), Literal::Null],
            negated: false,
        })),
        Expr::Or(vec![
            Expr::IsNull { col: "last_purchase_days_ago".into(), negated: true },
            Expr::Contains { col: "badges".into(), value: Literal::Str("early_bird".into()) },
            Expr::Column("email_opt_in".into()),
            Expr::InSegment("vips".into()),
            Expr::Const(Literal::Bool(false)),
            Expr::Cmp { col: "age".into(), op: CmpOp::Ge, value: Literal::Int(30) },
        ]),
    ])
}

/// The snapshot of both fixtures: two saved segments (77 was never a customer).
fn expected_snapshot_meta() -> SnapshotMeta {
    SnapshotMeta {
        id_column: "customer_id".into(),
        segments: vec![
            SegmentMeta {
                id: "de".into(),
                description: "Germany".into(),
                definition: Definition::Sql("country = 'DE'".into()),
                members: vec![],
            },
            SegmentMeta {
                id: "vips".into(),
                description: String::new(),
                definition: Definition::Static,
                members: vec![1, 2, 3],
            },
        ],
        decide: vec![],
        gamify: vec![],
        leaderboards: vec![],
    }
}

/// Written before the snapshot (format 2 fixture).
fn golden_part1() -> Vec<Mutation> {
    vec![
        Mutation::CreateSegment {
            id: "de".into(),
            description: "Germany".into(),
            definition: Definition::Sql("country = 'DE'".into()),
            members: vec![],
        },
        Mutation::CreateSegment {
            id: "vips".into(),
            description: String::new(),
            definition: Definition::Static,
            members: vec![1, 2, 3, 77],
        },
        Mutation::Upsert(vec![
            up(1, vec![("tier", s("GOLD")), ("churn_risk", CellValue::Float(0.25))]),
            up(2, vec![("country", s("DE")), ("level", CellValue::Int(-3))]),
        ]),
    ]
}

/// The log after the snapshot, from `first_seq` on. `golden` adds the values the first
/// release's fixture does not hold.
fn part2(first_seq: u64, golden: bool) -> Vec<(u64, Mutation)> {
    let mut c3 = vec![
        ("birthday", s("2000-02-29")),
        ("seen_at", s("2024-03-01T12:30:00.5")),
        ("badges", CellValue::List(vec!["early_bird".into(), "vip".into()])),
        ("email_opt_in", CellValue::Bool(true)),
        ("last_purchase_days_ago", CellValue::Null),
    ];
    let mut c_new = vec![("city", s("Zürich \"Nord\"")), ("total_spend_eur", CellValue::Int(250))];
    if golden {
        c3.push(("churn_risk", CellValue::Float(-0.0)));
        c_new.push(("level", CellValue::Int(-128)));
    }
    let ms = vec![
        Mutation::CreateSegment {
            id: "rich".into(),
            description: "spenders".into(),
            definition: Definition::Tree(rich_tree()),
            members: vec![],
        },
        Mutation::AddAttribute { name: "birthday".into(), kind: NewAttribute::Date },
        Mutation::AddAttribute { name: "seen_at".into(), kind: NewAttribute::Timestamp },
        Mutation::Upsert(vec![up(3, c3), up(10_000_001, c_new)]),
        Mutation::Delete(vec![7, 8, 12345]),
        Mutation::EditMembers { id: "vips".into(), customer_ids: vec![2], add: false },
        Mutation::DeleteSegment { id: "de".into() },
    ];
    (first_seq..).zip(ms).collect()
}

fn cell(db: &Db, id: u64, attr: &str) -> CellValue {
    let c = db.read().data().customer(id).unwrap_or_else(|| panic!("customer {id} held"));
    c.into_iter().find(|(a, _)| a == attr).unwrap_or_else(|| panic!("attribute {attr}")).1
}

/// The state both fixtures end in, computed by hand from the mutations above.
fn assert_state(db: &Db, golden: bool) {
    let e = db.read();
    assert_eq!(e.data().customers(), 20 + 1 - 2, "20 generated, one new, two deleted");
    assert_eq!(e.data().customer(7), None);
    assert_eq!(e.data().customer(8), None);
    let ids: Vec<&str> = e.segments().list().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["rich", "vips"]);
    let mut vips: Vec<u64> =
        e.segments().get("vips").unwrap().members.rows().into_iter().map(|r| e.data().id_of(r)).collect();
    vips.sort_unstable();
    assert_eq!(vips, [1, 3]);
    assert_eq!(e.segments().get("rich").unwrap().definition, Definition::Tree(rich_tree()));
    drop(e);
    assert_eq!(cell(db, 1, "tier"), s("GOLD"));
    assert_eq!(cell(db, 1, "churn_risk"), CellValue::Float(0.25));
    assert_eq!(cell(db, 2, "country"), s("DE"));
    assert_eq!(cell(db, 2, "level"), CellValue::Int(-3));
    // 2000-02-29: 10957 days to 2000-01-01, + 31 + 28.
    assert_eq!(cell(db, 3, "birthday"), CellValue::Int(11_016));
    // 2024-03-01: 19723 days to 2024-01-01, + 31 + 29; then 12:30:00.5.
    assert_eq!(cell(db, 3, "seen_at"), CellValue::Int((19_783 * 86_400 + 45_000) * 1_000_000 + 500_000));
    assert_eq!(cell(db, 3, "badges"), CellValue::List(vec!["early_bird".into(), "vip".into()]));
    assert_eq!(cell(db, 3, "email_opt_in"), CellValue::Bool(true));
    assert_eq!(cell(db, 3, "last_purchase_days_ago"), CellValue::Null);
    assert_eq!(cell(db, 10_000_001, "city"), s("Zürich \"Nord\""));
    assert_eq!(cell(db, 10_000_001, "total_spend_eur"), CellValue::Float(250.0));
    assert_eq!(cell(db, 10_000_001, "tier"), CellValue::Null);
    if golden {
        match cell(db, 3, "churn_risk") {
            CellValue::Float(x) => assert_eq!(x.to_bits(), (-0.0f64).to_bits()),
            other => panic!("{other:?}"),
        }
        assert_eq!(cell(db, 10_000_001, "level"), CellValue::Int(-128));
    }
}

/// The log records of a data dir, decoded, with the format of each.
fn decoded_log(dir: &Path) -> Vec<(u64, u32, Mutation)> {
    let (_, replay) = Wal::open(&dir.join("wal"), WalOptions::default()).unwrap();
    replay
        .records
        .iter()
        .map(|(seq, bytes)| {
            let f = replay.format_of(*seq);
            (*seq, f, decode_mutation(f, bytes).unwrap_or_else(|e| panic!("record {seq}: {e}")))
        })
        .collect()
}

#[test]
fn golden_format_2_log_and_snapshot_decode_to_the_expected_mutations() {
    let dir = copy_of("golden/v2");
    let want: Vec<(u64, u32, Mutation)> = part2(4, true).into_iter().map(|(s, m)| (s, 2, m)).collect();
    assert_eq!(decoded_log(dir.path()), want);
    let snap = read_latest_snapshot(&dir.path().join("snapshots")).unwrap().unwrap();
    assert_eq!((snap.seq, snap.format), (3, 2));
    assert_eq!(decode_snapshot_meta(snap.format, &snap.extra), Ok(expected_snapshot_meta()));
    if FORMAT == 2 {
        // This version still writes exactly these bytes.
        let (_, replay) = Wal::open(&dir.path().join("wal"), WalOptions::default()).unwrap();
        for ((_, bytes), (_, m)) in replay.records.iter().zip(part2(4, true)) {
            let mut mine = vec![];
            encode_mutation(&m, &mut mine);
            assert_eq!(&mine, bytes, "{m:?}");
        }
    }
}

#[test]
fn golden_format_2_data_dir_opens_to_the_expected_state() {
    let dir = copy_of("golden/v2");
    let db = open(dir.path(), no_import);
    assert_state(&db, true);
    db.close().unwrap();
    drop(db);
    assert_state(&open(dir.path(), no_import), true);
}

#[test]
fn first_release_json_data_dir_opens_once_and_is_rewritten_in_the_current_format() {
    let dir = copy_of("legacy-json");
    let want: Vec<(u64, u32, Mutation)> =
        part2(5, false).into_iter().map(|(s, m)| (s, LEGACY_FORMAT, m)).collect();
    assert_eq!(decoded_log(dir.path()), want);
    let snap = read_latest_snapshot(&dir.path().join("snapshots")).unwrap().unwrap();
    assert_eq!((snap.seq, snap.format), (4, LEGACY_FORMAT));
    assert_eq!(decode_snapshot_meta(snap.format, &snap.extra), Ok(expected_snapshot_meta()));
    drop(snap);

    let db = open(dir.path(), no_import);
    assert_state(&db, false);
    // Rewritten at once: a current-format snapshot of everything, no JSON record left.
    let snap = read_latest_snapshot(&dir.path().join("snapshots")).unwrap().unwrap();
    assert_eq!((snap.seq, snap.format), (11, FORMAT));
    let c = db.commit(Mutation::Upsert(vec![up(4, vec![("tier", s("SILVER"))])])).unwrap();
    assert_eq!(c.sequence, 12);
    drop(db);
    let log = decoded_log(dir.path());
    assert_eq!(log.len(), 1);
    assert_eq!((log[0].0, log[0].1), (12, FORMAT));
    let db = open(dir.path(), no_import);
    assert_state(&db, false);
    assert_eq!(cell(&db, 4, "tier"), s("SILVER"));
}

/// Writes tests/fixtures/golden/v<FORMAT>. Run by hand only when FORMAT is bumped (into a
/// new directory; never rewrite an existing one): `cargo test --release --test
/// integration write_golden_fixture -- --ignored`.
#[test]
#[ignore = "writes a committed fixture; run by hand once per format version"]
fn write_golden_fixture() {
    let dir = fixture(&format!("golden/v{FORMAT}"));
    assert!(!dir.exists(), "{} exists: a golden fixture is never rewritten", dir.display());
    let import = || {
        let b = segd::gen::generate(20, 3);
        Ok(Dataset::from_batches(segd::gen::schema(), b.into_iter().map(Ok), "customer_id")?)
    };
    let db = open(&dir, import);
    for m in golden_part1() {
        db.commit(m).unwrap();
    }
    db.close().unwrap();
    drop(db);
    let db = open(&dir, no_import);
    for (seq, m) in part2(4, true) {
        assert_eq!(db.commit(m).unwrap().sequence, seq);
    }
    drop(db);
    // Only the newest snapshot is part of the fixture.
    for f in std::fs::read_dir(dir.join("snapshots")).unwrap() {
        let name = f.unwrap().file_name().into_string().unwrap();
        if name.starts_with("snap-00000000000000000000") {
            std::fs::remove_file(dir.join("snapshots").join(name)).unwrap();
        }
    }
    std::fs::remove_file(dir.join("LOCK")).unwrap();
}
