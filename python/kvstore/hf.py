"""The Hugging Face adapter: capture a prefilled cache as a kvsnap, load a fetched one back.

    snap = kvstore.hf.capture(model, inputs, media=[image_bytes])   # after the processor
    kvstore.write(snap, "chat.safetensors")                          # -> kvstore ingest
    ...
    cache = kvstore.hf.load("fetched.safetensors", model)            # or the .kvpack itself
    model.generate(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                   past_key_values=cache, max_new_tokens=64)         # no pixel values needed

The snapshot holds every token of `inputs` but the last: `generate` feeds that token again
on top of the loaded cache, so it has a token to produce the next logits from, and the
continuation equals the uninterrupted run. Positions: keys are stored with RoPE applied, so
a cached entry needs no position at all; the new tokens continue at `kvsnap.seq_len`, or at
`kvsnap.next_position` for M-RoPE models (Qwen2-VL, Qwen2.5-VL), whose positions run behind
the token count after an image. Proportional attention (`log(size)` added to each merged
entry's logit) is an attention function registered as "kvstore" through transformers'
`AttentionInterface`; it behaves exactly like SDPA unless the keys come from a loaded cache.
Batch size 1.

A new question about the same images (KVSNAP.md, "The shareable prefix"):

    kvstore fetch ENTRY --prefix -o prefix.safetensors                # system text and media only
    cache = kvstore.hf.load("prefix.safetensors", model, prefix=True)  # or any snapshot or pack, cut
    model.generate(input_ids=new["input_ids"], attention_mask=new["attention_mask"],
                   past_key_values=cache, max_new_tokens=64)          # the NEW prompt, whole

A prefix load expects the new prompt's whole `input_ids`: the prefix's ids (`input_ids` of the
snapshot, which `capture` writes), then at least one token of its own, text only (the prefix
ends after the last image or video). Nothing is held back as in a whole load: the prefix ends
where the old prompt began, so generate feeds every new token on top of it. generate checks
the prefix's ids first (`KVStoreCache.check`; ModelMismatchError names the first position
that differs). M-RoPE: the new tokens continue at the position the first prompt token had in
the capture (`hf.prefix_next_position`, recorded by `capture`), which is what a fresh prefill of
the new prompt gives it; snapshots from other producers fall back on transformers' rule (text
positions advance by one a token, an image or video by max(rows, cols)). A snapshot without
`input_ids` cannot be checked and is refused (SnapshotError naming `input_ids`).
"""
from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from transformers import AttentionInterface, Cache, DynamicCache
from transformers.cache_utils import DynamicLayer
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from .errors import ExpandError, ModelMismatchError, SnapshotError
from .pack import MAGIC, SEGMENTED_MAGIC, Pack
from .snapshot import INPUT_IDS, Layer, Snapshot, Span, read
from .weights import fingerprint_module

ATTENTION = "kvstore"
SUPPORTED = ("llava", "qwen2_5_vl", "qwen2_vl")
WEIGHTS_KEY = "hf.weights"  # kvstore.weights.fingerprint_module of the model captured from
PREFIX_POSITION_KEY = "hf.prefix_next_position"  # M-RoPE position of the first token after the prefix
_state = threading.local()


# ---------------------------------------------------------------- attention

