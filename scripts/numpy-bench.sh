#!/usr/bin/env bash
# Reproduces docs/BENCHMARKS.md "LightKV compressor vs a numpy implementation": the Swift LightKV
# compressor next to scripts/lightkv_numpy.py (the same KV-space method, default settings, in
# vectorised numpy) on the ~340 MB LLaVA-1.5-shaped snapshot, plus the cross-check that both
# produce the same merges. Every time is the median of RUNS runs (the machine is shared).
set -euo pipefail
BIN=${1:-.build/release/kvstore}
DIR=${BENCH_DIR:-bench}
RUNS=${RUNS:-3}
PY=${PYTHON:-python3}
mkdir -p "$DIR"
IN="$DIR/llava.safetensors"
[ -f "$IN" ] || "$BIN" synth --preset llava --seed 1 -o "$IN"
cat "$IN" > /dev/null   # warm page cache for every contender

median() { sort -g | sed -n "$(( (RUNS + 1) / 2 ))p"; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "python: $($PY -c 'import numpy, safetensors, sys; print(sys.version.split()[0], "numpy", numpy.__version__, "safetensors", safetensors.__version__)')"
echo "input: $IN, $(stat -c %s "$IN") bytes"

# Cross-check first: same positions and sizes per layer, keys/values within F16 rounding.
STORE=$(mktemp -d)
id=$(KVSTORE_HOME=$STORE "$BIN" ingest --policy lightkv+f16 --fidelity off "$IN")
KVSTORE_HOME=$STORE "$BIN" fetch "$id" --dtype f32 -o "$DIR/lightkv.fetched.safetensors"
$PY scripts/lightkv_numpy.py "$IN" --compare "$DIR/lightkv.fetched.safetensors"
rm -rf "$STORE" "$DIR/lightkv.fetched.safetensors"
echo

np_compress=() np_total=() np_wall=() sw_reduce=() sw_ingest=()
log=$(mktemp)
for _ in $(seq "$RUNS"); do
    # numpy: compression alone; load + compress + write .npz; and the whole process
    /usr/bin/time -o "$log" -f "%e" $PY scripts/lightkv_numpy.py "$IN" -o "$DIR/lightkv.np.npz" --time > "$log.out"
    np_compress+=("$(awk '{print $5}' "$log.out")")
    np_total+=("$(awk '{print $11}' "$log.out")")
    np_wall+=("$(tail -1 "$log")")
    # Swift: the compressor alone (eval's reduce seconds), and ingest's wall time
    sw_reduce+=("$("$BIN" eval "$IN" --policy lightkv --json | awk -F': ' '/"reduce_seconds"/{gsub(/[ ,]/, "", $2); print $2}')")
    STORE=$(mktemp -d)
    KVSTORE_HOME=$STORE /usr/bin/time -o "$log" -f "%e" "$BIN" ingest --policy lightkv --fidelity off "$IN" > /dev/null
    sw_ingest+=("$(tail -1 "$log")")
    rm -rf "$STORE"
done
rm -f "$log" "$log.out" "$DIR/lightkv.np.npz"

c=$(printf '%s\n' "${np_compress[@]}" | median); t=$(printf '%s\n' "${np_total[@]}" | median)
w=$(printf '%s\n' "${np_wall[@]}" | median); r=$(printf '%s\n' "${sw_reduce[@]}" | median)
i=$(printf '%s\n' "${sw_ingest[@]}" | median)
echo "runs: numpy compress ${np_compress[*]} | numpy total ${np_total[*]} | numpy wall ${np_wall[*]} | swift reduce ${sw_reduce[*]} | ingest ${sw_ingest[*]}"
echo
echo "| what | numpy (s) | Swift (s) | speed-up |"
echo "| --- | --- | --- | --- |"
awk -v c="$c" -v r="$r" 'BEGIN{printf "| compression alone (numpy compress; eval reduce s) | %.3f | %.3f | %.0f× |\n", c, r, c/r}'
awk -v t="$t" -v i="$i" 'BEGIN{printf "| total (numpy load+compress+write .npz; ingest --policy lightkv wall) | %.3f | %.3f | %.1f× |\n", t, i, t/i}'
awk -v w="$w" -v i="$i" 'BEGIN{printf "| whole process (python3 wall; ingest wall) | %.3f | %.3f | %.1f× |\n", w, i, w/i}'
