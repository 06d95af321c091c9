#!/usr/bin/env bash
# Same question and new question over one prefix (docs/FIDELITY.md, "Same and new question"):
# `kvstore synth --questions 4` per shape, then `kvstore eval --cross` for every method.
# Usage: scripts/cross-fidelity.sh [BIN] [LAYERS]   (default: .build/release/kvstore, 8 layers)
# SYNTH_ARGS adds synth flags to every shape (e.g. "--kv-heads 8 --grid 12x12" for a quick run).
set -euo pipefail
bin=${1:-.build/release/kvstore}
layers=${2:-8}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
policies=(none int8 int4g128m0t0r1 lightkv lightkv35 tome35 uniform35 "prompt-topk35:profile=flat"
          aircache35 airmerge35 airmerge20 "airmerge20+int4g128m0t0r1")
args=()
for p in "${policies[@]}"; do args+=(--policy "$p"); done
for preset in llava qwen video; do
    # shellcheck disable=SC2086
    "$bin" synth --preset "$preset" --questions 4 --layers "$layers" ${SYNTH_ARGS:-} -o "$work/$preset" >/dev/null
    echo "### $preset ($layers layers${SYNTH_ARGS:+, $SYNTH_ARGS}, 4 questions)"
    echo
    echo "| policy | prefix vision kept | same question | new question | new / same |"
    echo "| --- | ---: | ---: | ---: | ---: |"
    "$bin" eval --cross "${args[@]}" "$work/$preset"/*.safetensors | tail -n +3 |
        awk '{ printf "| `%s` | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5 }'
    echo
done
