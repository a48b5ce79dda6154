//! Tests of [`super`]: batches of writes (chunks copied, written in place, spliced) read
//! back exactly as a plain per-cell oracle holds them, a version that shares chunks with
//! the one written never changes, and the indexes agree with a row-by-row evaluation of
//! the written table ([`crate::naive`]).

use std::collections::HashMap;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::query::Limits;
use crate::store::mutate::CustomerUpdate;
use crate::store::Dataset;

/// Columns written, one of each kind of chunk (nullable, narrow, float, codes, bool, list).
const COLS: [&str; 7] =
    ["age", "last_purchase_days_ago", "total_spend_eur", "tier", "email_opt_in", "badges", "level"];

const PREDICATES: [&str; 8] = [
    "age >= 40",
    "last_purchase_days_ago IS NULL",
    "last_purchase_days_ago < 100",
    "total_spend_eur >= 500",
    "tier = 'GOLD'",
    "email_opt_in",
    "'vip' = ANY(badges)",
    "level >= 3 AND NOT email_opt_in",
];

type Cells = HashMap<(usize, u32), CellValue>;

fn table(rows: usize) -> Dataset {
    let b = crate::gen::generate(rows, 7);
    Dataset::from_batches(crate::gen::schema(), b.into_iter().map(Ok), "customer_id").unwrap()
}

fn col(ds: &Dataset, name: &str) -> usize {
    ds.column_index(name).unwrap()
}

/// Every written column's cells, read through [`cell_of`].
fn cells(ds: &Dataset) -> Cells {
    let mut out = HashMap::new();
    for name in COLS {
        let ci = col(ds, name);
        for row in 0..ds.rows() as u32 {
            out.insert((ci, row), cell_of(&ds.columns[ci], row));
        }
    }
    out
}

/// Equal bit for bit (a float's sign of zero included).
fn assert_same(got: &Cells, want: &Cells, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: cell count");
    for (k, w) in want {
        let g = &got[k];
        let same = match (g, w) {
            (CellValue::Float(a), CellValue::Float(b)) => a.to_bits() == b.to_bits(),
            _ => g == w,
        };
        assert!(same, "{what}: column {} row {}: got {g:?}, want {w:?}", k.0, k.1);
    }
}

fn random_value(rng: &mut SmallRng, name: &str, held: &CellValue) -> CellValue {
    // A quarter of the writes repeat the value held (they must change nothing).
    if rng.random_bool(0.25) {
        return held.clone();
    }
    let tiers = ["NONE", "BRONZE", "SILVER", "GOLD", "PLATINUM"];
    let badges = ["vip", "welcome", "streak_7", "reviewer"];
    match name {
        "age" => CellValue::Int(rng.random_range(18..90)),
        "last_purchase_days_ago" if rng.random_bool(0.3) => CellValue::Null,
        "last_purchase_days_ago" => CellValue::Int(rng.random_range(0..700)),
        "total_spend_eur" => {
            CellValue::Float([0.0, -0.0, 12.5, 499.99, 500.0, 2750.25][rng.random_range(0..6)])
        }
        "tier" => CellValue::Str(tiers[rng.random_range(0..tiers.len())].into()),
        "email_opt_in" => CellValue::Bool(rng.random_bool(0.5)),
        "badges" if rng.random_bool(0.1) => CellValue::Null,
        "badges" => CellValue::List(
            (0..rng.random_range(0..4))
                .map(|_| badges[rng.random_range(0..badges.len())].to_string())
                .collect(),
        ),
        "level" => CellValue::Int(rng.random_range(0..10)),
        other => unreachable!("{other} is not written"),
    }
}

