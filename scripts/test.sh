#!/usr/bin/env bash
# The one test command (README): fmt, clippy and every test. Needs only Rust: the oracle
# tests read the committed fixture in tests/fixtures/ (DuckDB's counts over a 50k table
# from the benchmark kit; scripts/make-fixture.py regenerates it). The kit in ../shared is
# for the 1M / 10M benchmarks only. Safe to run again; CI runs it as .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --check
cargo clippy --release --all-targets --locked -- -D warnings
cargo test --release --locked
