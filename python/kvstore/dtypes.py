"""The tensor dtypes of kvsnap and kvpack files and exact conversions between them.

numpy has no bfloat16, so BF16 tensors appear in this package as float32 arrays holding
bfloat16 values exactly; they are rounded to bfloat16 bits only when written. Every
conversion rounds to nearest even, as the Swift side does, so both produce the same bits.
"""
from __future__ import annotations

import numpy as np

# safetensors spelling -> (bytes per element, numpy dtype of the stored bits)
SIZES = {"F16": 2, "BF16": 2, "F32": 4, "I32": 4, "I64": 8}
FLOAT_DTYPES = ("F16", "BF16", "F32")
ID_DTYPES = ("I32", "I64")  # token ids (`input_ids`) only

# `--dtype` spellings of the command line -> safetensors spelling
USER_NAMES = {"f16": "F16", "bf16": "BF16", "f32": "F32"}


def user_dtype(name: str) -> str:
    """'f16' | 'bf16' | 'f32' (any case, or the safetensors spelling) -> 'F16' | 'BF16' | 'F32'."""
    key = name.lower()
    if key not in USER_NAMES:
        raise ValueError(f"dtype {name!r}: expected f16, bf16 or f32")
    return USER_NAMES[key]


def bf16_bits(x: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns of float32 values: round to nearest even, NaN kept a NaN."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounding = ((bits >> 16) & 1) + np.uint32(0x7FFF)
    out = ((bits + rounding) >> 16).astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        out[nan] = ((bits[nan] >> 16) | 0x40).astype(np.uint16)
    return out


def bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    """float32 values of bfloat16 bit patterns (exact)."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def from_bits(raw: np.ndarray | bytes | memoryview, dtype: str) -> np.ndarray:
    """The values of little-endian stored bytes: float16/float32/int32 views, BF16 widened to float32."""
    buf = np.frombuffer(raw, dtype=np.uint8) if not isinstance(raw, np.ndarray) else raw.view(np.uint8)
    if dtype == "F16":
        return buf.view("<f2")
    if dtype == "F32":
        return buf.view("<f4")
    if dtype == "I32":
        return buf.view("<i4")
    if dtype == "I64":
        return buf.view("<i8")
    if dtype == "BF16":
        return bf16_to_f32(buf.view("<u2"))
    raise ValueError(f"dtype {dtype!r} is not one of F16, BF16, F32, I32, I64")


def to_bits(values: np.ndarray, dtype: str) -> np.ndarray:
    """Values as the little-endian elements of `dtype` (a uint16/float16/float32/int32 array)."""
    if dtype == "F16":
        return np.asarray(values).astype("<f2", copy=False)
    if dtype == "F32":
        return np.asarray(values).astype("<f4", copy=False)
    if dtype == "I32":
        return np.asarray(values).astype("<i4", copy=False)
    if dtype == "I64":
        return np.asarray(values).astype("<i8", copy=False)
    if dtype == "BF16":
        return bf16_bits(np.asarray(values, dtype=np.float32))
    raise ValueError(f"dtype {dtype!r} is not one of F16, BF16, F32, I32, I64")


def numpy_dtype_name(array: np.ndarray) -> str:
    """The safetensors dtype a numpy array is written as when nothing else is said."""
    if array.dtype == np.float16:
        return "F16"
    if array.dtype == np.float32:
        return "F32"
    if array.dtype == np.int32:
        return "I32"
    if array.dtype == np.int64:
        return "I64"
    raise ValueError(f"arrays of {array.dtype} have no kvsnap dtype (use float16, float32, int32 or int64)")
