"""The native kvpack reader against the binary: `unpack` writes the bytes `kvstore fetch`
writes, for every built-in policy, every output dtype, --expand and --prefix, with and without
`input_ids`; damage always raises."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xxhash
import zstandard

import kvstore
from conftest import CLI


def test_every_built_in_policy_is_covered(stored: tuple[CLI, Path, dict[str, str]]) -> None:
    cli, _, ids = stored
    assert len(cli.policies()) >= 14
    assert {k.split("/")[0] for k in ids} == set(cli.policies())


def test_unpack_writes_the_bytes_fetch_writes(stored: tuple[CLI, Path, dict[str, str]], tmp_path: Path) -> None:
    _, _, ids = stored
    checked, policies = 0, set()
    dtypes = ("f16", "bf16", "f32")
    for n, (name, (cli, entry)) in enumerate(ids.items()):
        pack = tmp_path / "entry.kvpack"
        cli.run("fetch", entry, "--raw", "-o", str(pack))
        for prefix in (False, True):  # prefixes in one dtype an entry, each dtype in turn
            for dtype in dtypes[n % 3:n % 3 + 1] if prefix else dtypes:
                for expand in (False, True):
                    want, got = tmp_path / "want.safetensors", tmp_path / "got.safetensors"
                    cli.run("fetch", entry, "--dtype", dtype, "-o", str(want), *(["--expand"] if expand else []),
                            *(["--prefix"] if prefix else []))
                    kvstore.unpack(pack, got, dtype=dtype, expand=expand, prefix=prefix)
                    assert want.read_bytes() == got.read_bytes(), f"{name} --dtype {dtype} {expand=} {prefix=}"
                    checked += 1
        if name.endswith("/image"):
            with kvstore.read_pack(pack) as p:
                policies.add(p.header.compression["policy"])
    assert checked == 8 * len(ids)
    assert len(policies) == len(stored[0].policies())  # each store really holds its own policy


def test_layers_decode_to_what_fetch_returns(stored: tuple[CLI, Path, dict[str, str]], tmp_path: Path) -> None:
    cli, entry = stored[2]["lightkv+int4/image"]
    cli.run("fetch", entry, "--raw", "-o", str(tmp_path / "e.kvpack"))
    cli.run("fetch", entry, "--dtype", "f32", "-o", str(tmp_path / "e.safetensors"))
    fetched = kvstore.read(tmp_path / "e.safetensors")
    with kvstore.read_pack(tmp_path / "e.kvpack") as pack:
        assert pack.num_layers == len(fetched.layers)
        snap = pack.snapshot(dtype="f32")
        for i, want in enumerate(fetched.layers):
            got = pack.layer(i, "f32")
            assert np.array_equal(got.key, want.key) and np.array_equal(got.value, want.value)
            assert np.array_equal(got.positions, want.positions) and np.array_equal(got.sizes, want.sizes)
            if got.sizes.max() > 1:
                assert got.members is not None and got.members.size == int(got.sizes.sum())
            assert np.array_equal(snap.layers[i].key, want.key)
        # layers really differ in length after merging
        assert len({layer.count for layer in fetched.layers}) > 1
        assert pack.layer(0).key.dtype == np.float16, "F16 unless asked, as fetch"
        with pytest.raises(IndexError, match=f"layer {pack.num_layers} is outside 0 to {pack.num_layers - 1}$"):
            pack.layer(pack.num_layers)
        assert snap.metadata["kvsnap.compression"] == fetched.metadata["kvsnap.compression"]
        assert snap.spans == fetched.spans and snap.seq_len == fetched.seq_len


@pytest.mark.parametrize("key, dtype", [("lightkv+int8/image", np.int64), ("none/video", np.int32),
                                        ("lightkv/image-f32", None)])
def test_input_ids_and_the_prefix_read_back_as_fetch_writes_them(stored, tmp_path: Path, key: str, dtype) -> None:
    cli, entry = stored[2][key]
    pack, whole, prefix = tmp_path / "e.kvpack", tmp_path / "whole.safetensors", tmp_path / "prefix.safetensors"
    cli.run("fetch", entry, "--raw", "-o", str(pack))
    cli.run("fetch", entry, "--dtype", "f32", "-o", str(whole))
    cli.run("fetch", entry, "--dtype", "f32", "--prefix", "-o", str(prefix))
    fetched, cut = kvstore.read(whole), kvstore.read(prefix)
    end = fetched.prefix_end
    assert 0 < end < fetched.original_length == cut.original_length + (fetched.original_length - end)
    assert cut.seq_len == cut.prefix_end == end and cut.prefix_of == entry and cut.key is None
    assert cut.spans == [s for s in fetched.spans if s.end <= end] and "prompt" not in [s.role for s in cut.spans]
    with kvstore.read_pack(pack) as p:
        assert p.header.prefix_end == end and p.header.entry_id == entry
        assert all(d.prefix is not None for d in p.header.layers)
        assert p.prefix_counts() == [layer.count for layer in cut.layers]
        if dtype is None:
            assert p.header.input_ids is None and fetched.input_ids is None and cut.input_ids is None
        else:
            assert p.header.input_ids.dtype == dtype and fetched.input_ids.dtype == dtype
            assert np.array_equal(p.header.input_ids, fetched.input_ids)
            assert np.array_equal(cut.input_ids, fetched.input_ids[:end])
        for got, want in ((p.snapshot(), fetched), (p.snapshot(prefix=True), cut), (fetched.prefix(), cut)):
            whole = want is fetched
            assert got.spans == want.spans and got.original_length == want.original_length
            assert got.prefix_end == want.prefix_end and got.key == want.key
            assert (got.input_ids is None) == (want.input_ids is None)
            if want.input_ids is not None:
                assert np.array_equal(got.input_ids, want.input_ids) and got.input_ids.dtype == want.input_ids.dtype
            for a, b in zip(got.layers, want.layers):
                assert np.array_equal(a.key, b.key) and np.array_equal(a.positions, b.positions)
                assert np.array_equal(a.sizes, b.sizes)
                assert whole or int(b.sizes.sum()) == end  # whole merge groups: every prefix token stood for
    kvstore.write(cut, tmp_path / "again.safetensors")  # a prefix is a valid kvsnap file in its own right
    assert kvstore.read(tmp_path / "again.safetensors").prefix_of == entry


def test_input_ids_are_checked_like_the_swift_reader_checks_them(cli: CLI, tmp_path: Path) -> None:
    snap = kvstore.read(cli.synth(tmp_path / "t.safetensors", "--preset", "tiny"))
    n = snap.original_length
    for ids, problem in ((np.arange(n - 1, dtype=np.int64), rf"shape \[{n - 1}\], expected \[{n}\]"),
                         (np.arange(n, dtype=np.float32), "not int32 or int64"),
                         (np.arange(2 * n, dtype=np.int32).reshape(2, n), "one id per cached position")):
        snap.input_ids = ids
        with pytest.raises(kvstore.SnapshotError, match=problem) as e:
            kvstore.write(snap, tmp_path / "bad.safetensors")
        assert e.value.field == "input_ids"
    snap.input_ids = np.arange(n, dtype=np.int32)
    kvstore.write(snap, tmp_path / "ok.safetensors")
    assert kvstore.read(tmp_path / "ok.safetensors").input_ids.dtype == np.int32
    assert cli.run("ingest", str(tmp_path / "ok.safetensors"), check=False).returncode == 0
    # a file whose input_ids are F32 or the wrong length: both readers refuse it, naming the tensor
    data = bytearray((tmp_path / "ok.safetensors").read_bytes())
    for old, new in ((b'"input_ids":{"dtype":"I32"', b'"input_ids":{"dtype":"F32"'),
                     (f'"input_ids":{{"dtype":"I32","shape":[{n}]'.encode(),
                      f'"input_ids":{{"dtype":"I16","shape":[{n}]'.encode())):
        bad = tmp_path / "bad.safetensors"
        bad.write_bytes(bytes(data).replace(old, new))
        with pytest.raises(kvstore.SnapshotError) as e:
            kvstore.read(bad)
        assert e.value.field == "input_ids"
        done = cli.run("ingest", str(bad), check=False)
        assert done.returncode == 3 and "input_ids" in done.stderr


def _raw_pack(stored: tuple[CLI, Path, dict[str, str]], tmp_path: Path, key: str = "lightkv+int8/image") -> bytearray:
    cli, entry = stored[2][key]
    path = tmp_path / "src.kvpack"
    cli.run("fetch", entry, "--raw", "-o", str(path))
    return bytearray(path.read_bytes())


def _header(data: bytearray) -> tuple[int, dict]:
    offset = int.from_bytes(data[-32:-24], "little")
    return offset, json.loads(bytes(data[offset:-32]))


def _assemble(body: bytes, header: dict) -> bytearray:
    """Sections (from byte 0, magic included), then the header JSON and a footer pointing at it."""
    text = json.dumps(header).encode()
    footer = len(body).to_bytes(8, "little") + len(text).to_bytes(8, "little") + \
        xxhash.xxh3_64_intdigest(text).to_bytes(8, "little") + b"KVPKEND1"
    return bytearray(body) + text + footer


def _rewrite_header(data: bytearray, header: dict) -> bytearray:
    offset, _ = _header(data)
    return _assemble(bytes(data[:offset]), header)


def _write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "damaged.kvpack"
    path.write_bytes(bytes(data))
    return path


def test_a_flipped_byte_in_a_section_raises_for_that_layer_only(stored, tmp_path: Path) -> None:
    data = _raw_pack(stored, tmp_path)
    _, header = _header(data)
    section = header["layers"][2]
    data[section["offset"] + section["stored_length"] // 2] ^= 0x10
    with kvstore.read_pack(_write(tmp_path, data)) as pack:
        pack.layer(0)
        pack.layer(3)
        with pytest.raises(kvstore.PackError) as e:
            pack.layer(2)
        assert e.value.layer == 2 and e.value.field == "checksum"
        with pytest.raises(kvstore.PackError):
            pack.snapshot()


@pytest.mark.parametrize("damage, field", [
    (lambda d: d.__setitem__(slice(0, 1), b"X"), "magic"),
    (lambda d: d.__setitem__(slice(len(d) - 1, len(d)), b"X"), "footer"),
    (lambda d: d.__setitem__(slice(len(d) - 40, len(d) - 39), b"~"), "header_checksum"),
])
def test_damaged_container_raises_on_open(stored, tmp_path: Path, damage, field: str) -> None:
    data = _raw_pack(stored, tmp_path)
    damage(data)
    with pytest.raises(kvstore.PackError) as e:
        kvstore.read_pack(_write(tmp_path, data))
    assert e.value.field == field and str(tmp_path) in str(e.value)


def test_truncated_file_raises(stored, tmp_path: Path) -> None:
    data = _raw_pack(stored, tmp_path)
    with pytest.raises(kvstore.PackError, match="footer"):
        kvstore.read_pack(_write(tmp_path, data[:-5]))


def test_crafted_header_fields_raise_naming_the_field(stored, tmp_path: Path) -> None:
    data = _raw_pack(stored, tmp_path)
    for edit, field in ((lambda h: h["layers"][1].update(raw_length=h["layers"][1]["raw_length"] + 4), "raw_length"),
                        (lambda h: h["layers"][1].update(offset=h["layers"][1]["offset"] + 1), "offset"),
                        (lambda h: h.update(kv_heads=0), "kv_heads"),
                        (lambda h: h["layers"][0].update(count=10 ** 9), "count")):
        _, header = _header(data)
        edit(header)
        with pytest.raises(kvstore.PackError) as e:
            kvstore.read_pack(_write(tmp_path, _rewrite_header(data, header)))
        assert e.value.field == field


def _resealed(data: bytearray, layer: int, edit) -> bytearray:
    """Edits a section's raw bytes and rewrites its compression and checksums, so only the
    block-level checks can catch the damage."""
    offset, header = _header(data)
    d = header["layers"][layer]
    raw = bytearray(zstandard.ZstdDecompressor().decompress(bytes(data[d["offset"]:d["offset"] + d["stored_length"]]),
                                                            max_output_size=d["raw_length"]))
    edit(raw, d)
    stored = zstandard.ZstdCompressor(level=3).compress(bytes(raw))
    grow = len(stored) - d["stored_length"]
    body = bytes(data[:d["offset"]]) + stored + bytes(data[d["offset"] + d["stored_length"]:offset])
    d.update(stored_length=len(stored), checksum=xxhash.xxh3_64_hexdigest(stored),
             raw_checksum=xxhash.xxh3_64_hexdigest(bytes(raw)))
    for later in header["layers"][layer + 1:]:
        later["offset"] += grow
    return _assemble(body, header)


@pytest.mark.parametrize("edit, match", [
    (lambda raw, d: raw.__setitem__(slice(0, 1), b"X"), "magic"),                       # keys block magic
    (lambda raw, d: raw.__setitem__(slice(4, 5), b"\x04"), "bits"),                     # int8 block says 4 bits
    (lambda raw, d: raw.__setitem__(slice(28, 32), (10 ** 6).to_bytes(4, "little")), "kept index"),
    (lambda raw, d: raw.__setitem__(slice(d["keys"]["length"] + d["values"]["length"],
                                          d["keys"]["length"] + d["values"]["length"] + 4),
                                    (10 ** 6).to_bytes(4, "little")), "position"),
])
def test_damage_behind_valid_checksums_raises(stored, tmp_path: Path, edit, match: str) -> None:
    data = _resealed(_raw_pack(stored, tmp_path), 1, edit)
    path = _write(tmp_path, data)
    with kvstore.read_pack(path) as pack:
        pack.layer(0)
        with pytest.raises(kvstore.PackError, match=match) as e:
            pack.layer(1)
        assert e.value.layer == 1


def test_a_zstd_frame_that_claims_more_than_its_section_is_refused_before_it_allocates(stored, tmp_path: Path) -> None:
    """A crafted 1 KB section whose zstd frame declares 64 GiB (checksums made to match): the
    decompressor believes the frame and allocates first; the reader refuses it first."""
    data = _raw_pack(stored, tmp_path)
    offset, header = _header(data)
    d = header["layers"][1]
    payload = b"\0" * 1000
    frame = bytes.fromhex("28b52ffd") + b"\xe0" + (1 << 36).to_bytes(8, "little") + \
        ((len(payload) << 3) | 1).to_bytes(3, "little") + payload  # one raw block, content size 64 GiB
    body = bytes(data[:d["offset"]]) + frame + bytes(data[d["offset"] + d["stored_length"]:offset])
    grow = len(frame) - d["stored_length"]
    d.update(stored_length=len(frame), checksum=xxhash.xxh3_64_hexdigest(frame))
    for later in header["layers"][2:]:
        later["offset"] += grow
    with kvstore.read_pack(_write(tmp_path, _assemble(body, header))) as pack:
        with pytest.raises(kvstore.PackError, match="frame declares 68719476736 bytes"):
            pack.layer(1)


def test_a_prefix_count_that_does_not_cut_at_the_prefix_is_refused(stored, tmp_path: Path) -> None:
    """A header (checksum made to match) whose `prefix` count takes the whole layer: the
    prompt's entries would be served as the prefix; the decoded positions refuse it."""
    data = _raw_pack(stored, tmp_path, "lightkv+int8/image-f32")  # stored whole: its sections count the prefix
    _, header = _header(data)
    assert any(d.get("prefix") is not None for d in header["layers"]), "a pack with prefix counts"
    for d in header["layers"]:
        if d.get("prefix") is not None:
            d["prefix"] = d["count"]
    with kvstore.read_pack(_write(tmp_path, _rewrite_header(data, header))) as pack:
        with pytest.raises(kvstore.PackError, match="does not cut the layer at the prefix's end"):
            pack.snapshot(prefix=True)


