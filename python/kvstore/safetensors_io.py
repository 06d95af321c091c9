"""The safetensors container, read with the Swift reader's checks and written byte for byte as
`kvstore fetch` writes it (metadata keys sorted, tensors in the given order, the data buffer
aligned to 8 bytes with spaces)."""
from __future__ import annotations

import json
from dataclasses import dataclass

from .dtypes import SIZES
from .errors import SnapshotError


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int  # byte offsets from the start of the file
    end: int

    @property
    def count(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


@dataclass(frozen=True)
class Header:
    metadata: dict[str, str]
    tensors: dict[str, TensorInfo]
    data_offset: int


def parse_header(buf: memoryview | bytes, path: str | None = None) -> Header:
    """Parses and range-checks the header of a whole safetensors file held in `buf`."""
    size = len(buf)
    if size < 8:
        raise SnapshotError("header", f"file is truncated: {size} bytes, fewer than the 8-byte header length", path)
    n = int.from_bytes(bytes(buf[:8]), "little")
    if n > size - 8:
        raise SnapshotError("header", f"header length {n} runs past the end of the {size}-byte file", path)
    end = 8 + n
    try:
        root = json.loads(bytes(buf[8:end]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise SnapshotError("header", f"not valid safetensors JSON: {e}", path) from None
    if not isinstance(root, dict):
        raise SnapshotError("header", "not valid safetensors JSON: the top level is not an object", path)
    buffer = size - end
    metadata: dict[str, str] = {}
    tensors: dict[str, TensorInfo] = {}
    for name, entry in root.items():
        if name == "__metadata__":
            if not isinstance(entry, dict):
                raise SnapshotError("__metadata__", "is not an object", path)
            for k, v in entry.items():
                if not isinstance(v, str):
                    raise SnapshotError(k, "metadata value is not a string", path)
                metadata[k] = v
            continue
        if not isinstance(entry, dict):
            raise SnapshotError(name, "entry is not an object", path)
        dtype = entry.get("dtype")
        if dtype not in SIZES:
            raise SnapshotError(name, f"dtype {dtype!r} is not one of F16, BF16, F32, I32, I64", path)
        shape = entry.get("shape")
        if not _integers(shape) or any(s < 0 for s in shape):
            raise SnapshotError(name, "shape is not an array of non-negative integers", path)
        off = entry.get("data_offsets")
        if not _integers(off) or len(off) != 2:
            raise SnapshotError(name, "data_offsets is not [begin, end]", path)
        if not (0 <= off[0] <= off[1] <= buffer):
            raise SnapshotError(name, f"data_offsets [{off[0]}, {off[1]}] lie outside the {buffer}-byte data buffer", path)
        count = 1
        for s in shape:
            count *= s
        if count * SIZES[dtype] != off[1] - off[0]:
            raise SnapshotError(name, f"shape {list(shape)} of {dtype} needs {count * SIZES[dtype]} bytes "
                                      f"but data_offsets span {off[1] - off[0]}", path)
        tensors[name] = TensorInfo(name, dtype, tuple(shape), end + off[0], end + off[1])
    spans = sorted((t for t in tensors.values() if t.end > t.begin), key=lambda t: t.begin)
    for a, b in zip(spans, spans[1:]):
        if a.end > b.begin:
            raise SnapshotError(a.name, f"data of tensors {a.name} and {b.name} overlap", path)
    return Header(metadata, tensors, end)


def _integers(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)


def quote(s: str) -> str:
    """A JSON string literal exactly as the Swift writer spells it (non-ASCII kept as UTF-8)."""
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def canonical_json(mapping: dict[str, str]) -> str:
    """A string map as JSON with sorted keys and no spaces."""
    return "{" + ",".join(f"{quote(k)}:{quote(mapping[k])}" for k in sorted(mapping)) + "}"


def layout_header(entries: list[tuple[str, str, tuple[int, ...]]], metadata: dict[str, str]) -> bytes:
    """Everything before the data buffer (length, JSON, padding) for tensors written in order."""
    json_text = "{"
    if metadata:
        json_text += '"__metadata__":' + canonical_json(metadata) + ","
    parts = []
    offset = 0
    for name, dtype, shape in entries:
        count = 1
        for s in shape:
            count *= s
        end = offset + count * SIZES[dtype]
        dims = ",".join(str(s) for s in shape)
        parts.append(f'{quote(name)}:{{"dtype":"{dtype}","shape":[{dims}],"data_offsets":[{offset},{end}]}}')
        offset = end
    body = (json_text + ",".join(parts) + "}").encode("utf-8")
    body += b" " * ((8 - (8 + len(body)) % 8) % 8)
    return len(body).to_bytes(8, "little") + body
