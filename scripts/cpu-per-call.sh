#!/usr/bin/env bash
# Server CPU time per IsMember call (issue 13): segd under h2load (a fixed gRPC body, the
# issue's -c 10 -m 5 -t 1) beside redis-server under redis-benchmark GETBIT, in the same
# run. CPU time is the process's utime + stime from /proc/PID/stat over the measured run
# divided by the calls answered, so it stays meaningful when other work shares the cores
# (wall-clock rates do not). With PERF=1 the segd run is also recorded with
# `perf record -g` into $OUT/perf.data.
#
# Environment: SEGD_BIN (default target/release/segd), ROWS (default 1000000; the table is
# bench-data/customers_$ROWS.parquet), N (calls per run, default 200000), REPEAT (runs per
# tool, default 3), WHERE (the segment text, default q01's), ID (the customer id asked,
# default ROWS/2+1), PORT (default 50071), REDIS_PORT (default 6391), OUT (default
# /tmp/segd-cpu-per-call), PERF (0/1), STREAM (1: also StreamIsMember through segd loadgen
# -c 10 --pipeline 16, and redis-benchmark -c 10 -P 16), REDIS (0: skip Redis, e.g. when
# comparing two segd builds back to back), H2ARGS (h2load's concurrency, default
# "-c 10 -m 5 -t 1").
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${SEGD_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/segd}
ROWS=${ROWS:-1000000}
N=${N:-200000}
REPEAT=${REPEAT:-3}
WHERE=${WHERE:-"gender = 'F'"}
ID=${ID:-$((ROWS / 2 + 1))}
PORT=${PORT:-50071}
REDIS_PORT=${REDIS_PORT:-6391}
OUT=${OUT:-/tmp/segd-cpu-per-call}
PERF=${PERF:-0}
STREAM=${STREAM:-0}
DATA=$ROOT/bench-data/customers_${ROWS}.parquet
HOST=127.0.0.1
mkdir -p "$OUT"
[ -f "$DATA" ] || { echo "error: $DATA missing (../shared/bench/gen.py --rows $ROWS)" >&2; exit 1; }

