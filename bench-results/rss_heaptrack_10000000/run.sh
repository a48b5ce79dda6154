B=/work/bin/segd-839c191; A=http://127.0.0.1:50096
heaptrack -o /tmp/ht/segd $B serve --data /work/main/bench-data/customers_10000000.parquet --data-dir /tmp/ht/d --listen 127.0.0.1:50096 --http-listen off --no-count-cache --snapshot-every 1000000000 --event-retention 1000 > serve.log 2>&1 &
until $B loadgen --addr $A --rpc health -n 1 --wait-ready 1s --json >/dev/null 2>&1; do sleep 1; done
echo ready $(date +%T)
P=$(pgrep -f "segd-839c191 serve --data /work/main/bench-data/customers_10000000.parquet --data-dir /tmp/ht/d" | head -1)
$B loadgen --addr $A --rpc create-segments > /dev/null
grep VmRSS /proc/$P/status
$B loadgen --addr $A --rpc upsert --ids 1..655360 --batch-size 10000 -c 4 -z 40s --json > up.json
grep VmRSS /proc/$P/status
kill -9 $P; sleep 5; wait
echo done $(date +%T)
