#!/usr/bin/env bash
# The four cluster figures of issue 15 (README "Cluster"), on this machine:
#  1. upserts/s through `segd loadgen --rpc upsert`: a standalone node (local log only),
#     a cluster member on one NATS server (stream replicas 1), a member on a three-server
#     NATS cluster (stream replicas 3);
#  2. replica lag (records of the stream not applied yet, sampled every 50 ms from the
#     second member's segd_replica_lag) p50 / p99 under that last write load;
#  3. seconds for a fresh member (empty data dir) to report SERVING from the object-store
#     snapshot of the ROWS-row table;
#  4. IsMember calls/s with one member and with two members loaded at once, and each
#     member's CPU time per call (utime + stime from /proc over the run / calls answered:
#     meaningful when both share the cores, so the per-node scaling can be computed).
# Every process runs on 127.0.0.1 and shares this machine's cores: say so with the figures.
#
# Environment: SEGD_BIN (default $CARGO_TARGET_DIR/release/segd), NATS_SERVER (default
# nats-server on the PATH or /usr/sbin), ROWS (table rows, default 1000000; the demo
# table unless DATA names a Parquet file), DUR (seconds per run, default 10), C (requests
# in flight, default 8), BATCH (customers per upsert, default 100), OUT (default
# /tmp/segd-bench-cluster), BASE_PORT (default 21100; uses BASE_PORT..BASE_PORT+40: below
# the ephemeral range, so no outgoing connection holds one of them),
# READY_TIMEOUT (seconds a node may take to report SERVING, default 600).
# Smoke run: ROWS=20000 DUR=2 scripts/bench-cluster.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${SEGD_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/segd}
NATS=${NATS_SERVER:-$(command -v nats-server || echo /usr/sbin/nats-server)}
ROWS=${ROWS:-1000000}
DUR=${DUR:-10}
C=${C:-8}
BATCH=${BATCH:-100}
OUT=${OUT:-/tmp/segd-bench-cluster}
P=${BASE_PORT:-21100}
READY_TIMEOUT=${READY_TIMEOUT:-600}
[ -x "$BIN" ] || { echo "error: $BIN missing (cargo build --release)" >&2; exit 1; }
[ -x "$NATS" ] || { echo "error: nats-server missing (apt-get install nats-server)" >&2; exit 1; }
rm -rf "$OUT" && mkdir -p "$OUT"
# Data dirs and JetStream stores (GBs at 10M) live outside OUT and are removed at exit.
STATE=$(mktemp -d "${TMPDIR:-/tmp}/segd-bench-cluster.XXXXXX")
if [ -n "${DATA:-}" ]; then TABLE=(--data "$DATA"); else TABLE=(--demo "$ROWS"); fi

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$STATE"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }

# nats_one PORT: one JetStream server.
nats_one() {
  "$NATS" -js -a 127.0.0.1 -p "$1" -sd "$STATE/nats-$1" >"$OUT/nats-$1.log" 2>&1 &
  PIDS+=($!)
  until grep -q "Server is ready" "$OUT/nats-$1.log"; do sleep 0.1; done
}
# nats_cluster: three JetStream servers (client ports P+10..12, routes P+20..22).
nats_cluster() {
  local routes="nats-route://127.0.0.1:$((P + 20)), nats-route://127.0.0.1:$((P + 21)), nats-route://127.0.0.1:$((P + 22))"
  for i in 0 1 2; do
    cat >"$OUT/n$i.conf" <<EOF
server_name: n$i
listen: 127.0.0.1:$((P + 10 + i))
jetstream { store_dir: "$STATE/n$i" }
cluster { name: segd, listen: 127.0.0.1:$((P + 20 + i)), routes: [$routes] }
EOF
    "$NATS" -c "$OUT/n$i.conf" >"$OUT/n$i.log" 2>&1 &
    PIDS+=($!)
  done
  until cat "$OUT"/n?.log | grep -q "metadata leader"; do sleep 0.2; done
}
# segd_start NAME GRPC_PORT METRICS_PORT ARGS...: starts segd, waits for SERVING (at most
# READY_TIMEOUT s, else READY_S=timeout), sets SEGD_PID and READY_S.
segd_start() {
  local name=$1 port=$2 mport=$3
  shift 3
  local t0
  t0=$(date +%s.%N)
  "$BIN" serve "${TABLE[@]}" --data-dir "$STATE/$name" --listen "127.0.0.1:$port" --http-listen off \
    --metrics-listen "127.0.0.1:$mport" "$@" >"$OUT/$name.log" 2>&1 &
  SEGD_PID=$!
  PIDS+=($SEGD_PID)
  # Polled in short waits, so a node that exits (a port in use) fails the run at once.
  until "$BIN" loadgen --addr "http://127.0.0.1:$port" --rpc health --wait-ready 2s -n 1 >/dev/null 2>&1; do
    kill -0 "$SEGD_PID" 2>/dev/null || { echo "error: $name exited: $(tail -1 "$OUT/$name.log")" >&2; exit 1; }
    if python3 -c "import sys, time; sys.exit(time.time() - $t0 < $READY_TIMEOUT)"; then
      echo "error: $name not SERVING after ${READY_TIMEOUT} s: $(tail -1 "$OUT/$name.log")" >&2
      READY_S=timeout
      return
    fi
  done
  READY_S=$(python3 -c "import time; print(round(time.time() - $t0, 2))")
}
gauge() { curl -s "127.0.0.1:$1/metrics" | awk -v n="$2" '$1 == n { print $2 }'; } # gauge METRICS_PORT NAME
segd_stop() { kill -TERM "$1"; wait "$1" 2>/dev/null || true; }
upserts() { # upserts PORT LABEL: one upsert run, prints a line, leaves the JSON in $OUT/LABEL.json
  "$BIN" loadgen --addr "http://127.0.0.1:$1" --rpc upsert --ids "1..$ROWS" --batch-size "$BATCH" \
    -c "$C" -z "${DUR}s" --json >"$OUT/$2.json"
  printf '%-34s %10s req/s %12s customers/s  p50 %s us  p99 %s us\n' "$2" \
    "$(json "$OUT/$2.json" "d['rps']")" "$(json "$OUT/$2.json" "d['upsert']['customer_updates_per_s']")" \
    "$(json "$OUT/$2.json" "d['latency']['p50_us']")" "$(json "$OUT/$2.json" "d['latency']['p99_us']")"
}