/// A batch of writes to random customers (some new), applied to `ds` and to `oracle`.
fn write_batch(rng: &mut SmallRng, ds: &mut Dataset, oracle: &mut Cells, next_id: &mut u64) {
    let mut batch = vec![];
    for _ in 0..400 {
        let (id, row) = if rng.random_bool(0.05) {
            *next_id += 1;
            (*next_id, None)
        } else {
            let row = rng.random_range(0..ds.rows() as u32);
            (ds.id_of(row), Some(row))
        };
        let mut attributes = vec![];
        for name in COLS {
            if rng.random_bool(0.6) {
                let held = row.map_or(CellValue::Null, |r| oracle[&(col(ds, name), r)].clone());
                attributes.push((name.to_string(), random_value(rng, name, &held)));
            }
        }
        batch.push(CustomerUpdate { customer_id: id, attributes });
    }
    let before = ds.rows() as u32;
    ds.apply_upserts(&batch).unwrap();
    // The oracle: new rows are NULL in every column until written; the last write wins.
    for row in before..ds.rows() as u32 {
        for name in COLS {
            oracle.insert((col(ds, name), row), CellValue::Null);
        }
    }
    for u in &batch {
        let row = ds.row_of(u.customer_id).unwrap();
        for (name, v) in &u.attributes {
            oracle.insert((col(ds, name), row), v.clone());
        }
    }
}

fn check_indexes(ds: &Dataset, what: &str) {
    let export = ds.export();
    for text in PREDICATES {
        let plan = crate::query::compile_sql(ds, text, &Limits::default()).unwrap();
        let got = crate::query::eval::count(ds, &plan);
        let expr = crate::query::sql::parse(text, &Limits::default()).unwrap();
        let want: u64 = export
            .iter()
            .map(|b| {
                (0..b.num_rows()).filter(|&r| crate::naive::eval(b, r, &expr).unwrap() == Some(true)).count()
            })
            .sum::<usize>() as u64;
        assert_eq!(got, want, "{what}: {text}");
    }
}

#[test]
fn writes_read_back_exactly_and_shared_versions_never_change() {
    let mut rng = SmallRng::seed_from_u64(11);
    // Three chunks and a partial fourth: new rows grow the last one.
    let mut ds = table(3 * 65_536 + 1_000);
    let mut oracle = cells(&ds);
    let mut next_id = 10_000_000;
    let mut kept: Vec<(Dataset, Cells)> = vec![];
    for round in 0..12 {
        // Every third round the version is "published": later writes must copy what it
        // holds; the rounds between write the same private copy again (in place).
        if round % 3 == 0 {
            kept.push((ds.clone(), oracle.clone()));
        }
        write_batch(&mut rng, &mut ds, &mut oracle, &mut next_id);
        assert_same(&cells(&ds), &oracle, &format!("round {round}"));
    }
    check_indexes(&ds, "after the writes");
    for (i, (old, want)) in kept.iter().enumerate() {
        assert_same(&cells(old), want, &format!("kept version {i}"));
        check_indexes(old, &format!("kept version {i}"));
    }
}

/// The values buffer of chunk `c` of column `name`.
fn values_ptr(ds: &Dataset, name: &str, c: usize) -> *const u8 {
    let a = ds.columns[col(ds, name)].chunk(c);
    a.to_data().buffers()[0].as_ptr()
}

#[test]
fn a_chunk_only_this_version_holds_is_written_in_place() {
    let mut ds = table(2 * 65_536);
    let write = |ds: &mut Dataset, age: i64| {
        let id = ds.id_of(70_000);
        ds.apply_upserts(&[CustomerUpdate {
            customer_id: id,
            attributes: vec![
                ("age".into(), CellValue::Int(age)),
                ("email_opt_in".into(), CellValue::Bool(age > 50)),
            ],
        }])
        .unwrap();
    };
    let published = ds.clone();
    let shared = values_ptr(&ds, "age", 1);
    write(&mut ds, 33);
    // The first write copies the chunk the published version holds...
    let copied = values_ptr(&ds, "age", 1);
    assert_ne!(copied, shared);
    assert_eq!(values_ptr(&published, "age", 1), shared);
    // ...and a later one writes that copy in place (booleans too).
    let bools = values_ptr(&ds, "email_opt_in", 1);
    write(&mut ds, 77);
    assert_eq!(values_ptr(&ds, "age", 1), copied);
    assert_eq!(values_ptr(&ds, "email_opt_in", 1), bools);
    let row = ds.row_of(ds.id_of(70_000)).unwrap();
    assert_eq!(cell_of(&ds.columns[col(&ds, "age")], row), CellValue::Int(77));
    assert_eq!(cell_of(&ds.columns[col(&ds, "email_opt_in")], row), CellValue::Bool(true));
    assert_ne!(cell_of(&published.columns[col(&published, "age")], row), CellValue::Int(77));
    // The chunk the write did not touch is still shared.
    assert_eq!(values_ptr(&ds, "age", 0), values_ptr(&published, "age", 0));
}

