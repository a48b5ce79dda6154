#!/usr/bin/env bash
# The one test command (README): sets up what a fresh machine lacks, then runs the checks
# and the whole test suite. Safe to run again; CI runs it as .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SHARED=${SEGD_SHARED:-$ROOT/../shared}

# Python venv with the benchmark kit's pinned numpy/pyarrow/duckdb, and its 100k table:
# the tests compare segment counts with DuckDB's exact answers in queries.json.
if [ -f "$SHARED/bench/gen.py" ]; then
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check -r "$SHARED/bench/requirements.txt"
  fi
  BENCH_DATA="$ROOT/bench-data" .venv/bin/python "$SHARED/bench/gen.py" --size 100k
  export SEGD_BENCH_DATA="$ROOT/bench-data"
  export SEGD_QUERIES="$SHARED/bench/queries.json"
elif [ "${CI:-}" = "true" ]; then
  echo "error: $SHARED/bench is missing; CI needs the benchmark kit" >&2
  exit 1
else
  echo "note: $SHARED/bench not found: DuckDB-oracle tests will skip" >&2
fi

cargo fmt --check
cargo clippy --release --all-targets --locked -- -D warnings
cargo test --release --locked
