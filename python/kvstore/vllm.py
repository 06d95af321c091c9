"""`KVStoreConnector`: kvstore as a vLLM (v1) KV connector. One config line, no glue code:

    from vllm import LLM
    llm = LLM(model, kv_transfer_config={
        "kv_connector": "KVStoreConnector", "kv_connector_module_path": "kvstore.vllm",
        "kv_role": "kv_both",
        "kv_connector_extra_config": {"store": "/var/lib/kvstore",     # or "http://store:8750"
                                      "policy": "none", "token": None}})

Save: when a request's prefill completes, its KV is copied out of the paged blocks layer by layer
(`save_kv_layer`), with its token ids, its image/video spans (vLLM's placeholder ranges) and
media sources (vLLM's multimodal hashes, written `vllm:<hash>`), and handed to a worker thread
that writes a kvsnap and stores it with the policy: the engine never waits on compression, the
queue is bounded in bytes (a save past it is dropped and logged), and a request that is aborted
or preempted before its prefill completes saves nothing.

Load: `get_num_new_matched_tokens` asks the store for the longest stored prefix (`match`: model,
token ids, media sources; the index alone) and offers whole blocks of it, leaving at least one
token to compute; `start_load_kv` reads the entry layer by layer (every checksum checked),
merged entries expanded to every member position, and writes it into the request's blocks.
Entries whose policy evicts tokens are refused (an evicted position has no KV to give vLLM).

Failures never break serving: a store that is down, a damaged entry or an entry of another
model shape is logged once, and the request is prefilled as if nothing were stored (a failed
load reports its blocks through `get_block_ids_with_load_errors`; the connector sets vLLM's
`kv_load_failure_policy` to "recompute"); a KV cache layout the connector cannot read turns
saving off, logged once.

What is never shared through the store: requests with a LoRA adapter, prompt embeddings or a
`cache_salt` (their KV is not a function of model, token ids and media alone), and anything of
an engine run with tensor or pipeline parallelism (each rank holds a part of every layer; the
connector turns itself off there, logged). A prefix is loaded only when every image or video
inside it was matched by its source (`match`); the policy of each entry loaded is logged once,
and a request that loaded a lossy entry is not saved (its KV would be stored as exact).

Extra config keys: `store` (a store folder, or the URL of `kvstore serve`; required), `policy`
(default "none"), `token` (for `kvstore serve`), `model` (the `kvsnap.model` name; default
vLLM's model; the weights' fingerprint is appended, see `model_identity`), `fingerprint` (false:
share caches by the model's name alone), `binary` (the `kvstore` binary for a local store; default $KVSTORE_BIN or the
PATH), `timeout` (seconds a store call may take, default 30), `lookup_timeout` (seconds the
scheduler waits on a lookup, default 5: a store that does not answer in time is bypassed for
`retry_seconds`, default 30, and those requests are prefilled), `max_pending_mb` (the save queue's
bound, default 512), `save` (false: load only), `stats_path` (a JSON file the worker rewrites
with its counters after every load and save). docs/DESIGN.md, "vLLM connector".
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from vllm.distributed.kv_transfer.kv_connector.v1.base import (KVConnectorBase_V1, KVConnectorMetadata,
                                                              KVConnectorRole)

from .client import Client, PrefixMatch, is_url
from .snapshot import Layer, Snapshot, Span, write
from .errors import FingerprintError, NotFoundError, UsageError
from .weights import fingerprint

if TYPE_CHECKING:
    from vllm.config import VllmConfig
    from vllm.forward_context import ForwardContext
    from vllm.v1.core.kv_cache_manager import KVCacheBlocks
    from vllm.v1.core.sched.output import SchedulerOutput
    from vllm.v1.request import Request

logger = logging.getLogger("vllm.kvstore")  # under vLLM's logger: its handlers and level

#: Reductions that drop tokens: no KV is left for their positions, so vLLM cannot be given them.
EVICTING = ("uniform", "random", "prompt-topk", "aircache", "airmerge")
SOURCE_PREFIX = "vllm:"


def model_identity(extra: dict[str, Any], vllm_config: "VllmConfig") -> tuple[str, bool]:
    """The `kvsnap.model` this engine's caches are stored and matched under, and whether it may
    share at all: the model's name (`model` in the extra config, else vLLM's), then `@` and a
    fingerprint of the weights the engine loaded (`kvstore.weights`), the dtype it computes in
    and its quantization, if any. Caches are a function of weights, not names (docs/design/vllm.md,
    "Which model"). `"fingerprint": false` shares by the name alone. Weights that cannot be
    found or read turn the connector off (logged): a cache that might be another model's is
    never offered."""
    model_config = vllm_config.model_config
    name = str(extra.get("model") or model_config.model)
    if extra.get("fingerprint", True) is False:
        return name, True
    folder = _weights_folder(vllm_config)
    if folder is None:
        logger.warning("kvstore: the weights of %s are not in a folder on this machine, so they cannot be "
                       "fingerprinted; the connector is off (\"fingerprint\": false shares by name alone)", model_config.model)
        return name, False
    try:
        weights = fingerprint(folder)
    except FingerprintError as e:
        logger.warning("kvstore: cannot fingerprint the weights of %s (%s); the connector is off", model_config.model, e)
        return name, False
    dtype = str(model_config.dtype).removeprefix("torch.")
    quantization = getattr(model_config, "quantization", None)
    return (f"{name}@{weights}-{dtype}" + (f"-{quantization}" if quantization else "")
            + f"-p{processing_digest(vllm_config, folder)}"), True


#: The files that turn an image or video into what the vision tower sees (sizes, means, patching).
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json", "video_preprocessor_config.json")


def processing_digest(vllm_config: "VllmConfig", folder: Path) -> str:
    """8 hex digits of SHA-256 over what computes the KV besides the weights and the token ids:
    the processor's files in the weights' folder, the engine's `hf_overrides` (RoPE, sizes) and
    its engine-wide `mm_processor_kwargs`. vLLM's media hashes cover the raw item and a request's
    own processor kwargs only, and its caches live in one process; the store outlives both, so
    a processor fixed at the same path, or an engine overriding the config, must not meet the
    caches of another (docs/design/vllm.md, "Which model")."""
    digest = hashlib.sha256()
    for name in PROCESSOR_FILES:
        path = folder / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    model_config = vllm_config.model_config
    multimodal = getattr(model_config, "multimodal_config", None)
    for label, value in (("hf_overrides", getattr(model_config, "hf_overrides", None)),
                         ("mm_processor_kwargs", getattr(multimodal, "mm_processor_kwargs", None))):
        if value:
            # A callable override has no stable spelling: its repr differs per process, so such
            # an engine shares with no other (never with the wrong one).
            digest.update(label.encode() + b"\0" + json.dumps(value, sort_keys=True, default=repr).encode() + b"\0")
    return digest.hexdigest()[:8]


def _weights_folder(vllm_config: "VllmConfig") -> Path | None:
    """The folder vLLM loads the weights from: the model path, or its snapshot in the Hugging
    Face cache (no download is started)."""
    model_config = vllm_config.model_config
    path = Path(str(model_config.model))
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download
        load = getattr(vllm_config, "load_config", None)
        return Path(snapshot_download(str(model_config.model), revision=model_config.revision, local_files_only=True,
                                      cache_dir=getattr(load, "download_dir", None)))
    except Exception:  # not cached, not a repository, or no huggingface_hub: nothing to read
        return None


def unshareable(request: Any) -> bool:
    """Whether a request's KV depends on more than model, token ids and media: a LoRA
    adapter, prompt embeddings (their positions hold placeholder ids) or a `cache_salt`
    (vLLM's own prefix cache keeps such requests apart; the store must too)."""
    return any(getattr(request, name, None) is not None for name in ("lora_request", "prompt_embeds", "cache_salt"))


def _lossy(policy: str) -> bool:
    """Whether entries stored with `policy` differ from the KV that was captured: a reduction
    (the first part) or a quantization (`int…`) anywhere in it; codecs are lossless."""
    parts = policy.split("+")
    return parts[0] != "none" or any(part.startswith("int") for part in parts)


def _evicts(policy: str, method: str) -> bool:
    """Whether entries stored with `policy` may lack positions: every drop method, and `airmerge`
    unless it drops nothing (`evict=0`: what it does not keep it merges)."""
    reduction = policy.split("+")[0]
    if reduction.startswith("airmerge") and "evict=0" in reduction.split(":")[1:]:
        return False
    return any(reduction.startswith(m) or method.startswith(m) for m in EVICTING)


# ---------------------------------------------------------------- what the scheduler tells the worker

@dataclass
class LoadSpec:
    """Write tokens [start, end) of `entry` (whole blocks) into `block_ids` (the request's blocks
    from its first)."""
    req_id: str
    entry: str
    start: int
    end: int
    block_ids: list[int]
    bytes_stored: int
    #: The policy the plan saw (`show`): the worker loads the entry only as stored with it, so a
    #: re-pack in between (exact to lossy) fails the load rather than passing for what was planned.
    policy: str | None = None


@dataclass
class SaveSpec:
    """The request's prefill completes in this step: copy its `len(token_ids)` prompt tokens out
    of `block_ids` at every layer and store them."""
    req_id: str
    token_ids: list[int]
    block_ids: list[int]
    spans: list[dict[str, Any]]


@dataclass
class KVStoreConnectorMetadata(KVConnectorMetadata):
    loads: list[LoadSpec] = field(default_factory=list)
    saves: list[SaveSpec] = field(default_factory=list)


@dataclass
class _Tracked:
    """A request the scheduler side follows until its prefill completes."""
    token_ids: list[int]
    block_ids: list[int]
    spans: list[dict[str, Any]]
    save: bool


# ---------------------------------------------------------------- spans and sources

def source_of(identifier: str) -> str:
    """The `source` a span carries for vLLM's multimodal hash of an item."""
    return SOURCE_PREFIX + identifier


def names_content(vllm_config: "VllmConfig") -> bool:
    """Whether vLLM names each multimodal item by a hash of its content. With its processor
    cache off (`mm_processor_cache_gb=0`) and prefix caching off it does not: items are named
    by a counter of the process (`renderer0-mm-1-image-0`), the same name for another image in
    every other engine and after every restart."""
    multimodal = getattr(vllm_config.model_config, "multimodal_config", None)
    return not (multimodal is not None and getattr(multimodal, "mm_processor_cache_gb", None) == 0
                and not vllm_config.cache_config.enable_prefix_caching)


def data_source(feature: Any) -> str | None:
    """`kvstore:sha256:<hex>` of an item's processed data (every tensor's name, dtype, shape and
    bytes, nested lists and dicts walked: what the vision tower is given), or None without data
    or with a value it cannot spell exactly. The name the connector gives an item where vLLM's
    is a counter (`names_content`)."""
    data = getattr(feature, "data", None)
    if data is None:
        return None
    digest = hashlib.sha256(str(getattr(feature, "modality", "")).encode() + b"\0")
    try:
        items = {str(k): getattr(data[k], "data", data[k]) for k in data.keys()}
    except (AttributeError, TypeError, KeyError):
        return None
    return "kvstore:sha256:" + digest.hexdigest() if _feed(digest, items) else None


def _feed(digest: Any, value: Any) -> bool:
    """Adds `value` to `digest` exactly; False for a value whose bytes cannot be had (a repr may
    abbreviate, and two items must never share a name)."""
    if isinstance(value, torch.Tensor):
        t = value.detach().to("cpu").contiguous()
        digest.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, np.ndarray):
        a = np.ascontiguousarray(value)
        if a.dtype == object:
            return False
        digest.update(f"A{a.dtype.str}{a.shape}".encode() + a.tobytes())
    elif isinstance(value, dict):
        digest.update(f"D{len(value)}".encode())
        for key in sorted(value, key=str):
            digest.update(str(key).encode() + b"\0")
            if not _feed(digest, value[key]):
                return False
    elif isinstance(value, (list, tuple)):
        digest.update(f"L{len(value)}".encode())
        return all(_feed(digest, v) for v in value)
    elif value is None or isinstance(value, (bool, int, float, str, bytes)):
        digest.update(f"S{type(value).__name__}:{value!r}".encode())
    else:
        return False
    return True


