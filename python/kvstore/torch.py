"""GPU-side decoding of kvpack files: `load_pack(path, device)`.

Checksums and entropy decoding (zstd/lz4) run on CPU threads, one layer each (both codecs
release the GIL); each layer's raw section then crosses to the device as one byte tensor, and
byte-plane joining, code unpacking, delta-row undoing, dequantization and (with `expand`)
member expansion run there as torch ops. The compressed form is what moves; the 16-bit
tensors are born on the device. Results equal the numpy reader's (`kvstore.read_pack`):
bit for bit on CPU; on a GPU, integer work is exact and floats agree to the output dtype's
rounding.

    pack = kvstore.torch.load_pack("entry.kvpack", "cuda", dtype=torch.bfloat16)
    cache = kvstore.hf.load(pack, model)        # no host-side float copy at all
"""
from __future__ import annotations

import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from .blocks import QUANT_BITS, QUANT_HEADER, RAW_SCHEMES, BlockError, QuantHeader, read_quant_header
from .pack import Pack, PackHeader
from .snapshot import _OWN_KEYS, KEY_KEY, MODEL_KEY, NEXT_POSITION_KEY, SPANS_KEY, Layer, Snapshot, Span

_TORCH_DTYPES = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32}


@dataclass
class DeviceLayer:
    """One layer on the device: key/value [kv_heads, n, dim] in the requested dtype, positions,
    sizes and (when tracked) members as int32."""

    key: torch.Tensor
    value: torch.Tensor
    positions: torch.Tensor
    sizes: torch.Tensor
    members: torch.Tensor | None

    @property
    def count(self) -> int:
        return int(self.positions.numel())


@dataclass
class DevicePack:
    """A whole entry decoded onto a device."""

    header: PackHeader
    layers: list[DeviceLayer]
    metadata: dict[str, str]

    def snapshot(self) -> Snapshot:
        """The entry as a Snapshot whose arrays are these device tensors (not validated again)."""
        m = self.metadata
        spans = [Span.from_json(o, i) for i, o in enumerate(json.loads(m[SPANS_KEY]))]
        nxt = m.get(NEXT_POSITION_KEY)
        return Snapshot(model=m.get(MODEL_KEY, ""), spans=spans,
                        layers=[Layer(key=l.key, value=l.value, positions=l.positions, sizes=l.sizes)  # type: ignore[arg-type]
                                for l in self.layers],
                        key=m.get(KEY_KEY), next_position=int(nxt) if nxt is not None else None,
                        seq_len=self.header.seq_len, metadata={k: v for k, v in m.items() if k not in _OWN_KEYS},
                        input_ids=self.header.input_ids)


def _join_planes(planes: torch.Tensor, width: int) -> torch.Tensor:
    """Interleaves byte planes back into elements (stack is the fastest copy torch has for it)."""
    count = planes.numel() // width
    p = planes.view(width, count)
    return torch.stack(tuple(p[i] for i in range(width)), dim=1).view(-1)


def _as(bits: torch.Tensor, dtype: str) -> torch.Tensor:
    return bits.view(_TORCH_DTYPES[dtype])


def _unpack_codes(packed: torch.Tensor, bits: int, dim: int) -> torch.Tensor:
    if bits == 8:
        return packed
    per = 8 // bits
    shifts = torch.arange(per, device=packed.device, dtype=torch.uint8) * bits
    lanes = (packed.unsqueeze(-1) >> shifts) & ((1 << bits) - 1)
    return lanes.flatten(-2)[..., :dim]


@dataclass(frozen=True)
class _BlockPlan:
    """What the host learnt about a quantized block, so the device never waits on a read-back."""

    header: QuantHeader
    kept: np.ndarray  # entry indices kept in F16, ascending
    rows: np.ndarray  # the quantized entries' indices, ascending


def _check_quantized(raw: np.ndarray, start: int, length: int, scheme: str, encoding: dict,
                     shape: tuple[int, int, int]) -> _BlockPlan:
    """The block checks the numpy decoder makes, on the (small) host-side parts: header, kept
    indices, and that no F16 parameter is Inf/NaN (the exponent lies in the high plane)."""
    block = raw[start:start + length]
    h = read_quant_header(block, scheme, encoding, shape)
    o = QUANT_HEADER
    kept = block[o:o + 4 * h.kept].view("<u4").astype(np.int64)
    if kept.size:
        bad = np.nonzero((kept >= h.count) | np.concatenate(([False], np.diff(kept) <= 0)))[0]
        if bad.size:
            raise BlockError(f"{scheme} block kept index {bad[0]} is {kept[bad[0]]}: "
                             f"indices must ascend and stay below count {h.count}")
    o += 4 * h.kept
    for section, n in (("kept values", h.heads * h.kept * h.dim), ("scales", h.parameters),
                       ("zero points", h.parameters)):
        high = block[o + n:o + 2 * n]
        if np.any((high & 0x7C) == 0x7C):
            raise BlockError(f"{scheme} block {section} hold Inf or NaN")
        o += 2 * n
    return _BlockPlan(h, kept, np.setdiff1d(np.arange(h.count), kept, assume_unique=True))


