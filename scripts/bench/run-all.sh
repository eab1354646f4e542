#!/usr/bin/env bash
# `make bench`: every benchmark, each against a baseline measured in the same
# run (machines here are noisy, so only the ratios mean something). Copy the
# numbers into docs/BENCHMARKS.md with the command that made them.
# BENCH_QUICK=1 runs each with few rounds (a smoke test of the scripts).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export GOFLAGS=-mod=mod
quick="${BENCH_QUICK:-0}"
# Raw output for scripts/bench/plot, which redraws docs/bench-*.png.
out="${BENCH_OUT:-.build/bench}"
mkdir -p "$out"
status=0
run() {
  echo
  echo "================ $*"
  "$@" || { echo "benchmark failed: $*"; status=1; }
}
if [ "$quick" = 1 ]; then
  run go run ./scripts/bench/failover -quick -json "$out/failover.json"
  run go run ./scripts/bench/failover -cold-only -startups 1
  run go run ./scripts/bench/restart -rounds 5 -no-crashloop -json "$out/restart.json"
  run go run ./scripts/bench/reload -rounds 1
  run go run ./scripts/bench/jarstore -size 64MiB -reps 1
  run go run ./scripts/bench/jarstore -size 64MiB -reps 1 -hdfs
  run go run ./scripts/bench/channel -members 2000 -pushes 200 -rounds 2
  run go run ./scripts/bench/gossip -sizes 20,50 -rounds 1 -cpu-window 1s -json "$out/gossip.json"
  run go run ./scripts/bench/scale -executors 200 -steady 2s -json "$out/scale.json"
  run bash -c "go test -run=NONE -bench=StateScale -benchtime=1x ./master | tee '$out/state.txt'"
  run go run ./scripts/bench/state -apps 2000 -api-apps 200 -duration 1s -snapshot-wait 5s -json "$out/state-group.json"
else
  run go run ./scripts/bench/failover -json "$out/failover.json"
  run go run ./scripts/bench/failover -cold-only -startups 9
  run go run ./scripts/bench/restart -json "$out/restart.json"
  run go run ./scripts/bench/reload
  run go run ./scripts/bench/jarstore -size 1GiB -reps 3
  run go run ./scripts/bench/jarstore -size 1GiB -reps 3 -hdfs
  run go run ./scripts/bench/channel
  run go run ./scripts/bench/gossip -sizes 50,100,200 -rounds 3 -json "$out/gossip.json"
  run go run ./scripts/bench/scale -executors 1000,10000 -json "$out/scale.json"
  run bash -c "go test -run=NONE -bench=StateScale -benchtime=5x ./master | tee '$out/state.txt'"
  run go run ./scripts/bench/state -json "$out/state-group.json"
fi
run go test -run=NONE -bench=. -benchtime=2000x ./pkg/hocon/
if [ "$quick" != 1 ]; then
  run go run ./scripts/bench/plot -in "$out" -out docs
fi
exit $status
