"""`Client`: a store, local or remote. `Client(path)` drives the `kvstore` binary, with typed
errors mapped from its exit codes (1 usage, 2 not found, 3 invalid or corrupt, 4 transient);
`Client("http://host:8750", token=...)` is an `HTTPClient` (remote.py) with the same methods."""
from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from .errors import CommandError, CorruptError, NotFoundError, TransientError, UsageError
from .pack import PackLayer, read_pack
from .snapshot import Snapshot, Span, read

_ERRORS = {1: UsageError, 2: NotFoundError, 3: CorruptError, 4: TransientError}


@dataclass(frozen=True)
class Entry:
    """One stored entry, as `kvstore show --json` and `GET /v1/entries/{id}` give it (the one
    JSON document of an entry, README "JSON").

    `spans` and `compression` are None in an HTTP listing (`HTTPClient.ls`), which carries
    the summary only; `show` has them."""

    id: str
    model: str
    policy: str
    producer_key: str | None
    seq_len: int
    layers: int
    kv_heads: int
    head_dim: int
    v_head_dim: int
    entries_kept: int
    bytes_in: int
    bytes_out: int
    input_dtype: str
    spans: list[Span] | None
    compression: dict[str, str] | None
    fidelity: dict[str, Any] | None
    pinned: bool
    #: A segmented entry's shared prefix, stored once (docs/design/segments.md): its bytes,
    #: which `bytes_out` (the entry's own part) leaves out; 0 for an entry stored whole.
    segment_bytes: int = 0

    @property
    def sources(self) -> list[str]:
        """The spans' sources (empty when the listing carried no spans)."""
        return [s.source for s in self.spans or [] if s.source is not None]

    @staticmethod
    def from_json(o: dict[str, Any]) -> "Entry":
        """From an entry document: `kvstore ls/show/ingest --json` or `kvstore serve`'s JSON
        (docs/openapi.yaml, `Entry` and `EntryDetail`)."""
        spans = o.get("spans")
        return Entry(id=o["id"], model=o["model"], policy=o["policy"], producer_key=o.get("key"),
                     seq_len=o["seq_len"], layers=o["layers"], kv_heads=o["kv_heads"], head_dim=o["head_dim"],
                     v_head_dim=o["v_head_dim"], entries_kept=o["entries_kept"], bytes_in=o["bytes_in"],
                     bytes_out=o["bytes_out"], input_dtype=o["input_dtype"],
                     spans=None if spans is None else [Span.from_json(s, i) for i, s in enumerate(spans)],
                     compression=o.get("compression"), fidelity=o.get("fidelity"), pinned=o.get("pinned", False),
                     segment_bytes=int((o.get("segment") or {}).get("bytes") or 0))


class Ingested(str):
    """What `ingest` returns: the entry's id (a `str`, usable wherever an id is), and what
    happened. `already_stored`: the store held this snapshot already and wrote nothing; then
    `policy` is the stored entry's, which may differ from the one asked for (`repack` changes
    it). `entry` is the stored entry in full when the answer carried it (local stores)."""

    already_stored: bool
    policy: str
    bytes_in: int
    bytes_out: int
    entry: Entry | None

    def __new__(cls, answer: dict[str, Any]) -> "Ingested":
        self = super().__new__(cls, str(answer["id"]))
        self.already_stored = bool(answer["already_stored"])
        self.policy, self.bytes_in, self.bytes_out = str(answer["policy"]), int(answer["bytes_in"]), int(answer["bytes_out"])
        self.entry = Entry.from_json(answer["entry"]) if answer.get("entry") else None
        return self

    @property
    def id(self) -> str:
        return str(self)


@dataclass(frozen=True)
class PrefixMatch:
    """The longest stored prefix of a request (`Client.match`): fetch it with
    `fetch(id, ..., prefix=True)` and prefill the request from token `length` on."""
    id: str
    length: int
    #: Media spans inside the prefix, every one named alike by the request and the entry (a
    #: match needs them all); 0 for a prefix of text alone.
    sources_checked: int

    @staticmethod
    def from_json(o: dict[str, Any]) -> "PrefixMatch":
        return PrefixMatch(id=str(o["id"]), length=int(o["length"]), sources_checked=int(o["sources_checked"]))


