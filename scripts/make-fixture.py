#!/usr/bin/env python3
"""Regenerates the test fixture in tests/fixtures/ from the benchmark kit.

    python3 -m venv .venv && .venv/bin/pip install -r ../shared/bench/requirements.txt
    .venv/bin/python scripts/make-fixture.py            # kit at ../shared/bench (or --kit DIR)

Writes
  tests/fixtures/customers_50000.parquet  the kit's table (gen.py --rows 50000, default seed)
      plus four columns derived from it, so dates, timestamps, a nullable string and a
      nullable list can be tested too (zstd, one row group);
  tests/fixtures/queries_50000.json       the kit's 14 queries and the harder ones below, in
      the format of the kit's queries.json, each with `expected_count` {"50000": n}: the
      count DuckDB returns for `SELECT count(*) FROM customers WHERE <sql.duckdb>` over
      that very file.

The kit's own expected counts are checked first (its 100k table, counted the same way, must
give its queries.json figures), so the counts here come from the kit's generator and DuckDB,
never from segd.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROWS = 50_000
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(ROOT, "tests", "fixtures")
TABLE = f"customers_{ROWS}.parquet"
QUERIES = f"queries_{ROWS}.json"
# The day the derived dates count back from (signup_days_ago = 0 is this day).
EPOCH_DAY = np.datetime64("2026-01-01", "D")

DERIVED = {
    "signup_date": "date32: 2026-01-01 minus signup_days_ago days",
    "last_purchase_at": "timestamp[us], NULL when last_purchase_days_ago is NULL: 2026-01-01 00:00 "
    "minus last_purchase_days_ago days, plus (customer_id * 7919 mod 86400000) ms",
    "favourite_category": "string, the first of categories_bought, NULL when that list is empty",
    "app_badges": "list<string>, NULL when app_sessions_30d = 0, else badges (may be empty)",
}

# (id, SQL). Each is a WHERE clause both DuckDB and segd accept; the comment is the point.
HARDER = [
    # Three-valued logic around a nullable integer column.
    ("h01_not_ge_null", "NOT (last_purchase_days_ago >= 180)"),  # NOT UNKNOWN is UNKNOWN
    ("h02_not_in_with_null", "last_purchase_days_ago NOT IN (1, NULL)"),  # never TRUE
    ("h03_in_with_null", "last_purchase_days_ago IN (1, NULL)"),
    ("h04_not_in_with_null_nonnull_col", "age NOT IN (1, NULL)"),
    ("h05_not_of_or_unknown", "NOT (last_purchase_days_ago > 100 OR email_opt_in)"),
    ("h06_not_of_and_unknown", "NOT (last_purchase_days_ago > 100 AND email_opt_in)"),
    ("h07_is_null_or_ge", "last_purchase_days_ago IS NULL OR last_purchase_days_ago >= 180"),
    ("h08_not_null_not_between",
     "last_purchase_days_ago IS NOT NULL AND NOT (last_purchase_days_ago BETWEEN 30 AND 90)"),
    ("h09_ne_null_col", "last_purchase_days_ago <> 30"),
    ("h10_null_constants", "NULL OR age < 20"),
    ("h11_not_null_and", "NOT (NULL AND email_opt_in)"),
    # Lists: a NULL list is not an empty list.
    ("h12_not_contains_null_vs_empty", "NOT list_contains(app_badges, 'vip')"),
    ("h13_contains_or_null_list", "list_contains(app_badges, 'welcome') OR app_badges IS NULL"),
    # `= ANY(list)` only on a non-NULL list: DuckDB reads it as a subquery over the unnested
    # list, FALSE for a NULL list, where segd (like PostgreSQL's arrays) answers UNKNOWN.
    ("h14_any_not", "'vip' = ANY(badges) OR NOT ('welcome' = ANY(badges))"),
    # Strings with NULLs.
    ("h15_str_ne_null", "favourite_category <> 'fashion'"),
    ("h16_str_not_eq_or_null", "NOT (favourite_category = 'fashion') OR favourite_category IS NULL"),
    ("h17_str_byte_order", "favourite_category < 'c' OR favourite_category >= 'sports'"),
    # Floats at their boundaries.
    ("h18_float_zero", "total_spend_eur = 0 AND avg_basket_eur <= -0.0"),
    ("h19_float_cents_edge", "total_spend_eur >= 1234.56 AND total_spend_eur < 5000"),
    ("h20_float_empty_range", "churn_risk > 0.5 AND churn_risk <= 0.5"),
    ("h21_float_neighbourhood", "avg_basket_eur > 44.99 AND avg_basket_eur <= 45.01 OR churn_risk < 0.01"),
    # Dates and timestamps.
    ("h22_date_ge", "signup_date >= '2025-01-01' AND signup_date <> DATE '2025-06-30'"),
    ("h23_date_between_leap", "signup_date BETWEEN '2024-02-28' AND '2024-03-01'"),
    ("h24_date_vs_timestamp_literal", "signup_date > '2025-06-30 12:00:00'"),  # literal cast to DATE
    ("h25_ts_lt", "last_purchase_at < '2025-12-01 12:00:00'"),
    ("h26_ts_not_ge_date_literal", "NOT (last_purchase_at >= '2025-06-01')"),
    ("h27_ts_between_fraction",
     "last_purchase_at BETWEEN TIMESTAMP '2025-12-24 18:30:00' AND '2025-12-25 06:00:00.5'"),
    # Integers against fractional and out-of-range literals.
    ("h28_int_gt_fraction", "age > 30.5 AND age <= 40.0"),
    ("h29_int_eq_fraction", "age = 30.5 OR level = 20.0"),
    ("h30_int_between_fractions", "age BETWEEN 24.5 AND 30.5 AND last_purchase_days_ago < 29.999"),
    ("h31_int_out_of_range", "age = 300 OR age < -1 OR level >= -128 AND customer_id > 49999.5"),
    ("h32_reversed_operands", "10 < age AND 20 >= level AND 0.5 <= churn_risk"),
    # BETWEEN with reversed bounds: empty, and its negation is everything non-NULL.
    ("h33_between_reversed", "age BETWEEN 34 AND 25 OR level BETWEEN 10 AND 10"),
    ("h34_not_between_reversed", "last_purchase_days_ago NOT BETWEEN 90 AND 30"),
    # Long IN lists.
    ("h35_in_1000_ints", "loyalty_points IN ({})".format(", ".join(str(7 * i) for i in range(1000)))),
    ("h36_not_in_cities",
     "city NOT IN ({})".format(", ".join(f"'{cc}-{j:03d}'" for cc in ("DE", "FR", "GB", "IT") for j in range(1, 76)))),
    ("h37_not_in_ages", "age NOT IN ({}) AND customer_id IN (1, 2, 3, 50000, 50001, 0)".format(
        ", ".join(str(a) for a in range(18, 41)))),
    # Deep AND / OR / NOT nesting, booleans as values.
    ("h38_deep_nesting",
     "NOT (NOT (NOT (age < 30 AND (email_opt_in OR NOT push_opt_in))) OR (country = 'DE' AND "
     "NOT (tier IN ('GOLD', 'PLATINUM') OR last_purchase_days_ago > 365 OR (NOT (level < 5) AND "
     "NOT (favourite_category = 'books' OR list_contains(app_badges, 'reviewer')))))) AND "
     "(gender <> 'unknown' OR NOT (signup_date < '2020-01-01' AND last_purchase_at IS NULL))"),
    ("h39_bool_literals", "email_opt_in = FALSE AND push_opt_in IS TRUE AND TRUE AND NOT FALSE"),
]


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def gen(kit, rows, out):
    subprocess.run([sys.executable, os.path.join(kit, "gen.py"), "--rows", str(rows), "--out", out, "--force"],
                   check=True, stdout=subprocess.DEVNULL)


def counts(path, sqls):
    con = duckdb.connect()
    con.execute(f"CREATE VIEW customers AS SELECT * FROM read_parquet('{path}')")
    return [con.execute(f"SELECT count(*) FROM customers WHERE {s}").fetchone()[0] for s in sqls]


def derive(t):
    """The kit's table plus the DERIVED columns."""
    signup = t["signup_days_ago"].to_numpy().astype("int64")
    signup_date = pa.array((EPOCH_DAY - signup.astype("timedelta64[D]")).astype("datetime64[D]"), pa.date32())
    last = t["last_purchase_days_ago"]
    ids = t["customer_id"].to_numpy().astype("int64")
    ms = (ids * 7919) % 86_400_000
    days = last.fill_null(0).to_numpy().astype("int64")
    at = (EPOCH_DAY.astype("datetime64[ms]") - days.astype("timedelta64[D]") + ms.astype("timedelta64[ms]"))
    last_purchase_at = pa.array(at.astype("datetime64[us]"), pa.timestamp("us"), mask=last.is_null().to_numpy(False))
    cats = t["categories_bought"].combine_chunks()
    firsts = [c[0] if c else None for c in cats.to_pylist()]
    favourite = pa.array(firsts, pa.string())
    item = pa.list_(pa.field("item", pa.string(), nullable=False))
    no_app = (t["app_sessions_30d"].to_numpy() == 0)
    app_badges = pa.array([None if n else b for n, b in zip(no_app, t["badges"].to_pylist())], item)
    for name, col, nullable in [("signup_date", signup_date, False), ("last_purchase_at", last_purchase_at, True),
                                ("favourite_category", favourite, True), ("app_badges", app_badges, True)]:
        t = t.append_column(pa.field(name, col.type, nullable=nullable), col)
    return t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kit", default=os.path.join(ROOT, "..", "shared", "bench"), help="the benchmark kit's folder")
    a = ap.parse_args()
    kit = os.path.abspath(a.kit)
    with open(os.path.join(kit, "queries.json")) as f:
        kit_doc = json.load(f)
    kit_queries = kit_doc["queries"]

    with tempfile.TemporaryDirectory() as tmp:
        # The procedure reproduces the kit's own figures at 100k, or nothing is written.
        p100k = os.path.join(tmp, "kit_100000.parquet")
        gen(kit, 100_000, p100k)
        got = counts(p100k, [q["sql"]["duckdb"] for q in kit_queries])
        want = [q["expected_count"]["100000"] for q in kit_queries]
        if got != want:
            sys.exit(f"the kit's 100k counts are not reproduced: {got} != {want}")

        kit_table = os.path.join(tmp, f"kit_{ROWS}.parquet")
        gen(kit, ROWS, kit_table)
        t = derive(pq.read_table(kit_table))

    os.makedirs(OUT_DIR, exist_ok=True)
    table_path = os.path.join(OUT_DIR, TABLE)
    pq.write_table(t, table_path, compression="zstd", compression_level=19, row_group_size=ROWS)

    entries = []
    for q in kit_queries:
        entries.append({"id": q["id"], "kind": q["kind"], "sql": {"duckdb": q["sql"]["duckdb"]}, "ast": q["ast"]})
    for qid, s in HARDER:
        entries.append({"id": qid, "kind": "harder", "sql": {"duckdb": s}})
    for e, n in zip(entries, counts(table_path, [e["sql"]["duckdb"] for e in entries])):
        e["expected_count"] = {str(ROWS): n}

    doc = {
        "description": "segd's test fixture: expected_count is DuckDB's count(*) for each sql.duckdb over "
        f"tests/fixtures/{TABLE}; these counts belong to that table only (not to the kit's 100k/1M/10M "
        "tables, not to `segd gen` or the demo table). Regenerate with scripts/make-fixture.py.",
        "table": {
            "file": f"tests/fixtures/{TABLE}",
            "rows": ROWS,
            "sha256": sha256(table_path),
            "generator": f"../shared/bench/gen.py --rows {ROWS} (seed 20240601), then the derived columns",
            "generator_sha256": sha256(os.path.join(kit, "gen.py")),
            "derived_columns": DERIVED,
            "versions": {"duckdb": duckdb.__version__, "pyarrow": pa.__version__, "numpy": np.__version__},
        },
        "queries": entries,
    }
    with open(os.path.join(OUT_DIR, QUERIES), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    size = os.path.getsize(table_path)
    print(f"wrote {table_path} ({size / 2**20:.2f} MiB) and {QUERIES} ({len(entries)} queries)")


if __name__ == "__main__":
    main()