def kvstore_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                      **kwargs: Any) -> tuple[torch.Tensor, None]:
    """SDPA, except over keys a `MergedLayer` returned: then every cached entry is visible with
    `log(size)` added to its logit and the new tokens are causal among themselves."""
    recorder = getattr(_state, "recorder", None)
    if recorder is not None:
        recorder.record(module, query)
    active = getattr(_state, "active", None)
    if active is None or active[0] is not key:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    layer: MergedLayer = active[1]
    if query.shape[0] != 1:
        raise ValueError(f"a loaded kvstore cache serves batch size 1, not {query.shape[0]}")
    groups = query.shape[1] // key.shape[1]
    k, v = repeat_kv(key, groups), repeat_kv(value, groups)
    t, n = query.shape[2], key.shape[2]
    prefix = layer.prefix
    new = n - prefix
    bias = torch.zeros(t, n, dtype=torch.float32, device=query.device)
    bias[:, :prefix] = layer.log_sizes
    newest = torch.arange(new - t, new, device=query.device)[:, None]  # new-token index of each query
    bias[:, prefix:].masked_fill_(torch.arange(new, device=query.device)[None, :] > newest, float("-inf"))
    out = torch.nn.functional.scaled_dot_product_attention(query, k, v, attn_mask=bias.to(query.dtype)[None, None],
                                                           scale=scaling)
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(ATTENTION, kvstore_attention)
AttentionMaskInterface.register(ATTENTION, sdpa_mask)


class MergedLayer(DynamicLayer):
    """One layer of a loaded cache: `prefix` stored entries standing for `original` tokens, then
    whatever the model appends. Reports the original length, so new tokens get the right
    positions and generate slices the right inputs."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, sizes: torch.Tensor, original: int) -> None:
        super().__init__()
        self.lazy_initialization(keys, values)
        self.keys, self.values = keys, values
        self.prefix, self.original = keys.shape[-2], original
        self.log_sizes = sizes.to(torch.float32).log()

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = super().update(key_states, value_states)
        _state.active = (keys, self)
        return keys, values

    def get_seq_length(self) -> int:
        return self.original + self.keys.shape[-2] - self.prefix

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.get_seq_length() + query_length, 0

    def crop(self, tokens_to_remove: int) -> None:  # assisted decoding would cut into the stored prefix
        raise NotImplementedError("a loaded kvstore cache cannot be cropped")


class KVStoreCache(Cache):
    """A cache whose layers hold different numbers of entries (`MergedLayer`). A prefix load
    also holds the prefix's token ids (`prefix_ids`), which `check` compares a new prompt with."""

    def __init__(self, layers: list[MergedLayer], seq_len: int, next_position: int,
                 prefix_ids: torch.Tensor | None = None, vision_tokens: Sequence[int] = ()) -> None:
        super().__init__(layers=layers)
        self.seq_len, self.next_position = seq_len, next_position
        self.prefix_ids, self.vision_tokens = prefix_ids, tuple(vision_tokens)
        self.checked = False
        #: The ids of the last step generate took with this cache: each later step extends them.
        self.seen: list[int] | None = None

    @property
    def entry_counts(self) -> list[int]:
        return [layer.prefix for layer in self.layers]

    def check(self, input_ids: torch.Tensor) -> None:
        """Raises ModelMismatchError unless `input_ids` ([1, L]) start with the cached ids, and
        ValueError unless they go on past them with text tokens only (no pixels are fed). Every
        later step must extend the ids of the one before: a cache generate already continued
        holds that call's tokens, and another prompt on it is refused."""
        ids = input_ids.reshape(-1).tolist() if input_ids.shape[0] == 1 else None
        if ids is None:
            raise ValueError(f"a loaded kvstore cache serves batch size 1, not {input_ids.shape[0]}")
        if self.seen is not None:
            if ids[:len(self.seen)] != self.seen:
                raise ModelMismatchError(f"this cache was already continued: it holds that call's {len(self.seen)} "
                                         "tokens and their answer, and these ids do not extend them; load it again "
                                         "for each new question, or to ask the same one again")
            self.seen = ids
            return
        if self.prefix_ids is None:
            self.seen = ids
            return
        p = self.seq_len
        ours = self.prefix_ids.tolist()
        differ = next((i for i, (a, b) in enumerate(zip(ids, ours)) if a != b), None)
        if differ is not None:
            raise ModelMismatchError(f"the new prompt differs from the cached prefix at position {differ}: token "
                                     f"{ids[differ]}, the prefix has {ours[differ]}")
        if len(ids) <= p:
            raise ValueError(f"the new prompt has {len(ids)} tokens, the cached prefix {p}: pass the whole new "
                             "prompt (the prefix's ids, then the new question)")
        vision = next((i for i in range(p, len(ids)) if ids[i] in self.vision_tokens), None)
        if vision is not None:
            raise ValueError(f"the new prompt holds an image or video placeholder at position {vision}, after the "
                             f"cached prefix ({p} tokens): a prefix serves new text only")
        self.seen = ids
        self.checked = True


