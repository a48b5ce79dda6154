#!/usr/bin/env bash
# read-ab.sh BIN LABEL (issue 9, BENCHMARKS.md §10/§17): serve BIN on 1M rows, 100 saved segments; IsMember s000-s003 at 8 in flight on one
# connection for 6 s with the LOADGEN client (default BIN); prints calls/s, p50/p99, and the server's
# writes, context switches and CPU per call (from /proc). Run it on a quiet host, alternating servers.
set -euo pipefail
BIN=$1; LABEL=$2; PORT=50177; ADDR=http://127.0.0.1:$PORT
LG=${LOADGEN:-$BIN}   # the client; the same binary for every server of an A/B
D=$(mktemp -d /tmp/ab.XXXX)
$BIN serve --data $(cd "$(dirname "$0")/.." && pwd)/bench-data/customers_1000000.parquet --data-dir $D --listen 127.0.0.1:$PORT ${EXTRA:-} > $D/log 2>&1 &
PID=$!
trap 'kill -9 $PID 2>/dev/null; rm -rf $D' EXIT
until $LG loadgen --addr $ADDR --rpc health -n 1 --wait-ready 1s --json >/dev/null 2>&1; do sleep 0.5; done
$LG loadgen --addr $ADDR --rpc create-segments > /dev/null
$LG loadgen --addr $ADDR --rpc is-member --ids 1..1000000 --segment-id s000 --segment-id s001 --segment-id s002 --segment-id s003 -c 8 -z 3s --json > /dev/null
snap() { local cs=0 cpu; for t in /proc/$PID/task/*; do cs=$((cs + $(awk '/ctxt_switches/ {s+=$2} END {print s}' $t/status))); done
  cpu=$(awk '{print $14+$15}' /proc/$PID/stat); echo "$(awk '/syscr/ {r=$2} /syscw/ {w=$2} END {print r, w}' /proc/$PID/io) $cs $cpu"; }
A=$(snap)
$LG loadgen --addr $ADDR --rpc is-member --ids 1..1000000 --segment-id s000 --segment-id s001 --segment-id s002 --segment-id s003 -c 8 -z 6s --json > $D/out.json
B=$(snap)
python3 - "$A" "$B" $D/out.json "$LABEL" <<'PY'
import sys, json
a=list(map(int,sys.argv[1].split())); b=list(map(int,sys.argv[2].split()))
j=json.load(open(sys.argv[3])); n=j.get('requests') or j.get('count') or j.get('ok')
keys={k:j[k] for k in ('rps',)}; keys.update({k:v for k,v in (j.get('latency') or {}).items() if k in ('p50_us','p99_us')})
ok=j.get('ok', n)
print(sys.argv[4], {k:v for k,v in keys.items()}, "per call: syscr %.2f syscw %.2f ctxsw %.2f cpu_us %.1f" % ((b[0]-a[0])/ok,(b[1]-a[1])/ok,(b[2]-a[2])/ok,(b[3]-a[3])*10000/ok))
PY
