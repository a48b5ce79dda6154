#!/usr/bin/env bash
# The gRPC benchmark of issue 4, end to end, everything on 127.0.0.1:
#   (a) CountSegment for each of q01-q14, one at a time (server started --no-count-cache);
#   (b) IsMember unary at 50 in flight for 10 s (q01, q12; random ids in 1..ROWS);
#   (c) BatchIsMember of 10,000 random ids, one at a time (q01, q12);
#   (d) Redis 7 GETBIT with redis-benchmark -c 50 on a bitmap of q01 over the same ids;
#   plus segd's startup time to SERVING and its RSS before and after the load.
# Raw outputs go to bench-results/grpc_${ROWS}/, the summary table to its summary.md and
# stdout. Every process the script starts is stopped on exit.
#
# Environment: ROWS (default 10000000), SEGD_BENCH_PORT (segd's port, default 50061, so
# a server already on 50051 is left alone), REDIS_PORT (default 6390), SEGD_BIN (use this
# binary instead of building), WAIT_QUIET (seconds to wait for other cargo / rustc
# processes to finish before measuring, default 600; PHASE_WAIT, default 120, before each
# run), SEGD_SHARED (the benchmark kit's
# parent, default ../shared).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROWS=${ROWS:-10000000}
PORT=${SEGD_BENCH_PORT:-50061}
REDIS_PORT=${REDIS_PORT:-6390}
WAIT_QUIET=${WAIT_QUIET:-600}
PHASE_WAIT=${PHASE_WAIT:-120}
SHARED=${SEGD_SHARED:-$ROOT/../shared}
QUERIES=$SHARED/bench/queries.json
DATA=$ROOT/bench-data/customers_${ROWS}.parquet
OUT=$ROOT/bench-results/grpc_${ROWS}
HOST=127.0.0.1
ADDR=http://$HOST:$PORT
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.txt "$OUT"/*.csv "$OUT"/*.log "$OUT"/summary.md

SEGD_PID='' REDIS_PID=''
cleanup() {
  local rc=$?
  if [ -n "$REDIS_PID" ] && kill -0 "$REDIS_PID" 2>/dev/null; then
    kill "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
  fi
  if [ -n "$SEGD_PID" ] && kill -0 "$SEGD_PID" 2>/dev/null; then
    kill -TERM "$SEGD_PID" 2>/dev/null || true
    wait "$SEGD_PID" 2>/dev/null || true
  fi
  rm -f "${BITMAP:-}"
  [ -n "${DATA_DIR:-}" ] && rm -rf "$DATA_DIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "[bench-grpc $(date +%T)] $*" >&2; }
# Other builds running (they distort latencies on a 2-core machine). pgrep -x patterns
# longer than 15 characters warn, so two calls.
others() { pgrep -a -x 'cargo|rustc' || true; pgrep -a -x clippy-driver || true; }
# Before each measured run: wait up to PHASE_WAIT seconds (5 s steps) for other builds
# to finish, and note in contention.txt how many there were before and after the run.
quiet() {
  local w=0
  while [ -n "$(others)" ] && [ "$w" -lt "$PHASE_WAIT" ]; do sleep 5; w=$((w + 5)); done
  BEFORE=$(others | wc -l)
  [ "$w" -eq 0 ] || log "waited $w s for other builds"
}
noted() { echo "$1: other builds before $BEFORE, after $(others | wc -l); loadavg $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/contention.txt"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

# --- build, data, tools -------------------------------------------------------------------
if [ -n "${SEGD_BIN:-}" ]; then
  BIN=$SEGD_BIN
else
  log "cargo build --release"
  cargo build --release --quiet
  BIN=$ROOT/target/release/segd
fi
[ -f "$QUERIES" ] || { echo "error: $QUERIES not found (set SEGD_SHARED)" >&2; exit 1; }
if [ ! -f "$DATA" ]; then
  log "generating $DATA"
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check -r "$SHARED/bench/requirements.txt"
  fi
  BENCH_DATA=$ROOT/bench-data .venv/bin/python "$SHARED/bench/gen.py" --rows "$ROWS"
fi
if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
  log "installing redis-server redis-tools"
  apt-get update -qq
  apt-get install -y -qq redis-server redis-tools >/dev/null
fi
for p in "$PORT" "$REDIS_PORT"; do
  if (exec 3<>"/dev/tcp/$HOST/$p") 2>/dev/null; then
    echo "error: something already listens on $HOST:$p" >&2
    exit 1
  fi
done

# --- a quiet machine ----------------------------------------------------------------------
waited=0
while [ -n "$(others)" ] && [ "$waited" -lt "$WAIT_QUIET" ]; do
  log "other cargo/rustc processes running; waiting 30 s ($waited s so far)"
  sleep 30
  waited=$((waited + 30))
done
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host: $(uname -srm), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "segd: $BIN ($("$BIN" --version)), git $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' + uncommitted changes')"
  echo "redis: $(redis-server --version)"
  echo "data: $DATA ($ROWS rows)"
  echo "waited for other builds: ${waited} s"
  echo "other cargo/rustc processes at start: $(others | wc -l)"
  others | cut -c1-160 | sed 's/^/  /'
  echo "loadavg at start: $(cat /proc/loadavg)"
} > "$OUT/env.txt"
cat "$OUT/env.txt" >&2

# --- segd ---------------------------------------------------------------------------------
log "starting segd serve on $HOST:$PORT"
t0=$(date +%s.%N)
# A fresh data dir each run: the table is imported from $DATA, never an old snapshot.
DATA_DIR=$(mktemp -d /tmp/segd-bench-grpc.XXXXXX)
"$BIN" serve --data "$DATA" --data-dir "$DATA_DIR" --no-count-cache --listen "$HOST:$PORT" > "$OUT/serve.log" 2>&1 &
SEGD_PID=$!
until "$BIN" loadgen --addr "$ADDR" --rpc health -n 1 --wait-ready 1s --json > "$OUT/health.json" 2>/dev/null; do
  kill -0 "$SEGD_PID" 2>/dev/null || { echo "error: segd serve exited; see $OUT/serve.log" >&2; exit 1; }
done
t1=$(date +%s.%N)
STARTUP=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
RSS_IDLE=$(rss_kib "$SEGD_PID")
log "SERVING after ${STARTUP} s, RSS $((RSS_IDLE / 1024)) MiB"

LG=("$BIN" loadgen --addr "$ADDR" --queries "$QUERIES" --json)
# lg OUT.json ARGS...: one loadgen run, its JSON report annotated with the CPU seconds
# segd used meanwhile (server_cpu_s). loadgen exits 2 when some requests failed: keep
# going, the table shows the errors.
cpu_s() { awk '{ sub(/.*\) /, ""); printf "%.2f", ($12 + $13) / 100 }' "/proc/$1/stat"; }
lg() {
  local out=$1 before after
  shift
  quiet
  before=$(cpu_s "$SEGD_PID")
  "${LG[@]}" "$@" > "$out.tmp" || [ $? -eq 2 ]
  after=$(cpu_s "$SEGD_PID")
  jq --argjson s "$(awk -v a="$before" -v b="$after" 'BEGIN { printf "%.2f", b - a }')" \
    --arg o "$BEFORE/$(others | wc -l)" '. + {server_cpu_s: $s, other_builds: $o}' "$out.tmp" > "$out"
  rm -f "$out.tmp"
  noted "$(basename "$out" .json)"
}
QIDS=$(jq -r '.queries[].id' "$QUERIES")

# (a) CountSegment, each query alone, concurrency 1
for q in $QIDS; do
  log "CountSegment $q"
  lg "$OUT/count_$q.json" --rpc count --query-id "$q" -c 1 -n 300 --warmup 20
done

# (b) IsMember, 50 in flight, 10 s
for q in q01_eq_gender q12_campaign; do
  log "IsMember $q, -c 50, 10 s"
  lg "$OUT/ismember_$q.json" --rpc is-member --query-id "$q" --ids "1..$ROWS" -c 50 -z 10s \
    --warmup 2000
done

# (c) BatchIsMember of 10,000 ids, concurrency 1
for q in q01_eq_gender q12_campaign; do
  log "BatchIsMember $q, 10,000 ids"
  lg "$OUT/batch_$q.json" --rpc batch-is-member --query-id "$q" --ids "1..$ROWS" \
    --batch-size 10000 -c 1 -n 200 --warmup 10
done
RSS_LOAD=$(rss_kib "$SEGD_PID")
HWM=$(hwm_kib "$SEGD_PID")
echo "others after segd runs: $(others | wc -l); loadavg $(cat /proc/loadavg)" >> "$OUT/env.txt"

# --- Redis --------------------------------------------------------------------------------
log "starting redis-server on $HOST:$REDIS_PORT"
redis-server --port "$REDIS_PORT" --bind "$HOST" --save '' --appendonly no > "$OUT/redis.log" 2>&1 &
REDIS_PID=$!
RCLI=(redis-cli -h "$HOST" -p "$REDIS_PORT")
for _ in $(seq 100); do "${RCLI[@]}" ping >/dev/null 2>&1 && break; sleep 0.1; done
# The q01 segment (gender = 'F') as a bitmap of ROWS bits, bit i = customer id i
# (Redis bit order: offset 0 is the high bit of byte 0).
BITMAP=$(mktemp /tmp/segd-bench-bitmap.XXXXXX)
.venv/bin/python - "$DATA" "$ROWS" "$BITMAP" <<'PY'
import sys, duckdb, numpy as np
data, rows, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ids = duckdb.sql(f"SELECT customer_id FROM read_parquet('{data}') WHERE gender = 'F'").fetchnumpy()["customer_id"]
bits = np.zeros(rows + 1, dtype=np.uint8)
bits[ids.astype(np.int64)] = 1
open(out, "wb").write(np.packbits(bits, bitorder="big").tobytes())
PY
"${RCLI[@]}" -x SET seg < "$BITMAP" > /dev/null
BITCOUNT=$("${RCLI[@]}" BITCOUNT seg)
EXPECTED=$(jq -r --arg n "$ROWS" '.queries[] | select(.id == "q01_eq_gender") | .expected_count[$n] // "?"' "$QUERIES")
echo "bitmap of $("${RCLI[@]}" STRLEN seg) bytes, BITCOUNT $BITCOUNT (q01 expected_count $EXPECTED)" > "$OUT/redis_bitmap.txt"
OFFSET=$((ROWS / 2 + 1))
# redis-benchmark's __rand_int__ is zero-padded to 12 digits and GETBIT rejects leading
# zeros ("bit offset is not an integer"), so random offsets need a Lua wrapper
# (tonumber); the plain GETBIT figure uses one offset (GETBIT is O(1) either way, and
# the 1.25 MB bitmap stays in cache).
log "redis-benchmark GETBIT seg $OFFSET, -c 50 -n 500000"
quiet
redis-benchmark -h "$HOST" -p "$REDIS_PORT" -c 50 -n 500000 --csv GETBIT seg "$OFFSET" > "$OUT/redis_getbit.csv"
noted redis_getbit
R1_OTHERS="$BEFORE/$(others | wc -l)"
SHA=$("${RCLI[@]}" SCRIPT LOAD "return redis.call('GETBIT', KEYS[1], tonumber(ARGV[1]))")
log "redis-benchmark EVALSHA GETBIT random offsets, -c 50 -n 500000"
quiet
redis-benchmark -h "$HOST" -p "$REDIS_PORT" -c 50 -n 500000 -r "$((ROWS + 1))" --csv \
  EVALSHA "$SHA" 1 seg __rand_int__ > "$OUT/redis_getbit_random_lua.csv"
noted redis_getbit_random_lua
R2_OTHERS="$BEFORE/$(others | wc -l)"
"${RCLI[@]}" INFO errorstats > "$OUT/redis_errorstats.txt"
REDIS_ERRORS=$(grep -c '^errorstat' "$OUT/redis_errorstats.txt" || true)
"${RCLI[@]}" INFO commandstats | grep -E 'getbit|evalsha' > "$OUT/redis_commandstats.txt" || true
kill "$REDIS_PID"; wait "$REDIS_PID" 2>/dev/null || true; REDIS_PID=''
kill -TERM "$SEGD_PID"; wait "$SEGD_PID" 2>/dev/null || true; SEGD_PID=''
echo "others at end: $(others | wc -l); loadavg $(cat /proc/loadavg)" >> "$OUT/env.txt"

# --- summary ------------------------------------------------------------------------------
csv() { tail -1 "$1" | tr -d '"' | cut -d, -f"$2"; }
{
  echo "## segd gRPC benchmark, $ROWS rows, $(date -u +%Y-%m-%d), $(nproc) CPUs, client and server on 127.0.0.1"
  echo
  echo "segd serve --no-count-cache: SERVING after ${STARTUP} s; RSS $((RSS_IDLE / 1024)) MiB idle, $((RSS_LOAD / 1024)) MiB after load (peak $((HWM / 1024)) MiB)."
  echo
  echo "| call | segment | conc. | requests | errors | rps | p50 ms | p90 ms | p99 ms | max ms | CPU cores client / server | other builds before/after |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
  for f in "$OUT"/count_*.json "$OUT"/ismember_*.json "$OUT"/batch_*.json; do
    jq -r '[(.rpc | sub(".*/"; "")), (.segments | join(",")), .concurrency, .requests, .errors, .rps,
      (.latency.p50_us, .latency.p90_us, .latency.p99_us, .latency.max_us | . / 1000 | . * 1000 | round / 1000),
      ("\(.client_cpu_s / .elapsed_s * 100 | round / 100) / \(.server_cpu_s / .elapsed_s * 100 | round / 100)"),
      .other_builds]
      | "| " + (map(tostring) | join(" | ")) + " |"' "$f"
  done
  echo "| Redis GETBIT (one offset) | q01 bitmap | 50 | 500000 | - | $(csv "$OUT/redis_getbit.csv" 2) | $(csv "$OUT/redis_getbit.csv" 5) | - | $(csv "$OUT/redis_getbit.csv" 7) | $(csv "$OUT/redis_getbit.csv" 8) | - | $R1_OTHERS |"
  echo "| Redis EVALSHA GETBIT (random) | q01 bitmap | 50 | 500000 | - | $(csv "$OUT/redis_getbit_random_lua.csv" 2) | $(csv "$OUT/redis_getbit_random_lua.csv" 5) | - | $(csv "$OUT/redis_getbit_random_lua.csv" 7) | $(csv "$OUT/redis_getbit_random_lua.csv" 8) | - | $R2_OTHERS |"
  echo
  echo "Redis: $(cat "$OUT/redis_bitmap.txt"); error kinds in INFO errorstats: $REDIS_ERRORS."
  echo
  echo "Commands (\$B = $BIN, \$Q = $QUERIES):"
  echo '- `$B serve --data '"$DATA"' --data-dir <fresh temp dir> --no-count-cache --listen '"$HOST:$PORT"'`'
  echo '- `$B loadgen --addr '"$ADDR"' --queries $Q --rpc count --query-id qNN -c 1 -n 300 --warmup 20 --json`'
  echo '- `$B loadgen --addr '"$ADDR"' --queries $Q --rpc is-member --query-id qNN --ids 1..'"$ROWS"' -c 50 -z 10s --warmup 2000 --json`'
  echo '- `$B loadgen --addr '"$ADDR"' --queries $Q --rpc batch-is-member --query-id qNN --ids 1..'"$ROWS"' --batch-size 10000 -c 1 -n 200 --warmup 10 --json`'
  echo '- `redis-benchmark -h '"$HOST"' -p '"$REDIS_PORT"' -c 50 -n 500000 --csv GETBIT seg '"$OFFSET"'`'
  echo '- `redis-benchmark -h '"$HOST"' -p '"$REDIS_PORT"' -c 50 -n 500000 -r '"$((ROWS + 1))"' --csv EVALSHA <sha of: return redis.call('"'GETBIT'"', KEYS[1], tonumber(ARGV[1]))> 1 seg __rand_int__`'
  echo
  echo "CPU cores = CPU seconds / elapsed; the server's include each run's warmup. Environment: see env.txt. Raw outputs: this directory."
} > "$OUT/summary.md"
cat "$OUT/summary.md"
