"""Segmented entries (docs/design/segments.md): questions about one image share one stored
prefix; the raw pack of each is its own part, with the segment written beside it, and every
reader (numpy, torch) joins them into what `kvstore fetch` returns."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import kvstore  # noqa: E402
import kvstore.torch as kvtorch  # noqa: E402
from conftest import CLI  # noqa: E402


@pytest.fixture
def questions(cli: CLI, tmp_path: Path) -> tuple[kvstore.Client, list[str]]:
    cli.synth(tmp_path / "q", "--preset", "tiny", "--questions", "2")
    store = kvstore.Client(store=tmp_path / "store", binary=cli.binary)
    ids = [store.ingest(p, policy="int8") for p in sorted((tmp_path / "q").glob("*.safetensors"))]
    return store, ids


def test_raw_parts_share_one_segment_file_and_read_as_the_fetched_entry(questions: tuple[kvstore.Client, list[str]],
                                                                         tmp_path: Path) -> None:
    store, ids = questions
    shown = [store.show(entry) for entry in ids]
    assert shown[0].segment_bytes > 0 and shown[0].segment_bytes == shown[1].segment_bytes
    assert all(e.bytes_out < e.segment_bytes for e in shown), "each part holds only its prompt"
    out = tmp_path / "raw"
    out.mkdir()
    for n, entry in enumerate(ids):
        part = store.fetch_raw(entry, out / f"{n}.kvpack")
        fetched = store.fetch_snapshot(entry, dtype="f16")
        with kvstore.read_pack(part) as pack:
            assert pack.header.format == 2 and pack.segment is not None
            for i, layer in enumerate(pack.layers("f16")):
                assert np.array_equal(layer.key, fetched.layers[i].key)
                assert np.array_equal(layer.positions, fetched.layers[i].positions)
            prefix = pack.snapshot(dtype="f16", prefix=True)
            assert prefix.seq_len == pack.segment.header.seq_len
        device = kvtorch.load_pack(part, "cpu", dtype=torch.float16)
        for i, layer in enumerate(device.layers):
            assert torch.equal(layer.key, torch.from_numpy(fetched.layers[i].key))
            assert torch.equal(layer.value, torch.from_numpy(fetched.layers[i].value))
    segments = [p for p in os.listdir(out) if not p[0].isdigit()]
    assert len(segments) == 1, "both parts name the same segment, written once beside them"
    assert [layer.count for layer in store.fetch_layers(ids[0])] == [layer.count for layer in
                                                                     store.fetch_snapshot(ids[0]).layers]


def test_a_part_without_its_segment_is_refused_by_name(questions: tuple[kvstore.Client, list[str]],
                                                        tmp_path: Path) -> None:
    store, ids = questions
    part = store.fetch_raw(ids[0], tmp_path / "e.kvpack")
    segment = next(p for p in tmp_path.glob("*.kvpack") if p.name != "e.kvpack")
    moved = tmp_path / "elsewhere.kvpack"
    segment.rename(moved)
    with pytest.raises(kvstore.PackError, match="segmented entry: its segment"):
        kvstore.read_pack(part)
    with kvstore.read_pack(part, segment=moved) as pack:  # named explicitly, it is found
        assert pack.layer(0).count == pack.segment.layer(0).count + pack._own_layer(0, "f16").count
    other = store.fetch_raw(ids[1], tmp_path / "other.kvpack")
    with pytest.raises(kvstore.PackError, match="is not a segment"):
        kvstore.read_pack(part, segment=other)


def test_a_merged_prefix_stored_once_reads_as_fetched(cli: CLI, tmp_path: Path) -> None:
    """A reduction that reads no prompt (`guide=none`) stores one reduced prefix for every
    question; the raw part with its segment reads, expands and cuts to the prefix as `fetch` does."""
    cli.synth(tmp_path / "q", "--preset", "tiny", "--questions", "2")
    store = kvstore.Client(store=tmp_path / "store", binary=cli.binary)
    policy = "airmerge35:evict=0:guide=none+int8"
    ids = [store.ingest(p, policy=policy) for p in sorted((tmp_path / "q").glob("*.safetensors"))]
    shown = [store.show(entry) for entry in ids]
    assert shown[0].segment_bytes > 0 and shown[0].segment_bytes == shown[1].segment_bytes
    part = store.fetch_raw(ids[0], tmp_path / "e.kvpack")
    with kvstore.read_pack(part) as pack:
        assert pack.segment is not None and pack.header.compression["method"] == "airmerge"
        for expand in (False, True):
            fetched = store.fetch_snapshot(ids[0], dtype="f16", expand=expand)
            ours = pack.snapshot(dtype="f16", expand=expand)
            assert any((layer.sizes > 1).any() for layer in fetched.layers) != expand, "merged, or expanded"
            for a, b in zip(ours.layers, fetched.layers):
                assert np.array_equal(a.key, b.key) and np.array_equal(a.value, b.value)
                assert np.array_equal(a.positions, b.positions) and np.array_equal(a.sizes, b.sizes)
            prefix_path = store.fetch(ids[0], tmp_path / f"prefix{expand}.safetensors", expand=expand, prefix=True)
            prefix, cut = kvstore.read(prefix_path), pack.snapshot(dtype="f16", expand=expand, prefix=True)
            assert prefix.seq_len == cut.seq_len == pack.segment.header.seq_len
            for a, b in zip(cut.layers, prefix.layers):
                assert np.array_equal(a.key, b.key) and np.array_equal(a.positions, b.positions)


def test_another_images_prefix_or_another_policys_in_the_segments_place_is_refused(cli: CLI, tmp_path: Path) -> None:
    """Token ids cannot tell two images of one size apart: a part is joined only to the segment
    it names by content, of its model and its images, never to another prefix put in its place."""
    for seed in (1, 5):
        cli.synth(tmp_path / f"s{seed}.safetensors", "--preset", "tiny", "--seed", str(seed))
    store = kvstore.Client(store=tmp_path / "store", binary=cli.binary)
    a, b = (store.ingest(tmp_path / f"s{seed}.safetensors", policy="int8") for seed in (1, 5))
    for folder, entry in (("a", a), ("b", b)):
        (tmp_path / folder).mkdir()
        store.fetch_raw(entry, tmp_path / folder / "e.kvpack")
    (own,) = [p for p in (tmp_path / "a").glob("*.kvpack") if p.name != "e.kvpack"]
    (other,) = [p for p in (tmp_path / "b").glob("*.kvpack") if p.name != "e.kvpack"]
    assert own.name != other.name
    with pytest.raises(kvstore.PackError, match="segment"):
        kvstore.read_pack(tmp_path / "a" / "e.kvpack", segment=other)
    own.write_bytes(other.read_bytes())  # the other image's prefix under this one's name
    with pytest.raises(kvstore.PackError, match="another file in its place|images or videos"):
        kvstore.read_pack(tmp_path / "a" / "e.kvpack")
    with pytest.raises(kvstore.PackError):
        kvtorch.load_pack(tmp_path / "a" / "e.kvpack", "cpu")
