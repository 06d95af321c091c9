"""kvsnap files (KVSNAP.md): `read` and `write`, with the Swift reader's validation."""
from __future__ import annotations

import json
import mmap
import os
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .dtypes import FLOAT_DTYPES, ID_DTYPES, from_bits, numpy_dtype_name, to_bits
from .errors import SnapshotError
from .safetensors_io import parse_header, layout_header

VERSION_KEY = "kvsnap.version"
MODEL_KEY = "kvsnap.model"
SPANS_KEY = "kvsnap.spans"
KEY_KEY = "kvsnap.key"
NEXT_POSITION_KEY = "kvsnap.next_position"
SEQ_LEN_KEY = "kvsnap.seq_len"
COMPRESSION_KEY = "kvsnap.compression"
PREFIX_OF_KEY = "kvsnap.prefix_of"  # written by `fetch --prefix`: the entry whose prefix the file holds
INPUT_IDS = "input_ids"
_OWN_KEYS = (VERSION_KEY, MODEL_KEY, SPANS_KEY, KEY_KEY, NEXT_POSITION_KEY, SEQ_LEN_KEY)
_KINDS = ("key", "value", "prompt_query", "probe_query", "positions", "sizes")
_NAME = re.compile(r"^layers\.(0|[1-9][0-9]*)\.(.+)$")


