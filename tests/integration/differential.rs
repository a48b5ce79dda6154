//! Differential property test: random predicates over every operator and column type,
//! NULLs and empty lists included, counted by the bitmap engine and by the naive row-by-row
//! SQL evaluator over the same Arrow batches. Tables span several 2^16-row containers.

use std::sync::{Arc, OnceLock};

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::types::Int32Type;
use arrow_array::{
    ArrayRef, BooleanArray, Date32Array, DictionaryArray, Float32Array, Float64Array, Int64Array, Int8Array,
    RecordBatch, StringArray, TimestampMillisecondArray, UInt16Array, UInt64Array,
};
use proptest::prelude::*;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use segd::naive;
use segd::query::ast::{CmpOp, Expr, Literal};
use segd::query::{compile_expr, eval, Limits};
use segd::store::Dataset;

pub(crate) const STRS: [&str; 6] = ["a", "b", "bb", "c", "DE", "x y"];
pub(crate) const TAGS: [&str; 10] = ["t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8", "t9"];

pub(crate) struct Table {
    pub batches: Vec<RecordBatch>,
    pub ds: Dataset,
}

/// A random table: every supported column type, nullable ones with ~10% NULLs. Batches
/// of odd sizes so chunk boundaries fall inside batches.
pub(crate) fn table(rows: usize, seed: u64) -> Table {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut ids: Vec<u64> = (1..=rows as u64).map(|i| i * 3 + 7).collect();
    ids.shuffle(&mut rng);
    let mut batches = vec![];
    let mut start = 0;
    while start < rows {
        let n = rng.random_range(1..40_000).min(rows - start);
        batches.push(batch(&mut rng, &ids[start..start + n]));
        start += n;
    }
    let schema = batches[0].schema();
    let ds = Dataset::from_batches(schema, batches.clone().into_iter().map(Ok), "id").expect("table loads");
    Table { batches, ds }
}

fn batch(rng: &mut SmallRng, ids: &[u64]) -> RecordBatch {
    let n = ids.len();
    let mut null = |p: f64| rng.random_bool(p);
    let nulls: Vec<[bool; 8]> = (0..n).map(|_| std::array::from_fn(|_| null(0.1))).collect();
    let mut r = SmallRng::seed_from_u64(ids[0]);
    let b: BooleanArray = (0..n).map(|i| (!nulls[i][0]).then(|| r.random_bool(0.4))).collect();
    let i8c: Int8Array = (0..n).map(|i| (!nulls[i][1]).then(|| r.random_range(-5..=5))).collect();
    let u16c: UInt16Array = (0..n).map(|_| Some(r.random_range(0..1000))).collect();
    let i64c: Int64Array = (0..n)
        .map(|i| (!nulls[i][2]).then(|| r.random_range(-1_000_000_000_000i64..1_000_000_000_000)))
        .collect();
    let f64c: Float64Array = (0..n)
        .map(|i| {
            (!nulls[i][3]).then(|| match r.random_range(0..10) {
                0..=2 => 0.0,
                3 => -0.0,
                _ => (r.random_range(-100_000.0..100_000.0f64) * 100.0).round() / 100.0,
            })
        })
        .collect();
    let f32c: Float32Array =
        (0..n).map(|_| Some((r.random_range(0.0..100.0f32) * 4.0).round() / 4.0)).collect();
    let s: StringArray =
        (0..n).map(|i| (!nulls[i][4]).then(|| STRS[r.random_range(0..STRS.len())])).collect();
    let sd: DictionaryArray<Int32Type> = (0..n)
        .map(|_| format!("v{:03}", r.random_range(0..300)))
        .collect::<Vec<_>>()
        .iter()
        .map(|s| s.as_str())
        .collect();
    let mut lb = ListBuilder::new(StringBuilder::new());
    for row_nulls in &nulls {
        if row_nulls[5] {
            lb.append(false);
        } else {
            for _ in 0..r.random_range(0..5) {
                lb.values().append_value(TAGS[r.random_range(0..TAGS.len())]);
            }
            lb.append(true);
        }
    }
    let d: Date32Array = (0..n).map(|i| (!nulls[i][6]).then(|| r.random_range(18_000..20_000))).collect();
    let ts: TimestampMillisecondArray =
        (0..n).map(|_| Some(r.random_range(1_500_000_000_000i64..1_700_000_000_000))).collect();
    let cols: Vec<(&str, ArrayRef)> = vec![
        ("id", Arc::new(UInt64Array::from(ids.to_vec()))),
        ("b", Arc::new(b)),
        ("i8c", Arc::new(i8c)),
        ("u16c", Arc::new(u16c)),
        ("i64c", Arc::new(i64c)),
        ("f64c", Arc::new(f64c)),
        ("f32c", Arc::new(f32c)),
        ("s", Arc::new(s)),
        ("sd", Arc::new(sd)),
        ("l", Arc::new(lb.finish())),
        ("d", Arc::new(d)),
        ("ts", Arc::new(ts)),
    ];
    RecordBatch::try_from_iter(cols).expect("batch")
}

