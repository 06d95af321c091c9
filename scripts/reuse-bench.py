#!/usr/bin/env python3
"""Reuse vs recompute: time from a stored entry to a ready cache on the device, by path and
policy, beside prefill of the same tokens on the same device (random weights, timing only).

    scripts/reuse-bench.py [--bin .build/release/kvstore] [--device cpu|cuda] [--runs 3]
                           [--workloads llava,qwen,video] [--policies none,lightkv,...]
                           [--prefill-layers N]

Workloads are the synth presets (docs/SYNTH.md): `llava` (LLaVA-1.5-7B-shaped, 636 tokens),
`qwen` (Qwen2.5-VL-7B-shaped, 1922 tokens) and `video` (the same model, 8 frames, 3794 tokens).
Paths, each timed from the store to every layer's keys and values on the device as F16 (BF16
for the prefill on a GPU), median of --runs after one warm-up, page cache warm:

- fetch + safetensors: `kvstore fetch ID -o F` (decodes on the CPU), then
  `safetensors.torch.load_file(F, device)`;
- raw + device decode: `kvstore fetch --raw ID -o P` (the compressed bytes), then
  `kvstore.torch.load_pack(P, device)` (codecs on CPU threads, the rest on the device).

Prefill: the model's text decoder (Llama for LLaVA, Qwen2 for Qwen2.5-VL: same layer shapes)
with random weights over the same number of tokens; on a CPU only --prefill-layers layers are
run (default 1) and the time is scaled to the model's depth, which is what the table says.
Prints a Markdown table for docs/BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))
import kvstore  # noqa: E402
import kvstore.torch as kvtorch  # noqa: E402

WORKLOADS = {
    "llava": (["--preset", "llava"], "llama", dict(hidden_size=4096, intermediate_size=11008, num_attention_heads=32,
                                                   num_key_value_heads=32, num_hidden_layers=32)),
    "qwen": (["--preset", "qwen"], "qwen2", dict(hidden_size=3584, intermediate_size=18944, num_attention_heads=28,
                                                 num_key_value_heads=4, num_hidden_layers=28)),
    "video": (["--preset", "video"], "qwen2", dict(hidden_size=3584, intermediate_size=18944, num_attention_heads=28,
                                                   num_key_value_heads=4, num_hidden_layers=28)),
}
POLICIES = ["none", "lightkv", "lightkv+int8", "lightkv+int4", "lightkv+int4g128m0t0"]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, runs: int, device: torch.device) -> float:
    fn()  # warm-up: page cache, allocator, kernels
    sync(device)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def prefill_seconds(kind: str, shape: dict, tokens: int, layers: int, device: torch.device, runs: int) -> float:
    """Seconds for a prefill of `tokens` through the whole decoder, from `layers` timed layers."""
    from transformers import LlamaConfig, LlamaModel, Qwen2Config, Qwen2Model
    depth = shape["num_hidden_layers"]
    run = min(layers, depth)
    config_type, model_type = (LlamaConfig, LlamaModel) if kind == "llama" else (Qwen2Config, Qwen2Model)
    config = config_type(**dict(shape, num_hidden_layers=run), vocab_size=256, max_position_embeddings=32768)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    with torch.device(device):
        model = model_type(config).to(dtype).eval()
    x = torch.randn(1, tokens, shape["hidden_size"], device=device, dtype=dtype)

    def forward() -> None:
        with torch.no_grad():
            model(inputs_embeds=x, use_cache=False)
    seconds = timed(forward, runs, device)
    del model
    return seconds * depth / run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bin", default=str(ROOT / ".build/release/kvstore"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workloads", default="llava,qwen,video")
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--prefill-layers", type=int, default=None,
                        help="decoder layers actually run for the prefill figure (default: all on a GPU, 1 on a CPU)")
    parser.add_argument("--work", help="scratch directory (default: a temporary one)")
    args = parser.parse_args()
    device = torch.device(args.device)
    layers = args.prefill_layers or (1000 if device.type == "cuda" else 1)
    work = Path(args.work or tempfile.mkdtemp(prefix="reuse-bench-"))
    work.mkdir(parents=True, exist_ok=True)

    def cli(*a: str) -> str:
        return subprocess.run([args.bin, *a], check=True, capture_output=True, text=True).stdout.strip()

    label = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()}), torch {torch.__version__}"
    print(f"device: {label}; kvstore {args.bin}; median of {args.runs} runs\n")
    print("| workload | tokens | policy | stored MB | fetch + safetensors s | raw + device decode s | "
          "prefill s | best path / prefill |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in args.workloads.split(","):
        synth_args, kind, shape = WORKLOADS[name]
        snap = work / f"{name}.safetensors"
        if not snap.exists():
            cli("synth", *synth_args, "-o", str(snap))
        tokens = kvstore.read(snap, check_finite=False).original_length
        prefill = prefill_seconds(kind, shape, tokens, layers, device, args.runs)
        scaled = "" if layers >= shape["num_hidden_layers"] else f" ({min(layers, shape['num_hidden_layers'])} of {shape['num_hidden_layers']} layers timed, scaled)"
        for policy in args.policies.split(","):
            store = work / f"store-{name}-{policy}"
            shutil.rmtree(store, ignore_errors=True)  # a fresh store: an id already there keeps its old policy
            entry = cli("ingest", "--store", str(store), "--fidelity", "off", "--policy", policy, str(snap))
            fetched, raw = work / "fetched.safetensors", work / "fetched.kvpack"

            def via_safetensors() -> None:
                from safetensors.torch import load_file
                cli("fetch", "--store", str(store), entry, "-o", str(fetched))
                load_file(str(fetched), device=str(device))

            def via_device() -> None:
                cli("fetch", "--store", str(store), "--raw", entry, "-o", str(raw))
                kvtorch.load_pack(raw, device, dtype=torch.float16)

            a = timed(via_safetensors, args.runs, device)
            b = timed(via_device, args.runs, device)
            stored = raw.stat().st_size / 1e6
            print(f"| {name} | {tokens} | `{policy}` | {stored:.1f} | {a:.3f} | {b:.3f} | {prefill:.2f}{scaled} | "
                  f"{min(a, b) / prefill:.2%} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
