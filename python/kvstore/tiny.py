"""Tiny, randomly initialised LLaVA and Qwen2.5-VL models built from configs (no download),
with matching inputs: for tests, `examples/hf_reuse.py --tiny` and the reuse benchmark.

    model, inputs, media = kvstore.tiny.llava(images=2)
    # inputs: what a processor would return; media: the image bytes, one per image
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

# Token ids of the tiny vocabulary (100 tokens).
VOCAB = 100
IMAGE = 90
VIDEO = 91
VISION_START = 92
VISION_END = 93


def _text(rng: np.random.Generator, n: int) -> list[int]:
    return rng.integers(1, 80, size=n).tolist()


def _media(rng: np.random.Generator, n: int) -> list[bytes]:
    return [rng.integers(0, 256, size=64, dtype=np.uint8).tobytes() for _ in range(n)]


def llava(images: int = 1, layers: int = 4, seed: int = 0, dtype: torch.dtype = torch.float32,
          prompt: int = 12) -> tuple[torch.nn.Module, dict[str, torch.Tensor], list[bytes]]:
    """A 4-layer LLaVA (Llama text stack, 4 heads, GQA 4/2, head_dim 16) with a 2-layer CLIP
    tower over 32x32 images in 8x8 patches: 16 tokens (a 4x4 grid) per image."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration
    torch.manual_seed(seed)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=32, patch_size=8, projection_dim=32)
    text = LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=IMAGE, image_seq_length=16,
                         vision_feature_layer=-1, vision_feature_select_strategy="default")
    model = LlavaForConditionalGeneration(config).to(dtype).eval()
    rng = np.random.default_rng(seed)
    ids = _text(rng, 5)
    for _ in range(images):
        ids += [IMAGE] * 16 + _text(rng, 3)
    ids += _text(rng, prompt)
    pixel = torch.from_numpy(rng.standard_normal((images, 3, 32, 32)).astype(np.float32)).to(dtype)
    inputs = {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long),
              "pixel_values": pixel}
    return model, inputs, _media(rng, images)


def qwen2_5_vl(images: int = 1, videos: int = 0, layers: int = 4, seed: int = 0, dtype: torch.dtype = torch.float32,
               prompt: int = 12, version: str = "2.5") -> tuple[torch.nn.Module, dict[str, torch.Tensor], list[bytes]]:
    """A 4-layer Qwen2.5-VL (GQA 4/2, head_dim 16, M-RoPE sections 2/3/3) with a 2-block vision
    tower: an image is 8x12 patches of 14 px, merged 2x2 into a 4x6 grid; a video is 4 frames
    (2 temporal patches) of 8x8 patches, merged into 2 frames of 4x4. `version="2"` builds the
    same as a Qwen2-VL."""
    text = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                bos_token_id=None, eos_token_id=None, pad_token_id=None,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]})
    tokens = dict(image_token_id=IMAGE, video_token_id=VIDEO, vision_start_token_id=VISION_START,
                  vision_end_token_id=VISION_END)
    torch.manual_seed(seed)
    if version == "2":
        from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration
        config = Qwen2VLConfig(text_config=text, vision_config=dict(
            depth=2, embed_dim=32, hidden_size=64, mlp_ratio=2, num_heads=2, patch_size=14, spatial_merge_size=2,
            temporal_patch_size=2), **tokens)
        model = Qwen2VLForConditionalGeneration(config).to(dtype).eval()
    else:
        from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
        config = Qwen2_5_VLConfig(text_config=text, vision_config=dict(
            depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, patch_size=14,
            spatial_merge_size=2, temporal_patch_size=2, window_size=56, fullatt_block_indexes=[1],
            tokens_per_second=2), **tokens)
        model = Qwen2_5_VLForConditionalGeneration(config).to(dtype).eval()
    rng = np.random.default_rng(seed)
    patch = 3 * 2 * 14 * 14
    ids, types = _text(rng, 5), [0] * 5
    out: dict[str, torch.Tensor] = {}
    if images:
        grid = torch.tensor([[1, 8, 12]] * images)
        out["pixel_values"] = torch.from_numpy(rng.standard_normal((images * 96, patch)).astype(np.float32)).to(dtype)
        out["image_grid_thw"] = grid
        for _ in range(images):
            chunk = [VISION_START] + [IMAGE] * 24 + [VISION_END] + _text(rng, 3)
            ids += chunk
            types += [0] + [1] * 24 + [0] * 4
    if videos:
        out["pixel_values_videos"] = torch.from_numpy(
            rng.standard_normal((videos * 128, patch)).astype(np.float32)).to(dtype)
        out["video_grid_thw"] = torch.tensor([[2, 8, 8]] * videos)
        if version != "2":
            out["second_per_grid_ts"] = torch.tensor([1.0] * videos)
        for _ in range(videos):
            ids += [VISION_START] + [VIDEO] * 32 + [VISION_END] + _text(rng, 3)
            types += [0] + [2] * 32 + [0] * 4
    ids += _text(rng, prompt)
    types += [0] * prompt
    out.update(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
               mm_token_type_ids=torch.tensor([types], dtype=torch.int32))
    return model, out, _media(rng, images + videos)