def check_ids(input_ids: Sequence[int]) -> list[int]:
    """Token ids as plain non-negative ints (numpy and torch integers included): a string, or
    numbers that are not whole, are refused (`"123"` once matched ids [1, 2, 3])."""
    if isinstance(input_ids, (str, bytes)):
        raise UsageError(["input_ids"], UsageError.exit_code, f"token ids are a sequence of integers, not the string {input_ids[:40]!r}")
    ids = []
    for i in input_ids:
        if isinstance(i, (bool, str, bytes)) or not float(i).is_integer():
            raise UsageError(["input_ids"], UsageError.exit_code, f"token ids are integers, got {i!r}")
        ids.append(int(i))
    if any(i < 0 for i in ids):
        raise UsageError(["input_ids"], UsageError.exit_code, "token ids are non-negative")
    return ids


def check_sources(sources: Sequence[str]) -> list[str]:
    """Media sources as a list of strings, one per image or video in order: a lone string
    would be taken apart character by character."""
    if isinstance(sources, (str, bytes)):
        raise UsageError(["sources"], UsageError.exit_code, f"sources is a sequence of media sources, one per image or video; "
                         f"got one string {sources[:80]!r}: pass [{sources[:80]!r}]")
    out = list(sources)
    if not all(isinstance(s, str) and s for s in out):
        raise UsageError(["sources"], UsageError.exit_code, "every media source is a non-empty string (e.g. sha256:<hex>)")
    return out


def check_entry(entry: str) -> str:
    """An entry name must be non-empty (an empty one would name the whole listing) and must
    not start with "-": the binary would read it as an option (`remove("--store", ...)` once
    removed an entry from another store)."""
    if not isinstance(entry, str) or not entry:
        raise UsageError(["entry"], UsageError.exit_code, f"an entry id, unique prefix or key is needed, got {entry!r}")
    if entry.startswith("-"):
        raise UsageError(["entry"], UsageError.exit_code, f"an entry id, unique prefix or key does not start with '-', got {entry[:80]!r}")
    return entry


def check_stored_policy(header: Any, policy: str | None, args: list[str], **http: Any) -> None:
    """Raises a `TransientError` (with `http`'s status and code) unless the pack `header` is
    stored with `policy` (None: any), the one a reader's decision was taken on (`show`): a
    re-pack since changed what it reads."""
    stored = header.compression.get("policy")
    if policy is not None and stored != policy:
        raise TransientError(args, 4, f"the entry is stored with {stored!r} now, not {policy!r} (re-packed since): "
                             "read its record again", **http)


def check_path(path: str | os.PathLike[str], what: str = "output") -> str:
    """A file path for the binary: "-" (standard output) is refused, and a path starting with
    "-" is passed as ./PATH so that it is never read as an option."""
    path = os.fspath(path)
    if not path or path == "-":
        raise UsageError([what], UsageError.exit_code, f"{what} must be a file path, got {path!r}")
    return "./" + path if path.startswith("-") else path


