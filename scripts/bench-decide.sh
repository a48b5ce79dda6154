#!/usr/bin/env bash
# Next-best-offer: the four figures of issue 12 at ROWS customers (default 10M) with 200
# offers over 50 saved segments.
#  1. NextBestOffer over gRPC, 50 in flight on 2 connections (rate, p50/p99), logged
#     decisions: `segd serve --demo ROWS`, the 100 benchmark segments saved
#     (`segd loadgen --rpc create-segments`), 200 offers put over HTTP (POST /v1/offers),
#     each eligible on one of the first 50 segments (the demo's own 6 offers stay), then
#     `segd loadgen --rpc next-best-offer`.
#  2-4. In process (benches/decide.rs, the same catalogue shape): DecideForSegment over a
#     1M-member segment (decisions/s), ReachEstimate of one offer, RecordOutcome durable
#     (outcomes/s through the write-ahead log).
#
# Environment: ROWS (default 10000000), SECS (load duration, default 20), OUT (results dir,
# default bench-results/decide_<ROWS>). A smoke run: ROWS=20000 SECS=2 QUICK=1 (criterion
# in --quick mode too). Run on a quiet host: the figures mean nothing on a busy one.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROWS=${ROWS:-10000000}
SECS=${SECS:-20}
OUT=${OUT:-$ROOT/bench-results/decide_${ROWS}}
mkdir -p "$OUT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
cargo build --release --locked --bin segd
SEGD=$CARGO_TARGET_DIR/release/segd
GRPC=127.0.0.1:${GRPC_PORT:-50161}
HTTP=127.0.0.1:${HTTP_PORT:-18161}
DATA=$(mktemp -d)
"$SEGD" serve --demo "$ROWS" --data-dir "$DATA/d" --listen "$GRPC" --http-listen "$HTTP" >"$OUT/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true; rm -rf "$DATA"' EXIT

echo "== host: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, $(date -u +%F), $ROWS customers" | tee "$OUT/summary.md"
"$SEGD" loadgen --addr "http://$GRPC" --rpc health --wait-ready 600s -n 1 >/dev/null
"$SEGD" loadgen --addr "http://$GRPC" --rpc create-segments >"$OUT/segments.txt"
for i in $(seq 0 199); do
  seg=$(printf 's%03d' $((i % 50)))
  app=""
  [ $((i % 3)) = 1 ] && app=", \"applicability\": {\"where\": \"age >= $((18 + i % 40))\"}"
  if [ $((i % 2)) = 0 ]; then value="\"valueConstant\": $((i + 1))"; else value='"valueAttribute": {"attribute": "avg_basket_eur", "factor": 0.1}'; fi
  case $((i % 10)) in
    0) prop='"propensityAdaptive": {}' ;;
    1|2|3|4) prop='"propensityAttribute": "churn_risk"' ;;
    *) prop="\"propensityConstant\": 0.$((1 + i % 7))" ;;
  esac
  extra=""
  [ $((i % 4)) = 0 ] && extra="$extra, \"holdoutPct\": 5"
  [ $((i % 5)) = 0 ] && extra="$extra, \"cap\": {\"max\": 2, \"windowMs\": \"604800000\"}"
  [ $((i % 8)) = 0 ] && extra="$extra, \"budget\": \"1000000\""
  body="{\"offer\": {\"id\": \"b$(printf '%03d' "$i")\", \"channels\": [\"web\", \"email\"], \"eligibility\": {\"segment_id\": \"$seg\"}$app, $value, $prop$extra}}"
  curl -sf "http://$HTTP/v1/offers" -d "$body" >/dev/null || { echo "PutOffer b$i failed: $body" >&2; curl -s "http://$HTTP/v1/offers" -d "$body" >&2; exit 1; }
done
echo "offers: $(curl -sf "http://$HTTP/v1/offers" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["offers"]))')" | tee -a "$OUT/summary.md"

echo "== 1. NextBestOffer over gRPC (logged), 50 in flight, 2 connections, ${SECS}s" | tee -a "$OUT/summary.md"
"$SEGD" loadgen --addr "http://$GRPC" --rpc next-best-offer -c 50 --connections 2 --ids "1..$ROWS" \
  --warmup 1000 -z "${SECS}s" --json >"$OUT/nbo.json"
python3 - "$OUT/nbo.json" <<'PY' | tee -a "$OUT/summary.md"
import json, sys
r = json.load(open(sys.argv[1]))
lat = r.get("latency_ms") or r.get("latency") or {}
print(f"requests {r.get('requests')}, errors {r.get('errors')}, rate {r.get('rate_per_s', r.get('rps'))}/s, latency {lat}")
PY
kill $SERVER 2>/dev/null || true
wait $SERVER 2>/dev/null || true

echo "== 2-4. in process: cargo bench --bench decide" | tee -a "$OUT/summary.md"
QUICK_ARGS=()
[ -n "${QUICK:-}" ] && QUICK_ARGS=(--quick)
SEGD_BENCH_ROWS=$ROWS cargo bench --locked --bench decide -- --noplot "${QUICK_ARGS[@]}" 2>&1 | tee "$OUT/bench.txt" \
  | grep -E '^(next_best_offer|decide_for_segment|reach_estimate|record_outcome)|time:|thrpt:' | tee -a "$OUT/summary.md"
