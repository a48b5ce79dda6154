#!/usr/bin/env bash
# Leaderboard reads: segd's board (benches/leaderboard.rs, in process) beside Redis sorted
# sets (../shared/bench/redis_leaderboard.py: ZREVRANGE 0 99, ZREVRANK, around-me, and
# ZINTERSTORE with the segment's set for the scoped top 100), in one run, on the same
# scores (loyalty_points) and the same 10% segment (country = 'DE' AND age < 40).
#
# Redis is timed from its Python client over loopback (one round trip per call, ~50 µs of
# it client and network); segd in process (no RPC). Both are printed with that label.
#
# Environment: ROWS (default 10000000; bench-data/customers_<ROWS>.parquet must exist, see
# ../shared/bench/gen.py), SEGD_SHARED (the kit's parent, default ../shared), REDIS_N
# (calls per Redis figure, default 200).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROWS=${ROWS:-10000000}
SHARED=${SEGD_SHARED:-$ROOT/../shared}
OUT=$ROOT/bench-results/leaderboard_${ROWS}
mkdir -p "$OUT"
[ -f "$ROOT/bench-data/customers_${ROWS}.parquet" ] || { echo "bench-data/customers_${ROWS}.parquet missing: run $SHARED/bench/gen.py --rows $ROWS" >&2; exit 1; }

command -v redis-server >/dev/null || { SUDO=$([ "$(id -u)" = 0 ] || echo sudo); $SUDO apt-get install -y -qq redis-server >/dev/null; }
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import redis, pyarrow, numpy' 2>/dev/null; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet -r "$SHARED/bench/requirements.txt" redis==8.1.0
fi

redis-server --port 63799 --save "" --appendonly no --daemonize no >"$OUT/redis-server.log" 2>&1 &
REDIS=$!
trap 'kill $REDIS 2>/dev/null || true' EXIT
for _ in $(seq 50); do redis-cli -p 63799 ping >/dev/null 2>&1 && break; sleep 0.1; done

echo "== host: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, $(date -u +%F)" | tee "$OUT/summary.md"
(cd "$ROOT" && BENCH_DATA="$ROOT/bench-data" .venv/bin/python "$SHARED/bench/redis_leaderboard.py" --rows "$ROWS" -n "${REDIS_N:-200}") | tee -a "$OUT/summary.md"
kill $REDIS 2>/dev/null || true
SEGD_BENCH_ROWS=$ROWS cargo bench --locked --bench leaderboard -- --noplot 2>&1 | tee "$OUT/segd.txt" \
  | grep -E '^leaderboard|time:|board of|segment' | tee -a "$OUT/summary.md"
