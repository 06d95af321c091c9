"""`Client(url)` against the real `kvstore serve` on 127.0.0.1 (a port the system picks), with a
tokens file: every answer is checked against what the CLI gives for the same store."""
from __future__ import annotations

import json
import re
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

import kvstore
from conftest import CLI

READER, WRITER = "r3ad-0123456789abcdef", "wr1te-0123456789abcdef"


@dataclass
class Server:
    url: str
    cli: CLI
    process: subprocess.Popen[str]

    def client(self, token: str | None = WRITER) -> kvstore.Client:
        return kvstore.Client(self.url, token=token, timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        assert self.process.wait(timeout=30) == 0, "SIGTERM stops the server with status 0"
        if self.process.stdout is not None:
            self.process.stdout.close()


def serve(kvstore_bin: str, d: Path, *args: str) -> Server:
    """`kvstore serve --listen 127.0.0.1:0 --tokens FILE`, ready once it prints its address."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "tokens").write_text(f"# scopes\n{READER} read\n{WRITER} write\n")
    cli = CLI(kvstore_bin, d / "store")
    process = subprocess.Popen([kvstore_bin, "serve", "--store", str(cli.store), "--listen", "127.0.0.1:0",
                                "--tokens", str(d / "tokens"), *args], stdout=subprocess.PIPE,
                               stderr=open(d / "serve.err", "w"), text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    found = re.search(r"listening on (http://\S+)", line)
    if not found:
        process.kill()
        process.wait()
        pytest.fail(f"kvstore serve did not start: {line!r} {(d / 'serve.err').read_text()}")
    return Server(found.group(1), cli, process)


@pytest.fixture(scope="module")
def server(kvstore_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = serve(kvstore_bin, tmp_path_factory.mktemp("serve"), "--max-upload", "1MB")
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def snapshots(server: Server, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("snaps")
    image = ("--preset", "tiny", "--layers", "4", "--grid", "8x8", "--head-dim", "40")
    return [server.cli.synth(d / f"s{seed}.safetensors", *image, "--seed", str(seed)) for seed in range(3)]


def test_ingest_then_fetch_gives_the_cli_bytes(server: Server, snapshots: list[Path], tmp_path: Path) -> None:
    store = server.client()
    assert isinstance(store, kvstore.HTTPClient)
    entry = store.ingest(snapshots[0], policy="lightkv+int8")
    again = store.ingest(snapshots[0], policy="none")  # 200: already stored, with its own policy
    assert again == entry and again.already_stored and again.policy == entry.policy != "none+zstd3"
    for dtype, expand in (("f16", False), ("bf16", True)):
        got = store.fetch(entry[:10], tmp_path / f"http-{dtype}.safetensors", dtype=dtype, expand=expand)
        want = tmp_path / f"cli-{dtype}.safetensors"
        server.cli.run("fetch", entry, "-o", str(want), "--dtype", dtype, *(["--expand"] if expand else []))
        assert Path(got).read_bytes() == want.read_bytes()
    raw = store.fetch_raw(entry, tmp_path / "http.kvpack")
    server.cli.run("fetch", entry, "--raw", "-o", str(tmp_path / "cli.kvpack"))
    assert Path(raw).read_bytes() == (tmp_path / "cli.kvpack").read_bytes()
    snap = store.fetch_snapshot(entry, dtype="f32")
    assert len(snap.layers) == 4 and snap.layers[0].key.dtype == np.float32
    # Caching: the ETag of the copy on disk answers 304 and leaves the file alone.
    out = tmp_path / "cached.safetensors"
    tag = store.fetch_if_changed(entry, out)
    assert tag and out.read_bytes() == (tmp_path / "cli-f16.safetensors").read_bytes()
    out.write_bytes(b"mine")
    assert store.fetch_if_changed(entry, out, etag=tag) is None and out.read_bytes() == b"mine"
    assert store.fetch_if_changed(entry, out, etag=tag, dtype="f32") not in (None, tag)


def test_fetch_layers_equals_the_raw_pack_layer_by_layer(server: Server, snapshots: list[Path],
                                                        tmp_path: Path) -> None:
    store = server.client(READER)
    entry = server.cli.ingest(snapshots[1], "airmerge20")
    raw = tmp_path / "entry.kvpack"
    server.cli.run("fetch", entry, "--raw", "-o", str(raw))
    with kvstore.read_pack(raw) as pack:
        for dtype, expand in (("f16", False), ("f32", True)):
            layers = list(store.fetch_layers(entry[:12], dtype=dtype, expand=expand))
            assert len(layers) == pack.num_layers == 4
            for i, got in enumerate(layers):
                want = pack.expanded_layer(i, dtype) if expand else pack.layer(i, dtype)
                for name in ("key", "value", "positions", "sizes"):
                    a, b = getattr(got, name), getattr(want, name)
                    assert a.dtype == b.dtype and np.array_equal(a, b), (i, name)
                assert (got.members is None) == (want.members is None)
                if want.members is not None:
                    assert np.array_equal(got.members, want.members)
    assert any(layer.count < 64 for layer in store.fetch_layers(entry)), "the policy merged something"


def test_ls_pages_and_show(server: Server, snapshots: list[Path]) -> None:
    store = server.client(READER)
    ids = {server.cli.ingest(p, "none") for p in snapshots}  # some may be stored already: same ids
    listed = store.ls(page_size=1)
    assert len(listed) >= 3, "three pages at least"
    cli = json.loads(server.cli.run("ls", "--json").stdout)
    assert [e.id for e in listed] == sorted(o["id"] for o in cli) and ids <= {e.id for e in listed}
    assert [e.id for e in store.ls(page_size=2)] == [e.id for e in listed] == [e.id for e in store.ls()]
    assert all(e.spans is None for e in listed), "a listing carries summaries"
    entry = next(e for e in listed if e.id == min(ids))
    shown = store.show(entry.id[:8])
    assert shown.id == entry.id and shown.spans and shown.compression is not None and shown.layers == 4
    local = kvstore.Client(server.cli.store, binary=server.cli.binary).show(entry.id)
    assert (shown.spans, shown.compression, shown.producer_key, shown.bytes_out) == \
        (local.spans, local.compression, local.producer_key, local.bytes_out)
    by_source = json.loads(server.cli.run("ls", "--json", "--source", shown.sources[0]).stdout)
    assert [e.id for e in store.ls(source=shown.sources[0], page_size=1)] == sorted(o["id"] for o in by_source)
    assert entry.id in {o["id"] for o in by_source}
    assert store.ls(model="no/such-model") == []
    assert shown.producer_key and store.show(shown.producer_key, by_key=True).producer_key == shown.producer_key
    keyed = store.ls(key=shown.producer_key)
    assert keyed and all(e.producer_key == shown.producer_key for e in keyed)


def test_errors_map_to_the_named_exceptions(server: Server, snapshots: list[Path], tmp_path: Path) -> None:
    with pytest.raises(kvstore.UnauthorizedError) as e:
        server.client(None).ls()
    assert e.value.status == 401 and e.value.code == "unauthorized"
    with pytest.raises(kvstore.UnauthorizedError):
        server.client(READER + "x").show("0")
    with pytest.raises(kvstore.ForbiddenError) as f:
        server.client(READER).ingest(snapshots[2])
    assert f.value.status == 403 and isinstance(f.value, PermissionError)
    store = server.client()
    with pytest.raises(kvstore.NotFoundError) as n:
        store.show("ffff")
    assert n.value.status == 404 and n.value.returncode == 2 and "ffff" in str(n.value)
    with pytest.raises(kvstore.NotFoundError):
        store.fetch("ffff", tmp_path / "x.safetensors")
    assert not list(tmp_path.iterdir()), "a failed fetch leaves nothing behind"
    with pytest.raises(kvstore.NotFoundError):
        list(store.fetch_layers("no-such-key", by_key=True))
    with pytest.raises(kvstore.UsageError) as u:
        store.ingest(snapshots[2], policy="lightkv+int7")
    assert u.value.status == 400 and "int7" in str(u.value)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10" + b"\0" * 7 + b"{}")
    with pytest.raises(kvstore.CorruptError) as c:
        store.ingest(bad)
    assert c.value.status == 422 and c.value.code == "invalid"
    huge = tmp_path / "huge.safetensors"
    huge.write_bytes(b"\0" * (3 << 20))
    with pytest.raises(kvstore.UsageError) as t:
        store.ingest(huge)
    assert t.value.status == 413 and t.value.code == "too_large"
    assert WRITER not in str(c.value) and READER not in str(f.value)


def test_a_damaged_entry_never_arrives_whole(kvstore_bin: str, tmp_path: Path) -> None:
    server = serve(kvstore_bin, tmp_path / "serve")
    try:
        big = server.cli.synth(tmp_path / "big.safetensors", "--preset", "tiny", "--layers", "6", "--grid", "8x8",
                               "--head-dim", "64", ids=False)
        entry = server.cli.ingest(big, "lightkv")  # stored whole: one pack to range-read
        blob = Path(json.loads(server.cli.run("show", "--json", entry).stdout)["blob_path"])
        store = server.client(READER)
        layout = store._layout(f"/v1/entries/{entry}", entry)
        last = layout.header.layers[-1]
        data = bytearray(blob.read_bytes())
        data[last.offset + last.stored_length // 2] ^= 0xFF
        blob.chmod(0o644)
        blob.write_bytes(bytes(data))
        out = tmp_path / "out"
        out.mkdir()
        with pytest.raises(kvstore.CorruptError) as c:
            store.fetch(entry, out / "x.safetensors")  # the server checks the blob's content name first
        assert c.value.status == 500 and c.value.code == "corrupt"
        assert not list(out.iterdir()), "nothing half-written"
        # Read layer by layer, the file is proven against its content name before its layout
        # is given (once per file state: this one was written since the layout above).
        with pytest.raises(kvstore.CorruptError) as c:
            next(store.fetch_layers(entry, dtype="f16"))
        assert c.value.status == 500 and c.value.code == "corrupt"
    finally:
        server.stop()


class Stub:
    """A socket on 127.0.0.1 that answers each connection with the next canned response: for
    what the real server does only by accident (a connection cut mid-stream, a busy index)."""

    def __init__(self, *responses: bytes) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.thread = threading.Thread(target=self._answer, args=(responses,), daemon=True)
        self.thread.start()

    def _answer(self, responses: tuple[bytes, ...]) -> None:
        for response in responses:
            conn, _ = self.listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(response)

    def close(self) -> None:
        self.thread.join(timeout=10)
        self.listener.close()


def test_a_transfer_cut_short_raises_and_leaves_nothing(tmp_path: Path) -> None:
    """A server that stops mid-stream (as `kvstore serve` does when a layer fails to decode
    after the first byte): a socket that promises 1000 bytes and sends 10."""
    short = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n" + b"k" * 10
    stub = Stub(short, short)
    try:
        store = kvstore.Client(stub.url, token=READER, timeout=10)
        with pytest.raises(kvstore.CorruptError, match="after 10 of 1000 bytes"):
            store.fetch("ab12", tmp_path / "a.safetensors")
        with pytest.raises(kvstore.CorruptError, match="after 10 of 1000 bytes"):
            store.fetch_raw("ab12", tmp_path / "b.kvpack")
        assert not list(tmp_path.iterdir()), "no partial file"
    finally:
        stub.close()


def test_answers_that_are_not_kvstore_serves_are_named_not_leaked() -> None:
    """A proxy's HTML page, an answer without the entry's fields, a listing that pages on
    without entries: a named error, not a JSONDecodeError, a KeyError or an endless loop."""
    html = b"<html>login</html>"
    page = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(html) + html
    fields = b'{"nothing": 1}'
    bare = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(fields) + fields
    empty = b'{"entries": [], "next": "x"}'
    endless = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(empty) + empty
    stub = Stub(page, bare, endless)
    try:
        client = kvstore.Client(stub.url)
        with pytest.raises(kvstore.CommandError, match="not JSON .*text/html"):
            client.show("abc")
        with pytest.raises(kvstore.CommandError, match="lacks 'id'"):
            client.show("abc")
        with pytest.raises(kvstore.CommandError, match="pages on without giving entries"):
            client.ls()
    finally:
        stub.close()


def test_a_busy_server_says_when_to_retry() -> None:
    body = b'{"error": "database is locked", "code": "transient"}'
    stub = Stub(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 5\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
    try:
        with pytest.raises(kvstore.TransientError, match="database is locked") as e:
            kvstore.Client(stub.url, timeout=10).ls()
        assert e.value.retry_after == 5 and e.value.status == 503 and e.value.returncode == 4
    finally:
        stub.close()


def test_bad_arguments_are_refused_before_any_request() -> None:
    with pytest.raises(ValueError, match="expected http"):
        kvstore.Client("http://")
    with pytest.raises(TypeError, match="binary"):
        kvstore.Client("http://127.0.0.1:1", binary="/bin/kvstore")
    with pytest.raises(TypeError, match="token"):
        kvstore.Client("/var/lib/kvstore", token=READER)


def test_a_repack_mid_read_restarts_or_refuses_to_mix_packs(kvstore_bin: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    server = serve(kvstore_bin, tmp_path / "serve")
    try:
        snap = server.cli.synth(tmp_path / "s.safetensors", "--preset", "tiny", "--layers", "4", ids=False)
        entry = server.cli.ingest(snap, "lightkv")  # stored whole: one pack to range-read
        store = server.client(READER)

        def repack(policy: str) -> None:  # what nightly compaction does to a cold entry
            server.cli.run("compact", "--cold-days", "0", "--cold-policy", policy, "--verify-sample", "0")

        read_layout = kvstore.HTTPClient._layout
        tags: list[str] = []

        def layout_then_repack(self: kvstore.HTTPClient, path: str, *args: object, **kw: object) -> object:
            pack = read_layout(self, path, *args, **kw)
            if not tags:
                repack("none+lz4")
            tags.append(pack.tag)
            return pack

        monkeypatch.setattr(kvstore.HTTPClient, "_layout", layout_then_repack)
        layers = list(store.fetch_layers(entry, dtype="f16"))
        monkeypatch.undo()
        assert len(tags) == 2 and tags[0] != tags[1], "412 before the first layer: the layout is read again"
        server.cli.run("fetch", entry, "--raw", "-o", str(tmp_path / "now.kvpack"))
        with kvstore.read_pack(tmp_path / "now.kvpack") as pack:
            assert pack.header.layers[0].codec == "lz4"
            for i, layer in enumerate(layers):
                assert np.array_equal(layer.key, pack.layer(i, "f16").key)
        reading = store.fetch_layers(entry)
        next(reading)
        repack("none+zstd19")
        with pytest.raises(kvstore.TransientError, match="re-packed") as e:
            next(reading)
        assert e.value.status == 412
    finally:
        server.stop()


def test_a_segmented_entry_reads_by_ranges_with_its_segment(server: Server, tmp_path: Path) -> None:
    server.cli.synth(tmp_path / "q", "--preset", "tiny", "--questions", "2")
    entry = server.cli.ingest(sorted((tmp_path / "q").glob("*.safetensors"))[0], "int8")
    store = server.client(READER)
    fetched = kvstore.read(store.fetch(entry, tmp_path / "e.safetensors"))
    out = tmp_path / "raw"
    out.mkdir()
    with kvstore.read_pack(store.fetch_raw(entry, out / "e.kvpack")) as pack:  # the segment lands beside it
        assert pack.segment is not None and len(list(out.iterdir())) == 2
        assert all(np.array_equal(pack.layer(i).key, layer.key) for i, layer in enumerate(fetched.layers))
    layers = list(store.fetch_layers(entry))  # ranged reads of the part and of its segment, joined
    assert [layer.count for layer in layers] == [layer.count for layer in fetched.layers]
    assert all(np.array_equal(a.key, b.key) and np.array_equal(a.positions, b.positions)
               for a, b in zip(layers, fetched.layers))
    whole = server.cli.ingest(server.cli.synth(tmp_path / "w.safetensors", "--preset", "tiny", "--seed", "7", ids=False),
                           "lightkv")
    with pytest.raises(kvstore.NotFoundError, match="stored whole"):
        store._json("GET", f"/v1/entries/{whole}/layout", {"segment": "1"})


def test_a_segment_the_part_does_not_name_is_never_joined(server: Server, tmp_path: Path, monkeypatch) -> None:
    """A server (a bug, a stale cache, a proxy) that answers a part's segment layout with
    another image's segment, of the same length and token ids: refused, not joined."""
    a, b = (server.cli.ingest(server.cli.synth(tmp_path / f"s{seed}.safetensors", "--preset", "tiny", "--seed", str(seed)),
                              "int8") for seed in (1, 5))
    store = server.client(READER)
    good = tmp_path / "good"
    good.mkdir()
    store.fetch_raw(a, good / "a.kvpack")
    [segment_file] = [p for p in good.iterdir() if p.name != "a.kvpack"]
    beside = tmp_path / segment_file.name  # a good copy beside the output, as a sibling's fetch leaves it
    beside.write_bytes(segment_file.read_bytes())
    real, download = store._json, store._download

    def crossed(method, path, query=None, **kw):  # b's segment, said to be a's, If-Match ignored
        if query and query.get("segment") == "1" and path == f"/v1/entries/{a}/layout":
            layout, resp = real(method, f"/v1/entries/{b}/layout", query)
            return dict(layout, id=a), resp
        return real(method, path, query, **kw)

    def crossed_download(path, query, output, etag=None, **kw):
        if query.get("segment") == "1" and path == f"/v1/entries/{a}/pack":
            return download(f"/v1/entries/{b}/pack", query, output, etag)
        return download(path, query, output, etag, **kw)

    monkeypatch.setattr(store, "_json", crossed)
    monkeypatch.setattr(store, "_download", crossed_download)
    with pytest.raises(kvstore.PackError, match="the entry's part names"):
        list(store.fetch_layers(a))
    with pytest.raises(kvstore.CorruptError, match="segment"):
        store.fetch_raw(a, tmp_path / "e.kvpack")
    assert not (tmp_path / "e.kvpack").exists(), "the part is put in place only with its segment"
    assert beside.read_bytes() == segment_file.read_bytes(), "the good copy beside it is not replaced"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith((".part", ".tmp"))], "no temporary left"