echo "segd cluster figures: ROWS=$ROWS DUR=${DUR}s C=$C BATCH=$BATCH (all processes on this machine)"
echo "== 1. upserts/s"
segd_start standalone $((P + 1)) $((P + 31))
upserts $((P + 1)) "local log only"
segd_stop "$SEGD_PID"

nats_one $((P + 5))
segd_start r1 $((P + 2)) $((P + 32)) --cluster "nats://127.0.0.1:$((P + 5))" --stream bench --replica-name r1
upserts $((P + 2)) "JetStream, 1 server, replicas 1"
segd_stop "$SEGD_PID"

nats_cluster
URLS="nats://127.0.0.1:$((P + 10)),nats://127.0.0.1:$((P + 11)),nats://127.0.0.1:$((P + 12))"
CL=(--cluster "$URLS" --stream bench3 --stream-replicas 3)
segd_start a $((P + 3)) $((P + 33)) "${CL[@]}" --replica-name a
A=$SEGD_PID
segd_start b $((P + 4)) $((P + 34)) "${CL[@]}" --replica-name b
B=$SEGD_PID

echo "== 2. replica lag of member b while member a takes the upserts (records behind the stream)"
(
  end=$(($(date +%s) + DUR + 1))
  while [ "$(date +%s)" -lt "$end" ]; do
    curl -s "127.0.0.1:$((P + 34))/metrics" | awk '$1 == "segd_replica_lag" { print $2 }'
    sleep 0.05
  done
) >"$OUT/lag.txt" &
LAG=$!
upserts $((P + 3)) "JetStream, 3 servers, replicas 3"
wait $LAG
python3 - "$OUT/lag.txt" <<'EOF'
import sys
v = sorted(float(x) for x in open(sys.argv[1]) if x.strip())
q = lambda p: v[min(len(v) - 1, int(p * len(v)))] if v else float("nan")
print(f"lag p50 {q(0.5):.0f} records, p99 {q(0.99):.0f}, max {v[-1] if v else 'n/a'} ({len(v)} samples)")
EOF

echo "== 3. a fresh member from the object-store snapshot"
# Member a uploads its snapshots once a second; the import's is there by now.
segd_start fresh $((P + 6)) $((P + 36)) "${CL[@]}" --replica-name fresh
SEEDED=$(sed -n "s/.*seeded from the stream's object store snapshot sequence=\([0-9]*\).*/\1/p" "$OUT/fresh.log")
LAST=$(gauge $((P + 33)) segd_commit_sequence)
echo "SERVING after ${READY_S} s (seeded from the snapshot of sequence ${SEEDED:-none}; the stream ends at $LAST)"
# SERVING is within --max-serving-lag; the whole tail too, for the replay rate.
t0=$(date +%s.%N)
until [ "$(gauge $((P + 36)) segd_replica_applied_sequence)" = "$LAST" ]; do
  python3 -c "import sys, time; sys.exit(time.time() - $t0 < $READY_TIMEOUT)" && { echo "error: fresh never applied $LAST" >&2; break; }
  sleep 0.1
done
echo "whole tail ($((LAST - ${SEEDED:-0})) records) applied $(python3 -c "import time; print(round(time.time() - $t0, 2))") s after SERVING"
segd_stop "$SEGD_PID"

echo "== 4. IsMember: one member, then two members at once"
ismember() { # ismember PORT LABEL
  "$BIN" loadgen --addr "http://127.0.0.1:$1" --rpc is-member --where "age < 30" --ids "1..$ROWS" \
    -c "$C" -z "${DUR}s" --json >"$OUT/$2.json"
}
t0=$(ticks "$A")
ismember $((P + 3)) one-a
t1=$(ticks "$A")
python3 -c "import json; d=json.load(open('$OUT/one-a.json')); print(f\"1 member: {d['rps']} calls/s, {($t1-$t0)*10000/max(d['ok'],1):.1f} us CPU per call\")"
a0=$(ticks "$A"); b0=$(ticks "$B")
ismember $((P + 3)) two-a &
W=$!
ismember $((P + 4)) two-b
wait $W
a1=$(ticks "$A"); b1=$(ticks "$B")
python3 - "$OUT" $((a1 - a0)) $((b1 - b0)) <<'EOF'
import json, sys
out, ta, tb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
a, b = (json.load(open(f"{out}/two-{n}.json")) for n in "ab")
print(f"2 members: {a['rps'] + b['rps']:.1f} calls/s ({a['rps']} + {b['rps']}), CPU per call "
      f"a {ta * 10000 / max(a['ok'], 1):.1f} us, b {tb * 10000 / max(b['ok'], 1):.1f} us")
EOF
echo "(figures from one shared machine: on separate machines each member's calls/s is its cores / its CPU per call)"
