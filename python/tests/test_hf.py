"""The Hugging Face adapter on tiny random LLaVA and Qwen2.5-VL models (CPU, fp32): capture ->
kvstore ingest -> fetch -> load -> generate continues exactly as the uninterrupted run."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import kvstore  # noqa: E402
import kvstore.hf as hf  # noqa: E402
from kvstore import tiny  # noqa: E402
from conftest import CLI  # noqa: E402

NEW_TOKENS = 8
BUILDERS = {
    "llava": lambda: tiny.llava(images=2),
    "qwen2_5_vl": lambda: tiny.qwen2_5_vl(images=1, videos=1),
    "qwen2_vl": lambda: tiny.qwen2_5_vl(images=1, videos=1, version="2"),
}


def _generate(model, **kwargs):
    return model.generate(**kwargs, max_new_tokens=NEW_TOKENS, do_sample=False, output_logits=True,
                          return_dict_in_generate=True)


def _continue(model, inputs, cache):
    return _generate(model, input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                     past_key_values=cache)


def _logit_gap(a, b) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a.logits, b.logits))


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def captured(request, kvstore_bin: str, tmp_path_factory: pytest.TempPathFactory):
    """A tiny model, its inputs, the uninterrupted run, and its captured snapshot on disk."""
    model, inputs, media = BUILDERS[request.param]()
    with torch.no_grad():
        full = _generate(model, **inputs)
    snap = hf.capture(model, inputs, media=media)
    d = tmp_path_factory.mktemp(request.param)
    path = d / "snap.safetensors"
    kvstore.write(snap, path)
    return request.param, model, inputs, media, full, snap, path, d


def test_capture_fetch_load_continues_token_for_token(captured, kvstore_bin: str) -> None:
    name, model, inputs, _, full, _, path, d = captured
    cli = CLI(kvstore_bin, d / "store-none")
    entry = cli.ingest(path, "none")
    fetched = d / "none.safetensors"
    cli.run("fetch", entry, "--dtype", "f32", "-o", str(fetched))
    cache = hf.load(fetched, model)
    out = _continue(model, inputs, cache)
    length = inputs["input_ids"].shape[1]
    assert out.sequences[0, length:].tolist() == full.sequences[0, length:].tolist()
    assert len(out.logits) == NEW_TOKENS and _logit_gap(out, full) < 1e-4


def test_a_whole_load_continues_only_its_own_prompt_and_only_once(captured) -> None:
    """Another prompt of the same length once continued the stored question silently, and a
    cache generate had already extended took another prompt: both are refused."""
    name, model, inputs, _, full, _, path, _ = captured
    other = dict(inputs)
    ids = inputs["input_ids"].clone()
    ids[0, 1] = (ids[0, 1] + 1) % model.config.get_text_config().vocab_size
    other["input_ids"] = ids
    with pytest.raises(kvstore.ModelMismatchError, match="differs from the cached prefix at position 1"):
        _continue(model, other, hf.load(path, model))
    cache = hf.load(path, model)
    length = inputs["input_ids"].shape[1]
    assert _continue(model, inputs, cache).sequences[0, length:].tolist() == full.sequences[0, length:].tolist()
    with pytest.raises(kvstore.ModelMismatchError, match="already continued"):
        _continue(model, other, cache)


def test_lightkv_proportional_and_expand_agree(captured, kvstore_bin: str) -> None:
    name, model, inputs, _, full, _, path, d = captured
    cli = CLI(kvstore_bin, d / "store-lightkv")
    entry = cli.ingest(path, "lightkv:dense=0")  # a tiny random model's images would be text-dense (docs/design/dense.md)
    merged, pack, expanded = d / "lightkv.safetensors", d / "lightkv.kvpack", d / "expanded.safetensors"
    cli.run("fetch", entry, "--dtype", "f32", "-o", str(merged))
    cli.run("fetch", entry, "--raw", "-o", str(pack))
    cli.run("fetch", entry, "--dtype", "f32", "--expand", "-o", str(expanded))
    proportional_cache = hf.load(merged, model, mode="proportional")
    counts = proportional_cache.entry_counts
    assert len(set(counts)) > 1 and counts[-1] < counts[0]  # merged: layers really differ
    proportional = _continue(model, inputs, proportional_cache)
    for source in (pack, expanded):  # members put back natively from the pack, or by fetch --expand
        expand = _continue(model, inputs, hf.load(source, model, mode="expand"))
        assert _logit_gap(proportional, expand) < 1e-4
    # proportional from the pack itself equals proportional from the fetched file
    assert _logit_gap(proportional, _continue(model, inputs, hf.load(pack, model))) < 1e-4
    # decoded on the device (here the CPU) by kvstore.torch, merged or expanded
    import kvstore.torch as kvtorch
    on_device = kvtorch.load_pack(pack, "cpu", dtype=torch.float32)
    assert _logit_gap(proportional, _continue(model, inputs, hf.load(on_device, model))) < 1e-4
    on_device = kvtorch.load_pack(pack, "cpu", dtype=torch.float32, expand=True)
    assert _logit_gap(proportional, _continue(model, inputs, hf.load(on_device, model, mode="expand"))) < 1e-4
    # the size bias matters: without it (every size 1) the logits move
    plain = hf.load(merged, model)
    for layer in plain.layers:
        layer.log_sizes.zero_()
    assert _logit_gap(proportional, _continue(model, inputs, plain)) > 1e-4
    with pytest.raises(kvstore.ExpandError, match="--expand"):
        hf.load(merged, model, mode="expand")


def test_spans_sources_and_positions(captured) -> None:
    name, model, inputs, media, _, snap, _, _ = captured
    length = inputs["input_ids"].shape[1]
    assert snap.original_length == length - 1 and snap.layers[0].count == length - 1
    assert snap.input_ids.dtype == np.int64  # every cached token's id, placeholders included
    assert np.array_equal(snap.input_ids, inputs["input_ids"][0, :-1].numpy())
    vision = [s for s in snap.spans if s.is_vision]
    # an image's bytes; a video's bytes and its timing (Qwen2.5-VL's second_per_grid_ts)
    timed = {"video": f"\nsecond_per_grid_ts={1.0!r}".encode()} if "second_per_grid_ts" in inputs else {}
    assert [s.source for s in vision] == ["sha256:" + hashlib.sha256(m + timed.get(s.kind, b"")).hexdigest()
                                          for s, m in zip(vision, media)]
    assert len(set(snap.sources)) == len(media) == 2
    assert snap.spans[0].role == "system" and snap.spans[-1].role == "prompt"
    ids = inputs["input_ids"][0]
    for s in vision:
        assert (ids[s.start:s.end] == (tiny.VIDEO if s.kind == "video" else tiny.IMAGE)).all()
    shape = hf.text_shape(model)
    q = snap.layers[1].prompt_query
    assert q.shape == (shape.q_heads, 8, shape.head_dim) and np.isfinite(q).all()
    if name == "llava":
        assert [(s.kind, s.grid) for s in vision] == [("image", (4, 4)), ("image", (4, 4))]
        assert snap.next_position is None
    else:
        assert [(s.kind, s.grid, s.frames) for s in vision] == [("image", (4, 6), None), ("video", (4, 4), 2)]
        # M-RoPE: positions run behind the token count after an image and a video
        assert snap.next_position is not None and snap.next_position < snap.original_length
        assert snap.next_position == snap.original_length + int(model.model.rope_deltas[0, 0])
    assert snap.key.startswith("sha256:") and snap.model == model.config.model_type


def test_the_prompt_query_is_the_model_query_with_rope(captured) -> None:
    """Attention computed from the recorded query and the stored keys and values equals the
    model's own attention output for that token (so the query carries RoPE, as the keys do)."""
    name, model, inputs, _, _, snap, _, _ = captured
    layer = snap.layers[1]
    q = torch.from_numpy(layer.prompt_query)[:, -2]  # token L-2: it attends to exactly the stored keys
    k, v = torch.from_numpy(layer.key), torch.from_numpy(layer.value)
    groups = q.shape[0] // k.shape[0]
    k, v = k.repeat_interleave(groups, 0), v.repeat_interleave(groups, 0)
    weights = torch.softmax((k @ q[:, :, None])[..., 0] / q.shape[-1] ** 0.5, dim=-1)
    ours = (weights[:, None, :] @ v)[:, 0]  # [q_heads, d]
    seen = {}
    o_proj = model.model.language_model.layers[1].self_attn.o_proj
    handle = o_proj.register_forward_pre_hook(lambda module, args: seen.setdefault("x", args[0]))
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        handle.remove()
    theirs = seen["x"][0, -2].view(q.shape[0], -1)
    assert torch.allclose(ours, theirs, atol=1e-5), (ours - theirs).abs().max()