def _check_prompts(model: torch.nn.Module) -> None:
    """Makes `model.generate` check a prefix cache against the prompt it is given: the first
    `prepare_inputs_for_generation` of a generate call is the one place that sees the whole
    prompt and the cache together."""
    original = model.prepare_inputs_for_generation
    if getattr(original, "checks_kvstore_prefix", False):
        return

    def prepare(input_ids: torch.Tensor, *args: Any, **kwargs: Any) -> dict[str, Any]:
        cache = kwargs.get("past_key_values")
        if isinstance(cache, KVStoreCache):
            cache.check(input_ids)
        return original(input_ids, *args, **kwargs)

    prepare.checks_kvstore_prefix = True  # type: ignore[attr-defined]
    model.prepare_inputs_for_generation = prepare


# ---------------------------------------------------------------- model facts

@dataclass(frozen=True)
class TextShape:
    layers: int
    q_heads: int
    kv_heads: int
    head_dim: int


def text_shape(model: torch.nn.Module) -> TextShape:
    c = model.config.get_text_config()
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    return TextShape(c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads or c.num_attention_heads,
                     head_dim)


def model_name(model: torch.nn.Module) -> str:
    """`config._name_or_path` (a hub id or directory), else the model type for models built from configs."""
    return getattr(model.config, "_name_or_path", "") or model.config.model_type


def _text_model(model: torch.nn.Module) -> torch.nn.Module:
    inner = getattr(model, "model", model)
    return getattr(inner, "language_model", None) or model.get_decoder()


def _attention_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [layer.self_attn for layer in _text_model(model).layers]


def _use_kvstore_attention(model: torch.nn.Module) -> None:
    text = model.config.get_text_config()
    if text._attn_implementation != ATTENTION:
        if text is model.config:
            model.set_attn_implementation(ATTENTION)
        else:
            model.set_attn_implementation({"text_config": ATTENTION})


# ---------------------------------------------------------------- capture

class _Recorder:
    def __init__(self, modules: list[torch.nn.Module], index: torch.Tensor) -> None:
        self.layer = {id(m): i for i, m in enumerate(modules)}
        self.index = index
        self.queries: dict[int, torch.Tensor] = {}

    def record(self, module: torch.nn.Module, query: torch.Tensor) -> None:
        i = self.layer.get(id(module))
        if i is not None and i not in self.queries and query.shape[2] > int(self.index.max()):
            self.queries[i] = query[0, :, self.index.to(query.device), :].detach()


def check_supported(config: Any) -> str:
    """The model type of a model's config; ModelMismatchError unless this adapter supports it."""
    kind = getattr(config, "model_type", None)
    if kind not in SUPPORTED:
        raise ModelMismatchError(f"model type {kind!r} is not supported by kvstore.hf (supported: {', '.join(SUPPORTED)})")
    return kind


