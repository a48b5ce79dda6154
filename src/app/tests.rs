//! The application in process (no transport): every use case against the row-by-row
//! oracle ([`crate::naive`]) over the same generated table, and each error as its variant.

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_array::RecordBatch;
use tokio_stream::StreamExt;

use super::*;
use crate::analytics::AnalyticsError;
use crate::db::DbOptions;
use crate::engine::{EngineError, Gone};
use crate::query::{sql, Limits, QueryError};
use crate::segments::{Change, Definition, SegmentError};
use crate::store::mutate::{CellValue, CustomerUpdate, MutationError, NewAttribute};

const ROWS: usize = 3_000;

fn batches() -> Vec<RecordBatch> {
    crate::gen::generate(ROWS, 5)
}

fn dataset(batches: &[RecordBatch]) -> Dataset {
    Dataset::from_batches(crate::gen::schema(), batches.iter().cloned().map(Ok), "customer_id").unwrap()
}

fn fixed(config: Config) -> (Vec<RecordBatch>, App) {
    let b = batches();
    let app = App::fixed(dataset(&b), config);
    (b, app)
}

fn live() -> (tempfile::TempDir, Vec<RecordBatch>, App) {
    let dir = tempfile::tempdir().unwrap();
    let b = batches();
    let opts = DbOptions { data_dir: dir.path().to_path_buf(), ..DbOptions::default() };
    let for_import = b.clone();
    let app = App::open(opts, move || Ok(dataset(&for_import)), Config::default()).unwrap();
    (dir, b, app)
}

fn parse(text: &str) -> Expr {
    sql::parse(text, &Limits::default()).unwrap()
}

use crate::query::Expr;

/// `SELECT count(*) WHERE text`, row by row.
fn oracle(b: &[RecordBatch], text: &str) -> u64 {
    crate::naive::count(b, &parse(text)).unwrap()
}

/// Whether customer `id` satisfies `text`, row by row (None: not held).
fn oracle_member(b: &[RecordBatch], id: u64, text: &str) -> Option<bool> {
    let e = parse(text);
    for batch in b {
        let ids = batch.column(0).as_primitive::<UInt64Type>();
        if let Some(row) = (0..batch.num_rows()).find(|&r| ids.value(r) == id) {
            return Some(crate::naive::eval(batch, row, &e).unwrap() == Some(true));
        }
    }
    None
}

fn w(text: &str) -> SegmentRef {
    SegmentRef::Where(text.into())
}

const SEG: &str = "country IN ('DE', 'AT') AND age BETWEEN 25 AND 45";

#[tokio::test]
async fn counts_agree_with_the_oracle_and_repeat_from_the_memo() {
    let (b, app) = fixed(Config::default());
    let want = oracle(&b, SEG);
    let first = app.count(w(SEG)).await.unwrap();
    assert_eq!(first, Counted { count: want, total: ROWS as u64, cached: false });
    let again = app.count(w(SEG)).await.unwrap();
    assert_eq!(again, Counted { count: want, total: ROWS as u64, cached: true });
    let tree = app.count(SegmentRef::Tree(parse(SEG))).await.unwrap();
    assert_eq!((tree.count, tree.cached), (want, false), "trees are not memoised");

    let (_, no_memo) = fixed(Config { cache_counts: false, ..Config::default() });
    no_memo.count(w(SEG)).await.unwrap();
    assert!(!no_memo.count(w(SEG)).await.unwrap().cached, "--no-count-cache");
}

