//! Writes tests/fixtures/legacy-json/: a data dir in the JSON-record format of the first
//! release (snapshot extra and log records are serde_json of in-memory types). Run once,
//! by hand, with the code of that release; the files are committed and must keep opening.

use segd::db::{Db, DbOptions};
use segd::engine::Mutation;
use segd::query::ast::{CmpOp, Expr, Literal};
use segd::segments::Definition;
use segd::store::mutate::{CellValue, CustomerUpdate, NewAttribute};
use segd::store::Dataset;

fn open(dir: &std::path::Path) -> Db {
    let opts = DbOptions { data_dir: dir.to_path_buf(), ..DbOptions::default() };
    Db::open(
        opts,
        || {
            let b = segd::gen::generate(20, 3);
            Ok(Dataset::from_batches(segd::gen::schema(), b.into_iter().map(Ok), "customer_id")?)
        },
        |_| {},
    )
    .unwrap()
}

fn up(id: u64, attrs: Vec<(&str, CellValue)>) -> CustomerUpdate {
    CustomerUpdate {
        customer_id: id,
        attributes: attrs.into_iter().map(|(a, v)| (a.to_string(), v)).collect(),
    }
}

#[test]
#[ignore = "writes the committed legacy fixture; run by hand with the first release's code"]
fn write_legacy_fixture() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/legacy-json");
    let _ = std::fs::remove_dir_all(&dir);
    // Part 1: logged, then folded into a snapshot by a clean close.
    let db = open(&dir);
    db.commit(Mutation::CreateSegment {
        id: "de".into(),
        description: "Germany".into(),
        definition: Definition::Sql("country = 'DE'".into()),
    })
    .unwrap();
    db.commit(Mutation::CreateSegment {
        id: "vips".into(),
        description: String::new(),
        definition: Definition::Static,
    })
    .unwrap();
    db.commit(Mutation::EditMembers { id: "vips".into(), customer_ids: vec![1, 2, 3, 77], add: true })
        .unwrap();
    db.commit(Mutation::Upsert(vec![
        up(1, vec![("tier", CellValue::Str("GOLD".into())), ("churn_risk", CellValue::Float(0.25))]),
        up(2, vec![("country", CellValue::Str("DE".into())), ("level", CellValue::Int(-3))]),
    ]))
    .unwrap();
    db.close().unwrap();
    drop(db);
    // Part 2: left in the log (no close: as after a crash).
    let db = open(&dir);
    db.commit(Mutation::CreateSegment {
        id: "rich".into(),
        description: "spenders".into(),
        definition: Definition::Tree(Expr::And(vec![
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
        ])),
    })
    .unwrap();
    db.commit(Mutation::AddAttribute { name: "birthday".into(), kind: NewAttribute::Date }).unwrap();
    db.commit(Mutation::AddAttribute { name: "seen_at".into(), kind: NewAttribute::Timestamp }).unwrap();
    db.commit(Mutation::Upsert(vec![
        up(
            3,
            vec![
                ("birthday", CellValue::Str("2000-02-29".into())),
                ("seen_at", CellValue::Str("2024-03-01T12:30:00.5".into())),
                ("badges", CellValue::List(vec!["early_bird".into(), "vip".into()])),
                ("email_opt_in", CellValue::Bool(true)),
                ("last_purchase_days_ago", CellValue::Null),
            ],
        ),
        up(
            10_000_001,
            vec![
                ("city", CellValue::Str("Zürich \"Nord\"".into())),
                ("total_spend_eur", CellValue::Int(250)),
            ],
        ),
    ]))
    .unwrap();
    db.commit(Mutation::Delete(vec![7, 8, 12345])).unwrap();
    db.commit(Mutation::EditMembers { id: "vips".into(), customer_ids: vec![2], add: false }).unwrap();
    db.commit(Mutation::DeleteSegment { id: "de".into() }).unwrap();
    drop(db);
    let _ = std::fs::remove_file(dir.join("LOCK"));
}