def test_a_snapshot_of_other_weights_under_the_same_name_is_refused(captured) -> None:
    """Same architecture, shape and name, other weights (another seed; or the same weights in
    another dtype): the cache is another model's, and loading it would answer from it."""
    name, model, _, _, _, snap, path, _ = captured
    builder = {"llava": lambda **k: tiny.llava(images=2, **k), "qwen2_5_vl": lambda **k: tiny.qwen2_5_vl(images=1, videos=1, **k),
               "qwen2_vl": lambda **k: tiny.qwen2_5_vl(images=1, videos=1, version="2", **k)}[name]
    same, inputs, media = builder()
    assert hf.model_name(same) == hf.model_name(model) and len(snap.metadata[hf.WEIGHTS_KEY]) == 16
    hf.load(path, same)  # the same weights, built again: accepted
    reseeded, _, _ = builder(seed=1)
    with pytest.raises(kvstore.ModelMismatchError, match="captured from other weights"):
        hf.load(path, reseeded)
    with pytest.raises(kvstore.ModelMismatchError, match="captured from other weights"):
        hf.load(path, same.to(torch.bfloat16))
    assert hf.capture(reseeded, inputs, media=media).key != snap.key, "one name and inputs, other weights: other keys"


def test_a_snapshot_of_another_model_is_refused(captured, tmp_path: Path) -> None:
    name, model, _, _, _, snap, path, _ = captured
    other_name = "qwen2_5_vl" if name == "llava" else "llava"
    other, _, _ = BUILDERS[other_name]()
    with pytest.raises(kvstore.ModelMismatchError, match="does not fit the model"):
        hf.load(path, other)
    version = "2" if name == "qwen2_vl" else "2.5"
    deeper, _, _ = tiny.llava(layers=5) if name == "llava" else tiny.qwen2_5_vl(layers=5, version=version)
    with pytest.raises(kvstore.ModelMismatchError, match="4 layers, the model 5"):
        hf.load(snap, deeper)


