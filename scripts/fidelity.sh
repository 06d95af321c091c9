#!/usr/bin/env bash
# The tables of docs/FIDELITY.md: every reduction method at matched average vision retention
# (55%, 35%, 20%) on synthetic snapshots of three shapes, attention-output fidelity of the
# probe queries with and without proportional attention.
#
#   bash scripts/fidelity.sh [KVSTORE_BINARY] [WORK_DIR]      (or: make fidelity)
#
# Writes Markdown to stdout; snapshots and raw JSON stay in WORK_DIR (default: a temp dir).
set -euo pipefail
BIN=${1:-.build/release/kvstore}
WORK=${2:-$(mktemp -d)}
mkdir -p "$WORK"
SHAPES=(llava qwen video)
# `lightkv%:windows=off` isolates what the windows cost (see docs/FIDELITY.md).
METHODS=(lightkv lightkv%:windows=off tome prompt-topk uniform random)
RETENTIONS=(55 35 20)

policies=()
for r in "${RETENTIONS[@]}"; do
  for m in "${METHODS[@]}"; do
    if [[ $m == *%* ]]; then policies+=(--policy "${m/\%/$r}"); else policies+=(--policy "$m$r"); fi
  done
done

for shape in "${SHAPES[@]}"; do
  snap="$WORK/$shape.safetensors"
  [ -f "$snap" ] || "$BIN" synth --preset "$shape" --seed 0 -o "$snap" >/dev/null
  "$BIN" eval "$snap" "${policies[@]}" --json > "$WORK/$shape.json"
done

python3 - "$WORK" "${SHAPES[@]}" <<'PY'
import json, re, sys
work, shapes = sys.argv[1], sys.argv[2:]
print("| shape | target | method | vision kept | rel err (prop) | cos (prop) | rel err (plain) | cos (plain) | encoded |")
print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for shape in shapes:
    for result in json.load(open(f"{work}/{shape}.json")):
        for e in result["evaluations"]:
            method, target, options = re.match(r"^([a-z-]+?)(\d+)(.*)$", e["policy"].split("+")[0]).groups()
            method += options
            o = e["overall"]
            print(f"| {shape} | {target}% | {method} | {100*o['vision_retention']:.1f}% "
                  f"| {o['proportional']['relative_error']:.4f} | {o['proportional']['cosine']:.5f} "
                  f"| {o['plain']['relative_error']:.4f} | {o['plain']['cosine']:.5f} "
                  f"| {100*o['encoded_bytes']/o['input_bytes']:.1f}% |")
PY