def vision_items(model: torch.nn.Module, inputs: Mapping[str, Any]) -> list[tuple[str, int, int, int, int]]:
    """(kind, token id, rows, cols, frames) of every image and video, in input order per kind."""
    config = model.config
    kind = check_supported(config)
    items = []
    if kind == "llava":
        if config.vision_feature_select_strategy != "default":
            raise ModelMismatchError("LLaVA with vision_feature_select_strategy='full' has no token grid "
                                     "(the CLS token is among the image tokens)")
        side = config.vision_config.image_size // config.vision_config.patch_size
        pixel = inputs.get("pixel_values")
        for _ in range(0 if pixel is None else pixel.shape[0]):
            items.append(("image", config.image_token_id, side, side, 1))
        return items
    merge = config.vision_config.spatial_merge_size
    for key, name, token in (("image_grid_thw", "image", config.image_token_id),
                             ("video_grid_thw", "video", config.video_token_id)):
        grid = inputs.get(key)
        for t, h, w in ([] if grid is None else grid.tolist()):
            items.append((name, token, h // merge, w // merge, t))
    return items


def spans_of(ids: list[int], items: list[tuple[str, int, int, int, int]]) -> list[Span]:
    """Spans of a token sequence: each image/video run, text between them (system before the
    first, prompt after the last, other in between)."""
    queues: dict[int, list[int]] = {}
    for n, item in enumerate(items):
        queues.setdefault(item[1], []).append(n)
    found: list[tuple[int, int, int]] = []  # (start, end, item)
    i = 0
    while i < len(ids):
        if ids[i] in queues:
            if not queues[ids[i]]:
                raise ValueError(f"token {i} is a vision placeholder ({ids[i]}) beyond the images and videos given")
            n = queues[ids[i]].pop(0)
            kind, token, rows, cols, frames = items[n]
            end = i + rows * cols * frames
            if end > len(ids) or any(t != token for t in ids[i:end]):
                raise ValueError(f"{kind} {n} needs {rows * cols * frames} placeholder tokens from token {i}")
            found.append((i, end, n))
            i = end
        else:
            i += 1
    left = [n for q in queues.values() for n in q]
    if left:
        raise ValueError(f"{len(left)} image(s)/video(s) have no placeholder tokens in input_ids")
    found.sort()
    spans: list[Span] = []
    position = 0
    for start, end, n in found:
        if start > position:
            spans.append(Span.text(position, start, role="system" if not spans else "other"))
        kind, _, rows, cols, frames = items[n]
        spans.append(Span.video(start, rows, cols, frames) if kind == "video" else Span.image(start, rows, cols))
        position = end
    if position < len(ids):
        spans.append(Span.text(position, len(ids), role="prompt"))
    return spans


def _vision_token_ids(model: torch.nn.Module) -> list[int]:
    c = model.config
    return [t for t in (getattr(c, "image_token_id", None), getattr(c, "video_token_id", None)) if t is not None]


def _source(item: bytes | str | os.PathLike[str], seconds_per_grid: float | None = None) -> str:
    """`sha256:` of an image's or video's bytes; a video's timing (Qwen2.5-VL's
    `second_per_grid_ts`, from the processor's `fps`) is hashed in too: it sets the video's
    temporal rotary positions, so the same bytes at another timing are another prefix."""
    data = item if isinstance(item, (bytes, bytearray)) else open(item, "rb").read()
    h = hashlib.sha256(data)
    if seconds_per_grid is not None:
        h.update(f"\nsecond_per_grid_ts={float(seconds_per_grid)!r}".encode())
    return "sha256:" + h.hexdigest()


def _video_timings(inputs: Mapping[str, Any] | None) -> list[float] | None:
    """Each video's `second_per_grid_ts` in the processor's output, in order, or None."""
    t = None if inputs is None else inputs.get("second_per_grid_ts")
    if t is None:
        return None
    return [float(x) for x in (t.reshape(-1).tolist() if isinstance(t, torch.Tensor) else t)]


def _sources(kinds: Sequence[str], media: Sequence[bytes | str | os.PathLike[str]],
             timings: list[float] | None) -> list[str]:
    """The source of each of `media`, whose kinds ("image"/"video") are `kinds`, in input order."""
    out, video = [], 0
    for kind, item in zip(kinds, media):
        timing = None
        if kind == "video":
            timing = timings[video] if timings is not None and video < len(timings) else None
            video += 1
        out.append(_source(item, timing))
    return out


def media_sources(model: torch.nn.Module, inputs: Mapping[str, Any],
                  media: Sequence[bytes | str | os.PathLike[str]]) -> list[str]:
    """The sources `capture` writes for `media` (the request's images and videos, in input
    order) under the processor's output `inputs`: what `Client.match` takes for a request. A
    video's timing is part of its source (`_source`)."""
    if isinstance(media, (bytes, str, os.PathLike)):
        raise TypeError("media is a list of the request's images and videos, in order: pass [item], not one item")
    spans = [s for s in spans_of(inputs["input_ids"][0].tolist(), vision_items(model, inputs)) if s.is_vision]
    if len(media) != len(spans):
        raise ValueError(f"media holds {len(media)} item(s) but the inputs carry {len(spans)} image(s)/video(s)")
    return _sources([s.kind for s in spans], media, _video_timings(inputs))


@torch.no_grad()
def capture(model: torch.nn.Module, inputs: Mapping[str, Any], media: Sequence[bytes | str | os.PathLike[str]] = (),
            key: str | None = None, name: str | None = None, prompt_queries: int = 8) -> Snapshot:
    """Runs the prefill of `inputs` (a processor's output, batch 1) and returns its cache as a
    kvsnap Snapshot: every token but the last, their `input_ids` (I64, placeholders included),
    spans from the placeholder tokens, `source` = sha256 of each image's/video's bytes in
    `media` (in input order), `prompt_query` = the last `prompt_queries` prompt tokens' queries
    (RoPE applied) at each layer, `next_position` and `hf.prefix_next_position` (the position
    the first prompt token had) for M-RoPE models, and `key` derived from model, sources and
    tokens (and, without `media`, the pixel values) unless given. The model's text attention is switched to "kvstore" (SDPA with a query
    recorder; see `load`)."""
    ids = inputs["input_ids"]
    if ids.ndim != 2 or ids.shape[0] != 1:
        raise ValueError(f"capture takes one sequence (input_ids of shape [1, L]), not {list(ids.shape)}")
    tokens = ids[0].tolist()
    length = len(tokens)
    if length < 2:
        raise ValueError("capture needs at least two tokens: the snapshot keeps all but the last")
    items = vision_items(model, inputs)
    if media and len(media) != len(items):
        raise ValueError(f"media holds {len(media)} item(s) but the inputs carry {len(items)} image(s)/video(s)")
    spans = spans_of(tokens, items)
    vision = [s for s in spans if s.is_vision]
    for span, source in zip(vision, _sources([s.kind for s in vision], media, _video_timings(inputs))):  # input order
        span.source = source
    if spans[-1].is_vision:
        raise ValueError("the input must end with a text token (the prompt); it ends inside an image or video")
    prompt = spans[-1]
    index = torch.arange(max(prompt.start, length - prompt_queries), length)

    modules = _attention_modules(model)
    _use_kvstore_attention(model)
    recorder = _Recorder(modules, index)
    _state.recorder = recorder
    positions: list[torch.Tensor] = []  # what the text model's rotary embedding is given
    rotary = getattr(_text_model(model), "rotary_emb", None)
    hook = None if rotary is None else rotary.register_forward_pre_hook(
        lambda module, args, kwargs: positions.append(kwargs.get("position_ids", args[-1])), with_kwargs=True)
    try:
        out = model(**inputs, use_cache=True)
    finally:
        _state.recorder = None
        if hook is not None:
            hook.remove()
    cache = out.past_key_values
    seq_len = length - 1
    prefix_end = next((s.start for s in spans if s.role == "prompt"), seq_len)
    prompt.end -= 1
    if prompt.end == prompt.start:
        spans.pop()
    dtype = {torch.float16: "F16", torch.bfloat16: "BF16"}.get(cache.layers[0].keys.dtype, "F32")

    def array(t: torch.Tensor) -> np.ndarray:
        a = t.detach().to("cpu", torch.float32 if dtype != "F16" else torch.float16)
        return a.numpy()

    layers = []
    for i, layer in enumerate(cache.layers):
        query = recorder.queries.get(i)
        layers.append(Layer(key=array(layer.keys[0, :, :seq_len]), value=array(layer.values[0, :, :seq_len]),
                            prompt_query=None if query is None else array(query)))
    next_position = None
    metadata = {"hf.architecture": type(model).__name__, WEIGHTS_KEY: fingerprint_module(model)}
    deltas = getattr(getattr(model, "model", None), "rope_deltas", None)
    if deltas is not None and positions:
        next_position = seq_len + int(deltas.reshape(-1)[0])
        # [3, 1, L] (or [4, ...] with the text row first): the first prompt token is text, one
        # position in every row
        metadata[PREFIX_POSITION_KEY] = str(int(positions[0][-1].reshape(-1, length)[0, prefix_end]))
    snap_name = name or model_name(model)
    if key is None:
        # The weights too: another model's cache under the same name and inputs is not this one's.
        h = hashlib.sha256(f"kvsnap-key-v1\n{snap_name}\n{metadata[WEIGHTS_KEY]}\n".encode())
        for s in spans:
            if s.source:
                h.update(s.source.encode() + b"\n")
        if not media:
            # No sources: the pixels themselves tell the images apart (the placeholder ids
            # are the same for every image of a size).
            for name in sorted(k for k in inputs if k.startswith(("pixel_values", "image_grid", "video_grid",
                                                                   "second_per_grid"))):
                value = inputs[name]
                if isinstance(value, torch.Tensor):
                    h.update(name.encode() + b"\n" + value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        h.update(np.asarray(tokens, dtype="<i8").tobytes())
        key = "sha256:" + h.hexdigest()
    return Snapshot(model=snap_name, spans=spans, layers=layers, key=key, next_position=next_position,
                    metadata=metadata, dtype=dtype, input_ids=np.asarray(tokens[:seq_len], dtype=np.int64))


# ---------------------------------------------------------------- load

def _open(source: Any, mode: str) -> tuple[Snapshot, list[Any]]:
    """The snapshot's metadata and its layers (key, value, sizes) in the form `mode` needs."""
    from .torch import DevicePack
    if isinstance(source, DevicePack):
        if mode == "expand" and any(bool((l.sizes != 1).any()) for l in source.layers):
            raise ExpandError("the pack was decoded with merged entries: use load_pack(..., expand=True)")
        snap = source.snapshot()
        return snap, snap.layers
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            is_pack = f.read(8) in (MAGIC, SEGMENTED_MAGIC)
        if is_pack:
            with Pack(source) as pack:
                return _open(pack, mode)
        source = read(source)
    if isinstance(source, Pack):
        snap = source.snapshot(dtype="f32", expand=(mode == "expand"))
        return snap, snap.layers
    snap = source
    if mode == "expand":
        for i, layer in enumerate(snap.layers):
            if layer.sizes is not None and np.any(np.asarray(layer.sizes) != 1):
                raise ExpandError(f"layer {i} holds merged entries: fetch with --expand, or load the kvpack "
                                  "(fetch --raw) so the members can be put back")
    return snap, snap.layers


def check_model(snap: Snapshot, model: torch.nn.Module) -> None:
    """Raises ModelMismatchError when the snapshot cannot belong to `model`."""
    shape = text_shape(model)
    problems = []
    arch = snap.metadata.get("hf.architecture")
    if arch and arch != type(model).__name__:
        problems.append(f"it was captured from a {arch}, the model is a {type(model).__name__}")
    weights = snap.metadata.get(WEIGHTS_KEY)
    if weights and weights != (ours_weights := fingerprint_module(model)):
        problems.append(f"it was captured from other weights (fingerprint {weights}, the model's {ours_weights}: "
                        "another checkpoint or dtype under the same name)")
    ours = model_name(model)
    if os.path.basename(snap.model.rstrip("/")) != os.path.basename(ours.rstrip("/")):
        problems.append(f"its kvsnap.model is {snap.model!r}, the model is {ours!r}")
    if len(snap.layers) != shape.layers:
        problems.append(f"it has {len(snap.layers)} layers, the model {shape.layers}")
    if snap.kv_heads != shape.kv_heads or snap.head_dim != shape.head_dim:
        problems.append(f"its keys are {snap.kv_heads} heads x {snap.head_dim}, the model's "
                        f"{shape.kv_heads} x {shape.head_dim}")
    if problems:
        raise ModelMismatchError("snapshot does not fit the model: " + "; ".join(problems))


def prefix_next_position(snap: Snapshot) -> int:
    """The M-RoPE position of the first token after the snapshot's shareable prefix: recorded by
    `capture` (`hf.prefix_next_position`), else transformers' rule from the spans before it
    (a text token advances the position by one, an image or video by max(rows, cols))."""
    recorded = snap.metadata.get(PREFIX_POSITION_KEY)
    if recorded is not None:
        return int(recorded)
    return _mrope_position(snap.spans, snap.prefix_end)


def _mrope_position(spans: Sequence[Span], end: int) -> int:
    """transformers' M-RoPE position after the spans ending by `end`: a text token advances it
    by one, an image or video by max(rows, cols)."""
    return sum(s.count if not s.is_vision else max(s.grid or (0, 0)) for s in spans if s.end <= end)


def check_media(snap: Snapshot, media: Sequence[bytes | str | os.PathLike[str]],
                inputs: Mapping[str, Any] | None = None) -> None:
    """Raises ModelMismatchError unless `media` (the request's images and videos, in order: bytes
    or files) are the ones the snapshot's vision spans name by source. Token ids cannot tell
    images apart (the placeholders are the same for every image of a size), so this is the
    check that a cache is about the request's images. `inputs`, the request's processor output,
    gives its videos' timing (Qwen2.5-VL's `second_per_grid_ts`), which their sources cover."""
    if isinstance(media, (bytes, str, os.PathLike)):
        raise TypeError("media is a list of the request's images and videos, in order: pass [item], not one item")
    stored = [s for s in snap.spans if s.is_vision]
    if len(media) != len(stored):
        raise ModelMismatchError(f"media holds {len(media)} item(s), the cache {len(stored)} image(s)/video(s)")
    timings = _video_timings(inputs)
    for i, (span, given) in enumerate(zip(stored, _sources([s.kind for s in stored], media, timings))):
        if span.source is None:
            raise ModelMismatchError(f"image/video {i} of the cache was stored without a source (capture with "
                                     "media=...), so it cannot be checked against media")
        if span.source != given:
            other = "image" if span.kind != "video" else "video, or the same one at another timing" + (
                " (pass the request's processor output as inputs=: a video's second_per_grid_ts is part of its source)"
                if timings is None else "")
            raise ModelMismatchError(f"image/video {i} of the cache is {span.source}, media {i} is {given}: "
                                     f"the cache is about another {other}")


def load(source: Any, model: torch.nn.Module, mode: str = "proportional",
         device: torch.device | str | None = None, prefix: bool = False,
         media: Sequence[bytes | str | os.PathLike[str]] | None = None,
         inputs: Mapping[str, Any] | None = None) -> Cache:
    """A cache `model.generate` continues from (pass the same `input_ids` as the capture, and
    `past_key_values=` this cache; no pixel values).

    `source`: a Snapshot, a kvsnap file (`kvstore fetch`), a kvpack (`fetch --raw`, read
    natively), or a `kvstore.torch.load_pack` result (decoded on the device). `mode="proportional"` keeps merged entries merged and adds `log(size)` to their
    logits (the model's text attention becomes "kvstore", which is SDPA for everything else);
    `mode="expand"` repeats each merged entry at its members' positions, which plain attention
    handles (a plain DynamicCache when every layer is whole again).

    `prefix=True`: the shareable prefix alone (a `fetch --prefix` file, or any source cut to
    its prefix), for a NEW prompt: pass generate the new prompt's whole `input_ids`, which must
    start with the prefix's (module docstring). Always a KVStoreCache, which generate checks
    against the prompt; a source without `input_ids` raises SnapshotError.

    `media`: the request's images and videos (bytes or files, in order; those inside the
    prefix with `prefix=True`), checked against the sources the cache was captured with
    (`check_media`): the new prompt's token ids cannot tell one image from another of the same
    size, so pass them whenever the cache may not be about the request's images; with videos,
    pass the request's processor output as `inputs` too (their timing is part of their source)."""
    if mode not in ("proportional", "expand"):
        raise ValueError(f"mode {mode!r}: expected 'proportional' or 'expand'")
    snap, layers = _open(source, mode)
    check_model(snap, model)
    if prefix:
        if snap.input_ids is None:
            raise SnapshotError(INPUT_IDS, "missing: a prefix load checks the new prompt against the cached token "
                                "ids, and this snapshot has none (kvstore.hf.capture writes them)")
        mrope = hasattr(getattr(model, "model", None), "rope_deltas")
        next_position = prefix_next_position(snap) if mrope else None  # else: the prefix's length
        snap = snap.prefix()
        layers = snap.layers
        snap.next_position = next_position
    if media is not None:
        check_media(snap, media, inputs)
    param = next(model.parameters())
    device = torch.device(device) if device is not None else param.device
    dtype = param.dtype
    seq_len = snap.original_length
    def tensor(a: Any) -> torch.Tensor:
        t = a if isinstance(a, torch.Tensor) else torch.from_numpy(np.array(a, dtype=np.float32))
        return t.to(device, dtype)[None]

    def sizes(layer: Any) -> torch.Tensor:
        if isinstance(layer.sizes, torch.Tensor):
            return layer.sizes.to(device, torch.int64)
        return torch.from_numpy(np.array(layer.sizes if layer.sizes is not None else np.ones(layer.count),
                                         dtype=np.int64))
    tensors = [(tensor(l.key), tensor(l.value), sizes(l)) for l in layers]
    if mode == "expand":
        tensors = [(k, v, torch.ones_like(s)) for k, v, s in tensors]
    inner = getattr(model, "model", None)
    mrope = inner is not None and hasattr(inner, "rope_deltas")
    if snap.next_position is not None:
        next_position = snap.next_position
    elif mrope and any(s.is_vision for s in snap.spans):
        # An image advances M-RoPE positions by max(rows, cols), not by its token count:
        # without a recorded next position, transformers' rule over the spans gives it.
        next_position = _mrope_position(snap.spans, seq_len)
    else:
        next_position = seq_len
    if mrope:  # M-RoPE: new tokens continue at next_position
        inner.rope_deltas = torch.tensor([[next_position - seq_len]], device=device)
    if mode == "expand" and not prefix and all(k.shape[-2] == seq_len for k, _, _ in tensors):
        cache = DynamicCache()
        for i, (k, v, _) in enumerate(tensors):
            cache.update(k, v, i)
        return cache
    _use_kvstore_attention(model)
    # A whole load is checked as a prefix load is: the prompt generate is given must begin with
    # the ids the cache was computed for (another prompt of the same length once continued the
    # stored question silently).
    ids = torch.tensor(np.array(snap.input_ids, dtype=np.int64)) if prefix or snap.input_ids is not None else None
    _check_prompts(model)
    return KVStoreCache([MergedLayer(k, v, s.to(device), seq_len) for k, v, s in tensors], seq_len, next_position,
                        prefix_ids=ids, vision_tokens=_vision_token_ids(model))
