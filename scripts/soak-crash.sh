#!/usr/bin/env bash
# Crash soak: the suite's crash test (a child `segd serve` SIGKILLed at random points
# while it acknowledges streamed upserts, restarted on the same data dir, every
# acknowledged batch checked present and none half applied) with more kills.
#
#   scripts/soak-crash.sh [KILLS] [SEED]     (KILLS: default 50, at most 1000)
#
# Loopback only; the data dir is a temporary directory removed afterwards. A failure
# prints the seed: pass it back as SEED to replay the same kill points.
set -euo pipefail
cd "$(dirname "$0")/.."
KILLS=${1:-50}
if ! [[ "$KILLS" =~ ^[0-9]+$ ]] || [ "$KILLS" -lt 1 ] || [ "$KILLS" -gt 1000 ]; then
  echo "usage: $0 [KILLS 1..1000] [SEED]" >&2
  exit 2
fi
export SEGD_CRASH_KILLS=$KILLS
if [ -n "${2:-}" ]; then
  export SEGD_CRASH_SEED=$2
fi
exec cargo test --release --test integration realtime::crash_kill_restart -- --nocapture --test-threads 1
