#!/usr/bin/env python3
"""Prints the in-process criterion medians of `cargo bench --bench segments` as a
markdown table beside the benchmark kit's peer figures (10M rows), with ratios.

    python3 scripts/bench-table.py [CRITERION_DIR]   # default target/criterion
"""
import json
import os
import sys

# Median ms for one count at 10M rows, from ../shared/bench/README.md (same machine kind).
PEERS = {  # id: (DuckDB, Polars, pyroaring)
    "q01_eq_gender": (81, 11.4, 0.0007), "q02_in_country": (129, 77, 0.57),
    "q03_range_age": (12.9, 1.7, 3.5), "q04_range_spend": (18.5, 6.8, 0.19),
    "q05_not": (95, 11.8, 0.12), "q06_or": (199, 156, 5.3), "q07_nested": (237, 77, 7.9),
    "q08_list_category": (316, 220, 0.0005), "q09_list_badge_not_cat": (352, 334, 0.74),
    "q10_null_never_purchased": (12.3, 1.9, 2.5), "q11_city_in25": (166, 54, 1.3),
    "q12_campaign": (337, 618, 13.4), "q13_lapsed_high_value": (17.4, 9.0, 18.1),
    "q14_city_eq_rare": (68, 10.5, 0.0005),
}


def median_ms(d):
    with open(os.path.join(d, "new", "estimates.json")) as f:
        return json.load(f)["median"]["point_estimate"] / 1e6


def fmt(ms):
    return f"{ms * 1000:.3g} µs" if ms < 1 else f"{ms:.3g} ms"


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "target/criterion"
    group = os.path.join(root, "count_10000000", "count")
    print("| query | segd p50 | DuckDB | Polars | pyroaring | DuckDB / segd | Polars / segd | pyroaring / segd |")
    print("|---|---|---|---|---|---|---|---|")
    for q, (duck, polars, pyr) in PEERS.items():
        ms = median_ms(os.path.join(group, q))
        r = lambda p: f"{p / ms:,.0f}x" if p / ms >= 10 else f"{p / ms:.2g}x"
        print(f"| {q} | {fmt(ms)} | {duck} ms | {polars} ms | {pyr} ms | {r(duck)} | {r(polars)} | {r(pyr)} |")


if __name__ == "__main__":
    main()