def test_pin_over_http_and_what_the_api_does_not_offer(server: Server, snapshots: list[Path]) -> None:
    store = server.client()
    entry = store.ingest(snapshots[1])
    store.pin(entry[:8])
    assert store.show(entry).pinned
    store.pin(entry, pinned=False)
    assert not store.show(entry).pinned
    with pytest.raises(kvstore.ForbiddenError):
        server.client(READER).pin(entry)
    for call in (store.stats, store.verify, lambda: store.repack(entry, policy="none")):
        with pytest.raises(NotImplementedError, match="docs/openapi.yaml"):
            call()
    assert [e.id for e in store.ls(limit=2, page_size=1)] == [e.id for e in store.ls()][:2]


def test_an_empty_entry_name_is_refused_before_any_request() -> None:
    store = kvstore.Client("http://127.0.0.1:9", timeout=1)  # nothing listens there
    for call in (lambda: store.show(""), lambda: store.fetch("", "out"), lambda: store.remove("")):
        with pytest.raises(kvstore.UsageError, match="an entry id"):
            call()


def test_match_and_prefix_fetch_over_http_equal_the_cli(server: Server, tmp_path: Path) -> None:
    """A new question about a stored image: `match` finds the prefix (HTTP and local), and the
    prefix fetched over HTTP is the bytes `fetch --prefix` writes."""
    d = tmp_path / "questions"
    server.cli.run("synth", "--preset", "tiny", "--questions", "2", "--seed", "40", "-o", str(d))
    first, second = sorted(d.iterdir())
    remote, local = server.client(READER), kvstore.Client(server.cli.store, binary=server.cli.binary)
    entry = server.client().ingest(first, policy="none")
    asked = kvstore.read(second)
    ids, sources = list(asked.input_ids), [s.source for s in asked.spans if s.source]
    for store in (remote, local):
        found = store.match(asked.model, ids, sources)
        assert found == kvstore.PrefixMatch(id=entry.id, length=asked.prefix_end, sources_checked=1), store
        assert store.match(asked.model, ids, ["sha256:" + "00" * 32]) is None, "another image is another prefix"
        assert store.match(asked.model, ids) is None, "ids alone name no image: placeholders are the same for every image"
        assert store.match("other/model", ids, sources) is None
        with pytest.raises(kvstore.UsageError, match="one string"):
            store.match(asked.model, ids, sources[0])  # a lone string, not a list of them
    got = remote.fetch(entry, tmp_path / "http-prefix.safetensors", prefix=True)
    server.cli.run("fetch", entry, "--prefix", "-o", str(tmp_path / "cli-prefix.safetensors"))
    assert Path(got).read_bytes() == (tmp_path / "cli-prefix.safetensors").read_bytes()
    with pytest.raises(kvstore.UsageError):
        remote.match(asked.model, [-1])