def feature_sources(features: list[Any], by_content: bool) -> list[str] | None:
    """Each item's `source`, in the order given: vLLM's hash where it names content, else a hash
    of the item's data; None if an item cannot be named (then the request is not shared)."""
    if by_content:
        return [source_of(f.identifier) for f in features]
    sources = [data_source(f) for f in features]
    return None if any(s is None for s in sources) else sources  # type: ignore[return-value]


def request_spans(num_tokens: int, features: list[Any], merge: int | None,
                  sources: list[str] | None = None) -> list[dict[str, Any]]:
    """kvsnap spans (KVSNAP.md) tiling [0, num_tokens): each image/video placeholder range of
    vLLM (with its grid where the item's data gives it, `[1, length]` otherwise), text before the
    first (system), between (other), after the last (prompt). `sources`, in the order of
    `features`: each item's source (default: vLLM's hash, `source_of`)."""
    named = sources if sources is not None else [source_of(f.identifier) for f in features]
    items = sorted(((f.mm_position.offset, f.mm_position.length, f, named[i]) for i, f in enumerate(features)),
                   key=lambda t: t[0])
    spans: list[Span] = []
    position = 0
    for offset, length, f, source in items:
        if offset < position or offset + length > num_tokens:
            raise ValueError(f"placeholder [{offset}, {offset + length}) overlaps or leaves the prompt")
        if offset > position:
            spans.append(Span.text(position, offset, role="system" if not spans else "other"))
        kind = "video" if f.modality == "video" else "image"
        rows, cols, frames = _grid(f, length, merge)
        span = Span.video(offset, rows, cols, frames) if kind == "video" else Span.image(offset, rows, cols)
        span.source = source
        spans.append(span)
        position = offset + length
    if position < num_tokens:
        spans.append(Span.text(position, num_tokens, role="prompt"))
    return [s.to_json() for s in spans]


