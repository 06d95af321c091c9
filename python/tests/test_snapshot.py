"""kvsnap read/write: round trips, safetensors compatibility, and the Swift reader's
validation (every file Python rejects, `kvstore ingest` rejects too, with the same field)."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

import kvstore
from conftest import CLI


@pytest.fixture
def tiny(cli: CLI, tmp_path: Path) -> kvstore.Snapshot:
    return kvstore.read(cli.synth(tmp_path / "tiny.safetensors", "--preset", "tiny"))


def test_read_gives_the_synth_snapshot(tiny: kvstore.Snapshot) -> None:
    assert tiny.model == "synth/tiny" and len(tiny.layers) == 3 and tiny.dtype == "F16"
    assert [s.kind for s in tiny.spans] == ["text", "image", "text"]
    assert tiny.spans[1].grid == (8, 8) and tiny.spans[1].source.startswith("sha256:")
    assert tiny.layers[0].key.shape == (2, 76, 16) and tiny.layers[0].prompt_query.shape[0] == 4
    assert tiny.key == "synth-tiny-0" and not tiny.is_compressed


@pytest.mark.parametrize("dtype", ["F16", "BF16", "F32"])
def test_write_then_read_round_trips_and_safetensors_reads_it(cli: CLI, tiny: kvstore.Snapshot, tmp_path: Path,
                                                              dtype: str) -> None:
    tiny.dtype = dtype
    path = tmp_path / "out.safetensors"
    kvstore.write(tiny, path)
    back = kvstore.read(path)
    assert back.dtype == dtype and back.spans == tiny.spans and back.metadata == tiny.metadata
    want = tiny.layers[1].key.astype(np.float32)
    if dtype == "BF16":
        want = kvstore.dtypes.bf16_to_f32(kvstore.dtypes.bf16_bits(want))
    assert np.array_equal(back.layers[1].key.astype(np.float32), want)
    tensors = load_file(str(path)) if dtype != "BF16" else None
    if tensors is not None:
        assert np.array_equal(tensors["layers.1.key"].astype(np.float32), want)
    assert len(cli.ingest(path)) == 64  # the binary accepts what Python writes


def test_an_unchanged_round_trip_is_the_same_entry(cli: CLI, tiny: kvstore.Snapshot, tmp_path: Path) -> None:
    kvstore.write(tiny, tmp_path / "copy.safetensors")
    original = cli.ingest(tmp_path / "tiny.safetensors")
    [line] = json.loads(cli.run("ingest", "--json", str(tmp_path / "copy.safetensors")).stdout)
    assert line["id"] == original and line["already_stored"]


def _bad(snap: kvstore.Snapshot, case: str) -> str:
    """Breaks `snap` the way `case` says; returns the field the error must name."""
    s, l0 = snap, snap.layers[0]
    if case == "gap":
        s.spans[1].start += 1
        return "kvsnap.spans"
    if case == "grid":
        s.spans[1].grid = (8, 7)
        return "kvsnap.spans"
    if case == "video-frames":
        s.spans[1].kind = "video"
        return "kvsnap.spans"
    if case == "short-spans":
        s.spans[-1].end -= 1
        return "kvsnap.spans"
    if case == "value-shape":
        s.layers[2].value = s.layers[2].value[:, :-1]
        return "layers.2.value"
    if case == "key-heads":
        s.layers[1].key = np.concatenate([s.layers[1].key] * 2)
        return "layers.1.key"
    if case == "layer-length":
        for kind in ("key", "value"):
            setattr(s.layers[1], kind, getattr(s.layers[1], kind)[:, :-1])
        return "layers.1.key"
    if case == "query-heads":
        s.layers[1].prompt_query = s.layers[1].prompt_query[:3]
        return "layers.1.prompt_query"
    if case == "nan":
        k = l0.key.copy()
        k[0, 5, 3] = np.nan
        l0.key = k
        return "layers.0.key"
    n = l0.count
    for layer in s.layers:
        layer.positions = np.arange(n, dtype=np.int32)
        layer.sizes = np.ones(n, dtype=np.int32)
    s.seq_len = n
    if case == "positions-descend":
        s.layers[1].positions = s.layers[1].positions[::-1].copy()
        return "layers.1.positions"
    if case == "size-zero":
        s.layers[2].sizes[7] = 0
        return "layers.2.positions"
    if case == "sizes-too-many":
        s.layers[0].sizes[:] = 2
        return "layers.0.positions"
    if case == "no-seq-len":
        s.seq_len = None
        return "kvsnap.seq_len"
    if case == "sizes-missing":
        s.layers[1].sizes = None
        return "layers.1.sizes"
    raise AssertionError(case)


CASES = ["gap", "grid", "video-frames", "short-spans", "value-shape", "key-heads", "layer-length", "query-heads",
         "nan", "positions-descend", "size-zero", "sizes-too-many", "no-seq-len", "sizes-missing"]


@pytest.mark.parametrize("case", CASES)
def test_write_refuses_what_the_reader_rejects_and_writes_nothing(tiny: kvstore.Snapshot, tmp_path: Path,
                                                                   case: str) -> None:
    field = _bad(tiny, case)
    with pytest.raises(kvstore.SnapshotError) as e:
        kvstore.write(tiny, tmp_path / "bad.safetensors")
    assert e.value.field == field, str(e.value)
    assert list(tmp_path.glob("bad.safetensors*")) == []


@pytest.mark.parametrize("case", CASES)
def test_read_and_kvstore_ingest_reject_the_same_files(cli: CLI, tiny: kvstore.Snapshot, tmp_path: Path,
                                                       case: str) -> None:
    field = _bad(tiny, case)
    path = tmp_path / "bad.safetensors"
    _write_unchecked(tiny, path)
    with pytest.raises(kvstore.SnapshotError) as e:
        kvstore.read(path)
    assert e.value.field == field and e.value.path == str(path)
    done = cli.run("ingest", str(path), check=False)
    assert done.returncode == 3, done.stderr


def _write_unchecked(snap: kvstore.Snapshot, path: Path) -> None:
    """Writes without validating, as a faulty producer would."""
    original = kvstore.Snapshot.validate
    kvstore.Snapshot.validate = lambda self, check_finite=True, path=None: None  # type: ignore[method-assign]
    try:
        kvstore.write(copy.copy(snap), path)
    finally:
        kvstore.Snapshot.validate = original  # type: ignore[method-assign]


@pytest.mark.parametrize("edit, field", [
    (lambda h: h.replace(b'"kvsnap.version":"1"', b'"kvsnap.version":"2"'), "kvsnap.version"),
    (lambda h: h.replace(b'"layers.2.value"', b'"layers.2.valu3"'), "layers.2.valu3"),
    (lambda h: h.replace(b'"layers.1.key"', b'"layers.7.key"'), "layers.3.key"),
    (lambda h: h.replace(b'"layers.0.probe_query"', b'"layers.0.probe_qwery"'), "layers.0.probe_qwery"),
])
def test_header_level_damage_names_the_field(cli: CLI, tmp_path: Path, edit, field: str) -> None:
    data = (cli.synth(tmp_path / "t.safetensors", "--preset", "tiny")).read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = edit(data[8:8 + n])
    assert len(header) == n
    path = tmp_path / "bad.safetensors"
    path.write_bytes(data[:8] + header + data[8 + n:])
    with pytest.raises(kvstore.SnapshotError) as e:
        kvstore.read(path)
    assert e.value.field == field, str(e.value)
    assert cli.run("ingest", str(path), check=False).returncode == 3


def test_the_core_does_not_import_torch() -> None:
    import subprocess
    import sys
    code = "import kvstore, sys; kvstore.read_pack; assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1]).returncode == 0


def test_a_next_position_ingest_would_refuse_is_refused(tiny: kvstore.Snapshot, tmp_path: Path) -> None:
    """The reader validates as `kvstore ingest` does: a next position past 64 bits is no integer."""
    raw = (tmp_path / "t.safetensors")
    kvstore.write(tiny, raw)
    data = raw.read_bytes()
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + length])
    header["__metadata__"]["kvsnap.next_position"] = "9" * 40
    text = json.dumps(header).encode()  # data offsets count from the data's start: the header may grow
    path = tmp_path / "far.safetensors"
    path.write_bytes(len(text).to_bytes(8, "little") + text + data[8 + length:])
    with pytest.raises(kvstore.SnapshotError, match="not a non-negative integer"):
        kvstore.read(path)
