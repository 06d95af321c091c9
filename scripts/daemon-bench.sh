#!/usr/bin/env bash
# Sustained ingest rate of `kvstore watch` over 100 Qwen2.5-VL-shaped snapshots.
set -euo pipefail
K=${KVSTORE_BIN:-$(cd "$(dirname "$0")/.." && pwd)/.build/release/kvstore}
WORK=${1:-/tmp/kvbench}; mkdir -p "$WORK" && cd "$WORK"
$K synth --preset qwen --count 100 -o staging > synth.log 2>&1
mkdir -p inbox && mv staging/* inbox/
for policy in none+zstd3 lightkv+int8; do
  for jobs in 1 2; do
    rm -rf store
    KVSTORE_HOME=$PWD/store /usr/bin/time -f "$policy jobs=$jobs wall %e s, user %U s, sys %S s, maxrss %M KB" \
      $K watch inbox --once --jobs $jobs --policy $policy --settle 0 --json > run-$policy-$jobs.json 2> run-$policy-$jobs.log
    tail -1 run-$policy-$jobs.log >> results.txt
    grep -E '"bytes_out"|"ingested"' run-$policy-$jobs.json | tr -d '\n' >> results.txt; echo >> results.txt
    mv inbox/done/* inbox/
  done
done
rm -rf store
echo finished >> results.txt