def _hadamard(rows: torch.Tensor) -> torch.Tensor:
    """The normalised Walsh-Hadamard transform of each row in float32, butterflies and scaling
    as the Swift decoder does them (blocks.hadamard), so the result is bit for bit the same."""
    n = rows.shape[-1]
    x = rows.to(torch.float32).clone()
    half = 1
    while half < n:
        v = x.view(*x.shape[:-1], n // (2 * half), 2, half)
        a, b = v[..., 0, :].clone(), v[..., 1, :].clone()
        v[..., 0, :] = a + b
        v[..., 1, :] = a - b
        half *= 2
    scale = torch.tensor(1, dtype=torch.float32) / torch.sqrt(torch.tensor(n, dtype=torch.float32))
    return x * scale.to(x.device)


def _decode_block(raw: torch.Tensor, encoding: dict, shape: tuple[int, int, int], out: torch.dtype,
                  plan: _BlockPlan | None) -> torch.Tensor:
    scheme = encoding["scheme"]
    heads, count, dim = shape
    if plan is None:
        stored = RAW_SCHEMES[scheme]
        width = 4 if stored == "F32" else 2
        values = _as(_join_planes(raw, width), stored).view(shape)
        return values if values.dtype == out else values.to(torch.float32).to(out)
    h = plan.header
    bits, axis, delta, group, kept_n = h.bits, h.axis, h.delta, h.group, h.kept
    n, params, row_bytes = h.quantized, h.parameters, h.row_bytes
    o = QUANT_HEADER + 4 * kept_n
    kept_values = _as(_join_planes(raw[o:o + 2 * heads * kept_n * dim], 2), "F16").view(heads, kept_n, dim)
    o += 2 * heads * kept_n * dim
    scale = _as(_join_planes(raw[o:o + 2 * params], 2), "F16").to(torch.float32)
    o += 2 * params
    zero = _as(_join_planes(raw[o:o + 2 * params], 2), "F16").to(torch.float32)
    o += 2 * params
    codes = _unpack_codes(raw[o:o + heads * n * row_bytes].view(heads, n, row_bytes), bits, dim)
    if delta and n > 1:  # lane-wise running sum modulo 2^bits (uint8 sums wrap modulo 256)
        codes = torch.cumsum(codes, dim=1, dtype=torch.uint8)
        if bits < 8:
            codes &= (1 << bits) - 1
    # code * scale + zero in float32, a product then a sum, each group broadcast over its block
    if axis == 0:  # groups of G tokens per channel: [heads, n/G, G, dim]
        groups = (n + group - 1) // group
        padded = torch.zeros(heads, groups * group, dim, dtype=torch.uint8, device=raw.device) \
            if groups * group != n else None
        if padded is not None:
            padded[:, :n] = codes
            codes = padded
        grouped = codes.view(heads, groups, group, dim).to(torch.float32)
        deq = grouped * scale.view(heads, groups, 1, dim) + zero.view(heads, groups, 1, dim)
        deq = deq.view(heads, groups * group, dim)[:, :n]
    else:  # groups of G channels per token: [heads, n, dim/G, G]
        groups = (dim + group - 1) // group
        if groups * group != dim:
            codes = torch.nn.functional.pad(codes, (0, groups * group - dim))
        grouped = codes.view(heads, n, groups, group).to(torch.float32)
        deq = grouped * scale.view(heads, n, groups, 1) + zero.view(heads, n, groups, 1)
        deq = deq.view(heads, n, groups * group)[..., :dim]
    if h.rotated:
        deq = _hadamard(deq)
    if not kept_n:
        return deq.to(out)
    values = torch.empty(shape, dtype=out, device=raw.device)
    if n:
        values.index_copy_(1, torch.from_numpy(plan.rows).to(raw.device), deq.to(out))
    values.index_copy_(1, torch.from_numpy(plan.kept).to(raw.device), kept_values.to(torch.float32).to(out))
    return values


def load_pack(path: str | os.PathLike[str] | Pack, device: torch.device | str = "cuda",
              dtype: torch.dtype = torch.float16, expand: bool = False, threads: int | None = None) -> DevicePack:
    """Decodes every layer of a kvpack onto `device` as `dtype` (float16, bfloat16 or float32).
    Damage raises PackError (checksums, codecs and every bound are checked before decoding)."""
    if dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise ValueError(f"dtype {dtype}: expected torch.float16, torch.bfloat16 or torch.float32")
    pack = path if isinstance(path, Pack) else Pack(path)
    device = torch.device(device)
    if expand:
        pack.check_expandable()
    layers = _load_layers(pack, device, dtype, expand, threads)
    if pack.segment is not None:  # a segmented entry: its shared prefix, then its own part
        shared = _load_layers(pack.segment, device, dtype, expand, threads)
        layers = [_join(a, b) for a, b in zip(shared, layers)]
    metadata = pack.fetch_metadata()
    if not isinstance(path, Pack):
        pack.close()
    return DevicePack(pack.header, layers, metadata)


def _join(first: DeviceLayer, second: DeviceLayer) -> DeviceLayer:
    members = None
    if first.members is not None or second.members is not None:
        members = torch.cat([first.members if first.members is not None else first.positions,
                             second.members if second.members is not None else second.positions])
    return DeviceLayer(torch.cat([first.key, second.key], 1), torch.cat([first.value, second.value], 1),
                       torch.cat([first.positions, second.positions]), torch.cat([first.sizes, second.sizes]), members)


def _load_layers(pack: Pack, device: torch.device, dtype: torch.dtype, expand: bool,
                 threads: int | None) -> list[DeviceLayer]:
    """The layers this file holds (a segmented entry's part holds the entries after its segment's)."""
    h = pack.header

    def host(i: int) -> tuple[np.ndarray, list[_BlockPlan | None]]:
        raw = pack.raw_section(i)  # checksums, codec, raw checksum, positions/sizes/members
        d = h.layers[i]
        plans: list[_BlockPlan | None] = []
        start = 0
        for name, block, dim in (("keys", d.keys, h.head_dim), ("values", d.values, h.v_head_dim)):
            scheme = block["encoding"].get("scheme")
            shape = (h.kv_heads, d.count, dim)
            try:
                plans.append(None)
                if scheme in QUANT_BITS:
                    plans[-1] = _check_quantized(raw, start, block["length"], scheme, block["encoding"], shape)
                elif scheme in RAW_SCHEMES:
                    width = 4 if scheme == "f32" else 2
                    if block["length"] != shape[0] * shape[1] * shape[2] * width:
                        raise BlockError(f"{scheme} block holds {block['length']} bytes, expected "
                                         f"{shape[0] * shape[1] * shape[2] * width}")
                else:
                    raise BlockError(f'block encoding "{scheme}" is not known')
            except BlockError as e:
                raise pack._corrupt(str(e), i, name) from None
            start += block["length"]
        return raw, plans

    workers = threads or min(8, os.cpu_count() or 1)
    layers = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i, (raw, plans) in enumerate(pool.map(host, range(pack.num_layers))):
            d = h.layers[i]
            if device.type == "cpu":
                bytes_ = torch.from_numpy(raw.copy())  # the tensors handed out may be views of it
            else:
                with warnings.catch_warnings():  # read-only host bytes: only copied to the device
                    warnings.simplefilter("ignore", UserWarning)
                    bytes_ = torch.frombuffer(raw, dtype=torch.uint8).to(device)
            kl, vl = d.keys["length"], d.values["length"]
            key = _decode_block(bytes_[:kl], d.keys["encoding"], (h.kv_heads, d.count, h.head_dim), dtype, plans[0])
            value = _decode_block(bytes_[kl:kl + vl], d.values["encoding"], (h.kv_heads, d.count, h.v_head_dim),
                                  dtype, plans[1])
            p = kl + vl
            positions = bytes_[p:p + 4 * d.count].view(torch.int32)
            sizes = bytes_[p + 4 * d.count:p + 8 * d.count].view(torch.int32)
            members = bytes_[p + 8 * d.count:p + 8 * d.count + 4 * d.members].view(torch.int32) if d.members else None
            if expand and members is not None:
                source = torch.repeat_interleave(torch.arange(d.count, device=device), sizes.to(torch.int64),
                                                 output_size=d.members)
                order = torch.argsort(members, stable=True)
                rows = source[order]
                key, value, positions = key[:, rows], value[:, rows], members[order]
                sizes = torch.ones_like(positions)
                members = positions
            layers.append(DeviceLayer(key, value, positions, sizes, members))
    return layers


__all__ = ["DeviceLayer", "DevicePack", "load_pack"]
