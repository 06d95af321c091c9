"""Key and value blocks of a kvpack section (docs/FORMAT.md, "Blocks"): byte-planed raw
blocks and quantized blocks (int8/int4/int2, kept entries, delta-coded rows), decoded with
the same float32 arithmetic as the Swift decoder so the results are bit-identical."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .dtypes import from_bits

QUANT_BITS = {"int8": 8, "int4": 4, "int2": 2}
RAW_SCHEMES = {"f16": "F16", "bf16": "BF16", "f32": "F32"}
QUANT_MAGIC = b"KVQ\x01"
QUANT_HEADER = 28


class BlockError(ValueError):
    """A block that cannot be decoded; the pack reader adds file and layer."""


def join_planes(planes: np.ndarray, width: int) -> np.ndarray:
    """Byte planes (all first bytes, then all second bytes, ...) back to interleaved elements."""
    count = planes.size // width
    out = np.empty((count, width), dtype=np.uint8)
    for i in range(width):  # one strided copy per plane: faster than a transposed copy
        out[:, i] = planes[i * count:(i + 1) * count]
    return out.reshape(-1)


@dataclass(frozen=True)
class QuantHeader:
    bits: int
    axis: int  # 0 channel (keys), 1 token (values)
    delta: bool
    group: int
    heads: int
    count: int
    dim: int
    kept: int
    rotated: bool = False  # flag bit 1: quantized rows are of Hadamard-rotated rows

    @property
    def quantized(self) -> int:
        return self.count - self.kept

    @property
    def row_bytes(self) -> int:
        return (self.dim * self.bits + 7) // 8

    @property
    def parameter_shape(self) -> tuple[int, int, int]:
        g = self.group
        if self.axis == 0:
            return (self.heads, (self.quantized + g - 1) // g, self.dim)
        return (self.heads, self.quantized, (self.dim + g - 1) // g)

    @property
    def parameters(self) -> int:
        h, a, b = self.parameter_shape
        return h * a * b

    @property
    def total_bytes(self) -> int:
        return QUANT_HEADER + 4 * self.kept + 2 * self.heads * self.kept * self.dim + 4 * self.parameters \
            + self.heads * self.quantized * self.row_bytes


def read_quant_header(block: np.ndarray, scheme: str, encoding: dict, shape: tuple[int, int, int]) -> QuantHeader:
    """The 28-byte header, checked against the scheme, the encoding and the block shape."""
    bits = QUANT_BITS[scheme]
    if block.size < QUANT_HEADER:
        raise BlockError(f"{scheme} block is {block.size} bytes long, too short for its header ({QUANT_HEADER} bytes)")
    head = block[:QUANT_HEADER].tobytes()

    def mismatch(name: str, value: int, expected: str) -> BlockError:
        return BlockError(f"{scheme} block header field {name} is {value}, expected {expected}")
    for i in range(4):
        if head[i] != QUANT_MAGIC[i]:
            raise mismatch(f"magic byte {i}", head[i], f'{QUANT_MAGIC[i]} ("KVQ" version 1)')
    if head[4] != bits:
        raise mismatch("bits", head[4], f"{bits} (the scheme)")
    axis = head[5]
    if axis not in (0, 1):
        raise mismatch("axis", axis, "0 (channel) or 1 (token)")
    named = encoding.get("axis")
    if named is not None and {"channel": 0, "token": 1}.get(named) != axis:
        raise mismatch("axis", axis, f'"{named}" (the encoding)')
    flags = int.from_bytes(head[6:8], "little")
    if flags & ~3:
        raise mismatch("flags", flags, "0 to 3 (bit 0: delta-coded rows, bit 1: Hadamard-rotated rows)")
    group, heads, count, dim, kept = (int.from_bytes(head[o:o + 4], "little") for o in (8, 12, 16, 20, 24))
    if group <= 0 or group & (group - 1):
        raise mismatch("group", group, "a positive power of two")
    if encoding.get("group") is not None and encoding["group"] != group:
        raise mismatch("group", group, f"{encoding['group']} (the encoding)")
    for name, value, want in (("heads", heads, shape[0]), ("count", count, shape[1]), ("dim", dim, shape[2])):
        if value != want:
            raise mismatch(name, value, f"{want} (the block shape)")
    if kept > count:
        raise mismatch("kept", kept, f"at most count = {count}")
    if flags & 2 and (dim < 2 or dim & (dim - 1)):
        raise mismatch("dim", dim, "a power of two (the rows are Hadamard-rotated)")
    header = QuantHeader(bits, axis, bool(flags & 1), group, heads, count, dim, kept, bool(flags & 2))
    if header.total_bytes != block.size:
        raise BlockError(f"{scheme} block holds {block.size} bytes, expected {header.total_bytes}")
    return header


def unpack_codes(packed: np.ndarray, bits: int, dim: int) -> np.ndarray:
    """Packed code rows [..., row_bytes] to one code a byte [..., dim] (little end first)."""
    if bits == 8:
        return packed
    per = 8 // bits
    shifts = np.arange(per, dtype=np.uint8) * bits
    lanes = (packed[..., :, None] >> shifts) & np.uint8((1 << bits) - 1)
    return lanes.reshape(*packed.shape[:-1], packed.shape[-1] * per)[..., :dim]


def quantized_parts(block: np.ndarray, scheme: str, encoding: dict, shape: tuple[int, int, int]):
    """Header, kept indices, kept F16 bits [heads, kept, dim], scale and zero F16 bits, and the
    codes [heads, n, dim] (delta rows summed back), all checked."""
    h = read_quant_header(block, scheme, encoding, shape)
    o = QUANT_HEADER
    kept = block[o:o + 4 * h.kept].view("<u4").astype(np.int64)
    o += 4 * h.kept
    if kept.size:
        bad = np.nonzero((kept >= h.count) | np.concatenate(([False], np.diff(kept) <= 0)))[0]
        if bad.size:
            raise BlockError(f"{scheme} block kept index {bad[0]} is {kept[bad[0]]}: "
                             f"indices must ascend and stay below count {h.count}")
    n_kept = h.heads * h.kept * h.dim
    kept_bits = join_planes(block[o:o + 2 * n_kept], 2).view("<u2")
    o += 2 * n_kept
    scale_bits = join_planes(block[o:o + 2 * h.parameters], 2).view("<u2")
    o += 2 * h.parameters
    zero_bits = join_planes(block[o:o + 2 * h.parameters], 2).view("<u2")
    o += 2 * h.parameters
    for section, b in (("kept values", kept_bits), ("scales", scale_bits), ("zero points", zero_bits)):
        if np.any((b & 0x7C00) == 0x7C00):
            raise BlockError(f"{scheme} block {section} hold Inf or NaN")
    packed = block[o:].reshape(h.heads, h.quantized, h.row_bytes)
    codes = unpack_codes(packed, h.bits, h.dim)
    if h.delta and h.quantized > 1:
        # Lane-wise sums modulo 2^bits: a running sum of the differences along each head's rows.
        codes = np.cumsum(codes, axis=1, dtype=np.uint8) & np.uint8((1 << h.bits) - 1)
    return (h, kept, kept_bits.reshape(h.heads, h.kept, h.dim), scale_bits.reshape(h.parameter_shape),
            zero_bits.reshape(h.parameter_shape), codes)


def dequantize(h: QuantHeader, scale_bits: np.ndarray, zero_bits: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """code · scale + zero in float32 (a product, then a sum: no fused multiply-add) [heads, n, dim]."""
    scale = scale_bits.view(np.float16).astype(np.float32)
    zero = zero_bits.view(np.float16).astype(np.float32)
    if h.axis == 0:  # per channel, groups of G tokens
        rows = np.arange(h.quantized) // h.group
        s, z = scale[:, rows, :], zero[:, rows, :]
    else:  # per token, groups of G channels
        cols = np.arange(h.dim) // h.group
        s, z = scale[:, :, cols], zero[:, :, cols]
    return codes.astype(np.float32) * s + z


def hadamard(rows: np.ndarray) -> np.ndarray:
    """The normalised Walsh-Hadamard transform of each row (last axis a power of two), in
    float32 with the same butterflies and final scaling as the Swift decoder, so rotated
    rows come back bit for bit."""
    n = rows.shape[-1]
    x = rows.astype(np.float32, copy=True)
    half = 1
    while half < n:
        v = x.reshape(*x.shape[:-1], n // (2 * half), 2, half)
        a, b = v[..., 0, :].copy(), v[..., 1, :].copy()
        v[..., 0, :] = a + b
        v[..., 1, :] = a - b
        half *= 2
    return x * (np.float32(1) / np.sqrt(np.float32(n)))


def decode_block(block: np.ndarray, encoding: dict, shape: tuple[int, int, int]) -> tuple[np.ndarray, str]:
    """A block as (elements, dtype): raw blocks as their stored bits (F16/BF16/F32 little-endian
    elements as uint8 bytes reshaped to `shape`'s element count), quantized blocks as float32."""
    scheme = encoding.get("scheme")
    elements = shape[0] * shape[1] * shape[2]
    if scheme in QUANT_BITS:
        h, kept, kept_bits, scale_bits, zero_bits, codes = quantized_parts(block, scheme, encoding, shape)
        out = np.empty(shape, dtype=np.float32)
        rows = np.setdiff1d(np.arange(h.count), kept, assume_unique=True)
        if h.quantized:
            deq = dequantize(h, scale_bits, zero_bits, codes)
            out[:, rows, :] = hadamard(deq) if h.rotated else deq
        if h.kept:
            out[:, kept, :] = kept_bits.view(np.float16).astype(np.float32)
        return out, "F32Q"
    if scheme not in RAW_SCHEMES:
        raise BlockError(f'block encoding "{scheme}" is not known')
    dtype = RAW_SCHEMES[scheme]
    width = 2 if dtype != "F32" else 4
    if block.size != elements * width:
        raise BlockError(f"{scheme} block holds {block.size} bytes, expected {elements * width}")
    return join_planes(block, width), dtype


def block_values(block: np.ndarray, encoding: dict, shape: tuple[int, int, int]) -> np.ndarray:
    """A block decoded to float32 values [heads, count, dim] (exact for raw blocks)."""
    data, dtype = decode_block(block, encoding, shape)
    if dtype == "F32Q":
        return data
    return from_bits(data, dtype).astype(np.float32).reshape(shape)
