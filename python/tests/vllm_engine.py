"""A vLLM engine on CPU that python/tests/test_vllm.py (and examples/vllm_reuse.py) drive from
another process: vLLM starts its engine core in subprocesses, which wants a `__main__` guard.

    python vllm_engine.py MODEL_DIR CONNECTOR_JSON [OPTIONS_JSON]
        # CONNECTOR_JSON: extra config, or null; OPTIONS_JSON: more arguments of vllm.LLM

It prints `ENGINE {"ready": true}` once loaded, then reads one JSON command a line from stdin
and answers each with one `ENGINE {...}` line on stdout (vLLM's own logs pass through):
  {"op": "generate", "question": "...", "image": SEED, "max_tokens": N}
      -> {"tokens": [...], "logprob": first token's, "prompt_tokens": n, "cached_tokens": n, "seconds": s}
  {"op": "quit"}
MODEL_DIR is a folder from kvstore.tiny (`qwen2_vl_folder` or `llava_folder`); the image is a
seeded noise picture (256 image tokens in either)."""
from __future__ import annotations

import json
import sys
import time

PREFIX = "ENGINE "


def say(answer: dict) -> None:
    print(PREFIX + json.dumps(answer), flush=True)


def image(seed: int):
    import numpy as np
    from PIL import Image
    pixels = np.random.default_rng(seed).integers(0, 256, size=(448, 448, 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


def main() -> None:
    model, extra = sys.argv[1], json.loads(sys.argv[2])
    more = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    from vllm import LLM, SamplingParams

    from kvstore.tiny import folder_prompt
    options = {}
    if extra is not None:
        options["kv_transfer_config"] = {"kv_connector": "KVStoreConnector", "kv_connector_module_path": "kvstore.vllm",
                                         "kv_role": "kv_both", "kv_connector_extra_config": extra}
    # Prefix caching off: a second request about the same image would otherwise hit vLLM's own
    # cache of the first, and the store would never be asked.
    llm = LLM(model=model, dtype="bfloat16", max_model_len=512, enforce_eager=True, enable_prefix_caching=False,
              seed=0, limit_mm_per_prompt={"image": 1}, **options, **more)
    say({"ready": True})
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "quit":
            break
        params = SamplingParams(temperature=0.0, max_tokens=int(command.get("max_tokens", 8)), logprobs=0)
        request = {"prompt": folder_prompt(model, command["question"]),
                   "multi_modal_data": {"image": image(int(command.get("image", 0)))}}
        began = time.perf_counter()
        out = llm.generate([request], params, use_tqdm=False)[0]
        seconds = time.perf_counter() - began
        completion = out.outputs[0]
        first = completion.logprobs[0][completion.token_ids[0]].logprob if completion.logprobs else None
        say({"tokens": list(completion.token_ids), "logprob": first, "prompt_tokens": len(out.prompt_token_ids),
             "cached_tokens": out.num_cached_tokens or 0, "seconds": seconds})
    say({"bye": True})


if __name__ == "__main__":
    main()