fn tables() -> &'static [Table] {
    static T: OnceLock<Vec<Table>> = OnceLock::new();
    // 3,000 rows: one partial chunk. 140,000: two full chunks and a partial one.
    T.get_or_init(|| vec![table(3_000, 1), table(140_000, 2)])
}

fn op() -> impl Strategy<Value = CmpOp> {
    prop_oneof![
        Just(CmpOp::Eq),
        Just(CmpOp::Ne),
        Just(CmpOp::Lt),
        Just(CmpOp::Le),
        Just(CmpOp::Gt),
        Just(CmpOp::Ge)
    ]
}

fn cmp(col: &'static str, op: CmpOp, value: Literal) -> Expr {
    Expr::Cmp { col: col.into(), op, value }
}

fn int_lit(lo: i64, hi: i64) -> impl Strategy<Value = Literal> {
    prop_oneof![
        8 => (lo..hi).prop_map(Literal::Int),
        2 => (lo * 2..hi * 2).prop_map(|x| Literal::Float(x as f64 / 2.0)),
        1 => Just(Literal::Null),
    ]
}

fn str_lit() -> impl Strategy<Value = Literal> {
    prop_oneof![
        8 => (0..STRS.len()).prop_map(|i| Literal::Str(STRS[i].into())),
        1 => Just(Literal::Str("zz".into())),
        1 => Just(Literal::Str("".into())),
        1 => Just(Literal::Null),
    ]
}

fn date_lit() -> impl Strategy<Value = Literal> {
    (2017..2026i32, 1..13u32, 1..29u32).prop_map(|(y, m, d)| Literal::Str(format!("{y:04}-{m:02}-{d:02}")))
}

