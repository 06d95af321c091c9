#!/usr/bin/env bash
# The speed targets of docs/BENCHMARKS.md ("Against zstd, paired"): `kvstore ingest --policy P`
# against `zstd -3`, and `kvstore fetch` against `zstd -d`, on the same LLaVA-shaped snapshot,
# each pair run back to back RUNS times; prints every pair's seconds and the median of the
# per-pair ratios (machines are noisy: a ratio within one pair is what holds).
# Usage: scripts/ratio-bench.sh [BIN] [POLICY...]  (default: .build/release/kvstore lightkv+int8)
set -euo pipefail
BIN=${1:-.build/release/kvstore}
shift || true
POLICIES=("${@:-lightkv+int8}")
[ ${#POLICIES[@]} -gt 0 ] || POLICIES=(lightkv+int8)
RUNS=${RUNS:-5}
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
IN="$DIR/llava.safetensors"
"$BIN" synth --preset llava --seed 1 -o "$IN" > /dev/null
cat "$IN" > /dev/null
seconds() { /usr/bin/time -f "%e" "$@" 2>&1 >/dev/null | tail -1; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); input $(stat -c %s "$IN") bytes"
for P in "${POLICIES[@]}"; do
    echo
    echo "| pair | zstd -3 s | ingest $P s | ratio | zstd -d s | fetch s | ratio |"
    echo "| --- | --- | --- | --- | --- | --- | --- |"
    ingest_ratios=() fetch_ratios=()
    for run in $(seq "$RUNS"); do
        rm -f "$DIR/in.zst"; sync
        z=$(seconds zstd -3 -q -f "$IN" -o "$DIR/in.zst")
        rm -rf "$DIR/store"; sync
        i=$(seconds "$BIN" ingest --store "$DIR/store" --fidelity off --policy "$P" "$IN")
        id=$("$BIN" ls --store "$DIR/store" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
        rm -f "$DIR/out.raw"; sync
        d=$(seconds zstd -d -q -f "$DIR/in.zst" -o "$DIR/out.raw")
        rm -f "$DIR/out.raw" "$DIR/fetched.safetensors"; sync
        f=$(seconds "$BIN" fetch --store "$DIR/store" "$id" -o "$DIR/fetched.safetensors")
        rm -f "$DIR/fetched.safetensors"
        ri=$(python3 -c "print(f'{$i / $z:.2f}')"); rf=$(python3 -c "print(f'{$f / $d:.2f}')")
        ingest_ratios+=("$ri"); fetch_ratios+=("$rf")
        echo "| $run | $z | $i | $ri | $d | $f | $rf |"
    done
    median() { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }
    echo "| median of the ratios | | | $(median "${ingest_ratios[@]}") | | | $(median "${fetch_ratios[@]}") |"
done
