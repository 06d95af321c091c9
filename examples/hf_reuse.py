#!/usr/bin/env python3
"""Reuse a vision-language model's prefilled cache through kvstore, end to end:
capture -> kvstore ingest -> kvstore fetch -> load -> continue generating.

    python examples/hf_reuse.py --model llava-hf/llava-1.5-7b-hf --image cat.jpg --prompt "What is this?"
    python examples/hf_reuse.py --model Qwen/Qwen2.5-VL-7B-Instruct --image cat.jpg --prompt "..." --policy lightkv
    python examples/hf_reuse.py --tiny llava          # tiny random model, no download
    python examples/hf_reuse.py --tiny qwen2_5_vl

With --question, reuse means a new question about the same image: the first prompt is
captured and stored, `kvstore fetch --prefix` returns its shareable prefix (system text and
images, no prompt), and the second question is prefilled on top of it, no pixels needed:

    python examples/hf_reuse.py --tiny qwen2_5_vl --question "What colour is it?"
    python examples/hf_reuse.py --model Qwen/Qwen2.5-VL-7B-Instruct --image cat.jpg --question "Is it asleep?"

It needs the `kvstore` binary on the PATH (`make install`) and `pip install ./python[hf]`
(plus Pillow for --image). It prints both continuations and exits 0 only if the one generated
from the stored cache is token-for-token identical to the uninterrupted one (with --question:
to a fresh prefill of the second prompt).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import torch

import kvstore
import kvstore.hf
from kvstore import tiny

FETCH_DTYPE = {torch.float32: "f32", torch.bfloat16: "bf16", torch.float16: "f16"}


def hub_model(model_id: str, image: str, prompts: list[str]):
    """A Hugging Face model, the processor's inputs for one image and each prompt, and the image bytes."""
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor
    processor = AutoProcessor.from_pretrained(model_id)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForImageTextToText.from_pretrained(model_id, dtype=dtype).to(device).eval()
    inputs = []
    for prompt in prompts:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        text = processor.apply_chat_template(messages, add_generation_prompt=True)
        inputs.append(dict(processor(images=[Image.open(image).convert("RGB")], text=text,
                                     return_tensors="pt").to(model.device)))
    with open(image, "rb") as f:
        return model, inputs, [f.read()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="Hugging Face model id or directory (LLaVA, Qwen2-VL, Qwen2.5-VL)")
    which.add_argument("--tiny", choices=["llava", "qwen2_5_vl"], help="a tiny random model built from a config")
    parser.add_argument("--image", help="image file (with --model)")
    parser.add_argument("--prompt", default="Describe the image.", help="prompt (with --model)")
    parser.add_argument("--question", help="a second prompt about the same image, asked on the stored prefix")
    parser.add_argument("--policy", default="none", help="kvstore compression policy (default: none, exact)")
    parser.add_argument("--mode", default="proportional", choices=["proportional", "expand"])
    parser.add_argument("--store", help="store directory (default: a temporary one)")
    parser.add_argument("--tokens", type=int, default=8, help="tokens to generate")
    args = parser.parse_args()
    if args.tokens < 1:
        parser.error(f"--tokens {args.tokens}: at least 1 token to generate")
    if args.question is not None and not args.question.strip():
        parser.error("--question is empty: give the second prompt, or leave --question out")

    if args.tiny:
        model, inputs, media = tiny.llava(images=2) if args.tiny == "llava" else tiny.qwen2_5_vl(images=1, videos=1)
        second = None
    else:
        if not args.image:
            parser.error("--model needs --image")
        model, [inputs, *rest], media = hub_model(args.model, args.image, [args.prompt, *filter(None, [args.question])])
        second = rest[0] if rest else None
    greedy = dict(max_new_tokens=args.tokens, do_sample=False)
    prefix = bool(args.question)

    with tempfile.TemporaryDirectory(prefix="hf-reuse-") as scratch:
        # 1. capture the prefill as a kvsnap file and store it
        snapshot = kvstore.hf.capture(model, inputs, media=media)
        path = os.path.join(scratch, "prefill.safetensors")
        kvstore.write(snapshot, path)
        store = kvstore.Client(store=args.store or os.path.join(scratch, "store"))
        entry = store.ingest(path, policy=args.policy)
        # 2. the request to serve: the same prompt again, or a second question about the same image
        if prefix and second is None:  # tiny: the first prompt's tokens up to the prefix, then the question
            second = tiny.ask(inputs, snapshot.prefix_end, tiny.tokens(args.question))
        request = second if prefix else inputs
        length = request["input_ids"].shape[1]
        with torch.no_grad():
            expected = model.generate(**request, **greedy)[0, length:].tolist()
        # 3. later, anywhere: fetch it back (with --question its prefix alone) and continue from
        # it: no pixel values needed, only the tokens after the cached ones are prefilled
        fetched = store.fetch(entry, os.path.join(scratch, "fetched.safetensors"),
                              dtype=FETCH_DTYPE.get(model.dtype, "f16"), expand=args.mode == "expand", prefix=prefix)
        # media: the images this request is about, checked against the cache's (ids alone cannot
        # tell two images of one size apart)
        cache = kvstore.hf.load(fetched, model, mode=args.mode, prefix=prefix, media=media, inputs=request)
        with torch.no_grad():
            reused = model.generate(input_ids=request["input_ids"], attention_mask=request["attention_mask"],
                                    past_key_values=cache, **greedy)[0, length:].tolist()
        [listed] = [e for e in store.ls() if e.id == entry]

    print(f"entry {entry[:12]}  policy {listed.policy}  {listed.bytes_in} -> {listed.bytes_out} bytes  "
          f"spans {[s.kind for s in snapshot.spans]}")
    if prefix:
        print(f"prefix {snapshot.prefix_end} of {snapshot.original_length} tokens; second prompt {length} tokens, "
              f"{length - snapshot.prefix_end} prefilled on the prefix")
    print(f"{'fresh prefill' if prefix else 'uninterrupted'}: {expected}")
    print(f"{'from prefix' if prefix else 'from kvstore'}:  {reused}")
    identical = reused == expected
    print("identical" if identical else "DIFFERENT")
    return 0 if identical else 1

if __name__ == "__main__":
    sys.exit(main())
