#!/usr/bin/env bash
# The demo behind `make demo`: synthesize snapshots shaped like real LVLM caches, ingest them
# with LightKV + int8, fetch one back, and print what was saved.
set -euo pipefail
BIN=${1:-.build/release/kvstore}
DIR=${2:-demo}
POLICY=${POLICY:-lightkv+int8}
rm -rf "$DIR"
mkdir -p "$DIR/inbox"
export KVSTORE_HOME="$DIR/store"

echo "== synthesizing: 2 LLaVA-1.5-7B-shaped chats about the same image, 1 Qwen2.5-VL-shaped video"
"$BIN" synth --preset llava --count 2 --same-image -o "$DIR/inbox/llava"
"$BIN" synth --preset video -o "$DIR/inbox/video.safetensors"
ls -l "$DIR"/inbox/llava/*.safetensors "$DIR/inbox/video.safetensors" | awk '{printf "  %-60s %8.1f MB\n", $NF, $5/1e6}'

echo "== ingesting with policy $POLICY"
"$BIN" ingest --policy "$POLICY" "$DIR"/inbox/llava/*.safetensors "$DIR/inbox/video.safetensors"

echo "== the store"
"$BIN" ls
"$BIN" stats

ID=$("$BIN" ls --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
echo "== fetching ${ID:0:12} back as a kvsnap"
/usr/bin/time -f "  fetch took %e s, peak RSS %M KB" "$BIN" fetch "$ID" -o "$DIR/fetched.safetensors"
python3 - "$DIR/fetched.safetensors" <<'PY'
import json, sys
from safetensors import safe_open
f = safe_open(sys.argv[1], "np")
meta = f.metadata()
layers = sorted({int(k.split(".")[1]) for k in f.keys()})
kept = [f.get_tensor(f"layers.{i}.positions").shape[0] for i in layers]
seq = int(meta["kvsnap.seq_len"])
print(f"  Python safetensors reads it: {len(layers)} layers, entries kept per layer {min(kept)}..{max(kept)} of {seq}")
print(f"  compression: {meta['kvsnap.compression']}")
PY
echo "== what the compression cost, measured at ingest on the synth probes (sampled layers)"
"$BIN" show "$ID" | grep -E '^(entries kept|bytes|fidelity)'
"$BIN" verify
