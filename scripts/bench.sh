#!/usr/bin/env bash
# Reproduces docs/BENCHMARKS.md: ingest, fetch and fetch --raw of a LLaVA-1.5-7B-shaped snapshot
# for every built-in policy (`kvstore policies`; POLICIES="..." to choose), side by side with
# Debian's zstd CLI on the same file, in one run. Each figure is the median of RUNS runs; peak
# RSS is the largest seen (GNU time's %M). The ratio column divides a row's seconds by zstd -3's
# (ingest) or zstd -d's (fetch, fetch --raw) median from this same run.
set -euo pipefail
BIN=${1:-.build/release/kvstore}
DIR=${BENCH_DIR:-bench}
RUNS=${RUNS:-5}
POLICIES=${POLICIES:-$("$BIN" policies | awk 'NR > 1 && /^  [^ ]/ { print $1 } NR > 1 && !/^  / { exit }')}
# Serving nodes' snapshots carry no probe queries; synth's do, so ingests run with
# --fidelity off to time what production pays. One extra row shows the sampled measurement.
FIDELITY=${FIDELITY:-off}
mkdir -p "$DIR"
IN="$DIR/llava.safetensors"
[ -f "$IN" ] || "$BIN" synth --preset llava --seed 1 -o "$IN"
SIZE=$(stat -c %s "$IN")
cat "$IN" > /dev/null   # every contender starts from a warm page cache

# measure CMD... -> prints "seconds maxrss_kb" (median seconds, max RSS over RUNS runs)
measure() {
    local times=() rss=0 log
    log=$(mktemp)
    for _ in $(seq "$RUNS"); do
        # Remove earlier outputs and flush what they left dirty, so no run pays for another's
        # file deletion or writeback.
        rm -rf "$DIR/fetched.safetensors" "$DIR/out.raw" "$DIR/raw"; mkdir -p "$DIR/raw"
        [ -n "${PREP:-}" ] && eval "$PREP"
        sync
        /usr/bin/time -o "$log" -f "%e %M" "$@" > /dev/null 2>&1
        local t r
        read -r t r < <(tail -1 "$log")
        times+=("$t")
        (( r > rss )) && rss=$r
    done
    rm -f "$log"
    printf '%s %s\n' "$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(( (RUNS + 1) / 2 ))p")" "$rss"
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem/{print $2}') GiB"
echo "input: $IN, $SIZE bytes ($(awk "BEGIN{printf \"%.1f\", $SIZE/1e6}") MB)"
echo
echo "| what | seconds | / zstd | MB/s of input | peak RSS MB | stored bytes | input / stored |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
read -r ZC m < <(PREP="rm -f '$DIR/in.zst'" measure zstd -3 -q -f "$IN" -o "$DIR/in.zst")
Z=$(stat -c %s "$DIR/in.zst")
echo "| zstd -3 (Debian CLI) | $ZC | 1 | $(awk "BEGIN{printf \"%.0f\", $SIZE/1e6/$ZC}") | $((m/1024)) | $Z | $(awk "BEGIN{printf \"%.2f\", $SIZE/$Z}") |"
read -r ZD m < <(measure zstd -d -q -f "$DIR/in.zst" -o "$DIR/out.raw")
echo "| zstd -d (Debian CLI) | $ZD | 1 | $(awk "BEGIN{printf \"%.0f\", $SIZE/1e6/$ZD}") | $((m/1024)) | | |"
rm -f "$DIR/out.raw"
ratio() { awk "BEGIN{printf \"%.2f\", $1/$2}"; }
for P in $POLICIES; do
    export KVSTORE_HOME="$DIR/store-$P"
    rm -rf "$KVSTORE_HOME"
    # Each ingest run starts from an empty store (emptied before the clock starts), so every
    # run does the whole work.
    read -r t m < <(PREP="rm -rf '$KVSTORE_HOME'" measure "$BIN" ingest --fidelity "$FIDELITY" --policy "$P" "$IN")
    ID=$("$BIN" ls --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
    # The store's total (`stats`): a segmented entry's segment counts (docs/design/segments.md).
    OUT=$("$BIN" stats --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes_out"])')
    echo "| ingest \`$P\` | $t | $(ratio "$t" "$ZC") | $(awk "BEGIN{printf \"%.0f\", $SIZE/1e6/$t}") | $((m/1024)) | $OUT | $(awk "BEGIN{printf \"%.2f\", $SIZE/$OUT}") |"
    read -r t m < <(measure "$BIN" fetch "$ID" -o "$DIR/fetched.safetensors")
    F=$(stat -c %s "$DIR/fetched.safetensors")
    echo "| fetch, $(awk "BEGIN{printf \"%.0f\", $F/1e6}") MB out | $t | $(ratio "$t" "$ZD") | $(awk "BEGIN{printf \"%.0f\", $F/1e6/$t}") (output) | $((m/1024)) | | |"
    read -r t m < <(measure "$BIN" fetch "$ID" --raw -o "$DIR/raw/entry.kvpack")
    echo "| fetch --raw | $t | $(ratio "$t" "$ZD") | | $((m/1024)) | | |"
    rm -rf "$DIR/fetched.safetensors" "$DIR/raw"
done
export KVSTORE_HOME="$DIR/store-fidelity"
read -r t m < <(PREP="rm -rf '$KVSTORE_HOME'" measure "$BIN" ingest --fidelity sample --policy lightkv+int8 "$IN")
echo "| ingest \`lightkv+int8\` --fidelity sample (5 of 32 layers measured) | $t | $(ratio "$t" "$ZC") | $(awk "BEGIN{printf \"%.0f\", $SIZE/1e6/$t}") | $((m/1024)) | | |"