#[tokio::test]
async fn bad_segments_are_their_errors() {
    let limits = Limits { max_text: 40, max_depth: 3, max_in_list: 2 };
    let (_, app) = fixed(Config { limits, ..Config::default() });
    let long = "age > 1 AND age > 2 AND age > 3 AND age > 4";
    match app.count(w(long)).await {
        Err(AppError::Limit { flag: "max-where-bytes", got, limit: 40, .. }) => assert_eq!(got, long.len()),
        r => panic!("{r:?}"),
    }
    match app.count(w("agee > 3")).await {
        Err(AppError::Query(QueryError::UnknownColumn { column, .. })) => assert_eq!(column, "agee"),
        r => panic!("{r:?}"),
    }
    let deep = Expr::Not(Box::new(Expr::Not(Box::new(Expr::Not(Box::new(parse("age > 3")))))));
    assert!(matches!(
        app.count(SegmentRef::Tree(deep)).await,
        Err(AppError::Query(QueryError::Limit { what: "predicate depth", .. }))
    ));
    assert!(matches!(
        app.is_member(1, SegmentRef::Tree(parse("age IN (1, 2, 3)"))),
        Err(AppError::Query(QueryError::Limit { what: "IN list length", got: 3, limit: 2 }))
    ));
    match app.count(SegmentRef::Saved("nope".into())).await {
        Err(AppError::Segment(SegmentError::NotFound(id))) => assert_eq!(id, "nope"),
        r => panic!("{r:?}"),
    }
}

#[tokio::test]
async fn memberships_agree_with_the_oracle_one_by_one_and_in_batches() {
    let (b, app) = fixed(Config { max_batch_ids: 5_000, ..Config::default() });
    let ids: Vec<u64> = (0..=(ROWS as u64 + 2)).collect();
    for &id in ids.iter().step_by(7) {
        let m = app.is_member(id, w(SEG)).unwrap();
        let want = oracle_member(&b, id, SEG);
        assert_eq!(
            m,
            Membership { is_member: want == Some(true), customer_found: want.is_some() },
            "id {id}"
        );
    }
    // Inline (small) and on the pool (large): the same answers, in request order.
    for batch in [ids[..100].to_vec(), ids.iter().rev().copied().collect::<Vec<_>>()] {
        let got = app.batch_is_member(batch.clone(), w(SEG)).await.unwrap();
        let want: Vec<Option<bool>> = batch.iter().map(|&id| oracle_member(&b, id, SEG)).collect();
        assert_eq!(got.is_member, want.iter().map(|m| *m == Some(true)).collect::<Vec<_>>());
        assert_eq!(got.customer_found, want.iter().map(Option::is_some).collect::<Vec<_>>());
        assert_eq!(got.members, want.iter().filter(|m| **m == Some(true)).count() as u64);
    }
    match app.batch_is_member(vec![1; 5_001], w(SEG)).await {
        Err(AppError::Limit { flag: "max-batch-ids", got: 5_001, limit: 5_000, .. }) => {}
        r => panic!("{r:?}"),
    }
}

#[tokio::test]
async fn insight_agrees_with_counts() {
    let (b, app) = fixed(Config { max_top_n: 50, max_overlap_segments: 3, ..Config::default() });
    let e = app.explain(w(SEG)).await.unwrap();
    assert_eq!((e.root.actual, e.total), (oracle(&b, SEG), ROWS as u64));

    let s = app.schema(0).unwrap();
    assert_eq!((s.total, s.id_column.as_str(), s.attributes.len()), (ROWS as u64, "customer_id", 21));
    let tier = s.attributes.iter().find(|a| a.name == "tier").unwrap();
    let listed: u64 = tier.values.iter().map(|v| v.1).sum();
    assert_eq!(listed, ROWS as u64, "tier has a small domain: every value listed");

    let bd = app.breakdown(w(SEG), "tier".into(), 2).await.unwrap();
    assert_eq!(bd.segment_count, oracle(&b, SEG));
    assert_eq!(bd.groups.len(), 2);
    for (v, n) in &bd.groups {
        let crate::query::Literal::Str(t) = v else { panic!("{v:?}") };
        assert_eq!(*n, oracle(&b, &format!("{SEG} AND tier = '{t}'")));
    }
    let grouped: u64 = bd.groups.iter().map(|g| g.1).sum::<u64>() + bd.other_count + bd.null_count;
    assert_eq!(grouped, bd.segment_count);
    assert!(matches!(
        app.breakdown(w(SEG), "tier".into(), 51).await,
        Err(AppError::Limit { flag: "max-breakdown-top-n", .. })
    ));
    assert!(matches!(
        app.breakdown(w(SEG), "tierr".into(), 5).await,
        Err(AppError::Analytics(AnalyticsError::UnknownColumn { .. }))
    ));

    let texts = ["age < 30", "email_opt_in", SEG];
    let o = app.overlap(texts.iter().map(|t| w(t)).collect()).await.unwrap();
    for (i, a) in texts.iter().enumerate() {
        for (j, c) in texts.iter().enumerate() {
            let want = if i == j { oracle(&b, a) } else { oracle(&b, &format!("({a}) AND ({c})")) };
            assert_eq!(o.counts[i][j], want, "{a} & {c}");
        }
    }
    assert!(matches!(app.overlap(vec![]).await, Err(AppError::Invalid { field: "segments", .. })));
    assert!(matches!(
        app.overlap(vec![w("age < 3"); 4]).await,
        Err(AppError::Limit { flag: "max-overlap-segments", got: 4, .. })
    ));
}

