#!/usr/bin/env bash
# Shared prefixes stored once (docs/BENCHMARKS.md, "Shared prefixes"): N questions about one
# image (`kvstore synth --questions N`) ingested into one store, against the first alone in
# another, per policy; prints stored bytes (`kvstore stats --json`), their ratio and the time of
# the N ingests. Usage: scripts/segments-bench.sh [BIN] [PRESET] [N] [POLICY...]
# (default: .build/release/kvstore, llava, 10, and the policies below).
set -euo pipefail
bin=${1:-.build/release/kvstore}
preset=${2:-llava}
n=${3:-10}
shift $(( $# < 3 ? $# : 3 ))
policies=("$@")
[ ${#policies[@]} -gt 0 ] || policies=(none int8 int4g128m0t0r1 lightkv+int8 "lightkv:guide=none+int8"
    "airmerge35:evict=0:near=0.95:guide=none+int4g128m0t0r1" "airmerge35:evict=0:near=0.95+int4g128m0t0r1"
    aircache35 "airmerge35:budget=redundancy:protect=0.5:distinct=on+int8" "airmerge20:budget=redundancy:protect=0.5:distinct=on+int4g128m0t0r1")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin" synth --preset "$preset" --questions "$n" -o "$work/q" >/dev/null
stored() { "$bin" stats --store "$1" --json | python3 -c 'import json, sys; d = json.load(sys.stdin); print(d["bytes_out"], d["segments"])'; }
echo "### $preset, $n questions about one image"
echo
echo "| policy | one snapshot stored | $n questions stored | ratio | segments | $n ingests |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
for policy in "${policies[@]}"; do
    first=$(ls "$work/q"/*.safetensors | head -1)
    "$bin" ingest --store "$work/one-$policy" --policy "$policy" "$first" >/dev/null
    start=$(date +%s%N)
    for f in "$work/q"/*.safetensors; do "$bin" ingest --store "$work/all-$policy" --policy "$policy" "$f" >/dev/null; done
    end=$(date +%s%N)
    read -r one _ <<< "$(stored "$work/one-$policy")"
    read -r all segments <<< "$(stored "$work/all-$policy")"
    python3 -c 'import sys; p, one, all, seg, ns = sys.argv[1:]; one, all = int(one), int(all)
print(f"| `{p}` | {one / 1e6:.1f} MB | {all / 1e6:.1f} MB | {all / one:.2f}× | {seg} | {int(ns) / 1e9:.1f} s |")' \
        "$policy" "$one" "$all" "$segments" "$((end - start))"
done