#[test]
fn holds_agrees_with_the_cell_read_back() {
    let mut rng = SmallRng::seed_from_u64(5);
    let mut ds = table(65_536 + 500);
    let mut oracle = cells(&ds);
    let mut next_id = 20_000_000;
    // Writes first, so chunks hold nulls, widened codes and spliced lists.
    for _ in 0..3 {
        write_batch(&mut rng, &mut ds, &mut oracle, &mut next_id);
    }
    for _ in 0..20_000 {
        let name = COLS[rng.random_range(0..COLS.len())];
        let ci = col(&ds, name);
        let row = rng.random_range(0..ds.rows() as u32);
        let held = cell_of(&ds.columns[ci], row);
        let v = random_value(&mut rng, name, &held);
        // In the column's own representation, as apply_column sees it.
        let v = match (&ds.columns[ci].kind, v) {
            (crate::store::column::Kind::Float, CellValue::Int(i)) => CellValue::Float(i as f64),
            (_, v) => v,
        };
        let want = super::super::mutate::same_cell(&held, &v);
        assert_eq!(holds(&ds.columns[ci], row, &v), want, "{name} row {row}: holds {held:?}, asked {v:?}");
    }
}

/// The engine's column-major write against the upsert path on a copy of the table: the
/// same cells, the same indexes, the same rows reported.
#[test]
fn column_major_writes_equal_upserts() {
    let mut rng = SmallRng::seed_from_u64(9);
    let mut by_rows = table(2 * 65_536 + 300);
    let mut by_cols = by_rows.clone();
    let mut next_id = 30_000_000;
    let names = ["age", "total_spend_eur", "tier", "email_opt_in", "badges", "level"];
    for round in 0..6 {
        let published = by_cols.clone();
        let published_cells = cells(&published);
        let mut ids = vec![];
        for _ in 0..300 {
            ids.push(if rng.random_bool(0.05) {
                next_id += 1;
                next_id
            } else if !ids.is_empty() && rng.random_bool(0.1) {
                // A customer twice in one change: the later value wins.
                ids[rng.random_range(0..ids.len())]
            } else {
                by_rows.id_of(rng.random_range(0..by_rows.rows() as u32))
            });
        }
        let values: Vec<Vec<CellValue>> = names
            .iter()
            .map(|n| ids.iter().map(|_| random_value(&mut rng, n, &CellValue::Null)).collect())
            .collect();
        let batch: Vec<CustomerUpdate> = ids
            .iter()
            .enumerate()
            .map(|(i, &id)| CustomerUpdate {
                customer_id: id,
                attributes: names.iter().zip(&values).map(|(n, v)| (n.to_string(), v[i].clone())).collect(),
            })
            .collect();
        let want = by_rows.apply_upserts(&batch).unwrap();
        let columns = names.iter().map(|n| col(&by_cols, n)).zip(values).collect();
        let (got, touched) = by_cols.apply_checked_columns(&ids, columns);
        assert_eq!(got, want, "round {round}: rows");
        assert_eq!(by_cols.rows(), by_rows.rows());
        let after = cells(&by_cols);
        assert_same(&after, &cells(&by_rows), &format!("round {round}"));
        // Per column, the rows reported changed are those whose cell differs from the
        // version the write started from, bit for bit, and the new rows.
        assert_eq!(touched.first_new as usize, published.rows(), "round {round}: first new row");
        for name in COLS {
            let ci = col(&by_cols, name);
            let want: Vec<u32> = (0..by_cols.rows() as u32)
                .filter(|&r| match (published_cells.get(&(ci, r)), &after[&(ci, r)]) {
                    (None, _) => true,
                    (Some(CellValue::Float(a)), CellValue::Float(b)) => a.to_bits() != b.to_bits(),
                    (Some(a), b) => a != b,
                })
                .collect();
            assert_eq!(touched.by_column[ci], want, "round {round}: rows changed in {name}");
        }
        check_indexes(&by_cols, &format!("round {round}"));
        // The version the write started from (a published one) never changes.
        assert_same(&cells(&published), &published_cells, &format!("round {round}: published"));
    }
}