#[tokio::test]
async fn a_fixed_table_refuses_writes() {
    let (_, app) = fixed(Config::default());
    assert!(matches!(app.delete_customers(vec![1]).await, Err(AppError::ReadOnly)));
    assert!(matches!(app.add_attribute("x".into(), NewAttribute::Int).await, Err(AppError::ReadOnly)));
    let s = NewSegment {
        id: "s".into(),
        description: String::new(),
        definition: NewDefinition::Where(SEG.into()),
    };
    assert!(matches!(app.create_segment(s).await, Err(AppError::ReadOnly)));
}

fn rejected_segment(r: Result<impl std::fmt::Debug, AppError>) -> SegmentError {
    match r {
        Err(AppError::Db(crate::db::DbError::Rejected(EngineError::Segment(e)))) => e,
        r => panic!("{r:?}"),
    }
}

fn rejected_mutation(r: Result<impl std::fmt::Debug, AppError>) -> MutationError {
    match r {
        Err(AppError::Db(crate::db::DbError::Rejected(EngineError::Mutation(e)))) => e,
        r => panic!("{r:?}"),
    }
}

#[tokio::test]
async fn saved_segments_are_created_read_edited_and_deleted() {
    let (_dir, b, app) = live();
    let new = |id: &str, definition| NewSegment { id: id.into(), description: "d".into(), definition };
    let c = app.create_segment(new("de", NewDefinition::Where(SEG.into()))).await.unwrap();
    assert_eq!(c.count, oracle(&b, SEG));
    let tree = app.create_segment(new("young", NewDefinition::Tree(parse("age < 30")))).await.unwrap();
    assert_eq!(tree.count, oracle(&b, "age < 30"));
    assert!(tree.sequence > c.sequence);
    assert_eq!(
        app.get_segment("de").unwrap(),
        SegmentInfo {
            id: "de".into(),
            description: "d".into(),
            definition: Definition::Sql(SEG.into()),
            count: c.count
        }
    );
    assert_eq!(app.count(SegmentRef::Saved("de".into())).await.unwrap().count, c.count);
    let ids: Vec<String> = app.list_segments().into_iter().map(|s| s.id).collect();
    assert_eq!(ids, ["de", "young"]);
    assert_eq!(
        rejected_segment(app.create_segment(new("de", NewDefinition::Where("age > 1".into()))).await),
        SegmentError::Exists("de".into())
    );
    assert_eq!(
        rejected_segment(app.create_segment(new("bad id!", NewDefinition::Where("age > 1".into()))).await),
        SegmentError::BadId("bad id!".into())
    );

    // Static: unknown ids are skipped.
    let vip = app.create_segment(new("vip", NewDefinition::Static(vec![1, 2, 3, 999_999]))).await.unwrap();
    assert_eq!(vip.count, 3);
    assert_eq!(app.get_segment("vip").unwrap().definition, Definition::Static);
    assert!(app.is_member(2, SegmentRef::Saved("vip".into())).unwrap().is_member);
    assert_eq!(app.add_members("vip".into(), vec![3, 4, 5]).await.unwrap().changed, 2);
    assert_eq!(app.remove_members("vip".into(), vec![1, 9]).await.unwrap().changed, 1, "9 was not a member");
    let members = app.batch_is_member(vec![1, 2, 3, 4, 5, 9], SegmentRef::Saved("vip".into())).await.unwrap();
    assert_eq!(members.is_member, [false, true, true, true, true, false]);
    assert_eq!(
        rejected_segment(app.add_members("de".into(), vec![1]).await),
        SegmentError::NotStatic("de".into())
    );
    let e = app.explain(SegmentRef::Saved("vip".into())).await.unwrap();
    assert_eq!((e.root.actual, e.root.children.len()), (4, 0));

    let of = app.segments_of(2);
    let mut want = vec!["vip".to_string()];
    for (id, text) in [("de", SEG), ("young", "age < 30")] {
        if oracle_member(&b, 2, text) == Some(true) {
            want.push(id.into());
        }
    }
    want.sort();
    let mut got = of.segment_ids.clone();
    got.sort();
    assert_eq!((got, of.customer_found), (want, true));
    assert_eq!(app.segments_of(999_999), SegmentsOf { segment_ids: vec![], customer_found: false });

    app.delete_segment("vip".into()).await.unwrap();
    assert_eq!(
        app.get_segment("vip").unwrap_err().to_string(),
        SegmentError::NotFound("vip".into()).to_string()
    );
    assert_eq!(
        rejected_segment(app.delete_segment("vip".into()).await),
        SegmentError::NotFound("vip".into())
    );
    app.close().unwrap();
}

