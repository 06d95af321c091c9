"""kvpack files (docs/FORMAT.md), what `kvstore fetch --raw` writes: a native reader that
checks every checksum and bound and decodes one layer at a time, to exactly the bits
`kvstore fetch` writes."""
from __future__ import annotations

import json
import mmap
import os
from dataclasses import dataclass
from typing import Any, Iterator

import lz4.block
import numpy as np
import xxhash
import zstandard

from .blocks import BlockError, decode_block
from .dtypes import from_bits, to_bits, user_dtype
from .errors import ExpandError, PackError
from .safetensors_io import canonical_json, layout_header
from .snapshot import COMPRESSION_KEY, INPUT_IDS, PREFIX_OF_KEY, SEQ_LEN_KEY, Layer, Snapshot, Span, _OWN_KEYS, \
    KEY_KEY, MODEL_KEY, NEXT_POSITION_KEY, SPANS_KEY, encode_spans, prefix_end, validate_spans

MAGIC = b"KVPACK\x00\x01"
#: A segmented entry's own part (docs/FORMAT.md, "Segmented entries"): not a whole cache.
SEGMENTED_MAGIC = b"KVPACK\x00\x02"
FOOTER_MAGIC = b"KVPKEND1"
FOOTER = 32


@dataclass(frozen=True)
class Section:
    """Where one layer's section lies and how to read it (a section descriptor)."""

    count: int
    offset: int
    stored_length: int
    raw_length: int
    codec: str
    level: int | None
    checksum: str
    raw_checksum: str
    keys: dict[str, Any]  # {"encoding": {...}, "length": n}
    values: dict[str, Any]
    members: int
    prefix: int | None = None  # entries before the shareable prefix's end (absent in older packs)


@dataclass(frozen=True)
class PackHeader:
    format: int
    metadata: dict[str, str]
    seq_len: int
    kv_heads: int
    head_dim: int
    v_head_dim: int
    input_dtype: str
    compression: dict[str, str]
    layers: list[Section]
    input_ids: np.ndarray | None = None  # [seq_len] int32 (I32) or int64 (I64), when the input carried them
    entry_id: str | None = None  # the header's `entry.id` (absent in packs written before it)
    # A segment's own record ({"prefix_digest", "length"}), or in a segmented entry's part
    # ({"name", "length"}) the segment holding its shared prefix (docs/design/segments.md).
    segment: dict[str, Any] | None = None

    @property
    def entry_count(self) -> int:
        return sum(s.count for s in self.layers)

    @property
    def spans(self) -> list[Span] | None:
        """The metadata's spans, or None when they do not parse (fetch then leaves them as stored)."""
        try:
            spans = [Span.from_json(o, j) for j, o in enumerate(json.loads(self.metadata[SPANS_KEY]))]
            validate_spans(spans, self.seq_len)
        except (KeyError, ValueError, TypeError):
            return None
        return spans

    @property
    def prefix_end(self) -> int:
        """The end of the shareable prefix (KVSNAP.md): the first prompt span's start, else seq_len."""
        spans = self.spans
        return self.seq_len if spans is None else prefix_end(spans, self.seq_len)


@dataclass
class PackLayer:
    """One decoded layer: `key`/`value` [kv_heads, n, dim] (float16, or float32 for f32 and
    bf16), `positions`/`sizes` [n] int32, and `members` (every entry's member positions, entry
    after entry) when the pack tracked them."""

    key: np.ndarray
    value: np.ndarray
    positions: np.ndarray
    sizes: np.ndarray
    members: np.ndarray | None

    @property
    def count(self) -> int:
        return int(self.positions.size)