fn leaf() -> impl Strategy<Value = Expr> {
    let cols = ["b", "i8c", "u16c", "i64c", "f64c", "f32c", "s", "sd", "l", "d", "ts"];
    prop_oneof![
        (op(), int_lit(-7, 7)).prop_map(|(o, v)| cmp("i8c", o, v)),
        (op(), int_lit(-10, 1010)).prop_map(|(o, v)| cmp("u16c", o, v)),
        (op(), int_lit(-1_100_000_000_000, 1_100_000_000_000)).prop_map(|(o, v)| cmp("i64c", o, v)),
        (
            op(),
            prop_oneof![
                Just(Literal::Float(0.0)),
                Just(Literal::Float(-0.0)),
                Just(Literal::Int(0)),
                (-100_000_000i64..100_000_000).prop_map(|x| Literal::Float(x as f64 / 1000.0))
            ]
        )
            .prop_map(|(o, v)| cmp("f64c", o, v)),
        (op(), (0..400i64).prop_map(|x| Literal::Float(x as f64 / 4.0))).prop_map(|(o, v)| cmp("f32c", o, v)),
        (op(), str_lit()).prop_map(|(o, v)| cmp("s", o, v)),
        (op(), (0..320u32).prop_map(|i| Literal::Str(format!("v{i:03}")))).prop_map(|(o, v)| cmp("sd", o, v)),
        (
            prop_oneof![Just(CmpOp::Eq), Just(CmpOp::Ne)],
            prop_oneof![Just(Literal::Bool(true)), Just(Literal::Bool(false)), Just(Literal::Null)]
        )
            .prop_map(|(o, v)| cmp("b", o, v)),
        Just(Expr::Column("b".into())),
        (op(), date_lit()).prop_map(|(o, v)| cmp("d", o, v)),
        (op(), date_lit()).prop_map(|(o, v)| cmp("ts", o, v)),
        prop_oneof![
            (0..TAGS.len()).prop_map(|i| Literal::Str(TAGS[i].into())),
            Just(Literal::Str("nope".into()))
        ]
        .prop_map(|v| Expr::Contains { col: "l".into(), value: v }),
        ((0..cols.len()), any::<bool>())
            .prop_map(move |(i, n)| Expr::IsNull { col: cols[i].into(), negated: n }),
        (proptest::collection::vec(str_lit(), 1..4), any::<bool>()).prop_map(|(values, negated)| Expr::In {
            col: "s".into(),
            values,
            negated
        }),
        (proptest::collection::vec(int_lit(-6, 6), 1..4), any::<bool>())
            .prop_map(|(values, negated)| Expr::In { col: "i8c".into(), values, negated }),
        prop_oneof![Just(Literal::Bool(true)), Just(Literal::Bool(false)), Just(Literal::Null)]
            .prop_map(Expr::Const),
    ]
}

pub(crate) fn expr() -> impl Strategy<Value = Expr> {
    leaf().prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 1..4).prop_map(Expr::And),
            proptest::collection::vec(inner.clone(), 1..4).prop_map(Expr::Or),
            inner.prop_map(|e| Expr::Not(Box::new(e))),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn engine_counts_what_sql_counts(e in expr(), t in 0..2usize, probe in any::<u64>()) {
        let t = &tables()[t];
        let plan = compile_expr(&t.ds, &e, &Limits::default()).expect("well-typed predicate binds");
        let want = naive::count(&t.batches, &e).expect("oracle evaluates");
        prop_assert_eq!(eval::count(&t.ds, &plan), want, "{:?}", e);
        // Row-level membership agrees with the oracle on a sample of rows.
        let mut r = SmallRng::seed_from_u64(probe);
        for _ in 0..50 {
            let b = &t.batches[r.random_range(0..t.batches.len())];
            let row = r.random_range(0..b.num_rows());
            let id = b.column(0).as_any().downcast_ref::<UInt64Array>().unwrap().value(row);
            let want = naive::eval(b, row, &e).unwrap() == Some(true);
            prop_assert_eq!(eval::is_member(&t.ds, &plan, id), Some(want), "id {} {:?}", id, e);
        }
    }
}

#[test]
fn materialized_bitmap_matches_count_and_rows() {
    let t = &tables()[1];
    let e = Expr::Or(vec![
        cmp("f64c", CmpOp::Gt, Literal::Float(0.0)),
        Expr::Not(Box::new(Expr::Contains { col: "l".into(), value: Literal::Str("t1".into()) })),
    ]);
    let plan = compile_expr(&t.ds, &e, &Limits::default()).unwrap();
    let bitmap = eval::materialize(&t.ds, &plan);
    assert_eq!(bitmap.len, naive::count(&t.batches, &e).unwrap());
    for row in bitmap.rows().into_iter().step_by(97) {
        assert!(eval::matches_row(&t.ds, &plan.root, row));
    }
    assert_eq!(eval::is_member(&t.ds, &plan, 2), None, "unknown id");
    // The batch form answers in request order, as one call per id would.
    let ids: Vec<u64> = (0..20_000u64).map(|i| i * 7 % 450_000).collect();
    let one_by_one: Vec<Option<bool>> = ids.iter().map(|&id| eval::is_member(&t.ds, &plan, id)).collect();
    assert_eq!(eval::is_member_batch(&t.ds, &plan, &ids), one_by_one);
}