def test_answers_about_another_entry_are_refused(server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy or cache in front of the server that answers entry a's routes with entry b's
    (another question about the same image, another image): every read names the entry it
    carries (the kvsnap's ETag, the layout's id, the pack's header), and a's caller never gets
    b's keys and values."""
    d = tmp_path / "q"
    server.cli.run("synth", "--preset", "tiny", "--questions", "2", "--seed", "41", "-o", str(d))
    a, b = (server.cli.ingest(path, "int8") for path in sorted(d.iterdir()))
    other = server.cli.ingest(server.cli.synth(d / "o.safetensors", "--preset", "tiny", "--seed", "9"), "none")
    store = server.client(READER)
    real = store._request
    for wrong in (b, other):
        def crossed(method, target, *args, **kw):
            return real(method, target.replace(f"/v1/entries/{a}", f"/v1/entries/{wrong}"), *args, **kw)

        monkeypatch.setattr(store, "_request", crossed)
        for call in (lambda: store.fetch(a, tmp_path / "w.safetensors"),
                     lambda: store.fetch(a, tmp_path / "p.safetensors", prefix=True),
                     lambda: list(store.fetch_layers(a)),
                     lambda: store.fetch_raw(a, tmp_path / "w.kvpack")):
            with pytest.raises(kvstore.CorruptError, match=f"asked for entry {a}, .* names entry {wrong}"):
                call()
        assert not [p for p in tmp_path.iterdir() if p.suffix in (".safetensors", ".kvpack")], "nothing written"
        monkeypatch.undo()
    assert kvstore.read(store.fetch(a[:12], tmp_path / "a.safetensors")).layers, "a prefix of the id is the id's"


def test_a_repack_between_the_part_and_its_segment_reads_the_entry_again(server: Server, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Compaction re-packs a segmented entry (stored whole afterwards) between a client's
    request for its part and the one for its segment: the read starts over and returns the
    entry as it now is; neither a `NotFoundError` nor a part without its segment."""
    d = tmp_path / "q"
    server.cli.run("synth", "--preset", "tiny", "--questions", "2", "--seed", "42", "-o", str(d))
    entry = server.cli.ingest(sorted(d.iterdir())[0], "int8")
    store = server.client(READER)
    real_json, real_download = store._json, store._download
    repacked: list[str] = []

    def repack_first(policy: str) -> None:
        if len(repacked) < 1:
            server.cli.run("repack", "--policy", policy, entry)
            repacked.append(policy)

    def json_then(method, path, query=None, **kw):
        if query and query.get("segment") == "1":
            repack_first("none")
        return real_json(method, path, query, **kw)

    monkeypatch.setattr(store, "_json", json_then)
    layers = list(store.fetch_layers(entry))
    assert repacked == ["none"]
    server.cli.run("fetch", entry, "--raw", "-o", str(tmp_path / "now.kvpack"))
    with kvstore.read_pack(tmp_path / "now.kvpack") as pack:
        assert pack.segment is None, "stored whole by the re-pack"
        assert all(np.array_equal(layer.key, pack.layer(i).key) for i, layer in enumerate(layers))
    monkeypatch.undo()

    second = server.cli.ingest(sorted(d.iterdir())[1], "int8")
    repacked.clear()

    def download_then(path, query, output, etag=None, **kw):
        if query.get("segment") == "1":
            server.cli.run("repack", "--policy", "none", second)
            repacked.append("none")
        return real_download(path, query, output, etag, **kw)

    monkeypatch.setattr(store, "_download", download_then)
    out = tmp_path / "raw"
    out.mkdir()
    with kvstore.read_pack(store.fetch_raw(second, out / "e.kvpack")) as pack:
        assert repacked == ["none"] and pack.segment is None and pack.header.entry_id == second
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("e.")) == ["e.kvpack"], "no part left behind"


def test_layers_are_read_only_as_stored_with_the_policy_asked_for(server: Server, tmp_path: Path) -> None:
    """A reader that decided what to do from `show` (the vLLM connector: lossy entries are not
    saved again) names the policy it saw; a re-pack in between fails the read, locally and
    over HTTP, instead of handing lossy KV over as exact."""
    snap = server.cli.synth(tmp_path / "s.safetensors", "--preset", "tiny", "--seed", "43", ids=False)
    entry = server.cli.ingest(snap, "none")
    for store in (server.client(READER), kvstore.Client(server.cli.store, binary=server.cli.binary)):
        seen = store.show(entry).policy
        assert len(list(store.fetch_layers(entry, policy=seen))) == 3
    server.cli.run("repack", "--policy", "int8", entry)
    for store in (server.client(READER), kvstore.Client(server.cli.store, binary=server.cli.binary)):
        with pytest.raises(kvstore.TransientError, match="re-packed since"):
            next(store.fetch_layers(entry, policy=seen))


def test_a_call_has_one_deadline_however_the_server_trickles() -> None:
    """`timeout` bounds a whole call: a server that never answers, or sends its answer a few
    bytes at a time (each read well within the timeout), gives a `TransientError` at the
    deadline, not a wait without end (the vLLM connector's lookups rely on it)."""
    listener = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    body = json.dumps({"id": "ab" * 32, "length": 68, "sources_checked": 1}).encode()
    stop = threading.Event()

    def answer() -> None:
        for trickle in (False, True):
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                if trickle:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
                    for i in range(0, len(body), 4):
                        if stop.wait(0.2):
                            break
                        try:
                            conn.sendall(body[i:i + 4])
                        except OSError:
                            break
                else:
                    stop.wait(10)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        store = kvstore.Client(url, timeout=1)
        for _ in range(2):
            began = time.monotonic()
            with pytest.raises(kvstore.TransientError, match=r"within 1 s \(timeout\)"):
                store.match("m", [1, 2, 3], ["sha256:" + "00" * 32])
            assert time.monotonic() - began < 3
    finally:
        stop.set()
        thread.join(timeout=10)
        listener.close()


def test_match_passes_over_a_prefix_a_read_found_damaged(server: Server, tmp_path: Path) -> None:
    """One prefix in two segments (two policies); the most recently fetched one's segment is
    damaged: once a read over HTTP found it so, `match` names the intact entry."""
    d = tmp_path / "q"
    server.cli.run("synth", "--preset", "tiny", "--questions", "2", "--seed", "44", "-o", str(d))
    first, second = sorted(d.iterdir())
    a, b = server.cli.ingest(first, "int8"), server.cli.ingest(second, "none")
    store = server.client(READER)
    store.fetch(a, tmp_path / "a.safetensors")
    shown = json.loads(server.cli.run("show", "--json", a).stdout)
    segment = shown["segment"]["blob"]
    path = Path(shown["blob_path"]).parent.parent / segment[:2] / f"{segment}.kvpack"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(data))
    asked = kvstore.read(first)
    ids, sources = list(asked.input_ids[:asked.prefix_end]) + [7, 8, 9], [s.source for s in asked.spans if s.source]
    assert store.match(asked.model, ids, sources).id == a, "nothing has read it yet"
    with pytest.raises(kvstore.CorruptError, match=f"shared prefix segment {segment}"):
        store.fetch(a, tmp_path / "p.safetensors", prefix=True)
    assert store.match(asked.model, ids, sources).id == b
