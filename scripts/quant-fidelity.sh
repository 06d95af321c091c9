#!/usr/bin/env bash
# The quantization table of docs/FIDELITY.md: for synthetic snapshots of three shapes, each
# quantization (f16, int8, int4 with G = 32, 64, 128, and the smallest int4 setting) with and
# without LightKV merging: stored bytes after the pack codec (zstd -3) relative to the F16
# input, and attention-output fidelity of the probe queries.
#
#   bash scripts/quant-fidelity.sh [KVSTORE_BINARY] [WORK_DIR]      (or: make fidelity)
set -euo pipefail
BIN=${1:-.build/release/kvstore}
WORK=${2:-$(mktemp -d)}
mkdir -p "$WORK"
SHAPES=(llava qwen video)
QUANTS=(f16 int8 int4g32 int4g64 int4g128 int4g128m0t0)
REDUCTIONS=(none lightkv)

echo "| shape | policy | stored / input | input / stored | rel err (prop) | cos (prop) | rel err (plain) | Δ rel err from quantization |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for shape in "${SHAPES[@]}"; do
  snap="$WORK/$shape.safetensors"
  [ -f "$snap" ] || "$BIN" synth --preset "$shape" --seed 0 -o "$snap" >/dev/null
  policies=()
  for r in "${REDUCTIONS[@]}"; do for q in "${QUANTS[@]}"; do policies+=("$r+$q"); done; done
  args=(); for p in "${policies[@]}"; do args+=(--policy "$p"); done
  "$BIN" eval "$snap" "${args[@]}" --json > "$WORK/$shape-quant.json"
  : > "$WORK/$shape-bytes.txt"
  for p in "${policies[@]}"; do
    store="$WORK/store-$shape"
    rm -rf "$store"
    KVSTORE_HOME="$store" "$BIN" ingest --fidelity off --policy "$p" "$snap" > /dev/null
    out=$(KVSTORE_HOME="$store" "$BIN" ls --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["bytes_out"])')
    echo "$p $out" >> "$WORK/$shape-bytes.txt"
  done
  python3 - "$snap" "$WORK/$shape-quant.json" "$WORK/$shape-bytes.txt" "$shape" <<'PY'
import json, os, sys
snap, evals, sizes, shape = sys.argv[1:]
size = os.path.getsize(snap)
stored = dict(line.split() for line in open(sizes))
results = json.load(open(evals))[0]["evaluations"]
quants = len(results) // 2  # policies come as (none, lightkv) × quantizations, f16 first
for i, (p, e) in enumerate(zip(stored, results)):
    o = e["overall"]
    out = int(stored[p])
    base = results[(i // quants) * quants]["overall"]["proportional"]["relative_error"]
    delta = o["proportional"]["relative_error"] - base
    print(f"| {shape} | {p} | {100*out/size:.1f}% | {size/out:.2f}× | {o['proportional']['relative_error']:.4f} "
          f"| {o['proportional']['cosine']:.5f} | {o['plain']['relative_error']:.4f} | {delta:+.4f} |")
PY
done
