#!/usr/bin/env bash
# Fuzz `kvstore serve` against docs/openapi.yaml with schemathesis (PyPI): every operation,
# generated and mutated requests, a write token so uploads, deletes and pins run too.
# Passes when no request gets a 5xx, every answer conforms to the document, the server is
# still up, the store verifies, and SIGTERM stops the server with exit code 0.
# Usage: scripts/serve-fuzz.sh [BIN] [SECONDS]   (BIN default .build/release/kvstore)
set -euo pipefail
BIN=$(realpath "${1:-.build/release/kvstore}")
SECONDS_BUDGET=${2:-120}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/kvstore-fuzz.XXXXXX)
VENV=${KVSTORE_FUZZ_VENV:-$ROOT/.build/fuzz-venv}
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT

if [ ! -x "$VENV/bin/schemathesis" ]; then
  python3 -m venv "$VENV" && "$VENV/bin/pip" install -q --disable-pip-version-check 'schemathesis>=4,<5'
fi

export KVSTORE_HOME=$WORK/store
"$BIN" synth --preset tiny --images 2 -o "$WORK/a.safetensors" >/dev/null
"$BIN" synth --preset tiny --seed 7 -o "$WORK/b.safetensors" >/dev/null
"$BIN" ingest --policy lightkv+int8 "$WORK/a.safetensors" >/dev/null
"$BIN" ingest --policy none "$WORK/b.safetensors" >/dev/null
TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '%s write\n' "$TOKEN" > "$WORK/tokens"

"$BIN" serve --listen 127.0.0.1:0 --tokens "$WORK/tokens" --max-upload 1MB > "$WORK/serve.out" 2> "$WORK/serve.err" &
SERVER=$!
for _ in $(seq 100); do grep -q listening "$WORK/serve.out" && break; sleep 0.1; done
URL=$(sed -n 's/^listening on //p' "$WORK/serve.out")
echo "fuzzing $URL for up to ${SECONDS_BUDGET}s"

status=0
"$VENV/bin/schemathesis" run "$ROOT/docs/openapi.yaml" --url "$URL" -H "Authorization: Bearer $TOKEN" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
  --max-time "$SECONDS_BUDGET" --workers 2 --suppress-health-check all --no-color || status=$?

kill -0 $SERVER || { echo "FAIL: the server died"; cat "$WORK/serve.err"; exit 1; }
"$BIN" verify >/dev/null || { echo "FAIL: the store does not verify after the fuzz run"; exit 1; }
kill -TERM $SERVER; wait $SERVER || { echo "FAIL: SIGTERM exit code $?"; exit 1; }
if grep -q "$TOKEN" "$WORK/serve.err"; then echo "FAIL: the token reached the log"; exit 1; fi
echo "server error lines: $(grep -c ' error ' "$WORK/serve.err" || true)"
if [ $status -eq 0 ]; then echo "fuzz: no 5xx, every response conforms, server up, store verifies, clean stop"
else echo "fuzz: schemathesis reported failures (exit $status)"; fi
exit $status
