#!/usr/bin/env bash
# The frontier of docs/FIDELITY.md: every reduction method at 5, 10, 20, 35 and 55% average
# vision retention, in F16 and with int4g128m0t0r1, on synthetic snapshots of three shapes;
# × smaller than F16 against attention-output relative error (proportional attention).
#
#   bash scripts/frontier.sh [KVSTORE_BINARY] [OUT_DIR]      (or: make frontier)
#
# Writes OUT_DIR/frontier.md (the table) and OUT_DIR/frontier-SHAPE.svg (the plots); snapshots
# are temporary. About 3 (llava), 3 (qwen) and 4 (video) minutes on the 2-core machine.
set -euo pipefail
BIN=${1:-.build/release/kvstore}
OUT=${2:-docs/frontier}
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
: > "$WORK/table.md"
for shape in llava qwen video; do
  snap="$WORK/$shape.safetensors"
  "$BIN" synth --preset "$shape" --seed 0 -o "$snap" >/dev/null
  "$BIN" eval --frontier "$snap" --svg "$OUT/frontier-$shape.svg" > "$WORK/$shape.md"
  if [ ! -s "$WORK/table.md" ]; then head -2 "$WORK/$shape.md" > "$WORK/table.md"; fi
  tail -n +3 "$WORK/$shape.md" >> "$WORK/table.md"
done
mv "$WORK/table.md" "$OUT/frontier.md"
echo "wrote $OUT/frontier.md and $OUT/frontier-{llava,qwen,video}.svg"