fn update(id: u64, attrs: &[(&str, CellValue)]) -> CustomerUpdate {
    CustomerUpdate {
        customer_id: id,
        attributes: attrs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
    }
}

#[tokio::test]
async fn customers_are_upserted_read_and_deleted() {
    let (_dir, _b, app) = live();
    let gold = app.count(w("tier = 'GOLD'")).await.unwrap().count;
    let before = app.get_customer(7).unwrap();
    let was_gold = before.attributes.iter().any(|(k, v)| k == "tier" && *v == CellValue::Str("GOLD".into()));
    let u = app.upsert(vec![update(7, &[("tier", CellValue::Str("GOLD".into()))])]).await.unwrap();
    assert_eq!(u.applied, 1);
    let after = app.get_customer(7).unwrap();
    assert!(after.attributes.contains(&("tier".into(), CellValue::Str("GOLD".into()))));
    assert!(!after.attributes.iter().any(|(k, _)| k == "customer_id"), "the id column is left out");
    assert_eq!(after.attributes.len(), 20);
    let now = app.count(w("tier = 'GOLD'")).await.unwrap();
    assert_eq!(
        (now.count, now.cached),
        (gold + u64::from(!was_gold), false),
        "a write starts the memo afresh"
    );

    // A new customer; then a batch with one bad value changes nothing.
    app.upsert(vec![update(50_000, &[("age", CellValue::Int(33))])]).await.unwrap();
    assert_eq!(app.count(w("age = 33")).await.unwrap().total, ROWS as u64 + 1);
    let bad = vec![update(8, &[("age", CellValue::Int(40))]), update(9, &[("agee", CellValue::Int(1))])];
    match rejected_mutation(app.upsert(bad).await) {
        MutationError::UnknownAttribute { customer_id: 9, attribute, .. } => assert_eq!(attribute, "agee"),
        e => panic!("{e:?}"),
    }
    assert_ne!(
        app.get_customer(8).unwrap().attributes.iter().find(|(k, _)| k == "age").unwrap().1,
        CellValue::Int(40)
    );
    assert!(matches!(
        rejected_mutation(app.upsert(vec![update(8, &[("age", CellValue::Str("x".into()))])]).await),
        MutationError::TypeMismatch { customer_id: 8, .. }
    ));

    let d = app.delete_customers(vec![7, 50_000, 123_456]).await.unwrap();
    assert_eq!(d.deleted, 2);
    assert!(d.sequence > u.sequence);
    assert!(matches!(app.get_customer(7), Err(AppError::UnknownCustomer(7))));
    app.close().unwrap();
}