/// The rows of a list chunk as plain code lists (None: NULL).
fn list_model(l: &ListArray) -> Vec<Option<Vec<u32>>> {
    list_rows(l)
}

#[test]
fn lists_written_in_place_equal_a_plain_model() {
    let names: Vec<String> = (0..40).map(|i| format!("b{i}")).collect();
    let mut dict = Dict::default();
    for n in &names {
        dict.intern(n);
    }
    let mut rng = SmallRng::seed_from_u64(5);
    let (mut in_place, mut refused) = (0, 0);
    for round in 0..300 {
        let n = rng.random_range(1..400);
        let mut model: Vec<Option<Vec<u32>>> = (0..n)
            .map(|_| {
                rng.random_bool(0.8)
                    .then(|| (0..rng.random_range(0..4)).map(|_| rng.random_range(0..40)).collect())
            })
            .collect();
        // Built from a Vec, so only this chunk holds its buffers.
        let chunk = code_lists(&model, dict.len());
        let keep = (round % 5 == 0).then(|| chunk.clone());
        let before = keep.as_ref().map(list_model);
        // Mostly growing writes (badges awarded), sometimes a shrink or a NULL.
        let mut cells = BTreeMap::new();
        for _ in 0..rng.random_range(0..12) {
            let o = rng.random_range(0..n);
            let v = if rng.random_bool(0.1) {
                CellValue::Null
            } else {
                let held = model[o].clone().unwrap_or_default();
                let mut items: Vec<String> = held.iter().map(|&k| names[k as usize].clone()).collect();
                if rng.random_bool(0.85) {
                    items.extend((0..rng.random_range(0..3)).map(|_| names[rng.random_range(0..40)].clone()));
                } else {
                    items.truncate(rng.random_range(0..=items.len()));
                }
                CellValue::List(items)
            };
            cells.insert(o, v);
        }
        for (&o, v) in &cells {
            model[o] = match v {
                CellValue::List(items) => Some(items.iter().map(|s| dict.code(s).unwrap()).collect()),
                _ => None,
            };
        }
        let got = match splice_unique(chunk, n, &cells, &dict) {
            Ok(l) => {
                in_place += 1;
                assert!(keep.is_none(), "round {round}: a shared chunk was written in place");
                l
            }
            Err(l) => {
                refused += 1;
                splice_list(&l, n, n, &cells, &dict)
            }
        };
        // NULL rows read as no codes either way; compare validity and codes.
        let want: Vec<Option<Vec<u32>>> = model.iter().map(|r| r.clone().map(|v| v.to_vec())).collect();
        assert_eq!(list_model(&got), want, "round {round}");
        got.to_data().validate_full().unwrap();
        if let (Some(k), Some(b)) = (keep, before) {
            assert_eq!(list_model(&k), b, "round {round}: the shared chunk changed");
        }
    }
    assert!(in_place > 100 && refused > 30, "both paths ran: {in_place} in place, {refused} copied");
}
