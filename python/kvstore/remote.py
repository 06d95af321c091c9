"""`HTTPClient`: a store served by `kvstore serve` (docs/openapi.yaml), with the methods of
the local `Client`, over the standard library's http.client. Bodies stream both ways in
1 MiB chunks: no snapshot is ever held in memory whole."""
from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import urllib.parse
from typing import Any, BinaryIO, Iterator, Sequence

import io

from .client import Client, Entry, Ingested, PrefixMatch, check_entry, check_ids, check_sources, check_stored_policy, is_url
from .errors import (CommandError, CorruptError, ForbiddenError, NotFoundError, PackError, TransientError, UnauthorizedError,
                     UsageError)
from .pack import Pack, PackLayer, Section, read_header, segment_problem

CHUNK = 1 << 20
# A compaction re-packing the entry between `/layout` and the ranges: read the layout again.
REPACK_ATTEMPTS = 3

_CODES: dict[str, type[CommandError]] = {
    "bad_request": UsageError, "method_not_allowed": UsageError, "length_required": UsageError,
    "too_large": UsageError, "range_not_satisfiable": UsageError, "unauthorized": UnauthorizedError,
    "forbidden": ForbiddenError, "not_found": NotFoundError, "ambiguous": NotFoundError, "invalid": CorruptError,
    "corrupt": CorruptError, "transient": TransientError,
}
_STATUSES: dict[int, type[CommandError]] = {
    400: UsageError, 401: UnauthorizedError, 403: ForbiddenError, 404: NotFoundError, 409: NotFoundError,
    413: UsageError, 416: UsageError, 422: CorruptError, 502: TransientError, 503: TransientError,
    504: TransientError,
}


class _Repacked(Exception):
    """412: the entry's pack is no longer the one the layout described."""