def check_input(path: str | os.PathLike[str]) -> str:
    """A snapshot to ingest must exist: FileNotFoundError naming it, as `kvstore.read` raises."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, f"{os.strerror(errno.ENOENT)}: {path}", path)
    return check_path(path, "input")


def is_url(target: object) -> bool:
    """An http(s) URL names a `kvstore serve`; anything else a local store folder."""
    return isinstance(target, str) and target.lower().startswith(("http://", "https://"))


def find_binary(binary: str | None = None) -> str:
    """`binary`, else $KVSTORE_BIN, else `kvstore` on the PATH."""
    candidate = binary or os.environ.get("KVSTORE_BIN") or shutil.which("kvstore")
    if not candidate or not os.access(candidate, os.X_OK):
        raise FileNotFoundError(f"kvstore binary not found (looked at {candidate or 'KVSTORE_BIN and the PATH'}): "
                                "install it with `make install` or set KVSTORE_BIN")
    return candidate


class Client:
    """A store: a local one through the `kvstore` binary, or `kvstore serve` at an http(s) URL
    (then an `HTTPClient`, same methods).

        store = kvstore.Client(store="/var/lib/kvstore")
        store = kvstore.Client("http://store:8750", token=os.environ["KVSTORE_TOKEN"])
        entry_id = store.ingest("chat.safetensors", policy="lightkv+int8")
        snap = store.fetch_snapshot(entry_id)            # or store.fetch(entry_id, "out.safetensors")

    `timeout`: seconds a call may take: the command (local), or the whole request and answer
    (HTTP); None: no limit.
    """

    def __new__(cls, store: str | os.PathLike[str] | None = None, binary: str | None = None, *,
                token: str | None = None, timeout: float | None = None) -> "Client":
        if cls is Client and is_url(store):
            from .remote import HTTPClient
            cls = HTTPClient
        return super().__new__(cls)

    def __init__(self, store: str | os.PathLike[str] | None = None, binary: str | None = None, *,
                 token: str | None = None, timeout: float | None = None) -> None:
        if token is not None:
            raise TypeError("token is for a `kvstore serve` URL (http:// or https://), not a local store")
        self.binary = find_binary(binary)
        self.store = os.fspath(store) if store is not None else None
        self.timeout = timeout

    def _run(self, args: list[str], ok: tuple[int, ...] = (0,), store: bool = True) -> subprocess.CompletedProcess[str]:
        full = [args[0]] + (["--store", self.store] if store and self.store is not None else []) + args[1:]
        try:
            done = subprocess.run([self.binary, *full], capture_output=True, text=True, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            raise TransientError(full, 4, f"still running after {self.timeout} s (timeout): stopped") from None
        if done.returncode not in ok:
            raise _ERRORS.get(done.returncode, CommandError)(full, done.returncode, done.stderr)
        return done

    def _out(self, args: list[str]) -> str:
        return self._run(args).stdout

    def ingest(self, path: str | os.PathLike[str], policy: str = "none", policies: str | None = None) -> Ingested:
        """Stores a kvsnap file with `policy`; returns the entry's id, an `Ingested` (a `str`)
        that also says whether the store held it already, and with which policy."""
        return self.ingest_many([path], policy, policies)[0]

    def ingest_many(self, paths: Sequence[str | os.PathLike[str]], policy: str = "none",
                    policies: str | None = None) -> list[Ingested]:
        """Stores several kvsnap files; returns their ids in order. The first failure raises
        (files before it are stored). A snapshot already stored with another policy keeps it:
        the binary's note on that becomes a `UserWarning`; `repack` changes the policy."""
        if isinstance(paths, (str, bytes, os.PathLike)):
            raise UsageError(["paths"], UsageError.exit_code, f"ingest_many takes a list of files, got one: pass [{os.fspath(paths)!r}]")
        extra = [f"--policies={policies}"] if policies else []
        done = self._run(["ingest", "--json", f"--policy={policy}", *extra, *map(check_input, paths)])
        for note in done.stderr.splitlines():
            warnings.warn(note, stacklevel=3)
        return [Ingested(line) for line in json.loads(done.stdout)]

    def repack(self, *entries: str, policy: str, policies: str | None = None) -> list[dict[str, Any]]:
        """Re-packs entries with another policy in place (same ids, blobs swapped atomically);
        per entry `{id, old_policy, policy, old_bytes, new_bytes, outcome}`, outcome
        `repacked` or `unchanged`."""
        extra = [f"--policies={policies}"] if policies else []
        return list(json.loads(self._out(["repack", "--json", f"--policy={policy}", *extra,
                                          *map(check_entry, entries)])))

    def fetch(self, entry: str, output: str | os.PathLike[str], dtype: str = "f16", expand: bool = False,
              by_key: bool = False, prefix: bool = False) -> str:
        """Writes the entry (an id, unique prefix, or producer key with `by_key`) as a kvsnap file;
        with `prefix`, its shareable prefix alone (`fetch --prefix`)."""
        output = os.fspath(output)
        self._run(["fetch", check_entry(entry), "-o", check_path(output), "--dtype", dtype, *(["--expand"] if expand else []),
                   *(["--key"] if by_key else []), *(["--prefix"] if prefix else [])])
        return output

    def match(self, model: str, input_ids: Sequence[int], sources: Sequence[str] = ()) -> PrefixMatch | None:
        """The longest stored prefix of a request of `model` with these token ids whose every
        image or video is named, in order, by `sources` as the entry stored it, or None: the
        lookup a serving node makes before prefill. Token ids do not tell images apart, so
        without `sources` only a prefix of text alone can match."""
        sources = check_sources(sources)
        with tempfile.TemporaryDirectory(prefix="kvstore-") as d:
            path = os.path.join(d, "ids.json")
            with open(path, "w") as f:
                json.dump(check_ids(input_ids), f)
            try:
                out = self._out(["match", "--json", f"--model={model}", "--ids", path, *[f"--source={source}" for source in sources]])
            except NotFoundError:
                return None
        return PrefixMatch.from_json(json.loads(out))

    def fetch_raw(self, entry: str, output: str | os.PathLike[str], by_key: bool = False) -> str:
        """Writes the stored kvpack file itself (read it with `kvstore.read_pack`)."""
        output = os.fspath(output)
        self._run(["fetch", check_entry(entry), "--raw", "-o", check_path(output), *(["--key"] if by_key else [])])
        return output

    def fetch_snapshot(self, entry: str, dtype: str = "f32", expand: bool = False, by_key: bool = False) -> Snapshot:
        """The entry as an in-memory Snapshot (fetched through a temporary file)."""
        with tempfile.TemporaryDirectory(prefix="kvstore-") as d:
            path = self.fetch(entry, os.path.join(d, "entry.safetensors"), dtype=dtype, expand=expand, by_key=by_key)
            snap = read(path)
            for layer in snap.layers:  # the file goes away with the directory: own the arrays
                for name in ("key", "value", "positions", "sizes"):
                    setattr(layer, name, getattr(layer, name).copy())
            return snap

    def fetch_layers(self, entry: str, dtype: str = "f16", expand: bool = False,
                     by_key: bool = False, policy: str | None = None) -> Iterator[PackLayer]:
        """The entry's layers decoded one at a time, as `read_pack(...).layer(i, dtype)` (or
        `.expanded_layer`) gives them. With `policy` (as `show` gave it), only the entry as
        stored with that policy: a re-pack since raises a `TransientError` before any layer."""
        with tempfile.TemporaryDirectory(prefix="kvstore-") as d:
            with read_pack(self.fetch_raw(entry, os.path.join(d, "entry.kvpack"), by_key=by_key)) as pack:
                check_stored_policy(pack.header, policy, ["fetch", entry])
                yield from pack.layers(dtype, expand)

    def show(self, entry: str, by_key: bool = False) -> Entry:
        """One entry in full (an id, unique prefix, or producer key with `by_key`)."""
        return Entry.from_json(json.loads(self._out(["show", "--json", check_entry(entry), *(["--key"] if by_key else [])])))

    def ls(self, source: str | None = None, *, model: str | None = None, key: str | None = None,
           limit: int | None = None) -> list[Entry]:
        """Stored entries, oldest first: those holding `source` (e.g. sha256:<hex>), of `model`,
        with producer `key`, at most `limit`, when given."""
        filters = {"--source": source, "--model": model, "--key": key, "--limit": None if limit is None else str(limit)}
        out = self._out(["ls", "--json", *[f"{flag}={v}" for flag, v in filters.items() if v is not None]])
        return [Entry.from_json(o) for o in json.loads(out)]

    def remove(self, *entries: str) -> None:
        self._run(["rm", *map(check_entry, entries)])

    def pin(self, *entries: str, pinned: bool = True) -> None:
        """Pins entries so compaction never evicts or re-packs them (`pinned=False` unpins)."""
        self._run(["pin", *([] if pinned else ["--off"]), *map(check_entry, entries)])

    def check_policy(self, policy: str, policies: str | None = None) -> str:
        """`policy`'s canonical spelling (`lightkv+int8` -> `lightkv+int8g32+zstd3`), or a
        `UsageError` that says why it is not a policy (`kvstore policies --check`)."""
        extra = [f"--file={policies}"] if policies else []
        return self._run(["policies", f"--check={policy}", *extra], store=False).stdout.strip()

    def stats(self) -> dict[str, Any]:
        """Totals over the store, as `kvstore stats --json` gives them (`entries`, `bytes_in`,
        `bytes_out`, `models`, `policies`, ...)."""
        return dict(json.loads(self._out(["stats", "--json"])))

    def verify(self, entry: str | None = None) -> dict[str, Any]:
        """Reads every stored entry (or `entry`) back and checks it; the report of
        `kvstore verify --json` (`checked`, `failures`, `orphans`, ...). A failure raises
        `CorruptError` naming each entry and its problem."""
        done = self._run(["verify", "--json", *([check_entry(entry)] if entry is not None else [])], ok=(0, 3))
        report = dict(json.loads(done.stdout)) if done.stdout.strip() else {}
        if done.returncode != 0:
            problems = "; ".join(f"{f['id']}: {f['problem']}" for f in report.get("failures", [])) or done.stderr
            raise CorruptError(["verify", *([entry] if entry else [])], 3, problems)
        return report
