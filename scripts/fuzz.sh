#!/usr/bin/env bash
# Fuzz the release binary with thousands of mutated snapshots and damaged blobs
# (scripts/fuzz.py says what is checked). Usage: scripts/fuzz.sh [CASES] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
cases=${1:-3000}
seed=${2:-1}
swift build -c release >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 scripts/fuzz.py .build/release/kvstore "$cases" "$seed" "$work"
