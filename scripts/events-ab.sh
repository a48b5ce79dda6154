#!/usr/bin/env bash
# events-ab.sh BIN LABEL: one round of a RecordEvents A/B at ROWS (default 10M) on a fresh
# data dir: `segd serve --demo ROWS` with bench-gamify's program (20 rules, 5 tiers, 50
# levels) and the 100 saved segments, then loadgen record-events batch 1000 at 16 in
# flight for 20 s twice, and batch 100 at 16 in flight for 10 s (the state grows from run
# to run, so compare like with like). Prints one line: events/s of the three runs and the
# RSS they added. Run servers alternately on a quiet host; SERVER_ENV (e.g.
# "LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libmimalloc.so.2") is put before the server only;
# LOADGEN is the client (default BIN). BENCHMARKS.md §23.
set -euo pipefail
BIN=$1; LABEL=$2; ROWS=${ROWS:-10000000}; PORT=${PORT:-50191}; ADDR=http://127.0.0.1:$PORT
LG=${LOADGEN:-$BIN}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
D=$(mktemp -d /tmp/events-ab.XXXX)
PID=''
trap '[ -n "$PID" ] && kill -9 $PID 2>/dev/null; rm -rf $D' EXIT
# The program of scripts/bench-gamify.sh (scripts/bench-program.py).
python3 "$ROOT/scripts/bench-program.py" "$ROOT/src/gamify/demo_program.json" > $D/program.json
SEGD_LOG=info env ${SERVER_ENV:-} "$BIN" serve --demo "$ROWS" --data-dir $D/data --listen 127.0.0.1:$PORT \
  --program $D/program.json --snapshot-every 1000000000 > $D/serve.log 2>&1 &
PID=$!
"$LG" loadgen --addr $ADDR --rpc health -n 1 --wait-ready 1200s > /dev/null
for _ in $(seq 600); do grep -q "gamification program loaded" $D/serve.log && break; sleep 1; done
"$LG" loadgen --addr $ADDR --rpc create-segments > /dev/null
rss() { awk '/^VmRSS:/ {print $2}' /proc/$PID/status; }
run() {
  "$LG" loadgen --addr $ADDR --rpc record-events --batch-size "$1" -c "$2" --ids "1..$ROWS" -z "$3s" --json \
    | python3 -c 'import json, sys; j = json.load(sys.stdin); e = j["errors"]; print("%.0f" % j["events"]["events_per_s"] + (" (%d errors)" % e if e else ""))'
}
R0=$(rss)
A=$(run 1000 16 20); B=$(run 1000 16 20); C=$(run 100 16 10)
R1=$(rss)
echo "| $LABEL | $A | $B | $C | $(( (R1 - R0) / 1024 )) MiB |"