@dataclass
class Span:
    """One contiguous run of tokens: text, one image, or one video (`end` exclusive)."""

    kind: str
    start: int
    end: int
    role: str | None = None
    grid: tuple[int, int] | None = None
    frames: int | None = None
    source: str | None = None

    @property
    def count(self) -> int:
        return self.end - self.start

    @property
    def is_vision(self) -> bool:
        return self.kind != "text"

    @staticmethod
    def text(start: int, end: int, role: str | None = None) -> "Span":
        return Span("text", start, end, role=role)

    @staticmethod
    def image(start: int, rows: int, cols: int, source: str | None = None) -> "Span":
        return Span("image", start, start + rows * cols, grid=(rows, cols), source=source)

    @staticmethod
    def video(start: int, rows: int, cols: int, frames: int, source: str | None = None) -> "Span":
        return Span("video", start, start + rows * cols * frames, grid=(rows, cols), frames=frames, source=source)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "start": self.start, "end": self.end}
        if self.role is not None:
            out["role"] = self.role
        if self.grid is not None:
            out["grid"] = list(self.grid)
        if self.frames is not None:
            out["frames"] = self.frames
        if self.source is not None:
            out["source"] = self.source
        return out

    @staticmethod
    def from_json(obj: Any, index: int) -> "Span":
        def bad(problem: str) -> SnapshotError:
            return SnapshotError(SPANS_KEY, f"span {index}: {problem}")
        if not isinstance(obj, dict):
            raise bad("is not an object")
        for k in ("kind", "start", "end"):
            if k not in obj:
                raise bad(f'missing "{k}"')
        if obj["kind"] not in ("text", "image", "video"):
            raise bad(f'kind {obj["kind"]!r} is not text, image or video')
        for k in ("start", "end", "frames"):
            if k in obj and obj[k] is not None and not _is_int(obj[k]):
                raise bad(f'"{k}" {obj[k]!r} is not an integer')
        role = obj.get("role")
        if role is not None and role not in ("system", "prompt", "other"):
            raise bad(f"role {role!r} is not system, prompt or other")
        grid = obj.get("grid")
        if grid is not None:
            if not isinstance(grid, list) or not all(_is_int(g) for g in grid):
                raise bad(f'"grid" {grid!r} is not an array of integers')
            grid = tuple(grid)
        source = obj.get("source")
        if source is not None and not isinstance(source, str):
            raise bad(f'"source" {source!r} is not a string')
        return Span(obj["kind"], obj["start"], obj["end"], role, grid, obj.get("frames"), source)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def encode_spans(spans: list[Span]) -> str:
    """The `kvsnap.spans` string as the Swift side encodes it (`fetch --prefix` rewrites it): a
    JSON array with sorted keys, no spaces, non-ASCII kept as UTF-8 and "/" escaped."""
    text = json.dumps([s.to_json() for s in spans], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.replace("/", "\\/")  # a slash can only stand inside a string here


def validate_spans(spans: list[Span], seq_len: int, path: str | None = None) -> None:
    """Spans tile [0, seq_len) in order; vision spans carry a grid (and frames) that add up."""
    nxt = 0
    for i, s in enumerate(spans):
        if s.start != nxt or s.end <= s.start:
            raise SnapshotError(SPANS_KEY, f"span {i} covers [{s.start}, {s.end}) but the previous span ended at "
                                           f"{nxt}: spans must tile [0, {seq_len}) in order with no gap or overlap", path)
        if s.is_vision:
            g = s.grid
            if g is None or len(g) != 2 or g[0] <= 0 or g[1] <= 0:
                raise SnapshotError(SPANS_KEY, f'span {i} ({s.kind}) needs "grid": [rows, cols] with positive values', path)
            if s.kind == "video" and (s.frames or 0) <= 0:
                raise SnapshotError(SPANS_KEY, f'span {i} (video) needs a positive "frames"', path)
            frames = s.frames if s.kind == "video" else 1
            if g[0] * g[1] * frames != s.count:
                raise SnapshotError(SPANS_KEY, f"span {i}: rows*cols*frames = {g[0]}*{g[1]}*{frames} = "
                                               f"{g[0] * g[1] * frames} but the span holds {s.count} tokens", path)
        nxt = s.end
    if nxt != seq_len:
        raise SnapshotError(SPANS_KEY, f"spans end at {nxt} but seq_len is {seq_len}", path)


@dataclass
class Layer:
    """One layer's tensors: `key` [kv_heads, n, head_dim], `value` [kv_heads, n, v_head_dim];
    `positions`/`sizes` ([n] int32) when entries were merged or dropped; optional queries
    [q_heads, m, head_dim]."""

    key: np.ndarray
    value: np.ndarray
    positions: np.ndarray | None = None
    sizes: np.ndarray | None = None
    prompt_query: np.ndarray | None = None
    probe_query: np.ndarray | None = None

    @property
    def count(self) -> int:
        return int(self.key.shape[1])


@dataclass
class Snapshot:
    """A kvsnap file in memory. BF16 tensors are float32 arrays holding bfloat16 values
    (`dtype` says what the file holds); `metadata` carries every other metadata entry
    (e.g. `kvsnap.compression`) unchanged. `input_ids` ([seq_len] int32 or int64, written as
    I32 or I64) are the token ids of the cached positions, when the producer gave them."""

    model: str
    spans: list[Span]
    layers: list[Layer]
    key: str | None = None
    next_position: int | None = None
    seq_len: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    dtype: str | None = None
    input_ids: np.ndarray | None = None

    @property
    def kv_heads(self) -> int:
        return int(self.layers[0].key.shape[0])

    @property
    def head_dim(self) -> int:
        return int(self.layers[0].key.shape[2])

    @property
    def v_head_dim(self) -> int:
        return int(self.layers[0].value.shape[2])

    @property
    def is_compressed(self) -> bool:
        return any(layer.positions is not None for layer in self.layers)

    @property
    def original_length(self) -> int:
        """Tokens before any merging (`kvsnap.seq_len`, else the layers' length)."""
        return self.seq_len if self.seq_len is not None else self.layers[0].count

    @property
    def sources(self) -> list[str]:
        return [s.source for s in self.spans if s.source is not None]

    @property
    def prefix_end(self) -> int:
        """The end of the shareable prefix (KVSNAP.md): the start of the first prompt span, else
        `original_length`. Positions before it depend only on the tokens before it."""
        return prefix_end(self.spans, self.original_length)

    @property
    def prefix_of(self) -> str | None:
        """The entry whose shareable prefix this file holds (`kvsnap.prefix_of`, from `fetch --prefix`)."""
        return self.metadata.get(PREFIX_OF_KEY)

    def prefix(self) -> "Snapshot":
        """The shareable prefix alone, as `kvstore fetch --prefix` cuts it: each layer's entries
        at positions before `prefix_end` (whole merge groups: text is never merged), the spans
        that end by then, `input_ids` cut to it; the producer's key and next position (which
        describe the whole request) and the prompt's queries left out."""
        end = self.prefix_end
        layers = []
        for layer in self.layers:
            k = end if layer.positions is None else int((layer.positions < end).sum())  # numpy or torch
            cut = Layer(key=layer.key[:, :k], value=layer.value[:, :k])
            if layer.positions is not None:
                cut.positions, cut.sizes = layer.positions[:k], layer.sizes[:k]
            layers.append(cut)
        return Snapshot(model=self.model, spans=[s for s in self.spans if s.end <= end], layers=layers,
                        seq_len=end if self.seq_len is not None else None, metadata=dict(self.metadata),
                        dtype=self.dtype, input_ids=None if self.input_ids is None else self.input_ids[:end])

    def stored_dtype(self) -> str:
        if self.dtype is not None:
            if self.dtype not in FLOAT_DTYPES:
                raise SnapshotError("dtype", f"{self.dtype!r} is not one of F16, BF16, F32")
            return self.dtype
        name = numpy_dtype_name(np.asarray(self.layers[0].key)) if self.layers else "F16"
        if name not in FLOAT_DTYPES:
            raise SnapshotError("layers.0.key", f"dtype {name} is not a float type")
        return name

    def raw_metadata(self) -> dict[str, str]:
        """Every metadata entry as written to the file."""
        raw = {k: v for k, v in self.metadata.items() if k not in _OWN_KEYS}
        raw[VERSION_KEY] = "1"
        raw[MODEL_KEY] = self.model
        raw[SPANS_KEY] = encode_spans(self.spans)
        if self.key is not None:
            raw[KEY_KEY] = self.key
        if self.next_position is not None:
            raw[NEXT_POSITION_KEY] = str(self.next_position)
        if self.seq_len is not None:
            raw[SEQ_LEN_KEY] = str(self.seq_len)
        return raw

    def validate(self, check_finite: bool = True, path: str | None = None) -> None:
        """The checks `kvstore ingest` makes; raises SnapshotError naming the field."""
        def fail(name: str, problem: str) -> SnapshotError:
            return SnapshotError(name, problem, path)
        if not self.model:
            raise fail(MODEL_KEY, "missing or empty")
        if not self.layers:
            raise fail("layers.0.key", "missing tensor")
        first = np.asarray(self.layers[0].key)
        if first.ndim != 3:
            raise fail("layers.0.key", f"shape {list(first.shape)} is not [kv_heads, seq_len, head_dim]")
        kv_heads, head_dim = first.shape[0], first.shape[2]
        if kv_heads <= 0 or head_dim <= 0:
            raise fail("layers.0.key", f"shape {list(first.shape)} has an empty dimension")
        first_value = np.asarray(self.layers[0].value)
        if first_value.ndim != 3:
            raise fail("layers.0.value", f"shape {list(first_value.shape)} is not [kv_heads, seq_len, v_head_dim]")
        v_head_dim = first_value.shape[2]
        q_heads = None
        compressed = False
        for i, layer in enumerate(self.layers):
            k, v = np.asarray(layer.key), np.asarray(layer.value)
            if k.ndim != 3 or k.shape[0] != kv_heads or k.shape[2] != head_dim:
                raise fail(f"layers.{i}.key", f"has shape {list(k.shape)}, expected [{kv_heads}, n, {head_dim}] like layers.0.key")
            if v.shape != (kv_heads, k.shape[1], v_head_dim):
                raise fail(f"layers.{i}.value", f"has shape {list(v.shape)}, expected [{kv_heads}, {k.shape[1]}, {v_head_dim}]")
            for kind in ("prompt_query", "probe_query"):
                q = getattr(layer, kind)
                if q is None:
                    continue
                q = np.asarray(q)
                if q.ndim != 3 or q.shape[2] != head_dim or q.shape[0] <= 0 or q.shape[0] % kv_heads:
                    raise fail(f"layers.{i}.{kind}", f"has shape {list(q.shape)}, expected [q_heads, m, {head_dim}] "
                                                     f"with q_heads a multiple of {kv_heads}")
                if q_heads is not None and q_heads != q.shape[0]:
                    raise fail(f"layers.{i}.{kind}", f"has {q.shape[0]} query heads, other layers {q_heads}")
                q_heads = q.shape[0]
            if (layer.positions is None) != (layer.sizes is None):
                missing = "positions" if layer.positions is None else "sizes"
                raise fail(f"layers.{i}.{missing}", "missing tensor (the other is present)")
            if layer.positions is not None:
                for kind in ("positions", "sizes"):
                    a = np.asarray(getattr(layer, kind))
                    if a.shape != (k.shape[1],) or not np.issubdtype(a.dtype, np.integer):
                        raise fail(f"layers.{i}.{kind}", f"is {a.dtype} {list(a.shape)}, expected int32 [{k.shape[1]}]")
                compressed = True
        if compressed:
            if self.seq_len is None:
                raise fail(SEQ_LEN_KEY, "missing, but the file carries positions/sizes so its layers are already compressed")
            seq_len = self.seq_len
        else:
            seq_len = self.seq_len if self.seq_len is not None else first.shape[1]
            for i, layer in enumerate(self.layers):
                if layer.count != seq_len:
                    raise fail(f"layers.{i}.key", f"holds {layer.count} entries but layers.0.key holds {seq_len} "
                                                  "and no positions are given")
        for name, value in (("seq_len", self.seq_len), ("next_position", self.next_position)):
            if value is not None and (not _is_int(value) or value < 0):
                raise fail(f"kvsnap.{name}", f'"{value}" is not a non-negative integer')
        validate_spans(self.spans, seq_len, path)
        for i, layer in enumerate(self.layers):
            if layer.positions is not None:
                _check_merges(np.asarray(layer.positions), np.asarray(layer.sizes), seq_len, f"layers.{i}.positions", path)
        if check_finite:
            for i, layer in enumerate(self.layers):
                for kind in ("key", "value", "prompt_query", "probe_query"):
                    a = getattr(layer, kind)
                    if a is not None and not np.isfinite(np.asarray(a)).all():
                        raise fail(f"layers.{i}.{kind}", "holds NaN or Inf")
        if self.input_ids is not None:
            ids = np.asarray(self.input_ids)
            if ids.dtype not in (np.int32, np.int64):
                raise fail(INPUT_IDS, f"dtype {ids.dtype} is not int32 or int64 (I32 or I64)")
            if ids.shape != (seq_len,):
                raise fail(INPUT_IDS, f"has shape {list(ids.shape)}, expected [{seq_len}] (one id per cached position)")


def prefix_end(spans: list[Span], seq_len: int) -> int:
    """The start of the first span with role "prompt", else `seq_len` (KVSNAP.md, "The shareable prefix")."""
    return next((s.start for s in spans if s.role == "prompt"), seq_len)


def _check_merges(p: np.ndarray, s: np.ndarray, seq_len: int, name: str, path: str | None) -> None:
    p = p.astype(np.int64)
    s = s.astype(np.int64)
    previous = np.concatenate(([-1], p[:-1]))
    bad = np.nonzero((p <= previous) | (p >= seq_len))[0]
    if bad.size:
        raise SnapshotError(name, f"position {p[bad[0]]} is not ascending within [0, {seq_len})", path)
    small = np.nonzero(s < 1)[0]
    if small.size:
        raise SnapshotError(name, f"size {s[small[0]]} at position {p[small[0]]} is below 1", path)
    if int(s.sum()) > seq_len:
        raise SnapshotError(name, f"sizes sum to {int(s.sum())}, more than seq_len {seq_len}", path)


def read(path: str | os.PathLike[str], check_finite: bool = True) -> Snapshot:
    """Reads and validates a kvsnap file. F16/F32 arrays are read-only views of a memory map."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        buf: Any = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
    view = memoryview(buf)
    header = parse_header(view, path)
    raw = header.metadata
    if VERSION_KEY not in raw:
        raise SnapshotError(VERSION_KEY, "missing", path)
    if raw[VERSION_KEY] != "1":
        raise SnapshotError(VERSION_KEY, f'version "{raw[VERSION_KEY]}" is not supported (expected "1")', path)
    if not raw.get(MODEL_KEY):
        raise SnapshotError(MODEL_KEY, "missing or empty", path)
    if SPANS_KEY not in raw:
        raise SnapshotError(SPANS_KEY, "missing", path)
    try:
        spans_json = json.loads(raw[SPANS_KEY])
    except (json.JSONDecodeError, RecursionError) as e:
        raise SnapshotError(SPANS_KEY, f"not a JSON array of spans ({e})", path) from None
    if not isinstance(spans_json, list):
        raise SnapshotError(SPANS_KEY, "not a JSON array of spans", path)
    try:
        spans = [Span.from_json(o, i) for i, o in enumerate(spans_json)]
    except SnapshotError as e:
        raise SnapshotError(e.field, e.problem, path) from None
    integers = {}
    for key in (NEXT_POSITION_KEY, SEQ_LEN_KEY):
        text = raw.get(key)
        if text is not None:
            # As `kvstore ingest` reads it: a non-negative integer that fits 64 bits.
            if not re.fullmatch(r"[+]?[0-9]+", text) or int(text) >= 1 << 63:
                raise SnapshotError(key, f'"{text[:40]}" is not a non-negative integer', path)
            integers[key] = int(text)

    t = header.tensors
    count = 0
    while f"layers.{count}.key" in t or f"layers.{count}.value" in t:
        count += 1
    if count == 0:
        raise SnapshotError("layers.0.key", "missing tensor", path)
    for name in t:
        if name == INPUT_IDS:
            continue
        m = _NAME.match(name)
        if not m:
            raise SnapshotError(name, "not a kvsnap tensor name (expected input_ids or layers.{i}.key, value, "
                                      "prompt_query, probe_query, positions or sizes)", path)
        if int(m.group(1)) >= count:
            raise SnapshotError(f"layers.{count}.key", f"missing tensor (layer {m.group(1)} exists, so every layer "
                                                       "below it must too)", path)
        if m.group(2) not in _KINDS:
            raise SnapshotError(name, f'unknown tensor kind "{m.group(2)}"', path)

    def need(name: str) -> Any:
        if name not in t:
            raise SnapshotError(name, "missing tensor", path)
        return t[name]

    dtype = need("layers.0.key").dtype
    if dtype not in FLOAT_DTYPES:
        raise SnapshotError("layers.0.key", f"dtype {dtype} is not a float type", path)

    def array(info: Any) -> np.ndarray:
        return from_bits(view[info.begin:info.end], info.dtype).reshape(info.shape)

    layers = []
    for i in range(count):
        parts: dict[str, np.ndarray] = {}
        for kind in _KINDS:
            info = t.get(f"layers.{i}.{kind}")
            if info is None:
                continue
            want = "I32" if kind in ("positions", "sizes") else dtype
            if info.dtype != want:
                raise SnapshotError(info.name, f"is {info.dtype} but {'expected I32' if want == 'I32' else f'layers.0.key is {dtype}'}", path)
            parts[kind] = array(info)
        need(f"layers.{i}.key")
        need(f"layers.{i}.value")
        layers.append(Layer(**parts))
    ids = t.get(INPUT_IDS)
    if ids is not None and ids.dtype not in ID_DTYPES:
        raise SnapshotError(INPUT_IDS, f"dtype {ids.dtype} is not I32 or I64", path)
    extra = {k: v for k, v in raw.items() if k not in _OWN_KEYS}
    snapshot = Snapshot(model=raw[MODEL_KEY], spans=spans, layers=layers, key=raw.get(KEY_KEY),
                        next_position=integers.get(NEXT_POSITION_KEY), seq_len=integers.get(SEQ_LEN_KEY),
                        metadata=extra, dtype=dtype, input_ids=None if ids is None else array(ids))
    snapshot.validate(check_finite=check_finite, path=path)
    return snapshot


def write(snapshot: Snapshot, path: str | os.PathLike[str], check_finite: bool = True) -> None:
    """Validates `snapshot` and writes it as a kvsnap file; the file appears complete or not at all."""
    path = os.fspath(path)
    snapshot.validate(check_finite=check_finite)
    dtype = snapshot.stored_dtype()
    entries: list[tuple[str, str, tuple[int, ...]]] = []
    arrays: list[np.ndarray] = []
    for i, layer in enumerate(snapshot.layers):
        for kind in _KINDS:
            a = getattr(layer, kind)
            if a is None:
                continue
            kind_dtype = "I32" if kind in ("positions", "sizes") else dtype
            bits = to_bits(np.asarray(a), kind_dtype)
            entries.append((f"layers.{i}.{kind}", kind_dtype, tuple(int(s) for s in bits.shape)))
            arrays.append(bits)
    if snapshot.input_ids is not None:  # after the layers, as fetch writes them
        ids = np.asarray(snapshot.input_ids)
        kind_dtype = numpy_dtype_name(ids)
        entries.append((INPUT_IDS, kind_dtype, (int(ids.size),)))
        arrays.append(to_bits(ids, kind_dtype))
    header = layout_header(entries, snapshot.raw_metadata())
    temp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(temp, "wb") as f:
            f.write(header)
            for a in arrays:
                f.write(np.ascontiguousarray(a).tobytes())
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.remove(temp)
        raise
