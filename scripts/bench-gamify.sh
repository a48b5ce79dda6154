#!/usr/bin/env bash
# The gamification benchmark of issue 10, end to end on 127.0.0.1, on a fresh data dir
# under /tmp (removed on exit):
#   (a) segd serve --demo ROWS (the generated table) with the benchmark program: the demo
#       program grown to 20 earning rules, 5 tiers and 50 levels (written by this script
#       to $OUT/program.json), put at start (--program); then the 100 saved segments of
#       the issue-5 benchmark (loadgen --rpc create-segments). RSS before any event.
#   (b) sustained RecordEvents (purchases of random customers, unique event ids; durable:
#       --sync always, the default) for EVENT_SECS at batch sizes 100 and 1,000: events/s.
#   (c) GetGamificationState latency at 50 in flight for 10 s (p50 / p99).
#   (d) PreviewProgram of a tier-threshold change (GOLD from 1,000 to 900 €), five times,
#       through the HTTP API (POST /v1/program:preview, the same application call as the
#       gRPC method) timed by curl's own clock (connect to last byte on loopback: no
#       client start-up in it, unlike grpcurl's).
#   (e) RSS after the events: the added memory, and per customer with state; the state's
#       bytes by structure from the metrics endpoint (segd_memory_gamify_bytes).
# Raw outputs go to bench-results/gamify_${ROWS}/, the summary to its summary.md and
# stdout. Every process the script starts is stopped on exit.
#
# Environment: ROWS (default 10000000), SEGD_BENCH_PORT (default 50091), SEGD_BIN (use
# this binary instead of building), LOADGEN (the client binary, default the server's),
# EVENT_SECS (default 20), STATE_SECS (default 10),
# CUSTOMERS (ids the events go to, default ROWS), STATE_RPS (the offered rate of the
# open-loop GetGamificationState run, default 5000). Needs curl for (d).
# A smoke run: ROWS=2000 EVENT_SECS=2 STATE_SECS=2 bash scripts/bench-gamify.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROWS=${ROWS:-10000000}
PORT=${SEGD_BENCH_PORT:-50091}
HTTP_PORT=$((PORT + 1))
METRICS_PORT=$((PORT + 2))
EVENT_SECS=${EVENT_SECS:-20}
STATE_SECS=${STATE_SECS:-10}
CUSTOMERS=${CUSTOMERS:-$ROWS}
OUT=$ROOT/bench-results/gamify_${ROWS}
HOST=127.0.0.1
ADDR=http://$HOST:$PORT
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.txt "$OUT"/*.log "$OUT"/summary.md
DIR=$(mktemp -d /tmp/segd-gamify.XXXXXX)

SEGD_PID=''
cleanup() {
  local rc=$?
  if [ -n "$SEGD_PID" ] && kill -0 "$SEGD_PID" 2>/dev/null; then
    kill -KILL "$SEGD_PID" 2>/dev/null || true
    wait "$SEGD_PID" 2>/dev/null || true
  fi
  rm -rf "$DIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "[bench-gamify $(date +%T)] $*" >&2; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

if [ -n "${SEGD_BIN:-}" ]; then
  BIN=$SEGD_BIN
else
  log "cargo build --release"
  cargo build --release --quiet
  BIN=$ROOT/target/release/segd
fi
# The client: the served binary's own loadgen unless LOADGEN names another (an A/B of two
# servers keeps one client).
LOADGEN=${LOADGEN:-$BIN}
if (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; then
  echo "error: something already listens on $HOST:$PORT" >&2
  exit 1
fi
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host: $(uname -srm), $(nproc) CPUs; loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "segd: $BIN ($("$BIN" --version)), git $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "client: $LOADGEN loadgen"
  echo "rows: $ROWS (segd serve --demo), events to customers 1..$CUSTOMERS"
} > "$OUT/env.txt"

# --- the benchmark program: 20 rules, 5 tiers, 50 levels ----------------------------------
python3 "$ROOT/scripts/bench-program.py" "$ROOT/src/gamify/demo_program.json" > "$OUT/program.json"
python3 -c 'import json,sys; p=json.load(open(sys.argv[1])); p["tiers"]["tiers"][3]["min"]=900; print(json.dumps({"program_json": json.dumps(p)}))' \
  "$OUT/program.json" > "$OUT/preview_request.json"

# --- (a) start ------------------------------------------------------------------------------
log "segd serve --demo $ROWS --program (log: $OUT/serve.log)"
SEGD_LOG=info "$BIN" serve --demo "$ROWS" --data-dir "$DIR" --listen "$HOST:$PORT" --http-listen "$HOST:$HTTP_PORT" \
  --metrics-listen "$HOST:$METRICS_PORT" --program "$OUT/program.json" --snapshot-every 1000000000 > "$OUT/serve.log" 2>&1 &
SEGD_PID=$!
"$LOADGEN" loadgen --addr "$ADDR" --rpc health -n 1 --wait-ready 1200s > /dev/null
for _ in $(seq 600); do grep -q "gamification program loaded" "$OUT/serve.log" && break; sleep 1; done
grep -q "gamification program loaded" "$OUT/serve.log" || { echo "error: the program was not loaded" >&2; exit 1; }
"$LOADGEN" loadgen --addr "$ADDR" --rpc create-segments > "$OUT/segments.txt"
RSS0=$(rss_kib "$SEGD_PID")
log "serving, 100 segments saved; RSS $((RSS0 / 1024)) MiB"

# --- (b) RecordEvents -----------------------------------------------------------------------
EVENTS=0
for b in 100 1000; do
  for c in 4 16; do
    log "RecordEvents batch $b, $c in flight, $EVENT_SECS s"
    "$LOADGEN" loadgen --addr "$ADDR" --rpc record-events --batch-size "$b" -c "$c" --ids "1..$CUSTOMERS" \
      -z "${EVENT_SECS}s" --json > "$OUT/events_b${b}_c${c}.json"
    n=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["events"]["events"])' "$OUT/events_b${b}_c${c}.json")
    EVENTS=$((EVENTS + n))
  done
done

# --- (c) GetGamificationState ---------------------------------------------------------------
log "GetGamificationState, 50 in flight, $STATE_SECS s"
"$LOADGEN" loadgen --addr "$ADDR" --rpc game-state -c 50 --ids "1..$CUSTOMERS" -z "${STATE_SECS}s" --json \
  > "$OUT/state.json"
# The same at a fixed offered rate (open loop, up to 50 in flight): the latency of a call
# when calls do not queue behind each other, as a service calling at its own pace sees it.
log "GetGamificationState at ${STATE_RPS:=5000}/s offered, $STATE_SECS s"
"$LOADGEN" loadgen --addr "$ADDR" --rpc game-state -c 50 --rps "$STATE_RPS" --ids "1..$CUSTOMERS" \
  -z "${STATE_SECS}s" --json > "$OUT/state_open.json"

# --- (d) PreviewProgram ---------------------------------------------------------------------
: > "$OUT/preview_ms.txt"
for i in 1 2 3 4 5; do
  curl -sS -o "$OUT/preview_$i.json" -w '%{time_total}\n' -H 'content-type: application/json' \
    --data-binary @"$OUT/preview_request.json" "http://$HOST:$HTTP_PORT/v1/program:preview" \
    | awk '{printf "%.1f\n", $1 * 1000}' >> "$OUT/preview_ms.txt"
done
grep -q '"tiers"' "$OUT/preview_1.json" || { echo "error: PreviewProgram answered $(head -c 300 "$OUT/preview_1.json")" >&2; exit 1; }

# --- (e) memory -----------------------------------------------------------------------------
RSS1=$(rss_kib "$SEGD_PID")
curl -sS "http://$HOST:$METRICS_PORT/metrics" > "$OUT/metrics.txt"

# --- summary --------------------------------------------------------------------------------
python3 - "$OUT" "$RSS0" "$RSS1" "$EVENTS" "$ROWS" > "$OUT/summary.md" <<'PY'
import glob, json, os, sys
out, rss0, rss1, events, rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
ms = lambda lat, q: f"{lat[q + '_us'] / 1000:.2f}" if q + "_us" in lat else "?"
print(f"# Gamification benchmark, {rows:,} customers\n")
print(open(os.path.join(out, "env.txt")).read())
print("| RecordEvents | events/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|")
for f in sorted(glob.glob(os.path.join(out, "events_b*_c*.json"))):
    j = json.load(open(f)); lat = j.get("latency") or {}
    b, c = os.path.basename(f)[len("events_b"):-len(".json")].split("_c")
    name = f"batch {b}, {c} in flight"
    print(f"| {name} | {j['events']['events_per_s']:,.0f} | {ms(lat, 'p50')} | {ms(lat, 'p99')} | {j['errors']} |")
j = json.load(open(os.path.join(out, "state.json"))); lat = j.get("latency") or {}
print(f"\nGetGamificationState at 50 in flight: {j['rps']:,.0f} requests/s, p50 {ms(lat, 'p50')} ms, p99 {ms(lat, 'p99')} ms, {j['errors']} errors")
j = json.load(open(os.path.join(out, "state_open.json"))); lat = j.get("latency") or {}
print(f"GetGamificationState at a fixed offered rate: {j['rps']:,.0f} requests/s, p50 {ms(lat, 'p50')} ms, p99 {ms(lat, 'p99')} ms, {j['errors']} errors")
times = [l.strip() for l in open(os.path.join(out, "preview_ms.txt")) if l.strip()]
print(f"\nPreviewProgram (GOLD 1,000 → 900 €), POST /v1/program:preview timed by curl: {', '.join(times) or 'not run'} ms")
added = (rss1 - rss0) * 1024
print(f"\nRSS before events {rss0 // 1024} MiB, after {rss1 // 1024} MiB: {added / 2**20:,.0f} MiB added for {events:,} events"
      + (f" ({added / events:,.0f} bytes per event)" if events else ""))
import re
parts, with_state = {}, 0
for line in open(os.path.join(out, "metrics.txt")):
    m = re.match(r'segd_memory_gamify_bytes\{part="(\w+)"\} (\d+)', line)
    if m:
        parts[m.group(1)] = int(m.group(2))
    m = re.match(r"segd_gamify_customers (\d+)", line)
    if m:
        with_state = int(m.group(1))
if parts and with_state:
    print(f"\nGamification state by structure, {with_state:,} customers with state (buffers by capacity; map node slack and allocator overhead not counted):\n")
    print("| structure | MiB | bytes per customer with state |\n|---|---|---|")
    for k, v in list(parts.items()) + [("total", sum(parts.values()))]:
        print(f"| {k} | {v / 2**20:,.1f} | {v / with_state:,.0f} |")
PY
cat "$OUT/summary.md"
