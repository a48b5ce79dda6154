//! The `segd count` and `segd gen` commands.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use segd::query::{self, Limits};
use segd::store::{load::load_file, Dataset};

/// Loads `--data`, or generates a demo table of `demo_rows` when no file is given.
pub fn load_or_demo(data: Option<&Path>, demo_rows: usize, id_column: &str) -> Result<Dataset> {
    let t = Instant::now();
    let ds = match data {
        Some(p) => load_file(p, id_column).with_context(|| format!("loading {}", p.display()))?,
        None => {
            tracing::info!(rows = demo_rows, "no --data given: generating a demo customer base");
            let batches = segd::gen::generate(demo_rows, segd::gen::DEFAULT_SEED);
            Dataset::from_batches(segd::gen::schema(), batches.into_iter().map(Ok), "customer_id")?
        }
    };
    let m = ds.memory();
    tracing::info!(
        rows = ds.rows(),
        secs = format!("{:.2}", t.elapsed().as_secs_f64()),
        columns_mib = m.columns >> 20,
        indexes_mib = m.indexes >> 20,
        ids_mib = m.ids >> 20,
        "customer base ready"
    );
    Ok(ds)
}

/// `segd count --where` / `--json`: prints the count alone on stdout.
pub fn count_one(ds: &Dataset, where_: Option<&str>, json: Option<&str>, explain: bool) -> Result<()> {
    let limits = Limits::default();
    let plan = match (where_, json) {
        (Some(w), _) => query::compile_sql(ds, w, &limits)?,
        (None, Some(j)) => query::compile_expr(ds, &query::json::parse_str(j, &limits)?, &limits)?,
        (None, None) => bail!("give --where, --json or --queries"),
    };
    let t = Instant::now();
    let n = query::eval::count(ds, &plan);
    let us = t.elapsed().as_micros();
    println!("{n}");
    eprintln!("counted in {us} µs over {} customers", ds.customers());
    if explain {
        eprint!("{}", query::explain::explain(ds, &plan).render());
    }
    Ok(())
}

/// `segd count --queries FILE`: runs each entry's `sql.duckdb` and compares with
/// `expected_count` for the loaded row count. Err on any mismatch.
pub fn count_file(ds: &Dataset, file: &PathBuf) -> Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let doc: serde_json::Value = serde_json::from_str(&text).context("parsing the query file")?;
    let queries = doc["queries"].as_array().context("the query file has no 'queries' array")?;
    let key = ds.rows().to_string();
    let (mut bad, mut checked) = (0, 0);
    for q in queries {
        let id = q["id"].as_str().unwrap_or("?");
        let sql = q["sql"]["duckdb"].as_str().with_context(|| format!("{id}: no sql.duckdb"))?;
        let plan = query::compile_sql(ds, sql, &Limits::default()).with_context(|| format!("{id}: {sql}"))?;
        let t = Instant::now();
        let n = query::eval::count(ds, &plan);
        let us = t.elapsed().as_micros();
        let expected = q["expected_count"][&key].as_u64();
        let verdict = match expected {
            Some(e) if e == n => {
                checked += 1;
                "ok".to_string()
            }
            Some(e) => {
                bad += 1;
                format!("MISMATCH expected {e}")
            }
            None => "no expected count for this row count".into(),
        };
        println!("{id}\t{n}\t{verdict}");
        eprintln!("{id}: {us} µs");
    }
    eprintln!("{checked} matched, {bad} mismatched, {} queries", queries.len());
    if bad > 0 {
        bail!("{bad} queries did not match expected_count");
    }
    Ok(())
}