def ask(inputs: dict[str, torch.Tensor], prefix_end: int, question: list[int]) -> dict[str, torch.Tensor]:
    """A new request about the same images and videos: the tokens of `inputs` before
    `prefix_end` (a snapshot's `prefix_end`), then `question`; the pixels again, which a fresh
    prefill needs and a loaded prefix does not."""
    ids = inputs["input_ids"][0, :prefix_end].tolist() + list(question)
    new = dict(inputs, input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long))
    if "mm_token_type_ids" in inputs:
        new["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"][:, :prefix_end],
                                              torch.zeros(1, len(question), dtype=torch.int32)], dim=1)
    return new


def tokens(text: str) -> list[int]:
    """Text as ids of the tiny vocabulary (one a byte), for questions to the tiny models."""
    return [1 + b % 79 for b in text.encode()]


SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
            "<|video_pad|>"]


def _bpe_tokenizer(specials: list[str], extra: dict[str, str]) -> tuple[Any, dict[str, int]]:
    """A byte-level BPE trained here on a few sentences (`tokenizers`), as a transformers
    tokenizer, and the ids of its special tokens (the first is end of text and padding)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    corpus = ["Describe the picture in one sentence.", "What colour is the cat on the mat?",
              "How many people stand near the red car?", "You are a helpful assistant that looks at images."]
    bpe.train_from_iterator(corpus * 8, trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=specials[0], pad_token=specials[0],
                                        extra_special_tokens=extra)
    return tokenizer, {t: bpe.token_to_id(t) for t in specials}


#: Text stacks of `qwen2_vl_folder`: hidden size, layers, query heads, kv heads, MLP size, M-RoPE sections.
QWEN2_VL_SIZES = {"tiny": (128, 2, 4, 2, 256, [4, 6, 6]), "small": (1024, 8, 8, 4, 2816, [16, 24, 24])}


def qwen2_vl_folder(path: str, size: str = "tiny", seed: int = 0) -> str:
    """Writes a tiny random Qwen2-VL that vLLM loads (no download): config and bf16 weights, a
    byte-level BPE tokenizer trained here on a few sentences (`tokenizers`), and a
    `Qwen2VLProcessor` whose image processor turns any picture into 448x448 pixels, 32x32 patches,
    a 16x16 grid of 256 image tokens. Text, `size="tiny"`: 2 layers, hidden 128, 4 query / 2 kv
    heads of head_dim 32 (vLLM's CPU attention takes no less), M-RoPE sections 4/6/6; `"small"`:
    8 layers, hidden 1024, 8 / 4 heads of head_dim 128 (for timings). Returns `path`."""
    import os

    from transformers import (Qwen2VLConfig, Qwen2VLForConditionalGeneration,
                              Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor)
    os.makedirs(path, exist_ok=True)
    tokenizer, ids = _bpe_tokenizer(SPECIALS, {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"})
    vocab = len(tokenizer)
    torch.manual_seed(seed)
    hidden, layers, heads, kv_heads, mlp, sections = QWEN2_VL_SIZES[size]
    text = dict(vocab_size=vocab, hidden_size=hidden, intermediate_size=mlp, num_hidden_layers=layers,
                num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=2048,
                bos_token_id=None, eos_token_id=ids["<|endoftext|>"], pad_token_id=ids["<|endoftext|>"],
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": sections})
    config = Qwen2VLConfig(text_config=text, vision_config=dict(
        depth=1, embed_dim=64, hidden_size=hidden, mlp_ratio=2, num_heads=2, patch_size=14, spatial_merge_size=2,
        temporal_patch_size=2, in_chans=3), image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        eos_token_id=ids["<|endoftext|>"], tie_word_embeddings=False)
    model = Qwen2VLForConditionalGeneration(config).to(torch.bfloat16).eval()
    model.save_pretrained(path)
    pixels = 448 * 448
    image_processor = Qwen2VLImageProcessor(min_pixels=pixels, max_pixels=pixels, patch_size=14, merge_size=2,
                                            temporal_patch_size=2)
    video_processor = Qwen2VLVideoProcessor(min_pixels=pixels, max_pixels=pixels, patch_size=14, merge_size=2,
                                            temporal_patch_size=2)
    Qwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                     video_processor=video_processor).save_pretrained(path)
    return path


def llava_folder(path: str, seed: int = 0) -> str:
    """Writes a tiny random LLaVA that vLLM loads (no download): a 1-layer CLIP tower over
    224x224 images in 14-px patches (256 image tokens), a 2-layer Llama text stack (hidden 128,
    4 query / 2 kv heads of head_dim 32), the BPE tokenizer of `qwen2_vl_folder` with `<image>`,
    and a `LlavaProcessor`. Prompt: `llava_prompt`. Returns `path`."""
    import os

    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)
    os.makedirs(path, exist_ok=True)
    tokenizer, ids = _bpe_tokenizer(["<|endoftext|>", "<image>"], {"image_token": "<image>"})
    torch.manual_seed(seed)
    vision = CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
                              image_size=224, patch_size=14, projection_dim=64)
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                       bos_token_id=None, eos_token_id=ids["<|endoftext|>"], pad_token_id=ids["<|endoftext|>"])
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=ids["<image>"],
                         image_seq_length=256, vision_feature_layer=-1, vision_feature_select_strategy="default")
    LlavaForConditionalGeneration(config).to(torch.bfloat16).eval().save_pretrained(path)
    # transformers 5 writes the CLIP tower as `vision_tower.*`; checkpoints on the hub (and vLLM's
    # loader) name it `vision_tower.vision_model.*`
    from safetensors.torch import load_file, save_file
    weights = os.path.join(path, "model.safetensors")
    tensors = {("vision_tower.vision_model." + k[len("vision_tower."):] if k.startswith("vision_tower.") and
                not k.startswith("vision_tower.vision_model.") else k): v for k, v in load_file(weights).items()}
    save_file(tensors, weights, metadata={"format": "pt"})
    image_processor = CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=14,
                   vision_feature_select_strategy="default", num_additional_image_tokens=1).save_pretrained(path)
    return path


def llava_prompt(question: str) -> str:
    """A LLaVA-1.5 prompt for `llava_folder`: system text, the image, then `question`."""
    return f"You are a helpful assistant that looks at images. USER: <image>\n{question} ASSISTANT:"


def folder_prompt(path: str, question: str) -> str:
    """The prompt for a folder written by `qwen2_vl_folder` or `llava_folder`: one image, then `question`."""
    import json
    import os
    with open(os.path.join(path, "config.json")) as f:
        kind = json.load(f)["model_type"]
    return llava_prompt(question) if kind == "llava" else qwen2_vl_prompt(question)


def qwen2_vl_prompt(question: str, images: int = 1) -> str:
    """A Qwen2-VL chat prompt for `qwen2_vl_folder`: system text, the images, then `question`."""
    vision = "<|vision_start|><|image_pad|><|vision_end|>" * images
    return (f"<|im_start|>system\nYou are a helpful assistant that looks at images.<|im_end|>\n"
            f"<|im_start|>user\n{vision}{question}<|im_end|>\n<|im_start|>assistant\n")
