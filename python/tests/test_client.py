"""`Client` over the `kvstore` binary: ingest, fetch, fetch raw, ls, and typed errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import kvstore
from conftest import CLI


def test_ingest_ls_fetch_round_trip(cli: CLI, tmp_path: Path) -> None:
    snap_path = cli.synth(tmp_path / "t.safetensors", "--preset", "tiny")
    store = kvstore.Client(store=tmp_path / "store", binary=cli.binary)
    entry = store.ingest(snap_path, policy="lightkv+int8")
    [listed] = store.ls()
    assert listed.id == entry and listed.policy.startswith("lightkv+int8") and listed.layers == 3
    assert listed.sources and store.ls(source=listed.sources[0])[0].id == entry
    assert store.ls(source="sha256:" + "0" * 64) == []
    fetched = store.fetch_snapshot(entry[:8], dtype="f32")
    with kvstore.read_pack(store.fetch_raw(entry, tmp_path / "e.kvpack")) as pack:
        for i, layer in enumerate(pack.layers("f32")):
            assert np.array_equal(layer.key, fetched.layers[i].key)
    by_key = store.fetch("synth-tiny-0", tmp_path / "k.safetensors", by_key=True)
    assert kvstore.read(by_key).layers[2].count == fetched.layers[2].count
    assert store.ingest_many([snap_path]) == [entry]  # already stored: same id
    shown = store.show(entry[:8])
    assert shown == listed and store.show("synth-tiny-0", by_key=True).id == entry
    with kvstore.read_pack(tmp_path / "e.kvpack") as pack:
        for i, layer in enumerate(store.fetch_layers(entry, dtype="f16")):
            assert np.array_equal(layer.value, pack.layer(i, "f16").value)


def test_errors_follow_exit_codes(cli: CLI, tmp_path: Path) -> None:
    store = kvstore.Client(store=tmp_path / "store", binary=cli.binary)
    with pytest.raises(kvstore.NotFoundError) as e:
        store.fetch("ffff", tmp_path / "x.safetensors")
    assert e.value.returncode == 2 and "ffff" in str(e.value)
    snap_path = cli.synth(tmp_path / "t.safetensors", "--preset", "tiny")
    with pytest.raises(kvstore.UsageError):
        store.ingest(snap_path, policy="lightkv+int7")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10" + b"\0" * 7 + b"{}")
    with pytest.raises(kvstore.CorruptError) as c:
        store.ingest(bad)
    assert str(bad) in str(c.value)


def test_missing_binary_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KVSTORE_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="KVSTORE_BIN"):
        kvstore.Client()