def test_capture_checks_its_inputs(captured) -> None:
    _, model, inputs, media, _, _, _, _ = captured
    with pytest.raises(ValueError, match="media holds 1"):
        hf.capture(model, inputs, media=media[:1])
    batch = dict(inputs, input_ids=inputs["input_ids"].repeat(2, 1))
    with pytest.raises(ValueError, match=r"\[1, L\]"):
        hf.capture(model, batch)


@pytest.mark.parametrize("which", ["llava", "qwen2_5_vl"])
@pytest.mark.parametrize("question", [[], ["--question", "And what is on the right?"]], ids=["same", "question"])
def test_example_script_runs_end_to_end_through_the_binary_on_the_path(kvstore_bin: str, which: str,
                                                                       question: list[str]) -> None:
    import os
    import subprocess
    import sys
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PATH=f"{os.path.dirname(kvstore_bin)}{os.pathsep}{os.environ['PATH']}",
               PYTHONPATH=str(root / "python"))
    env.pop("KVSTORE_BIN", None)  # the script must find the binary on the PATH
    done = subprocess.run([sys.executable, str(root / "examples/hf_reuse.py"), "--tiny", which, *question],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("identical")
    assert ("from prefix:" in done.stdout) == bool(question)


def test_a_selection_policy_loads_in_both_modes(kvstore_bin: str, tmp_path: Path) -> None:
    """Dropping policies leave layers of different lengths with every size 1: both modes
    serve them through the kvstore cache, and agree."""
    model, inputs, media = tiny.llava(images=2)
    kvstore.write(hf.capture(model, inputs, media=media), tmp_path / "s.safetensors")
    cli = CLI(kvstore_bin, tmp_path / "store")
    entry = cli.ingest(tmp_path / "s.safetensors", "uniform55:dense=0")  # random images are text-dense (docs/design/dense.md)
    cli.run("fetch", entry, "--dtype", "f32", "-o", str(tmp_path / "f.safetensors"))
    proportional = hf.load(tmp_path / "f.safetensors", model)
    assert len(set(proportional.entry_counts)) > 1
    expand = hf.load(tmp_path / "f.safetensors", model, mode="expand")
    assert isinstance(expand, hf.KVStoreCache)
    assert _logit_gap(_continue(model, inputs, proportional), _continue(model, inputs, expand)) < 1e-6


def test_bf16_models_round_trip_in_bf16(kvstore_bin: str, tmp_path: Path) -> None:
    model, inputs, media = tiny.qwen2_5_vl(images=1, dtype=torch.bfloat16)
    snap = hf.capture(model, inputs, media=media)
    assert snap.dtype == "BF16"
    kvstore.write(snap, tmp_path / "s.safetensors")
    cli = CLI(kvstore_bin, tmp_path / "store")
    entry = cli.ingest(tmp_path / "s.safetensors", "none")
    cli.run("fetch", entry, "--dtype", "bf16", "-o", str(tmp_path / "f.safetensors"))
    fetched = kvstore.read(tmp_path / "f.safetensors")
    assert fetched.dtype == "BF16" and np.array_equal(fetched.layers[2].key, snap.layers[2].key)  # exact
    cache = hf.load(tmp_path / "f.safetensors", model)
    assert cache.layers[0].keys.dtype == torch.bfloat16
    out = _continue(model, inputs, cache)
    assert out.sequences.shape[1] == inputs["input_ids"].shape[1] + NEW_TOKENS