class _Timed:
    """An HTTP connection whose whole call (connect, send, every read) has a deadline: at the
    deadline its socket is shut, so whatever waits on it returns, and `expired` says why. A
    socket timeout alone bounds each read, and a server that trickles its answer never trips it."""

    expired = False
    _timer: threading.Timer | None = None

    def arm(self, seconds: float) -> None:
        self._timer = threading.Timer(max(seconds, 0.0), self._expire)
        self._timer.daemon = True
        self._timer.start()

    def _expire(self) -> None:
        self.expired = True
        sock = getattr(self, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        super().close()  # type: ignore[misc]


class _TimedHTTP(_Timed, http.client.HTTPConnection):
    pass


class _TimedHTTPS(_Timed, http.client.HTTPSConnection):
    pass


def _tagged_id(tag: str | None) -> str | None:
    """The entry id a `/kvsnap` ETag (`"<id>.<blob>.<dtype>..."`) names, or None."""
    if not tag:
        return None
    return tag.removeprefix("W/").strip('"').split(".")[0] or None


class HTTPClient(Client):
    """`kvstore serve` at `url`; usually made as `kvstore.Client(url, token=...)`.

        store = kvstore.Client("http://store:8750", token=os.environ["KVSTORE_TOKEN"])
        entry_id = store.ingest("chat.safetensors", policy="lightkv+int8")
        for layer in store.fetch_layers(entry_id, dtype="f16"):  # one ranged read per layer
            ...

    Errors: the server's `{error, code}` becomes the exception of that code (`NotFoundError`,
    `UnauthorizedError`, `ForbiddenError`, `CorruptError`, `TransientError` with
    `retry_after`, ...); a body that ends short of its `Content-Length` is a `CorruptError`;
    a server that cannot be reached raises the `OSError` the socket gave.
    """

    def __init__(self, store: str | os.PathLike[str] | None = None, binary: str | None = None, *,
                 token: str | None = None, timeout: float | None = None) -> None:
        if binary is not None:
            raise TypeError("binary is for a local store; an http(s) URL needs none")
        if not is_url(store):
            raise ValueError(f"{store!r} is not an http:// or https:// URL")
        url = urllib.parse.urlsplit(str(store))
        if not url.hostname or url.query or url.fragment:
            raise ValueError(f"{store!r}: expected http(s)://HOST[:PORT][/PATH]")
        self.url = str(store).rstrip("/")
        self.store = self.url
        self.token, self.timeout = token, timeout
        self._https, self._host, self._port = url.scheme.lower() == "https", url.hostname, url.port
        self._base = url.path.rstrip("/")

    # ------------------------------------------------------------------ requests

    def _connect(self) -> http.client.HTTPConnection:
        kind = _TimedHTTPS if self._https else _TimedHTTP
        conn = kind(self._host, self._port, timeout=self.timeout, blocksize=CHUNK)
        if self.timeout is not None:
            conn.arm(self.timeout)
        return conn

    def _late(self, method: str, target: str) -> TransientError:
        return TransientError([method, self.url + target[len(self._base):]], 4,
                              f"no complete answer within {self.timeout} s (timeout): stopped",
                              code="timeout")

    def _target(self, path: str, query: dict[str, Any] | None = None) -> str:
        q = {k: v for k, v in (query or {}).items() if v is not None}
        return self._base + path + ("?" + urllib.parse.urlencode(q) if q else "")

    def _request(self, method: str, target: str, headers: dict[str, str] | None = None,
                 body: BinaryIO | None = None,
                 length: int | None = None) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Sends the request; the caller reads the response and closes the connection."""
        h = {"Accept": "application/json, application/octet-stream"}
        if self.token is not None:
            h["Authorization"] = f"Bearer {self.token}"
        if body is not None:
            h.update({"Content-Type": "application/octet-stream", "Content-Length": str(length)})
        h.update(headers or {})
        conn = self._connect()
        try:
            try:
                conn.request(method, target, body=body, headers=h)
            except (BrokenPipeError, ConnectionResetError):
                if body is None or getattr(conn, "expired", False):
                    raise
                # The server answered before taking the whole body (413, 401, 403): read that answer.
            return conn, conn.getresponse()
        except BaseException as e:
            conn.close()
            if getattr(conn, "expired", False) and isinstance(e, (OSError, http.client.HTTPException)):
                raise self._late(method, target) from None
            raise

    def _error(self, method: str, target: str, resp: http.client.HTTPResponse) -> CommandError:
        raw = resp.read(1 << 16)
        try:
            j = json.loads(raw)
            message, code = str(j["error"]), str(j["code"])
        except (ValueError, KeyError, TypeError):
            message, code = raw.decode("utf-8", "replace").strip() or resp.reason, None
        cls = _CODES.get(code or "") or _STATUSES.get(resp.status) or CommandError
        retry = resp.getheader("Retry-After")
        return cls([method, self.url + target[len(self._base):]], cls.exit_code, message, status=resp.status,
                   code=code or str(resp.status), retry_after=float(retry) if retry and retry.isdigit() else None)

    def _json(self, method: str, path: str, query: dict[str, Any] | None = None,
              ok: tuple[int, ...] = (200,), body: BinaryIO | None = None,
              length: int | None = None, headers: dict[str, str] | None = None) -> tuple[Any, http.client.HTTPResponse]:
        target = self._target(path, query)
        conn, resp = self._request(method, target, headers=headers, body=body, length=length)
        try:
            if resp.status not in ok:
                raise self._error(method, target, resp)
            body = self._body(conn, method, target, resp)
            try:
                return json.loads(body), resp
            except (ValueError, RecursionError):
                # A proxy's page, or another service at this URL: not kvstore serve's answer.
                raise CommandError([method, self.url + target[len(self._base):]], 1,
                                   f"the server answered {resp.status} with something that is not JSON "
                                   f"({resp.getheader('Content-Type') or 'no Content-Type'}: {body[:80]!r}): "
                                   "is this URL a kvstore serve?", status=resp.status, code="not_json") from None
        finally:
            conn.close()

    def _body(self, conn: http.client.HTTPConnection, method: str, target: str, resp: http.client.HTTPResponse,
              sink: BinaryIO | None = None) -> bytes:
        """The whole body (into `sink` when given), checked against `Content-Length`."""
        expected = resp.getheader("Content-Length")
        parts: list[bytes] = []
        got = 0
        try:
            while chunk := resp.read(CHUNK):
                got += len(chunk)
                if sink is None:
                    parts.append(chunk)
                else:
                    sink.write(chunk)
        except (http.client.IncompleteRead, OSError) as e:
            if getattr(conn, "expired", False):
                raise self._late(method, target) from None
            raise self._short(method, target, got, expected, f" ({type(e).__name__}: {e})") from None
        if getattr(conn, "expired", False):
            raise self._late(method, target)
        if expected is not None and got != int(expected):
            raise self._short(method, target, got, expected, "")
        return b"".join(parts)

    def _short(self, method: str, target: str, got: int, expected: str | None, why: str) -> CorruptError:
        of = f" of {expected}" if expected is not None else ""
        return CorruptError([method, self.url + target[len(self._base):]], 3,
                            f"the transfer ended after {got}{of} bytes{why}: the server failed mid-stream (a damaged "
                            "entry) or the connection was cut", status=200, code="incomplete")

    def _download(self, path: str, query: dict[str, Any], output: str | os.PathLike[str],
                  etag: str | None = None, *, if_match: str | None = None, entry: str | None = None) -> str | None:
        """Streams a body to `output` (complete or not at all); its ETag, or None on 304. With
        `if_match`, a 412 (the entry re-packed since) raises `_Repacked`; with `entry`, an ETag
        that names another entry (`"<id>...`) is refused before anything is written."""
        output = os.fspath(output)
        target = self._target(path, query)
        headers = {"If-None-Match": etag} if etag else {}
        if if_match:
            headers["If-Match"] = if_match
        conn, resp = self._request("GET", target, headers=headers or None)
        try:
            if entry is not None:
                self._check_names(entry, _tagged_id(resp.getheader("ETag")), "GET", target, "its ETag")
            if resp.status == 304:
                return None
            if resp.status == 412 and if_match:
                raise _Repacked()
            if resp.status != 200:
                raise self._error("GET", target, resp)
            temp = f"{output}.{os.getpid()}.tmp"
            try:
                with open(temp, "wb") as f:
                    self._body(conn, "GET", target, resp, f)
                os.replace(temp, output)
            except BaseException:
                if os.path.exists(temp):
                    os.remove(temp)
                raise
            return resp.getheader("ETag") or ""
        finally:
            conn.close()

    @staticmethod
    def _segment(value: str) -> str:
        return urllib.parse.quote(value, safe="")

    def _entry_path(self, entry: str, by_key: bool) -> tuple[str, str]:
        """`/v1/entries/ID` and the id (or prefix) asked for; a producer key is looked up first
        (its newest entry)."""
        wanted = self.show(entry, by_key=True).id if by_key else check_entry(entry)
        return "/v1/entries/" + self._segment(wanted), wanted

    def _check_names(self, wanted: str, answered: str | None, method: str, target: str, where: str) -> None:
        """Refuses an answer about another entry than `wanted` (an id or unique prefix): a
        proxy or cache in front of the server that mixed two requests up would otherwise
        hand out another entry's (even another image's) keys and values under this id."""
        if answered is not None and not answered.lower().startswith(wanted.lower()):
            raise CorruptError([method, self.url + target[len(self._base):]], 3,
                               f"asked for entry {wanted}, {where} names entry {answered}: not this entry's answer",
                               code="wrong_entry")

    # ------------------------------------------------------------------ the store

    def ingest(self, path: str | os.PathLike[str], policy: str = "none", policies: str | None = None) -> Ingested:
        """Uploads a kvsnap file (streamed, with its size as `Content-Length`) and stores it
        with `policy`; returns the entry's id, an `Ingested` (a `str`) saying whether it was
        new (201) or already stored (200, with the stored entry's `policy`)."""
        if policies is not None:
            raise TypeError("policies (a policy file) is for a local store; over HTTP pass a policy string")
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            answer, _ = self._json("PUT", "/v1/snapshots", {"policy": policy}, ok=(200, 201), body=f, length=size)
        return Ingested(answer)

    def ingest_many(self, paths: Sequence[str | os.PathLike[str]], policy: str = "none",
                    policies: str | None = None) -> list[Ingested]:
        """Uploads several kvsnap files in order; the first failure raises (files before it are stored)."""
        return [self.ingest(p, policy, policies) for p in paths]

    def fetch(self, entry: str, output: str | os.PathLike[str], dtype: str = "f16", expand: bool = False,
              by_key: bool = False, prefix: bool = False) -> str:
        """Writes the entry as a kvsnap file, the bytes `kvstore fetch` writes (complete or not at all);
        with `prefix`, its shareable prefix alone (`fetch --prefix`)."""
        self.fetch_if_changed(entry, output, None, dtype, expand, by_key, prefix)
        return os.fspath(output)

    def fetch_if_changed(self, entry: str, output: str | os.PathLike[str], etag: str | None = None,
                         dtype: str = "f16", expand: bool = False, by_key: bool = False,
                         prefix: bool = False) -> str | None:
        """`fetch` unless `etag` (returned by an earlier call for `output`) is still current:
        then `output` is left as it is and None returned; else the new ETag."""
        path, wanted = self._entry_path(entry, by_key)
        return self._download(path + "/kvsnap",
                              {"dtype": dtype, "expand": "1" if expand else None, "prefix": "1" if prefix else None},
                              output, etag, entry=wanted)

    def match(self, model: str, input_ids: Sequence[int], sources: Sequence[str] = ()) -> PrefixMatch | None:
        """The longest stored prefix of a request (`POST /v1/match`), or None."""
        body = json.dumps({"model": model, "input_ids": check_ids(input_ids), "sources": check_sources(sources)}).encode()
        try:
            found, _ = self._json("POST", "/v1/match", body=io.BytesIO(body), length=len(body))
        except NotFoundError:
            return None
        return PrefixMatch.from_json(found)

    def fetch_raw(self, entry: str, output: str | os.PathLike[str], by_key: bool = False) -> str:
        """Writes the stored kvpack file itself (read it with `kvstore.read_pack`); a segmented
        entry's segment goes beside it as `<segment name>.kvpack`, as `kvstore fetch --raw` writes it.
        The part is put in place only with its segment beside it; a re-pack between the two
        requests starts the read over."""
        path, wanted = self._entry_path(entry, by_key)
        output = os.fspath(output)
        temp = f"{output}.{os.getpid()}.part"
        beside = shared = None  # the segment's name, and the one it is downloaded under until checked
        target = self._target(path + "/pack")

        def refused(problem: str) -> CorruptError:  # named by the files it was to become
            if shared is not None and beside is not None:
                problem = problem.replace(shared, beside)
            return CorruptError(["GET", self.url + target[len(self._base):]], 3, problem.replace(temp, output),
                                status=None, code="corrupt")
        try:
            for _ in range(REPACK_ATTEMPTS):
                self._download(path + "/pack", {}, temp)
                try:
                    header = read_header(temp)
                except PackError as e:  # a proxy's page, another service: not a kvpack
                    raise refused(str(e)) from None
                self._check_names(wanted, header.entry_id, "GET", target, "the pack's header")
                named = (header.segment or {}).get("name") if header.format == 2 else None
                beside = shared = None
                if named is not None:
                    beside = os.path.join(os.path.dirname(output), f"{named}.kvpack")
                    shared = f"{beside}.{os.getpid()}.part"
                    try:
                        # The segment the part names, or 412: the entry was re-packed since.
                        self._download(path + "/pack", {"segment": "1"}, shared, if_match=f'"{named}"')
                    except _Repacked:
                        continue
                    except NotFoundError as e:
                        if "stored whole" not in str(e):  # a server from before 412 says it so
                            raise
                        continue
                # Opening them checks that the segment is the one the part names, by content;
                # only then do they take their names (a good copy of the segment already
                # beside the output, from a sibling entry, is never replaced by a bad one).
                try:
                    Pack(temp, segment=shared).close()
                except PackError as e:
                    raise refused(str(e)) from None
                if beside is not None and shared is not None:
                    os.replace(shared, beside)
                os.replace(temp, output)
                return output
        finally:
            for left in (temp, shared):
                if left is not None and os.path.exists(left):
                    os.remove(left)
        raise TransientError(["GET", self.url + path + "/pack"], 4,
                             f"the entry was re-packed {REPACK_ATTEMPTS} times while its pack was read",
                             status=412, code="precondition_failed")

    def fetch_layers(self, entry: str, dtype: str = "f16", expand: bool = False,
                     by_key: bool = False, policy: str | None = None) -> Iterator[PackLayer]:
        """The entry's layers, one ranged read and checksum-verified decode per layer, equal to
        `read_pack(...).layer(i, dtype)` (`.expanded_layer` with `expand`) of the stored pack.
        With `policy` (as `show` gave it), only the entry as stored with that policy: a
        re-pack since raises a `TransientError` before any layer.

        Every range names the layout's pack (`If-Match`). If compaction re-packs the entry
        before the first layer arrived, the layout is read again; after, layers of two packs
        would mix, so that raises a `TransientError`: read the entry again."""
        path, wanted = self._entry_path(entry, by_key)
        for _ in range(REPACK_ATTEMPTS):
            try:
                pack = self._layout(path, wanted)
            except _Repacked:
                continue
            check_stored_policy(pack.header, policy, ["GET", pack.path], status=412, code="precondition_failed")
            done = 0
            try:
                for i in range(pack.num_layers):
                    layer = pack.expanded_layer(i, dtype) if expand else pack.layer(i, dtype)
                    yield layer
                    done += 1
                return
            except _Repacked:
                if done:
                    raise TransientError(["GET", pack.path], 4, f"the entry was re-packed by compaction after {done} "
                                         f"of {pack.num_layers} layers were read: read it again",
                                         status=412, code="precondition_failed") from None
        raise TransientError(["GET", self.url + path], 4,
                             f"the entry was re-packed {REPACK_ATTEMPTS} times while its layout was read",
                             status=412, code="precondition_failed")

    def _layout(self, path: str, wanted: str, segment: str | None = None) -> "_RemotePack":
        """The entry's pack (with `segment`, that segment's, or `_Repacked` if the entry no
        longer names it) read by ranges; a segmented entry's pack opens its segment too, so
        its layers read joined (docs/design/segments.md)."""
        query = {"segment": "1"} if segment else {}
        target = self._target(path + "/layout", query)
        try:
            layout, resp = self._json("GET", path + "/layout", query, headers={"If-Match": f'"{segment}"'} if segment else None)
        except CommandError as e:
            # 412, or "stored whole" from a server from before 412: re-packed since the part was read.
            if segment and (e.status == 412 or (isinstance(e, NotFoundError) and "stored whole" in str(e))):
                raise _Repacked() from None
            raise
        self._check_names(wanted, str(layout.get("id")), "GET", target, "the layout")
        pack = _RemotePack(self, layout, resp.getheader("ETag") or f'"{layout["blob"]}"', query)
        self._check_names(wanted, pack.header.entry_id, "GET", target, "the layout's header")
        if pack.header.format == 2:
            named = (pack.header.segment or {}).get("name")
            shared = self._layout(path, wanted, segment=str(named))
            # Every range of it names this blob (If-Match), which the server reads only from a
            # file proven to hold that content; so the blob must be the one the part names.
            problem = (f"the server's segment is {shared.blob}, the entry's part names {named}" if shared.blob != named
                       else segment_problem(pack.header, shared.header))
            if problem is not None:
                raise pack._corrupt(f"segment: {problem}", field="segment")
            pack.segment = shared
        return pack

    def show(self, entry: str, by_key: bool = False) -> Entry:
        """One entry in full: an id or unique prefix, or the newest entry with producer key `entry`."""
        path = ("/v1/keys/" if by_key else "/v1/entries/") + self._segment(check_entry(entry))
        found = self._json("GET", path)[0]
        try:
            return Entry.from_json(found)
        except (KeyError, TypeError, AttributeError) as e:
            raise CommandError(["GET", self.url + path], 1, f"the server's entry lacks {e} (not kvstore serve's answer)",
                               code="bad_answer") from None

    def ls(self, source: str | None = None, *, model: str | None = None, key: str | None = None,
           limit: int | None = None, page_size: int = 100) -> list[Entry]:
        """Entries (of `model`, holding `source`, with producer `key`, at most `limit`), in id
        order, read a page of `page_size` at a time. Summaries: `spans` and `compression` are
        in `show`."""
        entries: list[Entry] = []
        after: str | None = None
        while limit is None or len(entries) < limit:
            size = page_size if limit is None else min(page_size, limit - len(entries))
            page, _ = self._json("GET", "/v1/entries", {"model": model, "source": source, "key": key,
                                                        "limit": size, "after": after})
            try:
                listed, following = [Entry.from_json(o) for o in page["entries"]], page["next"]
            except (KeyError, TypeError, AttributeError) as e:
                raise CommandError(["GET", self.url + "/v1/entries"], 1, f"the server's listing lacks {e} (not kvstore serve's "
                                   "answer)", code="bad_answer") from None
            if following is not None and (not listed or following == after):
                raise CommandError(["GET", self.url + "/v1/entries"], 1, "the server pages on without giving entries "
                                   f"(next {following!r} after {after!r}): stopped", code="bad_answer")
            entries += listed
            after = following
            if after is None:
                break
        return entries

    def remove(self, *entries: str) -> None:
        for entry in map(check_entry, entries):
            self._json("DELETE", "/v1/entries/" + self._segment(entry))

    def pin(self, *entries: str, pinned: bool = True) -> None:
        """`POST /v1/entries/{id}/pin` (`?pinned=false` with `pinned=False`)."""
        for entry in map(check_entry, entries):
            self._json("POST", f"/v1/entries/{self._segment(entry)}/pin", {"pinned": "true" if pinned else "false"})

    def check_policy(self, policy: str, policies: str | None = None) -> str:
        raise self._not_offered("policies --check")

    def stats(self) -> dict[str, Any]:
        raise self._not_offered("stats")

    def verify(self, entry: str | None = None) -> dict[str, Any]:
        raise self._not_offered("verify")

    def repack(self, *entries: str, policy: str, policies: str | None = None) -> list[dict[str, Any]]:
        raise self._not_offered("repack")

    @staticmethod
    def _not_offered(command: str) -> NotImplementedError:
        return NotImplementedError(f"{command}: kvstore serve's API (docs/openapi.yaml) does not offer it; "
                                   f"run `kvstore {command}` on the store's host, or use a local Client")


class _RemotePack(Pack):
    """A pack read through `/layout` and ranged `/pack` reads: the header comes from the
    layout (checked as a file's is), each section's stored bytes from one range request."""

    def __init__(self, client: HTTPClient, layout: dict[str, Any], tag: str, query: dict[str, Any] | None = None) -> None:
        self.client, self.tag = client, tag
        self.target = client._target(f"/v1/entries/{client._segment(str(layout['id']))}/pack", query)
        self.path = client.url + self.target[len(client._base):]
        self._map = None
        self._bytes = memoryview(b"")
        self.blob = str(layout["blob"])
        self.header = self._header_from_json(layout["header"], int(layout["header_offset"]))
        self.segment: Pack | None = None  # set by `HTTPClient._layout` for a segmented entry's part
        listed = [(int(l["offset"]), int(l["length"]), int(l["count"])) for l in layout["layers"]]
        if listed != [(d.offset, d.stored_length, d.count) for d in self.header.layers]:
            raise self._corrupt("the layout's layer ranges disagree with its header", field="layers")

    def _stored(self, i: int, d: Section) -> memoryview:
        if d.stored_length == 0:
            return memoryview(b"")
        c = self.client
        last = d.offset + d.stored_length - 1
        conn, resp = c._request("GET", self.target, headers={"Range": f"bytes={d.offset}-{last}", "If-Match": self.tag})
        try:
            if resp.status == 412:
                raise _Repacked()
            if resp.status != 206:
                if resp.status < 300:
                    raise self._corrupt(f"asked for bytes {d.offset}-{last}, got status {resp.status} instead of 206",
                                        i, "range")
                raise c._error("GET", self.target, resp)
            span = resp.getheader("Content-Range", "")
            if not span.startswith(f"bytes {d.offset}-{last}/"):
                raise self._corrupt(f"asked for bytes {d.offset}-{last}, got Content-Range {span!r}", i, "range")
            data = c._body(conn, "GET", self.target, resp)
        finally:
            conn.close()
        if len(data) != d.stored_length:
            raise self._corrupt(f"the range read returned {len(data)} of {d.stored_length} bytes", i, "stored_length")
        return memoryview(data)

