"""`Client` over the `kvstore` binary: ingest, fetch, fetch raw, ls, and typed errors."""
from __future__ import annotations

import json
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
    with pytest.warns(UserWarning, match="already stored"):
        assert store.ingest_many([snap_path]) == [entry]  # already stored with another policy: same id
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


def test_a_policy_is_checked_without_a_store(cli: CLI, tmp_path: Path) -> None:
    store = kvstore.Client(store=tmp_path / "store", binary=cli.binary)
    assert store.check_policy("lightkv+int8") == "lightkv+int8g32+zstd3"
    assert store.check_policy("lz4") == "none+lz4"
    with pytest.raises(kvstore.UsageError, match='part "int3": bits must be 8, 4 or 2'):
        store.check_policy("lightkv+int3")
    named = tmp_path / "policies.toml"
    named.write_text('kind = "policies"\n\n[small]\nreduction = "airmerge20"\nquantization = "int4g128m0t0r1"\n')
    assert store.check_policy("small", policies=str(named)).startswith("airmerge20")
    assert not (tmp_path / "store").exists(), "checking a policy creates no store"


def test_missing_binary_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KVSTORE_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="KVSTORE_BIN"):
        kvstore.Client()


def test_ingest_again_with_another_policy_says_so_and_repack_changes_it(cli: CLI, tmp_path: Path) -> None:
    snap_path = cli.synth(tmp_path / "t.safetensors", "--preset", "tiny")
    store = kvstore.Client(store=tmp_path / "store", binary=cli.binary)
    first = store.ingest(snap_path, policy="lightkv+int8")
    assert not first.already_stored and first.entry is not None and first.entry.id == first
    with pytest.warns(UserWarning, match=f"already stored as {first}.*kvstore repack"):
        again = store.ingest(snap_path, policy="none")
    assert again == first and again.already_stored and again.policy == first.policy
    [done] = store.repack(first[:8], policy="none")
    assert (done["id"], done["old_policy"], done["policy"], done["outcome"]) == (first, first.policy, "none+zstd3", "repacked")
    assert done["new_bytes"] > done["old_bytes"] and store.show(first).policy == "none+zstd3"
    assert [e.id for e in store.ls()] == [first]


def test_a_missing_store_is_not_found_and_not_created(kvstore_bin: str, tmp_path: Path) -> None:
    typo = tmp_path / "typo"
    store = kvstore.Client(store=typo, binary=kvstore_bin)
    for call in (store.ls, store.stats, store.verify, lambda: store.show("ab"), lambda: store.pin("ab")):
        with pytest.raises(kvstore.NotFoundError, match=f"no store at {typo}"):
            call()
    assert not typo.exists()


def test_usage_errors_read_as_lines(cli: CLI, tmp_path: Path) -> None:
    store = kvstore.Client(store=tmp_path / "store", binary=cli.binary)
    store.ingest(cli.synth(tmp_path / "t.safetensors", "--preset", "tiny"))
    with pytest.raises(kvstore.UsageError) as e:
        store.fetch("ab", tmp_path / "x", dtype="f64")
    assert "\\n" not in str(e.value) and "--dtype f64: expected f16, bf16 or f32\nUsage: kvstore fetch" in str(e.value)
    with pytest.raises(kvstore.UsageError, match="an entry id"):
        store.show("")


def test_a_missing_input_is_file_not_found_naming_it(kvstore_bin: str, tmp_path: Path) -> None:
    missing = tmp_path / "nope.safetensors"
    store = kvstore.Client(store=tmp_path / "store", binary=kvstore_bin)
    for call in (lambda: store.ingest(missing), lambda: kvstore.read(missing)):
        with pytest.raises(FileNotFoundError, match=str(missing)) as e:
            call()
        assert e.value.filename == str(missing)


def test_pin_stats_verify_and_ls_filters(cli: CLI, tmp_path: Path) -> None:
    store = kvstore.Client(store=tmp_path / "store", binary=cli.binary)
    ids = [store.ingest(cli.synth(tmp_path / f"t{i}.safetensors", "--preset", "tiny", "--seed", str(i))) for i in range(2)]
    store.pin(ids[0][:8])
    assert [e.pinned for e in map(store.show, ids)] == [True, False]
    store.pin(ids[0], pinned=False)
    assert not store.show(ids[0]).pinned
    stats = store.stats()
    assert stats["entries"] == 2 and stats["bytes_in"] == sum(store.show(i).bytes_in for i in ids)
    assert store.verify()["checked"] == 2 and store.verify(ids[1])["checked"] == 1
    model = store.show(ids[0]).model
    assert {e.id for e in store.ls(model=model)} == set(ids) and store.ls(model="no/such-model") == []
    assert len(store.ls(limit=1)) == 1
    key = store.show(ids[1]).producer_key
    assert key and [e.id for e in store.ls(key=key)] == [ids[1]]
    blob = Path(json.loads(cli.run("show", "--json", ids[1]).stdout)["blob_path"])
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 1
    blob.write_bytes(bytes(data))
    with pytest.raises(kvstore.CorruptError, match=ids[1]):
        store.verify()


def test_names_and_paths_are_never_read_as_options(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry name starting with "-" once reached the binary as an option: `remove("--store",
    "victim", id)` removed an entry from another store, `pin("--off", id)` unpinned."""
    binary = str(Path(cli.binary).resolve())  # the test goes into tmp_path below
    victim = kvstore.Client(store=tmp_path / "victim", binary=binary)
    mine = kvstore.Client(store=tmp_path / "mine", binary=binary)
    entry = victim.ingest(cli.synth(tmp_path / "a.safetensors", "--preset", "tiny"))
    for call in (lambda: mine.remove("--store", str(tmp_path / "victim"), entry), lambda: mine.pin("--off", entry),
                 lambda: mine.fetch("-h", tmp_path / "x"), lambda: mine.show("--version")):
        with pytest.raises(kvstore.UsageError, match="does not start with '-'"):
            call()
    assert [e.id for e in victim.ls()] == [entry]
    with pytest.raises(kvstore.UsageError, match="file path"):
        victim.fetch(entry, "-")
    monkeypatch.chdir(tmp_path)
    assert victim.fetch(entry, "-out.safetensors") == "-out.safetensors" and Path("-out.safetensors").exists()


def test_ids_and_file_lists_that_are_not_what_they_seem_are_refused(cli, tmp_path: Path) -> None:
    """`match(model, "123")` once looked up ids [1, 2, 3], `[1.7, 2.2]` ids [1, 2], and
    `ingest_many("file")` each character of the name as a file."""
    store = kvstore.Client(store=tmp_path / "s", binary=cli.binary)
    for ids, problem in (("123", "not the string"), ([1.7, 2.2], "integers"), ([True, 2], "integers")):
        with pytest.raises(kvstore.UsageError, match=problem):
            store.match("m", ids)
    with pytest.raises(kvstore.UsageError, match="a list of files"):
        store.ingest_many(str(tmp_path / "x.safetensors"))
    assert store.match("m", np.array([1, 2, 3])) is None