def _grid(feature: Any, length: int, merge: int | None) -> tuple[int, int, int]:
    """(rows, cols, frames) of an item's token grid: from `image_grid_thw`/`video_grid_thw`
    (Qwen-VL) when its data is at hand and agrees with the placeholder, else a square, else one row."""
    data = getattr(feature, "data", None)
    for key in ("image_grid_thw", "video_grid_thw"):
        try:
            thw = data[key].data if data is not None and key in data else None
        except (KeyError, TypeError, AttributeError):
            thw = None
        if thw is not None and merge:
            t, h, w = (int(x) for x in torch.as_tensor(thw).reshape(-1)[:3])
            rows, cols = h // merge, w // merge
            if feature.modality != "video":
                rows, t = rows * t, 1
            if rows * cols * t == length:
                return rows, cols, t
    side = int(round(length ** 0.5))
    return (side, side, 1) if side * side == length else (1, length, 1)


def prefix_end(spans: list[dict[str, Any]], num_tokens: int) -> int:
    """The shareable prefix's end: the first prompt span's start (KVSNAP.md)."""
    return next((s["start"] for s in spans if s.get("role") == "prompt"), num_tokens)


# ---------------------------------------------------------------- the paged layout

class BlockLayout:
    """Where each (kv head, token, channel) of one block's keys and values lies in the block's
    memory, found by writing known values through the attention backend's own cache write
    (`impl.do_kv_cache_update`) into a scratch block: the CPU kernels keep keys in tiles, not
    `[tokens, head_dim]`, and differ by instruction set, so nothing here assumes an order."""

    def __init__(self, key_index: torch.Tensor, value_index: torch.Tensor, heads: int, block_size: int,
                 dim: int) -> None:
        #: flat offsets in a block of each (kv head, token, channel), in that order
        self.key_index, self.value_index = key_index, value_index
        self.heads, self.block_size, self.dim = heads, block_size, dim

    @staticmethod
    def probe(layer: Any, cache: torch.Tensor, block_size: int) -> "BlockLayout":
        heads, dim = cache.shape[1], _head_dim(cache, block_size)
        if max(block_size, dim, heads) > 256:
            raise ValueError(f"layout probe needs block size, head_dim and kv heads <= 256 (exact in bf16), "
                             f"got {block_size}, {dim}, {heads}")
        scratch = torch.zeros_like(cache[:1])
        slots = torch.arange(block_size, dtype=torch.int64)
        grid = torch.meshgrid(torch.arange(block_size), torch.arange(heads), torch.arange(dim), indexing="ij")
        seen = []
        for coordinate in grid:  # token, head, channel of every element, one probe each
            scratch.zero_()
            values = coordinate.to(cache.dtype).contiguous()
            layer.impl.do_kv_cache_update(layer, values, values, scratch, slots)
            seen.append(scratch.reshape(-1).to(torch.int64))
        # keys and values were written with the same numbers: tell them apart by a last probe
        scratch.zero_()
        ones = torch.ones(block_size, heads, dim, dtype=cache.dtype)
        layer.impl.do_kv_cache_update(layer, ones, -ones, scratch, slots)
        sign = scratch.reshape(-1)
        token, head, channel = seen
        flat = (head * block_size + token) * dim + channel  # the (h, t, c) order of [heads, block, dim]
        size = heads * block_size * dim

        def index(mask: torch.Tensor) -> torch.Tensor:
            where = torch.nonzero(mask).reshape(-1)
            if where.numel() != size:
                raise ValueError(f"layout probe found {where.numel()} slots, expected {size}")
            out = torch.full((size,), -1, dtype=torch.int64)
            out[flat[where]] = where
            if bool((out < 0).any()):
                raise ValueError("layout probe: some (head, token, channel) was written nowhere")
            return out
        return BlockLayout(index(sign > 0), index(sign < 0), heads, block_size, dim)

    def read(self, cache: torch.Tensor, block_ids: list[int], count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of the first `count` tokens held in `block_ids`: [heads, count, dim] each."""
        blocks = cache.reshape(cache.shape[0], -1)[torch.tensor(block_ids, dtype=torch.int64)]

        def part(index: torch.Tensor) -> torch.Tensor:
            x = blocks[:, index].reshape(len(block_ids), self.heads, self.block_size, self.dim)
            return x.permute(1, 0, 2, 3).reshape(self.heads, -1, self.dim)[:, :count]
        return part(self.key_index), part(self.value_index)

    def write(self, cache: torch.Tensor, block_ids: list[int], key: torch.Tensor, value: torch.Tensor) -> None:
        """Writes [heads, n, dim] keys and values (n = whole blocks) into `block_ids`."""
        flat = cache.view(cache.shape[0], -1)
        rows = torch.tensor(block_ids, dtype=torch.int64)[:, None]
        n = len(block_ids)
        for part, index in ((key, self.key_index), (value, self.value_index)):
            if tuple(part.shape) != (self.heads, n * self.block_size, self.dim):
                raise ValueError(f"got {list(part.shape)} to write, expected [{self.heads}, {n * self.block_size}, "
                                 f"{self.dim}]")
            blocks = part.to(cache.dtype).reshape(self.heads, n, self.block_size, self.dim)
            flat[rows, index[None, :]] = blocks.permute(1, 0, 2, 3).reshape(n, -1)


def _head_dim(cache: torch.Tensor, block_size: int) -> int:
    """head_dim of a `[blocks, kv_heads, block_size, 2 * head_dim]` CPU cache."""
    if cache.dim() != 4 or cache.shape[2] != block_size or cache.shape[3] % 2:
        raise ValueError(f"KV cache of shape {list(cache.shape)} is not [blocks, kv_heads, {block_size}, 2*head_dim]")
    return cache.shape[3] // 2


# ---------------------------------------------------------------- the connector

class KVStoreConnector(KVConnectorBase_V1):
    """kvstore as a vLLM KV connector (module docstring)."""

    def __init__(self, vllm_config: "VllmConfig", role: KVConnectorRole, kv_cache_config: Any = None) -> None:
        super().__init__(vllm_config=vllm_config, role=role, kv_cache_config=kv_cache_config)
        extra = dict(self._kv_transfer_config.kv_connector_extra_config or {})
        if not extra.get("store"):
            raise ValueError('KVStoreConnector: kv_connector_extra_config needs "store" (a store folder or the URL '
                             "of kvstore serve)")
        self.store = str(extra["store"])
        self.policy = str(extra.get("policy") or "none")
        self.token = extra.get("token")
        self.binary = extra.get("binary")
        self.timeout = float(extra.get("timeout", 30))
        self.lookup_timeout = min(self.timeout, float(extra.get("lookup_timeout", 5)))
        self.retry_seconds = float(extra.get("retry_seconds", 30))
        self._bypass_until = 0.0
        self._client: Client | None = None
        self._lookup_client: Client | None = None
        self.by_content = names_content(vllm_config)
        model_config = vllm_config.model_config
        self.model, fingerprinted = model_identity(extra, vllm_config)
        self.block_size = int(vllm_config.cache_config.block_size)
        self.save_enabled = bool(extra.get("save", True)) and self._kv_transfer_config.is_kv_producer
        self.load_enabled = self._kv_transfer_config.is_kv_consumer
        parallel = vllm_config.parallel_config
        ranks = (int(getattr(parallel, "tensor_parallel_size", 1) or 1), int(getattr(parallel, "pipeline_parallel_size", 1) or 1))
        if ranks != (1, 1):
            # Each rank holds some heads (tensor) or some layers (pipeline) of every request: an
            # entry saved by one rank is not another's, and none is the whole model's.
            logger.warning("kvstore: tensor parallel size %d, pipeline parallel size %d: the connector stores and "
                           "loads single-GPU engines only; it is off", *ranks)
            self.save_enabled = self.load_enabled = False
        if not fingerprinted:
            self.save_enabled = self.load_enabled = False
        cache_dtype = str(getattr(vllm_config.cache_config, "cache_dtype", "auto"))
        if cache_dtype != "auto":
            # The store keeps keys and values in the model's dtype; an fp8 cache is another layout.
            logger.warning("kvstore: the KV cache is %s (kv_cache_dtype): the connector stores and loads caches "
                           "in the model's dtype only; it is off", cache_dtype)
            self.save_enabled = self.load_enabled = False
        if not self.by_content:
            logger.warning("kvstore: vLLM names images and videos by a counter of this process (its processor cache "
                           "and prefix caching are both off); the connector names them by a hash of their "
                           "processed data instead")
        if self.save_enabled or self.load_enabled:
            try:
                self.client()
            except Exception as e:  # no binary, a token for a folder: say so now, not at the first request
                logger.warning("kvstore: the store %s cannot be used (%s: %s); the connector is off",
                               self.store, type(e).__name__, e)
                self.save_enabled = self.load_enabled = False
        if self.save_enabled and not is_url(self.store):
            # A policy the binary does not know would fail every save; a server checks its own
            # (its policy file may name more) at the first save.
            try:
                self.policy = self.client().check_policy(self.policy)
            except UsageError as e:
                logger.warning("kvstore: %s; the connector saves nothing (loading is unaffected)", e.stderr.strip() or e)
                self.save_enabled = False
            except Exception as e:  # not checked now (a slow binary): a wrong policy fails its saves, logged
                logger.warning("kvstore: the policy %r could not be checked (%s: %s); saving goes on",
                               self.policy, type(e).__name__, e)
        if self.save_enabled and _evicts(self.policy, ""):
            logger.warning("kvstore: policy %r evicts vision tokens: the entries it stores are kept for other readers, "
                           "but vLLM cannot load them (its attention needs KV at every position)", self.policy)
        self.stats_path = extra.get("stats_path")
        text = model_config.hf_text_config
        self.num_layers = int(text.num_hidden_layers)
        self.kv_heads = int(model_config.get_num_kv_heads(vllm_config.parallel_config))
        self.head_dim = int(model_config.get_head_size())
        vision = getattr(model_config.hf_config, "vision_config", None)
        self.merge = getattr(vision, "spatial_merge_size", None)
        self._logged: set[str] = set()
        if role == KVConnectorRole.SCHEDULER:
            # Failures become a prefill, never a failed request (module docstring).
            self._kv_transfer_config.kv_load_failure_policy = "recompute"
            self._plans: dict[str, tuple[PrefixMatch, int, int, int, str]] = {}  # req -> match, start, end, bytes, policy
            self._allocated: dict[str, list[int]] = {}
            self._tracked: dict[str, _Tracked] = {}
            self._refused: set[str] = set()
            self._unsaved: set[str] = set()  # requests not to save: private KV, or a lossy entry loaded
            self._named: dict[str, list[str] | None] = {}  # req -> its media's sources, hashed once
        else:
            self._caches: dict[str, torch.Tensor] = {}
            self._layer_index: dict[str, int] = {}
            self._layout: BlockLayout | None = None
            self._pending: dict[str, dict[int, tuple[torch.Tensor, torch.Tensor]]] = {}
            self._errors: set[int] = set()
            self._max_pending = int(float(extra.get("max_pending_mb", 512)) * (1 << 20))
            self._pending_bytes = 0
            self._lock = threading.Lock()
            self._stats_lock = threading.Lock()
            self._unreadable = False
            self.stats = {"loads": 0, "tokens_loaded": 0, "bytes_loaded": 0, "load_errors": 0, "load_seconds": 0.0,
                          "saves": 0, "tokens_saved": 0, "bytes_saved": 0, "saves_dropped": 0, "save_errors": 0}
            self._queue: queue.Queue[tuple[Snapshot, int] | None] = queue.Queue()
            self._thread = threading.Thread(target=self._save_loop, name="kvstore-save", daemon=True)
            self._thread.start()

    # ------------------------------------------------------------ shared

    def client(self) -> Client:
        if self._client is None:
            self._client = self._make_client(self.timeout)
        return self._client

    def _lookup(self) -> Client:
        """The client the scheduler asks before a prefill: it waits `lookup_timeout` at most."""
        if self._lookup_client is None:
            self._lookup_client = self._make_client(self.lookup_timeout)
        return self._lookup_client

    def _make_client(self, timeout: float) -> Client:
        if self.token is not None:
            return Client(self.store, token=self.token, timeout=timeout)
        return Client(self.store, self.binary, timeout=timeout)

    def _bypass(self, what: str, e: Exception) -> None:
        """A lookup failed: the scheduler waits on no store call for `retry_seconds` (a store that
        hangs would otherwise hold every new request, and every running one, for the timeout)."""
        self._bypass_until = time.monotonic() + self.retry_seconds
        self._log_once(f"{what}:{type(e).__name__}", "%s failed (%s: %s); lookups skipped for %g s, requests "
                       "prefilled meanwhile", what, type(e).__name__, e, self.retry_seconds)

    def _log_once(self, key: str, message: str, *args: Any) -> None:
        """Warns the first time `key` comes up; later the same failure is counted silently."""
        if key in self._logged:
            logger.debug(message, *args)
            return
        self._logged.add(key)
        logger.warning("kvstore: " + message, *args)

    # ------------------------------------------------------------ scheduler side

    def get_num_new_matched_tokens(self, request: "Request", num_computed_tokens: int) -> tuple[int, bool]:
        if unshareable(request):
            self._unsaved.add(request.request_id)
            return 0, False
        if not self.load_enabled:
            return 0, False
        ids = list(request.prompt_token_ids or [])
        usable = (len(ids) - 1) // self.block_size * self.block_size  # whole blocks, >= 1 token left
        if usable <= num_computed_tokens:
            return 0, False
        plan = self._plans.get(request.request_id)
        if plan is None:
            plan = self._plan(request, ids, usable, num_computed_tokens)
            if plan is None:
                return 0, False
        found, _, end, stored, policy = plan
        if end <= num_computed_tokens:
            self._plans.pop(request.request_id, None)
            return 0, False
        # asked again (no room yet, or resumed after preemption): what vLLM holds may have changed
        self._plans[request.request_id] = (found, num_computed_tokens, end, stored, policy)
        return end - num_computed_tokens, False

    def _plan(self, request: "Request", ids: list[int], usable: int,
              computed: int) -> tuple[PrefixMatch, int, int, int, str] | None:
        features = sorted(request.mm_features, key=lambda f: f.mm_position.offset)
        sources = self._sources(request.request_id, features)
        if sources is None:
            self._log_once("unnamed", "a request's image or video has no data to name it by; not shared")
            return None
        if time.monotonic() < self._bypass_until:
            return None
        try:
            found = self._lookup().match(self.model, ids, sources)
        except Exception as e:  # a store that is down, hangs or refuses: prefill
            self._bypass("match", e)
            return None
        if found is None:
            return None
        inside = sum(1 for f in features if f.mm_position.offset < found.length)
        if found.sources_checked != inside:
            # The store names every image of a match by its source; anything else is not this request's.
            self._log_once(f"sources:{found.id}", "entry %s matched %d of the %d images inside its prefix by "
                           "source; not loaded", found.id, found.sources_checked, inside)
            return None
        end = min(found.length, usable) // self.block_size * self.block_size
        if end <= computed:
            return None
        try:
            entry = self._lookup().show(found.id)
        except NotFoundError as e:  # removed since the match: the store answers, nothing to wait out
            self._log_once(f"show:{found.id}", "entry %s is gone (%s), prefilling instead", found.id, e)
            return None
        except Exception as e:
            self._bypass("reading a matched entry's record", e)
            return None
        problem = self._refusal(entry)
        if problem:
            self._log_once(f"refuse:{found.id}", "entry %s not loaded: %s; prefilling instead", found.id, problem)
            return None
        if _lossy(entry.policy):
            self._unsaved.add(request.request_id)
            self._log_once(f"lossy:{entry.policy}", "loading entries stored with the lossy policy %r (first: %s); "
                           "requests that load one are not saved", entry.policy, found.id)
        return found, computed, end, int(entry.bytes_out), entry.policy

    def _refusal(self, entry: Any) -> str | None:
        """Why a stored entry cannot be given to this engine, or None."""
        shape = (entry.layers, entry.kv_heads, entry.head_dim, entry.v_head_dim)
        ours = (self.num_layers, self.kv_heads, self.head_dim, self.head_dim)
        if shape != ours:
            return (f"its shape (layers, kv heads, head_dim, v_head_dim) is {shape}, the model's {ours} "
                    f"(another model stored as {entry.model!r}?)")
        if _evicts(entry.policy, str((entry.compression or {}).get("method", entry.policy))):
            return (f"its policy {entry.policy!r} evicts vision tokens, and vLLM's attention needs KV at every "
                    "position (store with a merging policy such as lightkv, or none, to reuse with vLLM)")
        return None

    def update_state_after_alloc(self, request: "Request", blocks: "KVCacheBlocks", num_external_tokens: int) -> None:
        if num_external_tokens == 0:
            self._plans.pop(request.request_id, None)
            return
        self._allocated[request.request_id] = list(blocks.get_block_ids()[0])

    def build_connector_meta(self, scheduler_output: "SchedulerOutput") -> KVConnectorMetadata:
        meta = KVStoreConnectorMetadata()
        for new in scheduler_output.scheduled_new_reqs:
            ids = list(new.prompt_token_ids or [])
            block_ids = list(new.block_ids[0])
            plan = self._plans.pop(new.req_id, None)
            if plan is not None and new.req_id in self._allocated:
                found, start, end, stored, policy = plan
                meta.loads.append(LoadSpec(new.req_id, found.id, start, end, block_ids, stored, policy))
            self._allocated.pop(new.req_id, None)
            unsaved = new.req_id in self._unsaved
            self._unsaved.discard(new.req_id)
            if not self.save_enabled or not ids or unsaved or unshareable(new):
                continue
            features = sorted(new.mm_features, key=lambda f: f.mm_position.offset)
            sources = self._sources(new.req_id, features)
            self._named.pop(new.req_id, None)
            if sources is None:
                continue  # an item that cannot be named is never stored under a name
            try:
                spans = request_spans(len(ids), features, self.merge, sources)
            except ValueError as e:
                self._log_once(f"spans:{e}", "request %s not saved: %s", new.req_id, e)
                continue
            shareable = prefix_end(spans, len(ids))
            # Only a prefix of whole blocks can ever be offered back; one loaded whole is stored already.
            covered = plan is not None and plan[0].length >= shareable
            self._tracked[new.req_id] = _Tracked(ids, block_ids, spans, shareable >= self.block_size and not covered)
            self._maybe_save(meta, new.req_id, new.num_computed_tokens, scheduler_output)
        cached = scheduler_output.scheduled_cached_reqs
        for i, req_id in enumerate(cached.req_ids):
            plan = self._plans.pop(req_id, None)
            allocated = self._allocated.pop(req_id, None)
            if plan is not None and allocated is not None and req_id in cached.resumed_req_ids:
                # resumed after preemption: its blocks are new (all of them), the prefix loads again
                found, start, end, stored, policy = plan
                blocks = cached.new_block_ids[i]
                meta.loads.append(LoadSpec(req_id, found.id, start, end, list(blocks[0]) if blocks else allocated,
                                           stored, policy))
            tracked = self._tracked.get(req_id)
            if tracked is None:
                continue
            added = cached.new_block_ids[i]
            resumed = req_id in cached.resumed_req_ids
            if added is not None:
                if resumed:
                    tracked.block_ids = list(added[0])
                else:
                    tracked.block_ids += list(added[0])
            self._maybe_save(meta, req_id, cached.num_computed_tokens[i], scheduler_output)
        return meta

    def _maybe_save(self, meta: KVStoreConnectorMetadata, req_id: str, computed: int,
                    scheduler_output: "SchedulerOutput") -> None:
        """Saves in the step where the prefill completes (all prompt tokens in the blocks)."""
        tracked = self._tracked[req_id]
        scheduled = scheduler_output.num_scheduled_tokens.get(req_id, 0)
        if computed + scheduled < len(tracked.token_ids):
            return
        del self._tracked[req_id]
        if tracked.save:
            meta.saves.append(SaveSpec(req_id, tracked.token_ids, tracked.block_ids, tracked.spans))

    def _sources(self, req_id: str, features: list[Any]) -> list[str] | None:
        """`feature_sources` of a request's media (in offset order), hashed once for its lookup
        and its save where vLLM names them by a counter (a hash reads every processed pixel)."""
        if self.by_content:
            return feature_sources(features, True)
        if req_id not in self._named:
            self._named[req_id] = feature_sources(features, False)
        return self._named[req_id]

    def request_finished(self, request: "Request", block_ids: list[int]) -> tuple[bool, dict[str, Any] | None]:
        self._named.pop(request.request_id, None)
        for state in (self._plans, self._allocated, self._tracked):
            state.pop(request.request_id, None)
        self._unsaved.discard(request.request_id)
        return False, None

    # ------------------------------------------------------------ worker side

    def register_kv_caches(self, kv_caches: dict[str, torch.Tensor]) -> None:
        from vllm.model_executor.models.utils import extract_layer_index
        self._caches = dict(kv_caches)
        self._layer_index = {name: extract_layer_index(name) for name in kv_caches}

    def _block_layout(self) -> BlockLayout:
        if self._layout is None:
            name = min(self._layer_index, key=self._layer_index.get)
            layer = self._vllm_config.compilation_config.static_forward_context[name]
            self._layout = BlockLayout.probe(layer, self._caches[name], self.block_size)
        return self._layout

    def start_load_kv(self, forward_context: "ForwardContext", **kwargs: Any) -> None:
        meta = self._get_connector_metadata()
        assert isinstance(meta, KVStoreConnectorMetadata)
        for load in meta.loads:
            began = time.perf_counter()
            try:
                self._load(load)
            except Exception as e:  # damaged, missing, re-packed, store down: recompute those blocks
                first, last = load.start // self.block_size, load.end // self.block_size
                self._errors.update(load.block_ids[first:last])
                self.stats["load_errors"] += 1
                self._log_once(f"load:{load.entry}:{type(e).__name__}", "loading entry %s failed (%s: %s); "
                               "its %d tokens are prefilled instead", load.entry, type(e).__name__, e,
                               load.end - load.start)
                continue
            self.stats["loads"] += 1
            self.stats["tokens_loaded"] += load.end - load.start
            self.stats["bytes_loaded"] += load.bytes_stored
            self.stats["load_seconds"] += time.perf_counter() - began
            logger.info("kvstore: loaded %d tokens of entry %s for request %s", load.end - load.start, load.entry,
                        load.req_id)
        if meta.loads:
            self._write_stats()

    def _load(self, load: LoadSpec) -> None:
        layout = self._block_layout()
        first, last = load.start // self.block_size, load.end // self.block_size
        blocks = load.block_ids[first:last]
        if len(blocks) != last - first:
            raise ValueError(f"{len(load.block_ids)} blocks allocated, {last} needed")
        by_index = {i: name for name, i in self._layer_index.items()}
        done = 0
        for i, layer in enumerate(self.client().fetch_layers(load.entry, dtype="f32", expand=True, policy=load.policy)):
            name = by_index.get(i)
            if name is None:
                raise ValueError(f"the entry has a layer {i}; the model {len(by_index)}")
            positions = np.asarray(layer.positions)
            if positions.size < load.end or not np.array_equal(positions[:load.end], np.arange(load.end)):
                raise ValueError(f"layer {i} does not hold every position before {load.end} (an evicting policy?)")
            key = torch.from_numpy(np.ascontiguousarray(layer.key[:, load.start:load.end]))
            value = torch.from_numpy(np.ascontiguousarray(layer.value[:, load.start:load.end]))
            layout.write(self._caches[name], blocks, key, value)
            done += 1
        if done != len(by_index):
            raise ValueError(f"the entry has {done} layers, the model {len(by_index)}")

    def wait_for_layer_load(self, layer_name: str) -> None:
        return  # start_load_kv wrote every layer before the forward began

    def save_kv_layer(self, layer_name: str, kv_layer: torch.Tensor, attn_metadata: Any, **kwargs: Any) -> None:
        meta = self._get_connector_metadata()
        assert isinstance(meta, KVStoreConnectorMetadata)
        index = self._layer_index.get(layer_name)
        if index is None or not meta.saves or self._unreadable:
            return
        try:
            layout = self._block_layout()
            for save in meta.saves:
                count = len(save.token_ids)
                blocks = save.block_ids[:(count + self.block_size - 1) // self.block_size]
                key, value = layout.read(kv_layer, blocks, count)
                self._pending.setdefault(save.req_id, {})[index] = (key.contiguous(), value.contiguous())
        except Exception as e:  # a cache the connector cannot map or read: serve on, store nothing
            # (this runs inside the model's forward: anything raised here would stop the engine)
            self._unreadable = True
            self._pending.clear()
            self._log_once("layout", "the KV cache cannot be read (%s: %s); saving is off", type(e).__name__, e)

    def wait_for_save(self) -> None:
        """Hands each request whose every layer was copied to the save thread (never waits on it)."""
        if not self.has_connector_metadata():
            return
        meta = self._get_connector_metadata()
        assert isinstance(meta, KVStoreConnectorMetadata)
        for save in meta.saves:
            layers = self._pending.pop(save.req_id, {})
            if sorted(layers) != sorted(set(self._layer_index.values())):
                continue  # the forward did not reach every layer: nothing half-done is stored
            size = sum(k.numel() * k.element_size() * 2 for k, _ in layers.values())
            with self._lock:
                if self._pending_bytes + size > self._max_pending:
                    self.stats["saves_dropped"] += 1
                    self._log_once("dropped", "save queue full (%d MiB pending): request %s not saved",
                                   self._pending_bytes >> 20, save.req_id)
                    continue
                self._pending_bytes += size
            self._queue.put((self._snapshot(save, layers), size))

    def _snapshot(self, save: SaveSpec, layers: dict[int, tuple[torch.Tensor, torch.Tensor]]) -> Snapshot:
        spans = [Span.from_json(s, i) for i, s in enumerate(save.spans)]
        dtype = {torch.bfloat16: "BF16", torch.float16: "F16"}.get(layers[min(layers)][0].dtype, "F32")
        # tensors stay torch until the save thread converts them: the engine thread only copies
        return Snapshot(model=self.model, spans=spans, dtype=dtype,
                        layers=[Layer(key=layers[i][0], value=layers[i][1]) for i in sorted(layers)],  # type: ignore[arg-type]
                        input_ids=np.asarray(save.token_ids, dtype=np.int64),
                        metadata={"vllm.request": save.req_id})

    def _save_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                self._queue.task_done()
                return
            snap, size = item
            try:
                self._store(snap)
            except Exception as e:
                self.stats["save_errors"] += 1
                self._log_once(f"save:{type(e).__name__}", "storing a request's KV failed (%s: %s)",
                               type(e).__name__, e)
            finally:
                with self._lock:
                    self._pending_bytes -= size
                self._write_stats()
                self._queue.task_done()

    def _store(self, snap: Snapshot) -> None:
        for layer in snap.layers:
            for name in ("key", "value"):
                t = getattr(layer, name)
                setattr(layer, name, t.to(torch.float32).numpy() if snap.dtype != "F16" else t.numpy())
        with tempfile.TemporaryDirectory(prefix="kvstore-vllm-") as d:
            path = os.path.join(d, "request.safetensors")
            write(snap, path)
            stored = self.client().ingest(path, policy=self.policy)
        self.stats["saves"] += 1
        self.stats["tokens_saved"] += len(snap.input_ids)  # type: ignore[arg-type]
        self.stats["bytes_saved"] += stored.bytes_out
        logger.info("kvstore: stored %d tokens as entry %s (%s)", len(snap.input_ids), stored.id,  # type: ignore[arg-type]
                    "already stored" if stored.already_stored else self.policy)

    def flush(self, timeout: float | None = None) -> bool:
        """Waits until every queued save is stored (True), or `timeout` seconds passed (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def get_block_ids_with_load_errors(self) -> set[int]:
        errors, self._errors = self._errors, set()
        return errors

    def _write_stats(self) -> None:
        """Rewrites `stats_path` (the engine thread after loads, the save thread after saves:
        one at a time); a failure is logged, never raised into either."""
        if not self.stats_path:
            return
        with self._stats_lock:
            temp = f"{self.stats_path}.{os.getpid()}.{threading.get_ident()}.tmp"
            try:
                with open(temp, "w") as f:
                    json.dump(self.stats, f)
                os.replace(temp, self.stats_path)
            except OSError as e:
                self._log_once(f"stats:{type(e).__name__}", "writing %s failed (%s: %s)", self.stats_path,
                               type(e).__name__, e)

    def shutdown(self) -> None:
        if self.role == KVConnectorRole.WORKER and self._thread.is_alive():
            self.flush(timeout=self.timeout)
            self._queue.put(None)
            self._thread.join(timeout=self.timeout)


__all__ = ["BlockLayout", "KVStoreConnector", "KVStoreConnectorMetadata", "LoadSpec", "SaveSpec", "data_source",
           "feature_sources", "names_content", "processing_digest", "request_spans", "source_of", "unshareable"]