def segment_problem(part: PackHeader, segment: PackHeader, content: Any = None) -> str | None:
    """Why `segment` is not the segment a segmented entry's `part` names, or None: a segment of
    the length, shape, token ids, model and images (spans, sources included) before the seam
    the part has, and, with `content` (a function giving the segment file's XXH3-128), the
    content name the part records. Token ids alone cannot tell two images of one size apart."""
    link = part.segment or {}
    name, length = link.get("name"), link.get("length")
    s, h = segment, part
    if s.format != 1 or s.segment is None or "name" in s.segment or s.segment.get("length") != length or s.seq_len != length:
        return f"it is not a segment of length {length}"
    if (len(s.layers), s.kv_heads, s.head_dim, s.v_head_dim) != (len(h.layers), h.kv_heads, h.head_dim, h.v_head_dim):
        return "its shape differs from the entry's"
    if h.input_ids is not None and (s.input_ids is None or not np.array_equal(s.input_ids, h.input_ids[:length])):
        return f"its token ids are not the entry's before position {length}"
    if s.metadata.get(MODEL_KEY) != h.metadata.get(MODEL_KEY):
        return f"it is a prefix of model {s.metadata.get(MODEL_KEY)!r}, the entry's is {h.metadata.get(MODEL_KEY)!r}"
    if not _same_spans_before(s, h, length):
        return f"its images or videos (spans before position {length}) are not the entry's"
    if content is not None and (found := content()) != name:
        # Named by content (docs/FORMAT.md): another prefix, or the same one under another
        # policy, in its place is refused, not joined.
        return f"its content is {found}, the entry names segment {name} (another file in its place)"
    return None


def _same_spans_before(segment: PackHeader, part: PackHeader, length: int) -> bool:
    """Whether a segment's spans are the part's spans that end by `length`, sources included."""
    ours, theirs = part.spans, segment.spans
    if ours is None or theirs is None:
        return segment.metadata.get(SPANS_KEY) is None and part.metadata.get(SPANS_KEY) is None
    return theirs == [span for span in ours if span.end <= length]


def _hex(data: Any) -> str:
    return xxhash.xxh3_64_hexdigest(data)


