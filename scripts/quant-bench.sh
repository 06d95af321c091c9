#!/bin/sh
# Quantize/dequantize throughput (release) and zstd sizes of the quantized block layouts.
# Usage: scripts/quant-bench.sh [layers] — needs the `zstd` CLI for the size table.
set -e
cd "$(dirname "$0")/.."
swift build -c release --target LightKV >/dev/null
flags=""
[ "$(uname -m)" = x86_64 ] && flags="-target-cpu haswell"
swiftc -O $flags -I .build/release/Modules scripts/quant-bench/main.swift .build/release/LightKV.build/*.o -o .build/release/quant-bench
dir=/tmp/quant-bench
rm -rf "$dir"
.build/release/quant-bench "${1:-32}" "$dir"
echo "zstd -3 on the first 4 layers' blocks (bytes in -> out, ratio):"
for f in "$dir"/*.bin; do
  in=$(wc -c < "$f"); out=$(zstd -3 -c "$f" | wc -c)
  printf '%-40s %10d -> %10d  %.3f\n' "$(basename "$f" .bin)" "$in" "$out" "$(echo "$in / $out" | bc -l)"
done
