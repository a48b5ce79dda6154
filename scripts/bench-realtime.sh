#!/usr/bin/env bash
# The real-time benchmark of issue 5, end to end, everything on 127.0.0.1, on a fresh data
# dir under /tmp (removed on exit):
#   (a) segd serve imports ROWS customers (fsync'd group commit: --sync always), then the
#       100 saved segments s000..s099 of benches/updates.rs are created;
#   (b) sustained UpsertCustomers (3 attributes per customer, random ids) for UPSERT_SECS
#       at batch sizes 1,000 and 10,000 and several concurrencies: customer updates/s;
#   (c) p99 of CountSegment / IsMember on saved segments (8 in flight, 10 s each), first
#       idle, then while a writer (batch 1,000, 4 in flight) runs; the writer's rate too;
#   (d) restart: SIGTERM (final snapshot), restart, log exactly RESTART_UPDATES customer
#       updates (default 1,000,000) with no snapshot in between (--snapshot-every is
#       huge), SIGKILL, restart on the same data dir and time until SERVING; RSS after;
#   (e) (SYNC_COMPARE=1, default) the same upsert load with --sync interval:10.
# Raw outputs go to bench-results/realtime_${ROWS}/, the summary to its summary.md and
# stdout. Every process the script starts is stopped on exit.
#
# Environment: ROWS (default 10000000), SEGD_BENCH_PORT (default 50081), SEGD_BIN (use
# this binary instead of building), UPSERT_SECS (default 20), RESTART_UPDATES (default
# 1000000), SYNC_COMPARE (default 1), WAIT_QUIET (seconds to wait for other cargo /
# rustc processes before measuring, default 600; PHASE_WAIT, default 120, before each
# run), SEGD_SHARED (the benchmark kit's
# parent, default ../shared).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROWS=${ROWS:-10000000}
PORT=${SEGD_BENCH_PORT:-50081}
UPSERT_SECS=${UPSERT_SECS:-20}
RESTART_UPDATES=${RESTART_UPDATES:-1000000}
SYNC_COMPARE=${SYNC_COMPARE:-1}
WAIT_QUIET=${WAIT_QUIET:-600}
PHASE_WAIT=${PHASE_WAIT:-120}
SHARED=${SEGD_SHARED:-$ROOT/../shared}
DATA=$ROOT/bench-data/customers_${ROWS}.parquet
OUT=$ROOT/bench-results/realtime_${ROWS}
HOST=127.0.0.1
ADDR=http://$HOST:$PORT
# The server never snapshots on its own during the run.
SNAP_EVERY=100000000
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.txt "$OUT"/*.log "$OUT"/summary.md
DIR=$(mktemp -d /tmp/segd-realtime.XXXXXX)

SEGD_PID='' BG_PIDS=()
stop_segd() { # stop_segd SIGNAL
  if [ -n "$SEGD_PID" ] && kill -0 "$SEGD_PID" 2>/dev/null; then
    kill "-$1" "$SEGD_PID" 2>/dev/null || true
    wait "$SEGD_PID" 2>/dev/null || true
  fi
  SEGD_PID=''
}
cleanup() {
  local rc=$?
  for p in "${BG_PIDS[@]}"; do
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  stop_segd KILL
  rm -rf "$DIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "[bench-realtime $(date +%T)] $*" >&2; }
others() { pgrep -a -x 'cargo|rustc' || true; pgrep -a -x clippy-driver || true; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
cpu_s() { awk '{ sub(/.*\) /, ""); printf "%.2f", ($12 + $13) / 100 }' "/proc/$1/stat"; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'; }
# Before each measured run: wait up to PHASE_WAIT seconds (5 s steps) for other builds to
# finish; contention.txt notes how many there were before and after the run.
BEFORE=0
quiet() {
  local w=0
  while [ -n "$(others)" ] && [ "$w" -lt "$PHASE_WAIT" ]; do sleep 5; w=$((w + 5)); done
  BEFORE=$(others | wc -l)
  [ "$w" -eq 0 ] || log "waited $w s for other builds"
}
noted() { echo "$1: other builds before $BEFORE, after $(others | wc -l); loadavg $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/contention.txt"; }

# --- build, data --------------------------------------------------------------------------
if [ -n "${SEGD_BIN:-}" ]; then
  BIN=$SEGD_BIN
else
  log "cargo build --release"
  cargo build --release --quiet
  BIN=$ROOT/target/release/segd
fi
if [ ! -f "$DATA" ]; then
  log "generating $DATA"
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check -r "$SHARED/bench/requirements.txt"
  fi
  BENCH_DATA=$ROOT/bench-data .venv/bin/python "$SHARED/bench/gen.py" --rows "$ROWS"
fi
if (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; then
  echo "error: something already listens on $HOST:$PORT" >&2
  exit 1
fi

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
  echo "data: $DATA ($ROWS rows); data dir $DIR ($(df -h --output=source,fstype "$DIR" | tail -1))"
  echo "waited for other builds: ${waited} s"
  echo "other cargo/rustc processes at start: $(others | wc -l)"
  others | cut -c1-160 | sed 's/^/  /'
  echo "loadavg at start: $(cat /proc/loadavg)"
} > "$OUT/env.txt"
cat "$OUT/env.txt" >&2

# start_segd NAME [SERVE ARGS...]: starts segd on DIR, waits until SERVING; sets SEGD_PID
# and STARTED (seconds from exec to SERVING).
start_segd() {
  local name=$1 t0
  shift
  t0=$(date +%s.%N)
  "$BIN" serve --data "$DATA" --data-dir "$DIR" --listen "$HOST:$PORT" --snapshot-every "$SNAP_EVERY" \
    --no-count-cache "$@" > "$OUT/serve_$name.log" 2>&1 &
  SEGD_PID=$!
  until "$BIN" loadgen --addr "$ADDR" --rpc health -n 1 --wait-ready 1s --json > /dev/null 2>&1; do
    kill -0 "$SEGD_PID" 2>/dev/null || { echo "error: segd serve exited; see $OUT/serve_$name.log" >&2; exit 1; }
  done
  STARTED=$(since "$t0")
  log "$name: SERVING after $STARTED s, RSS $(($(rss_kib "$SEGD_PID") / 1024)) MiB"
}

# lg OUT.json ARGS...: one loadgen run, its JSON report annotated with the CPU seconds segd
# used meanwhile (server_cpu_s; concurrent runs share it). Exit status 2 (some requests
# failed) keeps going: the summary shows the errors.
lg() {
  local out=$1 before after
  shift
  [ -n "${CONCURRENT:-}" ] || quiet
  before=$(cpu_s "$SEGD_PID")
  "$BIN" loadgen --addr "$ADDR" --json "$@" > "$out.tmp" || [ $? -eq 2 ]
  after=$(cpu_s "$SEGD_PID")
  jq --argjson s "$(awk -v a="$before" -v b="$after" 'BEGIN { printf "%.2f", b - a }')" \
    '. + {server_cpu_s: $s}' "$out.tmp" > "$out"
  rm -f "$out.tmp"
  noted "$(basename "$out" .json)"
}

# --- (a) import, 100 saved segments -------------------------------------------------------
log "(a) segd serve: importing $DATA into $DIR"
start_segd import
IMPORT_S=$STARTED
RSS_IMPORT=$(rss_kib "$SEGD_PID")
log "(a) creating the 100 saved segments"
t0=$(date +%s.%N)
"$BIN" loadgen --addr "$ADDR" --rpc create-segments > "$OUT/create_segments.txt"
CREATE_S=$(since "$t0")
tail -1 "$OUT/create_segments.txt" >&2
RSS_SEGS=$(rss_kib "$SEGD_PID")

# --- (b) sustained upserts ----------------------------------------------------------------
UPSERT_RUNS=("1000 4" "1000 16" "10000 4" "10000 8")
for bc in "${UPSERT_RUNS[@]}"; do
  read -r b c <<< "$bc"
  log "(b) UpsertCustomers batch $b, -c $c, ${UPSERT_SECS} s"
  lg "$OUT/upsert_b${b}_c${c}.json" --rpc upsert --ids "1..$ROWS" --batch-size "$b" -c "$c" \
    -z "${UPSERT_SECS}s" --warmup "$c"
done

# --- (c) saved-segment reads, idle and during writes --------------------------------------
SEGS=s000,s001,s002,s003
log "(c) CountSegment / IsMember on $SEGS, idle"
lg "$OUT/count_saved_idle.json" --rpc count --segment-id "$SEGS" -c 8 -z 10s --warmup 200
lg "$OUT/ismember_saved_idle.json" --rpc is-member --segment-id "$SEGS" --ids "1..$ROWS" -c 8 -z 10s \
  --warmup 200
log "(c) the same during UpsertCustomers batch 1000, -c 4 (26 s)"
quiet
CONCURRENT=1
"$BIN" loadgen --addr "$ADDR" --json --rpc upsert --ids "1..$ROWS" --batch-size 1000 -c 4 -z 26s \
  --seed 7 > "$OUT/upsert_during_reads.json" &
BG_PIDS=($!)
w0=$(cpu_s "$SEGD_PID")
sleep 2
lg "$OUT/count_saved_writing.json" --rpc count --segment-id "$SEGS" -c 8 -z 10s --warmup 200
lg "$OUT/ismember_saved_writing.json" --rpc is-member --segment-id "$SEGS" --ids "1..$ROWS" -c 8 -z 10s \
  --warmup 200
wait "${BG_PIDS[0]}" || [ $? -eq 2 ]
BG_PIDS=()
CONCURRENT=''
noted "upsert_during_reads"
echo "server CPU during the 26 s writer + readers: $(awk -v a="$w0" -v b="$(cpu_s "$SEGD_PID")" 'BEGIN { printf "%.2f", b - a }') s" >> "$OUT/contention.txt"
RSS_LOAD=$(rss_kib "$SEGD_PID")
HWM=$(hwm_kib "$SEGD_PID")

# --- (d) restart with RESTART_UPDATES logged updates --------------------------------------
log "(d) SIGTERM (final snapshot), restart"
t0=$(date +%s.%N)
stop_segd TERM
STOP_S=$(since "$t0")
du -sb "$DIR" > "$OUT/datadir_after_snapshot.txt"
ls -la "$DIR" >> "$OUT/datadir_after_snapshot.txt"
start_segd after_snapshot
RESTART_SNAPSHOT_S=$STARTED
RSS_SNAPSHOT=$(rss_kib "$SEGD_PID")
BATCH=10000
N=$(((RESTART_UPDATES + BATCH - 1) / BATCH))
log "(d) logging $((N * BATCH)) customer updates ($N batches of $BATCH)"
lg "$OUT/upsert_log_1m.json" --rpc upsert --ids "1..$ROWS" --batch-size "$BATCH" -c 4 -n "$N" --seed 11
LOGGED=$(jq '.upsert.customers' "$OUT/upsert_log_1m.json")
du -sb "$DIR" > "$OUT/datadir_before_kill.txt"
ls -la "$DIR" >> "$OUT/datadir_before_kill.txt"
log "(d) SIGKILL with $LOGGED logged updates, restart"
stop_segd KILL
start_segd after_kill
RESTART_KILL_S=$STARTED
RSS_RESTART=$(rss_kib "$SEGD_PID")
HWM_RESTART=$(hwm_kib "$SEGD_PID")
lg "$OUT/count_saved_after_restart.json" --rpc count --segment-id "$SEGS" -n 4

# --- (e) --sync interval:10 ---------------------------------------------------------------
if [ "$SYNC_COMPARE" = 1 ]; then
  log "(e) restart with --sync interval:10"
  stop_segd TERM
  start_segd sync_interval --sync interval:10
  for bc in "1000 4" "10000 4"; do
    read -r b c <<< "$bc"
    log "(e) UpsertCustomers batch $b, -c $c, ${UPSERT_SECS} s, --sync interval:10"
    lg "$OUT/upsert_interval10_b${b}_c${c}.json" --rpc upsert --ids "1..$ROWS" --batch-size "$b" -c "$c" \
      -z "${UPSERT_SECS}s" --warmup "$c"
  done
fi
stop_segd TERM

# --- summary ------------------------------------------------------------------------------
row() { # row FILE LABEL
  jq -r --arg l "$2" '"| \($l) | \(.concurrency) | \(.requests) | \(.errors) | \(.rps) | \(if .upsert then (.upsert.customer_updates_per_s | round) else "" end) | \((.latency.p50_us | round) / 1000) | \((.latency.p99_us | round) / 1000) | \((.latency.max_us | round) / 1000) | \(.client_cpu_s / .elapsed_s * 100 | round / 100) / \(if .server_cpu_s then (.server_cpu_s / .elapsed_s * 100 | round / 100) else "-" end) |"' "$1"
}
{
  echo "## segd real-time benchmark, $ROWS rows, 100 saved segments, $(date -u +%Y-%m-%d), $(nproc) CPUs, client and server on 127.0.0.1"
  echo
  echo "Import of $ROWS rows to SERVING: ${IMPORT_S} s (RSS $((RSS_IMPORT / 1024)) MiB); 100 saved segments created in ${CREATE_S} s (RSS $((RSS_SEGS / 1024)) MiB)."
  echo
  echo "| run | conc. | requests | errors | req/s | customer updates/s | p50 ms | p99 ms | max ms | CPU cores client / server |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  for bc in "${UPSERT_RUNS[@]}"; do
    read -r b c <<< "$bc"
    row "$OUT/upsert_b${b}_c${c}.json" "UpsertCustomers batch $b, --sync always"
  done
  if [ "$SYNC_COMPARE" = 1 ]; then
    for bc in "1000 4" "10000 4"; do
      read -r b c <<< "$bc"
      row "$OUT/upsert_interval10_b${b}_c${c}.json" "UpsertCustomers batch $b, --sync interval:10"
    done
  fi
  row "$OUT/count_saved_idle.json" "CountSegment saved ($SEGS), no writes"
  row "$OUT/ismember_saved_idle.json" "IsMember saved ($SEGS), no writes"
  row "$OUT/count_saved_writing.json" "CountSegment saved, during writes"
  row "$OUT/ismember_saved_writing.json" "IsMember saved, during writes"
  row "$OUT/upsert_during_reads.json" "the writer during those reads (batch 1000)"
  row "$OUT/upsert_log_1m.json" "UpsertCustomers logged before SIGKILL (batch $BATCH)"
  echo
  echo "Server CPU in the reads-during-writes rows is shared by the concurrent writer and reader."
  echo
  echo "Restart: SIGTERM took ${STOP_S} s (final snapshot); restart from the snapshot alone: ${RESTART_SNAPSHOT_S} s (RSS $((RSS_SNAPSHOT / 1024)) MiB)."
  echo "Restart after SIGKILL with $LOGGED customer updates in the log since the snapshot: **${RESTART_KILL_S} s** to SERVING; RSS after restart $((RSS_RESTART / 1024)) MiB (peak $((HWM_RESTART / 1024)) MiB). Before the kill: RSS $((RSS_LOAD / 1024)) MiB after the load (peak $((HWM / 1024)) MiB)."
  echo "Data dir sizes: $(cut -f1 "$OUT/datadir_after_snapshot.txt" | head -1) bytes after the snapshot, $(cut -f1 "$OUT/datadir_before_kill.txt" | head -1) before the kill."
  echo
  echo "Commands (B = $BIN, ADDR = $ADDR, DIR = a fresh data dir):"
  echo '- `$B serve --data '"$DATA"' --data-dir $DIR --listen '"$HOST:$PORT"' --snapshot-every '"$SNAP_EVERY"' --no-count-cache` (`--sync always`, the default)'
  echo '- `$B loadgen --addr $ADDR --rpc create-segments` (s000..s099 of benches/updates.rs)'
  echo '- `$B loadgen --addr $ADDR --rpc upsert --ids 1..'"$ROWS"' --batch-size B -c C -z '"$UPSERT_SECS"'s --warmup C --json`'
  echo '- `$B loadgen --addr $ADDR --rpc count --segment-id '"$SEGS"' -c 8 -z 10s --warmup 200 --json` (is-member: `--rpc is-member --ids 1..'"$ROWS"'`), alone and while `--rpc upsert --batch-size 1000 -c 4 -z 26s` runs'
  echo '- restart: SIGTERM, serve again, `--rpc upsert --batch-size '"$BATCH"' -c 4 -n '"$N"'`, SIGKILL, serve again on the same DIR, timed from exec to SERVING (`--rpc health --wait-ready`)'
  echo
  echo "CPU cores = CPU seconds / elapsed (client = loadgen itself; the 2 cores are shared). Contention: contention.txt; environment: env.txt. Raw outputs: this directory."
} > "$OUT/summary.md"
cat "$OUT/summary.md"
