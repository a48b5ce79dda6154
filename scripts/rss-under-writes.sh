#!/usr/bin/env bash
# Issue 13, item 6: RSS of `segd serve` under 10 minutes of durable upserts into the 10M
# table with the 100 saved segments (batches of 10,000, 4 in flight, --sync always), sampled
# from /proc every 30 s, then twice while idle. Outputs in bench-results/rss_under_writes_<ROWS>/.
# Environment: SEGD_BIN (default target/release/segd), ROWS (default 10000000; the kit's
# bench-data/customers_<ROWS>.parquet), SECS (default 600), PORT (default 50095), IDS (the
# upserted ids, default 1..ROWS: every 64 Ki-row chunk; a narrow range such as 1..655360
# touches 10 chunks, which tells per-group chunk copies from other memory), TAG (a suffix of
# the output directory), EXTRA (more `segd serve` flags).
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
B=${SEGD_BIN:-$ROOT/target/release/segd}
ROWS=${ROWS:-10000000}
SECS=${SECS:-600}
PORT=${PORT:-50095}
A=http://127.0.0.1:$PORT
D=$(mktemp -d /tmp/segd-rss.XXXXXX)
IDS=${IDS:-1..$ROWS}
OUT=$ROOT/bench-results/rss_under_writes_$ROWS${TAG:-}
mkdir -p "$OUT"
"$B" serve --data "$ROOT/bench-data/customers_$ROWS.parquet" --data-dir "$D/d" --listen "127.0.0.1:$PORT" \
  --http-listen off --no-count-cache ${EXTRA:-} >"$OUT/serve.log" 2>&1 &
P=$!
trap 'kill $P 2>/dev/null; wait $P 2>/dev/null; rm -rf "$D"' EXIT
until "$B" loadgen --addr "$A" --rpc health -n 1 --wait-ready 1s --json >/dev/null 2>&1; do sleep 1; done
"$B" loadgen --addr "$A" --rpc create-segments >"$OUT/segments.txt" 2>&1
rss() { awk '/VmRSS/{print int($2/1024)}' /proc/$P/status; }
hwm() { awk '/VmHWM/{print int($2/1024)}' /proc/$P/status; }
echo "t=0 rss_mib=$(rss) (after import + 100 segments)" | tee "$OUT/rss.txt"
"$B" loadgen --addr "$A" --rpc upsert --ids "$IDS" --batch-size 10000 -c 4 -z "${SECS}s" --json \
  >"$OUT/upsert.json" 2>"$OUT/upsert.err" &
L=$!
for i in $(seq 1 $((SECS / 30))); do sleep 30; echo "t=$((i * 30)) rss_mib=$(rss) hwm_mib=$(hwm)" | tee -a "$OUT/rss.txt"; done
wait $L
for i in 1 2; do sleep 30; echo "idle +$((i * 30))s rss_mib=$(rss) hwm_mib=$(hwm)" | tee -a "$OUT/rss.txt"; done
python3 -c "import json; d=json.load(open('$OUT/upsert.json')); print('upsert rps', d['rps'], 'customers/s', d['rps']*10000, 'errors', d['errors'], 'p99_us', d['latency']['p99_us'])" | tee -a "$OUT/rss.txt"