#[tokio::test]
async fn write_batches_over_the_limit_are_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let opts = DbOptions { data_dir: dir.path().to_path_buf(), ..DbOptions::default() };
    let app = App::open(
        opts,
        || Ok(dataset(&crate::gen::generate(100, 1))),
        Config { max_upsert_batch: 3, ..Config::default() },
    )
    .unwrap();
    let four: Vec<_> = (1..=4).map(|id| update(id, &[])).collect();
    assert!(matches!(app.upsert(four).await, Err(AppError::Limit { flag: "max-upsert-batch", got: 4, .. })));
    assert!(matches!(app.delete_customers(vec![1; 4]).await, Err(AppError::Limit { got: 4, .. })));
    let s = NewSegment {
        id: "s".into(),
        description: String::new(),
        definition: NewDefinition::Static(vec![1; 4]),
    };
    assert!(matches!(app.create_segment(s).await, Err(AppError::Limit { got: 4, .. })));
    assert!(app.list_segments().is_empty(), "nothing was created");
    app.close().unwrap();
}

/// The one attribute-name rule (`Dataset::check_new_attribute`), through the app.
#[tokio::test]
async fn attribute_names_follow_one_rule() {
    let (_dir, _b, app) = live();
    let add = |name: String| app.add_attribute(name, NewAttribute::Int);
    add("streak_days".into()).await.unwrap();
    add("_x9".into()).await.unwrap();
    add("a".repeat(128)).await.unwrap();
    for bad in ["", "9lives", "has space", "dash-ed", "ünï", &"a".repeat(129)] {
        assert_eq!(
            rejected_mutation(add(bad.to_string()).await),
            MutationError::BadAttributeName(bad.into()),
            "{bad:?}"
        );
    }
    assert_eq!(rejected_mutation(add("age".into()).await), MutationError::AttributeExists("age".into()));
    app.upsert(vec![update(3, &[("streak_days", CellValue::Int(12))])]).await.unwrap();
    assert_eq!(app.count(w("streak_days >= 10")).await.unwrap().count, 1);
    app.close().unwrap();
}

#[tokio::test]
async fn watchers_get_the_events_of_their_segments() {
    let (dir, b, app) = live();
    let new = NewSegment {
        id: "gold".into(),
        description: String::new(),
        definition: NewDefinition::Where("tier = 'GOLD'".into()),
    };
    app.create_segment(new).await.unwrap();
    let outsider =
        (1..=ROWS as u64).find(|&id| oracle_member(&b, id, "tier = 'GOLD'") == Some(false)).unwrap();
    let mut sub = app.watch(WatchQuery { segment_ids: vec!["gold".into()], from_sequence: 0 }).unwrap();
    let u = app.upsert(vec![update(outsider, &[("tier", CellValue::Str("GOLD".into()))])]).await.unwrap();
    let batch = sub.next().await.unwrap().unwrap();
    assert_eq!(batch.len(), 1);
    let e = &batch[0];
    assert_eq!(
        (&*e.segment_id, e.customer_id, e.change, e.sequence),
        ("gold", outsider, Change::Entered, u.sequence)
    );

    assert_eq!(
        rejected_or(app.watch(WatchQuery { segment_ids: vec!["nope".into()], from_sequence: 0 })),
        "unknown segment id 'nope'"
    );
    app.close_streams();
    match sub.next().await {
        Some(Err(AppError::ShuttingDown)) => {}
        r => panic!("{r:?}"),
    }
    app.close().unwrap();
    drop(app);

    // Events are not kept across a restart: a position before it is gone.
    let opts = DbOptions { data_dir: dir.path().to_path_buf(), ..DbOptions::default() };
    let app = App::open(opts, || panic!("a snapshot exists"), Config::default()).unwrap();
    assert_eq!(app.0.opened_at, u.sequence);
    match app.watch(WatchQuery { segment_ids: vec![], from_sequence: 1 }) {
        Err(AppError::Gone(g)) => assert_eq!(g, Gone { asked: 1, oldest: u.sequence + 1 }),
        r => panic!("{:?}", r.err()),
    }
    assert!(app.watch(WatchQuery { segment_ids: vec![], from_sequence: u.sequence + 1 }).is_ok());
    app.close().unwrap();
}

fn rejected_or(r: Result<Subscription, AppError>) -> String {
    match r {
        Err(e @ AppError::Segment(SegmentError::NotFound(_))) => e.to_string(),
        Err(e) => panic!("{e:?}"),
        Ok(_) => panic!("accepted"),
    }
}
