"""Qwen2.5-VL video through the vLLM connector, end to end on CPU (a check, not a test: two
engine starts, about three minutes here).

    KVSTORE_BIN=.build/debug/kvstore python scripts/vllm-video-check.py [WORK_DIR]

(in the environment `scripts/python-env.sh vllm` prints). Writes a tiny random Qwen2.5-VL that
vLLM loads, then asks four questions, each about a seeded noise video of 4 frames: video A at
2 fps, A again with another question, video B, and A at 0.5 fps (other `second_per_grid_ts`,
so other temporal positions). Once without the connector (the reference), once with it on a
fresh store. Passes when every answer (tokens and first logprob) equals the reference, the
second question loaded A's stored prefix, and B and A at another timing loaded nothing."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

QUESTIONS = [("Describe the picture in one sentence.", 4, 2.0), ("What colour is the cat on the mat?", 4, 2.0),
             ("How many people stand near the red car?", 5, 2.0), ("What colour is the cat on the mat?", 4, 0.5)]


def write_model(path: str) -> None:
    import torch
    from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                              Qwen2VLImageProcessor, Qwen2VLVideoProcessor)
    from kvstore.tiny import SPECIALS, _bpe_tokenizer
    tokenizer, ids = _bpe_tokenizer(SPECIALS, {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"})
    torch.manual_seed(0)
    text = dict(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048, bos_token_id=None,
                eos_token_id=ids["<|endoftext|>"], pad_token_id=ids["<|endoftext|>"],
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 6, 6]})
    config = Qwen2_5_VLConfig(text_config=text, vision_config=dict(
        depth=2, hidden_size=64, intermediate_size=128, num_heads=2, out_hidden_size=128, patch_size=14,
        spatial_merge_size=2, temporal_patch_size=2, window_size=112, fullatt_block_indexes=[1], tokens_per_second=2,
        in_chans=3), image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        eos_token_id=ids["<|endoftext|>"], tie_word_embeddings=False)
    Qwen2_5_VLForConditionalGeneration(config).to(torch.bfloat16).eval().save_pretrained(path)
    pixels = 224 * 224
    sizes = dict(min_pixels=pixels, max_pixels=pixels, patch_size=14, merge_size=2, temporal_patch_size=2)
    Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(**sizes), tokenizer=tokenizer,
                        video_processor=Qwen2VLVideoProcessor(**sizes)).save_pretrained(path)


def engine(model: str, extra: dict | None, stats: str | None) -> None:
    """One engine: asks QUESTIONS in order, prints their answers as one JSON line."""
    import numpy as np
    from vllm import LLM, SamplingParams
    options = {}
    if extra is not None:
        options["kv_transfer_config"] = {"kv_connector": "KVStoreConnector", "kv_connector_module_path": "kvstore.vllm",
                                         "kv_role": "kv_both", "kv_connector_extra_config": extra}
    llm = LLM(model=model, dtype="bfloat16", max_model_len=1024, enforce_eager=True, enable_prefix_caching=False,
              seed=0, limit_mm_per_prompt={"video": 1, "image": 0}, **options)
    params = SamplingParams(temperature=0.0, max_tokens=8, logprobs=0)
    answers = []
    for i, (question, seed, fps) in enumerate(QUESTIONS):
        frames = np.random.default_rng(seed).integers(0, 256, size=(4, 224, 224, 3), dtype=np.uint8)
        video = (frames, {"total_num_frames": 4, "fps": fps, "duration": 4 / fps, "video_backend": "opencv",
                          "frames_indices": [0, 1, 2, 3], "do_sample_frames": False})
        prompt = ("<|im_start|>system\nYou are a helpful assistant that looks at images.<|im_end|>\n<|im_start|>user\n"
                  f"<|vision_start|><|video_pad|><|vision_end|>{question}<|im_end|>\n<|im_start|>assistant\n")
        out = llm.generate([{"prompt": prompt, "multi_modal_data": {"video": video}}], params, use_tqdm=False)[0]
        done = out.outputs[0]
        answers.append({"tokens": list(done.token_ids), "logprob": done.logprobs[0][done.token_ids[0]].logprob,
                        "cached": out.num_cached_tokens or 0})
        if stats and i == 0:  # the first answer's save lands off the engine's path: wait for it
            deadline = time.time() + 60
            while time.time() < deadline and not (os.path.exists(stats) and json.load(open(stats)).get("saves", 0) >= 1):
                time.sleep(0.1)
    print("ANSWERS " + json.dumps(answers), flush=True)


def run(model: str, extra: dict | None, stats: str | None) -> list[dict]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", VLLM_CPU_KVCACHE_SPACE="1")
    done = subprocess.run([sys.executable, __file__, "--engine", model, json.dumps(extra), stats or ""],
                          capture_output=True, text=True, env=env, timeout=600)
    line = next((l for l in done.stdout.splitlines() if l.startswith("ANSWERS ")), None)
    if line is None:
        sys.exit(f"the engine failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(line[len("ANSWERS "):])


def main() -> int:
    if sys.argv[1:2] == ["--engine"]:
        engine(sys.argv[2], json.loads(sys.argv[3]), sys.argv[4] or None)
        return 0
    work = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="vllm-video-")
    model = os.path.join(work, "model")
    write_model(model)
    reference = run(model, None, None)
    stats = os.path.join(work, "stats.json")
    stored = run(model, {"store": os.path.join(work, "store"), "policy": "none", "stats_path": stats}, stats)
    ok = True
    for (question, seed, fps), want, got in zip(QUESTIONS, reference, stored):
        same = (want["tokens"], want["logprob"]) == (got["tokens"], got["logprob"])
        ok &= same
        print(f"video {seed} at {fps} fps, {question!r}: loaded {got['cached']} tokens, "
              f"answer {'equal to' if same else 'DIFFERENT from'} the reference")
    loads = [a["cached"] for a in stored]
    ok &= loads[0] == 0 and loads[1] > 0 and loads[2] == 0 and loads[3] == 0
    print("PASS" if ok else "FAIL", f"(loads {loads}; the second question should load, the others not)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
