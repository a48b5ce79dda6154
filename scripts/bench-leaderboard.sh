#!/usr/bin/env bash
# Leaderboard reads: segd's board (benches/leaderboard.rs, in process) beside Redis sorted
# sets (../shared/bench/redis_leaderboard.py: ZREVRANGE 0 99, ZREVRANK, around-me, and
# ZINTERSTORE with the segment's set for the scoped top 100), in one run, on the same
# scores (loyalty_points) and the same 10% segment (country = 'DE' AND age < 40).
#
# Redis is timed from its Python client over loopback (one round trip per call, ~50 µs of
# it client and network); segd in process (no RPC). Both are printed with that label.
#
# Then the served figures: LeaderboardService/Leaderboard, RankOf and AroundMe (±10) through `segd loadgen`,
# among everyone, within the segment as `where` text, and within it saved (lb_scope)
# (one gRPC round trip over loopback each, like Redis's), on `segd serve --demo GRPC_ROWS`
# whose demo boards (points this week, purchases of all time) were filled by GRPC_EVENTS
# generated events sent on one RecordEventStream.
#
# Environment: ROWS (default 10000000; bench-data/customers_<ROWS>.parquet must exist, see
# ../shared/bench/gen.py), SEGD_SHARED (the kit's parent, default ../shared), REDIS_N
# (calls per Redis figure, default 200), GRPC_ROWS / GRPC_EVENTS (default 1000000 each),
# GRPC_N (calls per served figure, default 2000), ONLY=grpc (the served figures only: a
# smoke run needs no kit data, e.g. ONLY=grpc GRPC_ROWS=20000 GRPC_EVENTS=20000 GRPC_N=200),
# SEGD_BIN (serve this binary instead of building one).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROWS=${ROWS:-10000000}
SHARED=${SEGD_SHARED:-$ROOT/../shared}
OUT=$ROOT/bench-results/leaderboard_${ROWS}
mkdir -p "$OUT"
SEGMENT="country = 'DE' AND age < 40"

grpc_bench() {
  local rows=${GRPC_ROWS:-1000000} events=${GRPC_EVENTS:-1000000} n=${GRPC_N:-2000} tmp seg
  local bin=${SEGD_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/segd}
  tmp=$(mktemp -d)
  [ -n "${SEGD_BIN:-}" ] || cargo build --release --locked --bin segd >&2
  # Events of the last few days: RecordEvents accepts them (7-day window).
  "$bin" gen-events --customers "$rows" --events "$events" --seed 1 \
    --start "$(date -u -d '3 days ago' +%FT%TZ)" --span-days 2 --out "$tmp/events.jsonl"
  "$bin" serve --demo "$rows" --data-dir "$tmp/data" --listen 127.0.0.1:50061 --http-listen off \
    >"$tmp/serve.log" 2>&1 &
  local server=$!
  trap 'kill $server 2>/dev/null || true; rm -rf "$tmp"' RETURN
  "$bin" loadgen --addr http://127.0.0.1:50061 --rpc health -n 1 --wait-ready 300s >/dev/null
  local t0=$SECONDS
  python3 - "$tmp/events.jsonl" <<'PY' | grpcurl -plaintext -d @ 127.0.0.1:50061 segd.v1.EventService/RecordEventStream >/dev/null
import json, sys
def value(v):
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    return {"stringValue": v}
batch = []
for line in open(sys.argv[1]):
    e = json.loads(line)
    batch.append({"eventId": e["event_id"], "customerId": str(e["customer_id"]), "type": e["type"],
                  "occurredAtMs": str(e["occurred_at_ms"]),
                  "properties": {k: value(v) for k, v in e.get("properties", {}).items()}})
    if len(batch) == 5000:
        print(json.dumps({"events": batch}))
        batch = []
if batch:
    print(json.dumps({"events": batch}))
PY
  echo "== served (gRPC over loopback): $rows customers, $events events recorded in $((SECONDS - t0)) s" | tee -a "$OUT/summary.md"
  local lg=("$bin" loadgen --addr http://127.0.0.1:50061 -n "$n" --warmup 50)
  # The same segment saved: a scope read from its bitmap, with no evaluation per call.
  "$bin" loadgen --addr http://127.0.0.1:50061 --rpc create-segments --where "$SEGMENT" --segment-id lb_scope >/dev/null
  for board in points_week purchases_all_time; do
    for seg in "" "$SEGMENT" "saved"; do
      local scope=() label="everyone"
      [ "$seg" = saved ] && scope=(--segment-id lb_scope) && label="saved segment lb_scope ($SEGMENT)"
      [ -n "$seg" ] && [ "$seg" != saved ] && scope=(--where "$seg") && label="$seg"
      echo "-- Leaderboard $board top 100, $label" | tee -a "$OUT/summary.md"
      "${lg[@]}" --rpc leaderboard --board "$board" --limit 100 "${scope[@]}" | tee -a "$OUT/summary.md"
      echo "-- RankOf $board, random ids, $label" | tee -a "$OUT/summary.md"
      "${lg[@]}" --rpc rank-of --board "$board" --ids "1..$rows" "${scope[@]}" | tee -a "$OUT/summary.md"
      echo "-- AroundMe $board ±10, random ids, $label" | tee -a "$OUT/summary.md"
      "${lg[@]}" --rpc around-me --board "$board" --limit 10 --ids "1..$rows" "${scope[@]}" | tee -a "$OUT/summary.md"
    done
  done
}

if [ "${ONLY:-}" = grpc ]; then
  grpc_bench
  exit 0
fi

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
grpc_bench