SEGD_PID='' REDIS_PID='' DATA_DIR=''
cleanup() {
  [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null && wait "$REDIS_PID" 2>/dev/null
  [ -n "$SEGD_PID" ] && kill -TERM "$SEGD_PID" 2>/dev/null && wait "$SEGD_PID" 2>/dev/null
  [ -n "$DATA_DIR" ] && rm -rf "$DATA_DIR"
  true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
# System calls per call, counted by perf's syscall tracepoints while a run goes on:
# syscalls_start PID starts the count, syscalls_end CALLS stops it and prints the figures.
SYSCALLS=(sendto writev write recvfrom read epoll_wait futex)
syscalls_start() {
  local ev=()
  for c in "${SYSCALLS[@]}"; do ev+=(-e "syscalls:sys_enter_$c"); done
  rm -f "$OUT/syscalls.csv"
  perf stat -x, "${ev[@]}" -p "$1" -o "$OUT/syscalls.csv" 2> /dev/null &
  STAT_PID=$!
  sleep 1
}
syscalls_end() {
  kill -INT "$STAT_PID" 2> /dev/null; wait "$STAT_PID" 2> /dev/null || true
  awk -F, -v n="$1" '/sys_enter_/ { sub(/.*sys_enter_/, "", $3); if ($1 > 0) printf "%s %.2f, ", $3, $1 / n }
    END { print "per call" }' "$OUT/syscalls.csv"
}
# us_per_call PID_TICKS_BEFORE PID_TICKS_AFTER CALLS
us_per_call() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { printf "%.2f", (b - a) * 10000 / n }'; }

DATA_DIR=$(mktemp -d /tmp/segd-cpu.XXXXXX)
"$BIN" serve --data "$DATA" --data-dir "$DATA_DIR" --listen "$HOST:$PORT" > "$OUT/serve.log" 2>&1 &
SEGD_PID=$!
until "$BIN" loadgen --addr "http://$HOST:$PORT" --rpc health -n 1 --wait-ready 1s --json > /dev/null 2>&1; do
  kill -0 "$SEGD_PID" 2>/dev/null || { echo "error: segd exited; see $OUT/serve.log" >&2; exit 1; }
done
"$BIN" loadgen --rpc is-member --where "$WHERE" --ids "$ID..$ID" --dump-request "$OUT/body.bin" 2> /dev/null
H2=(h2load -n "$N" ${H2ARGS:--c 10 -m 5 -t 1} --header 'content-type: application/grpc' --header 'te: trailers'
  -d "$OUT/body.bin" "http://$HOST:$PORT/segd.v1.SegmentService/IsMember")
"${H2[@]}" -n 20000 > /dev/null  # warm-up: plan cache, connections, page faults

echo "segd $("$BIN" --version) at $(git rev-parse --short HEAD), $ROWS rows, id $ID, where: $WHERE"
echo "loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$REPEAT"); do
  a=$(ticks "$SEGD_PID")
  syscalls_start "$SEGD_PID"
  if [ "$PERF" = 1 ] && [ "$r" = 1 ]; then
    perf record --call-graph dwarf,16384 -F 1999 -o "$OUT/perf.data" -p "$SEGD_PID" 2> "$OUT/perf.log" &
    PERF_PID=$!
    sleep 0.5
  fi
  "${H2[@]}" > "$OUT/h2load_$r.txt"
  if [ "$PERF" = 1 ] && [ "$r" = 1 ]; then kill -INT "$PERF_PID"; wait "$PERF_PID" || true; fi
  b=$(ticks "$SEGD_PID")
  ok=$(awk '/^requests:/ { print $8 }' "$OUT/h2load_$r.txt")
  # Every IsMember answer carries at least the 5-byte gRPC prefix; an error carries none.
  data=$(sed -n 's/^traffic:.*(\([0-9]*\)) data$/\1/p' "$OUT/h2load_$r.txt")
  [ "$data" -ge $((5 * ok)) ] || echo "WARNING: $data data bytes for $ok calls: some calls failed" >&2
  echo "segd IsMember (h2load ${H2ARGS:--c 10 -m 5 -t 1}): $ok succeeded, server CPU $(us_per_call "$a" "$b" "$ok") us/call ($((b - a)) ticks), $(grep -m1 '^finished in' "$OUT/h2load_$r.txt")"
  echo "  syscalls: $(syscalls_end "$ok")"
done
if [ "$STREAM" = 1 ]; then
  for r in $(seq "$REPEAT"); do
    a=$(ticks "$SEGD_PID")
    syscalls_start "$SEGD_PID"
    "$BIN" loadgen --addr "http://$HOST:$PORT" --rpc stream-is-member --where "$WHERE" --ids "$ID..$ID" \
      -c 10 --pipeline 16 -n "$N" --json > "$OUT/stream_$r.json"
    b=$(ticks "$SEGD_PID")
    ok=$(jq .ok "$OUT/stream_$r.json")
    echo "segd StreamIsMember (loadgen -c 10 --pipeline 16): $ok answered, server CPU $(us_per_call "$a" "$b" "$ok") us/call ($((b - a)) ticks)"
    echo "  syscalls: $(syscalls_end "$ok")"
  done
fi
kill -TERM "$SEGD_PID"; wait "$SEGD_PID" 2> /dev/null || true; SEGD_PID=''
[ "${REDIS:-1}" = 0 ] && exit 0

redis-server --port "$REDIS_PORT" --bind "$HOST" --save '' --appendonly no > "$OUT/redis.log" 2>&1 &
REDIS_PID=$!
for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping > /dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$REDIS_PORT" SETBIT seg "$ROWS" 1 > /dev/null
for P in 1 16; do
  [ "$P" = 16 ] && [ "$STREAM" != 1 ] && continue
  for r in $(seq "$REPEAT"); do
    a=$(ticks "$REDIS_PID")
    syscalls_start "$REDIS_PID"
    # Unpipelined: 50 clients, as h2load's 10 connections x 5 streams; pipelined: 10
    # clients x 16, as loadgen's 10 streams x 16.
    C=$([ "$P" = 1 ] && echo 50 || echo 10)
    redis-benchmark -h "$HOST" -p "$REDIS_PORT" -c "$C" -P "$P" -n "$N" --csv GETBIT seg "$ID" > "$OUT/redis_P${P}_$r.csv"
    b=$(ticks "$REDIS_PID")
    echo "redis GETBIT (redis-benchmark -c $C -P $P): $N calls, server CPU $(us_per_call "$a" "$b" "$N") us/call ($((b - a)) ticks)"
    echo "  syscalls: $(syscalls_end "$N")"
  done
done