class Pack:
    """An open kvpack file. Footer and header are checked on open, each section when read.

        with kvstore.read_pack("entry.kvpack") as pack:
            layer = pack.layer(0, dtype="f32")   # checks and decodes layer 0 only
    """

    def __init__(self, path: str | os.PathLike[str], segment: str | os.PathLike[str] | None = None, *,
                 header_only: bool = False) -> None:
        self.path = os.fspath(path)
        with open(self.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            self._map: Any = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else None
        self._bytes = memoryview(self._map) if self._map is not None else memoryview(b"")
        self.header = self._read_header()
        #: A segmented entry's segment (its shared prefix), opened beside the part: every layer
        #: reads as the segment's entries followed by the part's (docs/design/segments.md).
        self.segment: Pack | None = None
        if self.header.format == 2 and not header_only:
            self.segment = self._open_segment(segment)

    def _open_segment(self, given: str | os.PathLike[str] | None) -> "Pack":
        h, link = self.header, self.header.segment or {}
        name = link["name"]
        path = os.fspath(given) if given is not None else os.path.join(os.path.dirname(self.path), f"{name}.kvpack")
        if not os.path.exists(path):
            raise self._corrupt(f"segmented entry: its segment {name} (the shared prefix) is not at {path}; "
                                "`kvstore fetch --raw -o FILE` writes it beside FILE", field="segment")
        segment = Pack(path)
        problem = segment_problem(h, segment.header, content=lambda: xxhash.xxh3_128_hexdigest(segment._bytes))
        if problem is not None:
            segment.close()
            raise self._corrupt(f"segment {path}: {problem}", field="segment")
        return segment

    # ------------------------------------------------------------------ container

    def _corrupt(self, problem: str, layer: int | None = None, field: str | None = None) -> PackError:
        return PackError(self.path, problem, layer, field)

    def _read_header(self) -> PackHeader:
        b = self._bytes
        size = len(b)
        if size < len(MAGIC) + FOOTER:
            raise self._corrupt(f"{size} bytes is too short for a kvpack file")
        if bytes(b[:8]) not in (MAGIC, SEGMENTED_MAGIC):
            raise self._corrupt("bad magic at offset 0", field="magic")
        footer = size - FOOTER
        if bytes(b[footer + 24:]) != FOOTER_MAGIC:
            raise self._corrupt("bad footer magic (truncated file?)", field="footer")
        offset, length, checksum = (int.from_bytes(b[footer + o:footer + o + 8], "little") for o in (0, 8, 16))
        if offset < 8 or length > size or offset + length != footer:
            raise self._corrupt(f"footer says header at {offset} with length {length}, which does not end at the "
                                f"footer ({footer})", field="footer")
        text = b[offset:footer]
        if xxhash.xxh3_64_intdigest(text) != checksum:
            raise self._corrupt("header checksum mismatch", field="header_checksum")
        try:
            j = json.loads(bytes(text).decode("utf-8"))
        except (ValueError, RecursionError) as e:
            raise self._corrupt(f"header JSON: {e}", field="header") from None
        header = self._header_from_json(j, offset)
        if header.format != b[7]:
            raise self._corrupt(f"the magic says format {b[7]}, the header {header.format}", field="format")
        return header

    def _header_from_json(self, j: Any, header_offset: int) -> PackHeader:
        """The header's JSON checked: types, bounds, and sections laid end to end from byte 8
        up to `header_offset`."""
        try:
            header = PackHeader(
                format=_int(j, "format"), metadata=_strings(j, "metadata"), seq_len=_int(j, "seq_len"),
                kv_heads=_int(j, "kv_heads"), head_dim=_int(j, "head_dim"), v_head_dim=_int(j, "v_head_dim"),
                input_dtype=_str(j, "input_dtype"), compression=_strings(j, "compression"),
                layers=[_section(d) for d in _list(j, "layers")], input_ids=self._input_ids(j),
                entry_id=_entry_id(j), segment=_segment(j))
        except (ValueError, KeyError, TypeError, RecursionError) as e:
            raise self._corrupt(f"header JSON: {e}", field="header") from None
        if header.format not in (1, 2):
            raise self._corrupt(f"format {header.format} is not supported", field="format")
        seg = header.segment
        if seg is not None and not 1 <= seg["length"] <= header.seq_len:
            raise self._corrupt(f"segment length {seg['length']} is outside 1...seq_len ({header.seq_len})", field="segment")
        if (header.format == 2) != (seg is not None and "name" in seg):
            raise self._corrupt("format 2 without the segment it continues" if header.format == 2
                                else "format 1 naming a segment", field="segment")
        for name in ("kv_heads", "head_dim", "v_head_dim"):
            value = getattr(header, name)
            if not 1 <= value <= 1 << 16:
                raise self._corrupt(f"header {name} {value} is outside 1...65536", field=name)
        if not 0 <= header.seq_len <= 1 << 24:
            raise self._corrupt(f"header seq_len {header.seq_len} is outside 0...2^24", field="seq_len")
        for i, d in enumerate(header.layers):
            if not 0 <= d.count <= header.seq_len:
                raise self._corrupt(f"count {d.count} is outside 0...seq_len ({header.seq_len})", i, "count")
            if d.prefix is not None and not 0 <= d.prefix <= d.count:
                raise self._corrupt(f"prefix {d.prefix} is outside 0...count ({d.count})", i, "prefix")
        if header.input_ids is not None and header.input_ids.size != header.seq_len:
            raise self._corrupt(f"input_ids holds {header.input_ids.size} ids, seq_len is {header.seq_len}",
                                field=INPUT_IDS)
        nxt = 8
        for i, d in enumerate(header.layers):
            if d.offset != nxt or d.stored_length < 0 or d.stored_length > header_offset - d.offset:
                raise self._corrupt(f"section at {d.offset}+{d.stored_length} is not where the previous one ended "
                                    f"({nxt}) or runs past the header", i, "offset")
            kl, vl = _int(d.keys, "length"), _int(d.values, "length")
            if min(d.count, kl, vl, d.members) < 0 or d.raw_length != kl + vl + 8 * d.count + 4 * d.members:
                raise self._corrupt(f"raw_length {d.raw_length} does not match its blocks and count {d.count}",
                                    i, "raw_length")
            nxt = d.offset + d.stored_length
        if nxt != header_offset:
            raise self._corrupt(f"sections end at {nxt} but the header starts at {header_offset}", field="layers")
        return header

    def _input_ids(self, j: Any) -> np.ndarray | None:
        """The header's `input_ids` in their dtype (int32 for I32, int64 for I64), or None."""
        if not isinstance(j, dict) or j.get(INPUT_IDS) is None:
            return None
        o = j[INPUT_IDS]
        if not isinstance(o, dict) or o.get("dtype") not in ("I32", "I64") or not isinstance(o.get("ids"), list):
            raise self._corrupt('is not {"dtype": "I32"|"I64", "ids": [...]}', field=INPUT_IDS)
        ids = o["ids"]
        if not all(isinstance(v, int) and not isinstance(v, bool) and -(1 << 63) <= v < 1 << 63 for v in ids):
            raise self._corrupt("ids are not all 64-bit integers", field=INPUT_IDS)
        # I32 ids are written back truncated to 32 bits, as the Swift side writes them
        return np.array(ids, dtype=np.int64).astype(np.int32 if o["dtype"] == "I32" else np.int64)

    @property
    def num_layers(self) -> int:
        return len(self.header.layers)

    def stored_section(self, i: int) -> memoryview:
        """The stored bytes of layer `i`, checksum-verified."""
        d = self._descriptor(i)
        stored = self._stored(i, d)
        if _hex(stored) != d.checksum:
            raise self._corrupt("section checksum mismatch", i, "checksum")
        return stored

    def _stored(self, i: int, d: Section) -> memoryview:
        """Layer `i`'s stored bytes, unverified (a remote pack reads them with a range request)."""
        return self._bytes[d.offset:d.offset + d.stored_length]

    def raw_section(self, i: int) -> np.ndarray:
        """Layer `i`'s section verified, decompressed and range-checked, as bytes (uint8)."""
        d = self._descriptor(i)
        stored = self.stored_section(i)
        try:
            if d.codec == "zstd":
                # The frame's own size claim is believed by the decompressor (it allocates that
                # much first): a crafted 1 KB section claiming 64 GiB is refused here instead.
                claimed = zstandard.frame_content_size(stored)
                if claimed >= 0 and claimed != d.raw_length:
                    raise self._corrupt(f"zstd frame declares {claimed} bytes, the section {d.raw_length}", i, "raw_length")
                raw = zstandard.ZstdDecompressor().decompress(stored, max_output_size=d.raw_length)
            elif d.codec == "lz4":
                raw = lz4.block.decompress(stored, uncompressed_size=d.raw_length) if d.raw_length else b""
            elif d.codec == "none":
                raw = bytes(stored)
            else:
                raise self._corrupt(f'unknown codec "{d.codec}"', i, "codec")
        except (zstandard.ZstdError, lz4.block.LZ4BlockError) as e:
            raise self._corrupt(f"{d.codec}: {e}", i, "codec") from None
        if len(raw) != d.raw_length:
            raise self._corrupt(f"{d.codec} produced {len(raw)} bytes, expected {d.raw_length}", i, "raw_length")
        if _hex(raw) != d.raw_checksum:
            raise self._corrupt(f"raw checksum mismatch after {d.codec}", i, "raw_checksum")
        out = np.frombuffer(raw, dtype=np.uint8)
        self._check_entries(i, d, out)
        return out

    def _descriptor(self, i: int) -> Section:
        if not 0 <= i < self.num_layers:
            raise IndexError(f"{self.path}: layer {i} is outside 0 to {self.num_layers - 1}")
        return self.header.layers[i]

    def _check_entries(self, i: int, d: Section, raw: np.ndarray) -> None:
        positions, sizes, members = _entry_arrays(d, raw)
        seq_len = self.header.seq_len
        previous = np.concatenate(([-1], positions[:-1].astype(np.int64)))
        bad = np.nonzero((positions <= previous) | (positions >= seq_len) | (sizes < 1))[0]
        if bad.size:
            j = bad[0]
            raise self._corrupt(f"entry at position {positions[j]} with size {sizes[j]} breaks ascending positions "
                                f"in [0, {seq_len}) or sizes ≥ 1", i, "positions")
        if members is not None:
            total = int(sizes.astype(np.int64).sum())
            if total != d.members:
                raise self._corrupt(f"{d.members} member positions but sizes sum to {total}", i, "members")
            if np.any((members < 0) | (members >= seq_len)):
                raise self._corrupt(f"a member position lies outside [0, {seq_len})", i, "members")

    # ------------------------------------------------------------------ layers

    def _blocks(self, i: int, raw: np.ndarray, dtype: str) -> tuple[np.ndarray, np.ndarray]:
        """Keys and values of layer `i` as little-endian elements of `dtype` (bits)."""
        h, d = self.header, self.header.layers[i]
        out = []
        start = 0
        for name, block, dim in (("keys", d.keys, h.head_dim), ("values", d.values, h.v_head_dim)):
            length = block["length"]
            shape = (h.kv_heads, d.count, dim)
            try:
                data, stored = decode_block(raw[start:start + length], block.get("encoding", {}), shape)
            except BlockError as e:
                raise self._corrupt(str(e), i, name) from None
            if stored == dtype:
                out.append(data.view(np.uint8).reshape(-1))
            else:
                values = data if stored == "F32Q" else from_bits(data, stored)
                out.append(to_bits(values, dtype).reshape(-1).view(np.uint8))
            start += length
        return out[0], out[1]

    def layer_bytes(self, i: int, dtype: str = "f16") -> bytes:
        """Layer `i`'s key, value, positions and sizes tensors exactly as `kvstore fetch` writes them."""
        dtype = user_dtype(dtype)
        parts = [self._layer_bits(i, dtype)] if self.segment is None else [self.segment._layer_bits(i, dtype),
                                                                            self._layer_bits(i, dtype)]
        joined = [np.concatenate([p[j] for p in parts], axis=1 if j < 2 else 0) for j in range(4)]
        return b"".join(a.tobytes() for a in joined)

    def _layer_bits(self, i: int, dtype: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """This file's part of layer `i`: keys and values as bytes [kv_heads, n, dim·width],
        positions and sizes as bytes."""
        h, d = self.header, self._descriptor(i)
        raw = self.raw_section(i)
        keys, values = self._blocks(i, raw, dtype)
        p = d.keys["length"] + d.values["length"]
        return (keys.reshape(h.kv_heads, d.count, -1), values.reshape(h.kv_heads, d.count, -1),
                raw[p:p + 4 * d.count], raw[p + 4 * d.count:p + 8 * d.count])

    def layer(self, i: int, dtype: str = "f16") -> PackLayer:
        """Layer `i` decoded: F16 gives float16 arrays, F32 and BF16 float32 arrays."""
        own = self._own_layer(i, dtype)
        return own if self.segment is None else join_layers(self.segment._own_layer(i, dtype), own)

    def _own_layer(self, i: int, dtype: str) -> PackLayer:
        """The entries this file holds of layer `i` (a segmented entry's part holds the rest)."""
        dtype = user_dtype(dtype)
        h, d = self.header, self._descriptor(i)
        raw = self.raw_section(i)
        keys, values = self._blocks(i, raw, dtype)
        positions, sizes, members = _entry_arrays(d, raw)
        return PackLayer(from_bits(keys, dtype).reshape(h.kv_heads, d.count, h.head_dim),
                         from_bits(values, dtype).reshape(h.kv_heads, d.count, h.v_head_dim),
                         positions.copy(), sizes.copy(), None if members is None else members.copy())

    def expanded_layer(self, i: int, dtype: str = "f16") -> PackLayer:
        """Layer `i` with every merged entry repeated at each member's position, size 1
        (plain attention over it equals proportional attention over the merged layer)."""
        dtype = user_dtype(dtype)
        merged = self.layer(i, "f32")
        key, value, positions = expand_layer(merged, i)
        ones = np.ones(positions.size, dtype=np.int32)
        return PackLayer(from_bits(to_bits(key, dtype), dtype).reshape(key.shape),
                         from_bits(to_bits(value, dtype), dtype).reshape(value.shape),
                         positions, ones, None if merged.members is None else positions.copy())

    def layers(self, dtype: str = "f16", expand: bool = False) -> Iterator[PackLayer]:
        for i in range(self.num_layers):
            yield self.expanded_layer(i, dtype) if expand else self.layer(i, dtype)

    def check_expandable(self) -> None:
        """Raises ExpandError when a layer merged entries without recording their members."""
        if self.segment is not None:
            self.segment.check_expandable()
        for i, d in enumerate(self.header.layers):
            if d.members == 0:
                positions, sizes, _ = _entry_arrays(d, self.raw_section(i))
                big = np.nonzero(sizes != 1)[0]
                if big.size:
                    j = big[0]
                    raise ExpandError(f"{self.path}: layer {i}: entry at position {positions[j]} stands for "
                                      f"{sizes[j]} tokens but the layer carries no member positions (it arrived "
                                      "merged), so it cannot be expanded")

    # ------------------------------------------------------------------ as a kvsnap

    def fetch_metadata(self, prefix_of: str | None = None) -> dict[str, str]:
        """The metadata `kvstore fetch` writes: the input's, plus compression and seq_len. With
        `prefix_of` (the entry id), what `fetch --prefix` writes: seq_len the prefix's length,
        the spans that end by then, `kvsnap.prefix_of`, and no key or next position (they
        describe the whole request)."""
        metadata = dict(self.header.metadata)
        metadata[COMPRESSION_KEY] = canonical_json(self.header.compression)
        metadata[SEQ_LEN_KEY] = str(self.header.seq_len if prefix_of is None else self.header.prefix_end)
        spans = self.header.spans
        if prefix_of is not None and spans is not None:
            end = self.header.prefix_end
            metadata[SPANS_KEY] = encode_spans([s for s in spans if s.end <= end])
            metadata.pop(KEY_KEY, None)
            metadata.pop(NEXT_POSITION_KEY, None)
            metadata[PREFIX_OF_KEY] = prefix_of
        return metadata

    def entry_counts(self, expand: bool = False) -> list[int]:
        """Entries of each layer as `fetch [--expand]` writes them (a segmented entry's segment
        and part together)."""
        own = [d.members if expand and d.members > 0 else d.count for d in self.header.layers]
        if self.segment is None:
            return own
        return [a + b for a, b in zip(self.segment.entry_counts(expand), own)]

    def prefix_counts(self, expand: bool = False) -> list[int]:
        """Entries of each layer before the shareable prefix's end, as `fetch --prefix [--expand]`
        writes them: the sections' `prefix` counts, else counted from their positions (one
        entry per member with `expand`)."""
        if self.segment is not None:  # the prefix is the segment (merged by a reduction that reads no prompt)
            return self.segment.entry_counts(expand)
        end = self.header.prefix_end
        counts = []
        for i, d in enumerate(self.header.layers):
            if d.prefix is not None and (not expand or d.members == 0):
                counts.append(d.prefix)
                continue
            positions, sizes, _ = _entry_arrays(d, self.raw_section(i))
            k = d.prefix if d.prefix is not None else int(np.count_nonzero(positions < end))
            counts.append(int(sizes[:k].astype(np.int64).sum()) if expand and d.members > 0 else k)
        return counts

    def _prefix_of(self, entry: str | None) -> str:
        if entry is None and self.header.entry_id is None:
            raise self._corrupt("the header names no entry (packs before the hardening release): pass the "
                                "entry id for kvsnap.prefix_of", field="entry")
        return entry if entry is not None else self.header.entry_id  # type: ignore[return-value]

    def snapshot(self, dtype: str = "f32", expand: bool = False, prefix: bool = False,
                 entry: str | None = None) -> Snapshot:
        """The whole entry as a Snapshot, as `kvstore fetch [--expand] [--prefix]` would return it
        (`entry`: the id `kvsnap.prefix_of` names, by default the header's own)."""
        if expand:
            self.check_expandable()
        raw = self.fetch_metadata(self._prefix_of(entry) if prefix else None)
        seq_len = int(raw[SEQ_LEN_KEY])
        counts = self.prefix_counts(expand) if prefix else None
        decoded = list(self.layers(dtype, expand))
        if counts is not None:
            # A section's `prefix` count is the header's word: the positions, decoded anyway,
            # must agree that the cut falls at the prefix's end (a crafted count once put
            # prompt tokens into a "prefix").
            for i, (l, k) in enumerate(zip(decoded, counts)):
                if not (0 <= k <= l.count) or (k > 0 and l.positions[k - 1] >= seq_len) or (k < l.count and l.positions[k] < seq_len):
                    raise self._corrupt(f"the prefix count {k} does not cut the layer at the prefix's end ({seq_len})",
                                        i, "prefix")
        layers = [Layer(key=l.key[:, :k], value=l.value[:, :k], positions=l.positions[:k], sizes=l.sizes[:k])
                  for l, k in zip(decoded, counts or [None] * self.num_layers)]
        try:
            spans = [Span.from_json(o, j) for j, o in enumerate(json.loads(raw[SPANS_KEY]))]
            validate_spans(spans, seq_len)
        except (KeyError, ValueError, TypeError) as e:
            raise self._corrupt(f"metadata {SPANS_KEY}: {e}", field="metadata") from None
        next_position = raw.get(NEXT_POSITION_KEY)
        ids = self.header.input_ids
        return Snapshot(model=raw.get(MODEL_KEY, ""), spans=spans, layers=layers, key=raw.get(KEY_KEY),
                        next_position=int(next_position) if next_position is not None else None,
                        seq_len=seq_len, metadata={k: v for k, v in raw.items() if k not in _OWN_KEYS},
                        dtype=user_dtype(dtype), input_ids=None if ids is None else ids[:seq_len].copy())

    def close(self) -> None:
        if self.segment is not None:
            self.segment.close()
        try:
            self._bytes.release()
            if self._map is not None:
                self._map.close()
        except BufferError:  # a caller still holds a view of the stored bytes; the map goes with it
            pass

    def __enter__(self) -> "Pack":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def expand_layer(layer: PackLayer, index: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(key, value, positions) with one row per member, in ascending position order."""
    if layer.members is None:
        big = np.nonzero(layer.sizes != 1)[0]
        if big.size:
            j = big[0]
            raise ExpandError(f"layer {index}: entry at position {layer.positions[j]} stands for {layer.sizes[j]} "
                              "tokens but the layer carries no member positions (it arrived merged), so it cannot "
                              "be expanded")
        return layer.key, layer.value, layer.positions.copy()
    source = np.repeat(np.arange(layer.count), layer.sizes)
    order = np.argsort(layer.members, kind="stable")
    rows = source[order]
    return layer.key[:, rows, :], layer.value[:, rows, :], layer.members[order].astype(np.int32)


def join_layers(first: PackLayer, second: PackLayer) -> PackLayer:
    """`first`'s entries followed by `second`'s: a segmented entry's layer (segment, then part)."""
    members = None
    if first.members is not None or second.members is not None:
        members = np.concatenate([first.members if first.members is not None else first.positions,
                                  second.members if second.members is not None else second.positions])
    return PackLayer(np.concatenate([first.key, second.key], axis=1), np.concatenate([first.value, second.value], axis=1),
                     np.concatenate([first.positions, second.positions]), np.concatenate([first.sizes, second.sizes]),
                     members)


def _entry_arrays(d: Section, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    p = d.keys["length"] + d.values["length"]
    positions = raw[p:p + 4 * d.count].view("<i4")
    sizes = raw[p + 4 * d.count:p + 8 * d.count].view("<i4")
    members = raw[p + 8 * d.count:p + 8 * d.count + 4 * d.members].view("<i4") if d.members else None
    return positions, sizes, members


def read_header(path: str | os.PathLike[str]) -> PackHeader:
    """A kvpack file's header, checked, alone: a segmented entry's part is read without its
    segment (`header.segment["name"]` names it)."""
    with Pack(path, header_only=True) as pack:
        return pack.header


def read_pack(path: str | os.PathLike[str], segment: str | os.PathLike[str] | None = None) -> Pack:
    """Opens a kvpack file (footer and header checked; sections are checked when read). A
    segmented entry's part opens its segment too: `segment`, else `<name>.kvpack` beside it
    (where `kvstore fetch --raw` writes it)."""
    return Pack(path, segment)


def unpack(pack_path: str | os.PathLike[str], output: str | os.PathLike[str], dtype: str = "f16",
           expand: bool = False, prefix: bool = False, entry: str | None = None) -> None:
    """Writes exactly the bytes `kvstore fetch [--dtype D] [--expand] [--prefix]` writes for this
    entry: the layers, then `input_ids` when the input carried them. With `prefix`, the
    shareable prefix alone (`Pack.prefix_counts`, `fetch_metadata`); `entry` is the id
    `kvsnap.prefix_of` names, by default the header's own. The output appears complete or not at all."""
    output = os.fspath(output)
    dtype = user_dtype(dtype)
    with Pack(pack_path) as pack:
        if expand:
            pack.check_expandable()
        h = pack.header
        metadata = pack.fetch_metadata(pack._prefix_of(entry) if prefix else None)
        counts = pack.prefix_counts(expand) if prefix else pack.entry_counts(expand)
        entries = []
        for i, n in enumerate(counts):
            entries += [(f"layers.{i}.key", dtype, (h.kv_heads, n, h.head_dim)),
                        (f"layers.{i}.value", dtype, (h.kv_heads, n, h.v_head_dim)),
                        (f"layers.{i}.positions", "I32", (n,)), (f"layers.{i}.sizes", "I32", (n,))]
        ids = None if h.input_ids is None else h.input_ids[:int(metadata[SEQ_LEN_KEY])]
        if ids is not None:
            entries.append((INPUT_IDS, "I32" if ids.dtype == np.int32 else "I64", (ids.size,)))
        temp = f"{output}.{os.getpid()}.tmp"
        try:
            with open(temp, "wb") as f:
                f.write(layout_header(entries, metadata))
                for i, n in enumerate(counts):
                    if expand:
                        key, value, positions = expand_layer(pack.layer(i, "f32"), i)
                        sizes = np.ones(positions.size, dtype="<i4")
                        key, value = to_bits(key, dtype), to_bits(value, dtype)
                    elif prefix:
                        layer = pack.layer(i, dtype)
                        key, value = to_bits(layer.key, dtype), to_bits(layer.value, dtype)
                        positions, sizes = layer.positions, layer.sizes
                    else:
                        f.write(pack.layer_bytes(i, dtype))
                        continue
                    for a in (key[:, :n], value[:, :n], positions[:n].astype("<i4"), sizes[:n].astype("<i4")):
                        f.write(np.ascontiguousarray(a).tobytes())
                if ids is not None:
                    f.write(ids.astype("<i4" if ids.dtype == np.int32 else "<i8").tobytes())
            os.replace(temp, output)
        except BaseException:
            if os.path.exists(temp):
                os.remove(temp)
            raise


def _int(obj: Any, key: str) -> int:
    v = obj[key]
    if not isinstance(v, int) or isinstance(v, bool):
        raise TypeError(f'"{key}" is {v!r}, not an integer')
    return v


def _str(obj: Any, key: str) -> str:
    v = obj[key]
    if not isinstance(v, str):
        raise TypeError(f'"{key}" is {v!r}, not a string')
    return v


def _list(obj: Any, key: str) -> list[Any]:
    v = obj[key]
    if not isinstance(v, list):
        raise TypeError(f'"{key}" is not an array')
    return v


def _strings(obj: Any, key: str) -> dict[str, str]:
    v = obj[key]
    if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
        raise TypeError(f'"{key}" is not an object of strings')
    return dict(v)


def _segment(j: Any) -> dict[str, Any] | None:
    o = j.get("segment") if isinstance(j, dict) else None
    if o is None:
        return None
    if not isinstance(o, dict) or not isinstance(o.get("length"), int) or isinstance(o.get("length"), bool):
        raise ValueError('segment is not {"length": n, ...}')
    name = o.get("name")
    if name is not None and not (isinstance(name, str) and len(name) == 32
                                 and all(c in "0123456789abcdef" for c in name)):
        raise ValueError("segment name is not a blob name")
    return o


def _entry_id(j: Any) -> str | None:
    entry = j.get("entry") if isinstance(j, dict) else None
    return entry.get("id") if isinstance(entry, dict) and isinstance(entry.get("id"), str) else None


def _section(d: Any) -> Section:
    if not isinstance(d, dict):
        raise TypeError("a section descriptor is not an object")
    for block in ("keys", "values"):
        b = d[block]
        if not isinstance(b, dict) or not isinstance(b.get("encoding"), dict):
            raise TypeError(f'"{block}" is not {{"encoding": {{...}}, "length": n}}')
        _int(b, "length")
        _str(b["encoding"], "scheme")
    level = d.get("level")
    members = d.get("members", 0)
    prefix = d.get("prefix")
    return Section(count=_int(d, "count"), offset=_int(d, "offset"), stored_length=_int(d, "stored_length"),
                   raw_length=_int(d, "raw_length"), codec=_str(d, "codec"),
                   level=level if isinstance(level, int) else None, checksum=_str(d, "checksum"),
                   raw_checksum=_str(d, "raw_checksum"), keys=d["keys"], values=d["values"],
                   members=members if isinstance(members, int) else _int({"members": members}, "members"),
                   prefix=None if prefix is None else _int(d, "prefix"))
