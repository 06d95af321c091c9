"""A fingerprint of a model's weights, so that caches are shared only between engines that run
the same weights (docs/design/vllm.md, "Which model").

A KV cache is a function of the weights and the token ids. A model's name does not pin its
weights: a folder whose files were replaced, a fleet mid-rollout with two versions mounted at
one path, or a fine-tune served under its base's name would share caches under one name, and
the shape check cannot tell them apart. The fingerprint reads little: every weights file's name
and size, its safetensors header (tensor names, dtypes, shapes, offsets) and three 64-byte
samples of every tensor's data (its start, middle and end), so a tensor that changed anywhere a
fine-tune or a merged adapter reaches changes it; files of other formats are sampled at 64
evenly spaced places. `config.json` is hashed whole (rope settings change every key).
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import weakref
from pathlib import Path
from typing import Any

from .errors import FingerprintError

#: Weight files, by the suffixes loaders read.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
SAMPLE = 64
SPREAD = 64
#: A safetensors header larger than this is not one (the format caps it at 100 MB).
MAX_HEADER = 100 << 20


def fingerprint(folder: str | os.PathLike[str]) -> str:
    """16 hex digits naming the weights in `folder` (its weight files, recursively, and its
    `config.json`). Raises `FingerprintError` when the folder holds no weight file, or one that
    cannot be read or whose safetensors header is malformed."""
    root = Path(folder)
    if not root.is_dir():
        raise FingerprintError(f"{root}: not a folder")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if not files:
        raise FingerprintError(f"{root}: no weight files ({', '.join(WEIGHT_SUFFIXES)})")
    digest = hashlib.sha256(b"kvstore weights 1\n")
    config = root / "config.json"
    if config.is_file():
        digest.update(b"config.json\n" + _read(config))
    for path in files:
        name = path.relative_to(root).as_posix()
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                digest.update(f"{name}\n{size}\n".encode())
                if path.suffix == ".safetensors":
                    _safetensors(f, size, name, digest)
                else:
                    _spread(f, size, name, digest)
        except OSError as e:
            raise FingerprintError(f"{path}: {e.strerror or e}") from e
    return digest.hexdigest()[:16]


def _safetensors(f, size: int, name: str, digest) -> None:
    """The header, then three samples of each tensor's data, in the header's key order."""
    if size < 8:
        raise FingerprintError(f"{name}: {size} bytes, shorter than a safetensors header")
    (length,) = struct.unpack("<Q", _pread(f, 0, 8, name))
    if length > min(MAX_HEADER, size - 8):
        raise FingerprintError(f"{name}: a safetensors header of {length} bytes in a file of {size}")
    header_bytes = _pread(f, 8, length, name)
    digest.update(header_bytes)
    try:
        header = json.loads(header_bytes)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FingerprintError(f"{name}: the safetensors header is not JSON ({e})") from e
    if not isinstance(header, dict):
        raise FingerprintError(f"{name}: the safetensors header is not a JSON object")
    base = 8 + length
    for key in sorted(k for k in header if k != "__metadata__"):
        offsets = header[key].get("data_offsets") if isinstance(header[key], dict) else None
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(isinstance(o, int) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1] <= size - base):
            raise FingerprintError(f"{name}: tensor {key!r} has data_offsets {offsets!r} outside the file")
        start, end = base + offsets[0], base + offsets[1]
        if end - start <= 3 * SAMPLE:
            digest.update(_pread(f, start, end - start, name))
            continue
        middle = start + (end - start) // 2
        for at in (start, middle, end - SAMPLE):
            digest.update(_pread(f, at, SAMPLE, name))


def _spread(f, size: int, name: str, digest) -> None:
    """SPREAD samples, evenly spaced, of a file whose format is not read here."""
    if size <= SPREAD * SAMPLE:
        digest.update(_pread(f, 0, size, name))
        return
    step = (size - SAMPLE) // (SPREAD - 1)
    for i in range(SPREAD):
        digest.update(_pread(f, i * step, SAMPLE, name))


def _pread(f, offset: int, length: int, name: str) -> bytes:
    data = os.pread(f.fileno(), length, offset)
    if len(data) != length:
        raise FingerprintError(f"{name}: ended at byte {offset + len(data)}, {length} bytes were to be read at {offset}")
    return data


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise FingerprintError(f"{path}: {e.strerror or e}") from e


_module_fingerprints: "weakref.WeakKeyDictionary[Any, tuple[tuple, str]]" = weakref.WeakKeyDictionary()


def fingerprint_module(module) -> str:
    """16 hex digits naming a loaded model's weights (a `torch.nn.Module`, on any device): every
    parameter and buffer in name order, its dtype and shape and three 64-byte samples of its
    bytes (start, middle, end), as `fingerprint` samples files. The same weights in the same
    dtype give the same digits on any device; a copy in another dtype computes other caches and
    gives others. Remembered per module until a tensor is replaced or changed in place."""
    tensors = dict(module.named_parameters())
    tensors.update(module.named_buffers())
    state = tuple((name, t.data_ptr(), t._version) for name, t in sorted(tensors.items()))
    known = _module_fingerprints.get(module)
    if known is not None and known[0] == state:
        return known[1]
    digits = _fingerprint_tensors(tensors)
    _module_fingerprints[module] = (state, digits)
    return digits


def _fingerprint_tensors(tensors: dict[str, Any]) -> str:
    import torch

    digest = hashlib.sha256(b"kvstore module weights 1\n")
    for name in sorted(tensors):
        tensor = tensors[name].detach()
        digest.update(f"{name}\n{tensor.dtype}\n{list(tensor.shape)}\n".encode())
        flat = tensor.reshape(-1)
        size = flat.numel() * flat.element_size()
        if size == 0:
            continue
        if size <= 3 * SAMPLE:
            digest.update(flat.contiguous().view(torch.uint8).cpu().numpy().tobytes())
            continue
        per = max(1, SAMPLE // flat.element_size())
        count = flat.numel()
        for at in (0, count // 2, count - per):
            digest.update(flat[at:at + per].contiguous().view(torch.uint8).cpu().numpy().tobytes())
    return digest.hexdigest()[:16]
