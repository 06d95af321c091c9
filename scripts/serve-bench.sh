#!/usr/bin/env bash
# The `kvstore serve` figures of docs/BENCHMARKS.md: fetch throughput of a LLaVA-1.5-7B-shaped
# entry over loopback HTTP by 1, 4 and 16 concurrent clients (wrk), beside `kvstore fetch` to a
# file in the same run; metadata request rate; the server's peak RSS under that load.
# Usage: scripts/serve-bench.sh [BIN] [POLICY] [SECONDS]   (needs wrk and curl: apt-get install wrk curl)
set -euo pipefail
BIN=$(realpath "${1:-.build/release/kvstore}")
POLICY=${2:-lightkv+int8}
DURATION=${3:-10}
WORK=${KVSTORE_BENCH_DIR:-bench/serve}
mkdir -p "$WORK"; WORK=$(realpath "$WORK")
export KVSTORE_HOME=$WORK/store
trap 'kill $SERVER 2>/dev/null || true' EXIT

[ -f "$WORK/llava.safetensors" ] || "$BIN" synth --preset llava --seed 1 -o "$WORK/llava.safetensors" >/dev/null
rm -rf "$KVSTORE_HOME"
ID=$("$BIN" ingest --fidelity off --policy "$POLICY" "$WORK/llava.safetensors")
OUT_BYTES=$("$BIN" fetch "$ID" -o - | wc -c)
echo "entry $ID ($POLICY): $(stat -c %s "$WORK/llava.safetensors") bytes in, kvsnap out $OUT_BYTES bytes"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "## kvstore fetch to a file (5 runs, median)"
for _ in 1 2 3 4 5; do
  rm -f "$WORK/out.safetensors"; sync
  /usr/bin/time -f "%e" "$BIN" fetch "$ID" -o "$WORK/out.safetensors" 2>&1 >/dev/null | tail -1
done | median | awk -v b="$OUT_BYTES" '{printf "cli fetch: %.3f s, %.0f MB/s\n", $1, b/$1/1e6}'

"$BIN" serve --listen 127.0.0.1:0 > "$WORK/serve.out" 2> "$WORK/serve.err" &
SERVER=$!
for _ in $(seq 100); do grep -q listening "$WORK/serve.out" && break; sleep 0.1; done
URL=$(sed -n 's/^listening on //p' "$WORK/serve.out")

echo "## one client, curl (5 runs, median)"
for _ in 1 2 3 4 5; do
  rm -f "$WORK/http.safetensors"; sync
  curl -s -o "$WORK/http.safetensors" -w '%{time_total}\n' "$URL/v1/entries/$ID/kvsnap"
done | median | awk -v b="$OUT_BYTES" '{printf "curl to a file: %.3f s, %.0f MB/s\n", $1, b/$1/1e6}'
cmp "$WORK/http.safetensors" "$WORK/out.safetensors" && echo "identical to the CLI's output"
for _ in 1 2 3 4 5; do curl -s -o /dev/null -w '%{time_total}\n' "$URL/v1/entries/$ID/kvsnap"; done \
  | median | awk -v b="$OUT_BYTES" '{printf "curl to /dev/null: %.3f s, %.0f MB/s\n", $1, b/$1/1e6}'

for c in 1 4 16; do
  d=$(( DURATION * (c < 16 ? 1 : 3) ))  # 16 clients share ~0.4 GB/s: each response takes seconds
  echo "## wrk, $c concurrent clients, ${d}s, kvsnap"
  wrk -t "$(( c < 2 ? 1 : 2 ))" -c "$c" -d "${d}s" --latency --timeout 60s "$URL/v1/entries/$ID/kvsnap" \
    | grep -E "Requests/sec|Transfer/sec|99%|50%|Non-2xx|Socket errors|requests in"
  grep -E "^(VmHWM|VmRSS)" /proc/$SERVER/status | tr '\n' ' '; echo
done

echo "## wrk, 16 clients, ${DURATION}s, metadata (GET /v1/entries/{id})"
wrk -t 2 -c 16 -d "${DURATION}s" --latency "$URL/v1/entries/$ID" | grep -E "Requests/sec|99%|50%|Non-2xx|Socket errors|requests in"
echo "## wrk, 16 clients, ${DURATION}s, a page of the list (GET /v1/entries?limit=100)"
wrk -t 2 -c 16 -d "${DURATION}s" --latency "$URL/v1/entries?limit=100" | grep -E "Requests/sec|99%|Non-2xx|Socket errors"
echo "## server peak RSS over the whole run"
grep -E "^(VmHWM|VmRSS)" /proc/$SERVER/status
kill -TERM $SERVER; wait $SERVER; echo "server stopped: exit $?"