def test_json_nested_past_the_recursion_limit_is_a_named_error(tmp_path: Path) -> None:
    deep = b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    path = tmp_path / "deep.safetensors"
    path.write_bytes(len(deep).to_bytes(8, "little") + deep)
    with pytest.raises(kvstore.SnapshotError, match="header"):
        kvstore.read(path)


def test_python_m_kvstore_unpack(stored, tmp_path: Path) -> None:
    cli, entry = stored[2]["lightkv+int4g128m0t0/video"]
    pack, want, got = tmp_path / "e.kvpack", tmp_path / "want.safetensors", tmp_path / "got.safetensors"
    cli.run("fetch", entry, "--raw", "-o", str(pack))
    cli.run("fetch", entry, "--dtype", "bf16", "--expand", "-o", str(want))
    cmd = [sys.executable, "-m", "kvstore", "unpack", str(pack), "-o", str(got), "--dtype", "bf16", "--expand"]
    package = str(Path(kvstore.__file__).resolve().parents[1])
    run = {"capture_output": True, "text": True, "env": dict(os.environ, PYTHONPATH=package)}
    done = subprocess.run(cmd, **run)
    assert done.returncode == 0, done.stderr
    assert got.read_bytes() == want.read_bytes()
    cli.run("fetch", entry, "--prefix", "-o", str(want))
    done = subprocess.run([*cmd[:7], "--prefix"], **run)
    assert done.returncode == 0, done.stderr
    assert got.read_bytes() == want.read_bytes() and kvstore.read(got).input_ids.dtype == np.int32
    done = subprocess.run([*cmd[:7], "--prefix", "--entry", "e" * 64], **run)  # a pack whose header names none
    assert done.returncode == 0 and kvstore.read(got).prefix_of == "e" * 64
    done = subprocess.run([*cmd[:5], "-o", str(tmp_path)], **run)  # a folder as the output: the command line's fault
    assert done.returncode == 1, done.stderr

    damaged = bytearray(pack.read_bytes())
    damaged[100] ^= 1
    pack.write_bytes(bytes(damaged))
    got.unlink()
    done = subprocess.run(cmd, **run)
    assert done.returncode == 3 and "checksum" in done.stderr
    assert not got.exists() and list(tmp_path.glob("got.safetensors*")) == []


def test_expand_without_members_raises_like_fetch(cli: CLI, tmp_path: Path) -> None:
    # An input that arrived merged: positions and sizes, but no member positions.
    snap = kvstore.read(cli.synth(tmp_path / "t.safetensors", "--preset", "tiny"))
    snap.seq_len = snap.original_length
    keep = np.array([0, 1, 2, 3, 4, 6] + list(range(8, snap.original_length)), dtype=np.int32)
    sizes = np.ones(keep.size, dtype=np.int32)
    sizes[4], sizes[5] = 2, 2
    for layer in snap.layers:
        layer.key, layer.value = layer.key[:, keep], layer.value[:, keep]
        layer.positions, layer.sizes = keep, sizes
    snap.seq_len = snap.original_length
    kvstore.write(snap, tmp_path / "merged.safetensors")
    entry = cli.ingest(tmp_path / "merged.safetensors")
    assert cli.run("fetch", entry, "--expand", "-o", str(tmp_path / "x.safetensors"), check=False).returncode == 3
    cli.run("fetch", entry, "--raw", "-o", str(tmp_path / "m.kvpack"))
    with pytest.raises(kvstore.ExpandError, match="position 4 stands for 2 tokens"):
        kvstore.unpack(tmp_path / "m.kvpack", tmp_path / "y.safetensors", expand=True)
    assert not (tmp_path / "y.safetensors").exists()
    kvstore.unpack(tmp_path / "m.kvpack", tmp_path / "y.safetensors")
    cli.run("fetch", entry, "-o", str(tmp_path / "x.safetensors"))
    assert (tmp_path / "x.safetensors").read_bytes() == (tmp_path / "y.safetensors").read_bytes()
