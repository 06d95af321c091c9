"""A new question about the same images: capture -> kvstore ingest -> fetch --prefix ->
load(prefix=True) -> generate with the NEW prompt equals a fresh prefill of it, token for token,
on tiny random LLaVA and Qwen2.5-VL models (CPU, fp32)."""
from __future__ import annotations

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
CASES = {
    "llava/image": lambda: tiny.llava(images=1),
    "llava/2-images": lambda: tiny.llava(images=2),
    "qwen2_5_vl/image": lambda: tiny.qwen2_5_vl(images=1),
    "qwen2_5_vl/2-images+video": lambda: tiny.qwen2_5_vl(images=2, videos=1),
    "qwen2_5_vl/video": lambda: tiny.qwen2_5_vl(images=0, videos=1),
}


def generate(model, **kwargs):
    with torch.no_grad():
        return model.generate(**kwargs, max_new_tokens=NEW_TOKENS, do_sample=False, output_logits=True,
                              return_dict_in_generate=True)


def reuse(model, new: dict, cache):
    """The new prompt on top of a loaded prefix: input_ids and attention mask only, no pixels."""
    return generate(model, input_ids=new["input_ids"], attention_mask=new["attention_mask"], past_key_values=cache)


def gap(a, b) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a.logits, b.logits))


@pytest.fixture(scope="module", params=sorted(CASES))
def asked(request, kvstore_bin: str, tmp_path_factory: pytest.TempPathFactory):
    """A tiny model, its first request captured and stored, the entry's prefix fetched, and a
    second question (longer than the first prompt) with its fresh run."""
    model, inputs, media = CASES[request.param]()
    snap = hf.capture(model, inputs, media=media)
    d = tmp_path_factory.mktemp(request.param.replace("/", "-"))
    kvstore.write(snap, d / "first.safetensors")
    cli = CLI(kvstore_bin, d / "store")
    entry = cli.ingest(d / "first.safetensors", "none")
    cli.run("fetch", entry, "--prefix", "--dtype", "f32", "-o", str(d / "prefix.safetensors"))
    question = np.random.default_rng(7).integers(1, 80, size=17).tolist()
    new = tiny.ask(inputs, snap.prefix_end, question)
    return request.param, model, snap, new, generate(model, **new), cli, entry, d


def test_a_new_question_on_a_fetched_prefix_equals_a_fresh_prefill(asked) -> None:
    name, model, snap, new, fresh, _, _, d = asked
    fed: list[int] = []
    hook = model.register_forward_pre_hook(lambda m, args, kwargs: fed.append(kwargs["input_ids"].shape[1]),
                                           with_kwargs=True)
    try:
        out = reuse(model, new, hf.load(d / "prefix.safetensors", model, prefix=True))
    finally:
        hook.remove()
    length = new["input_ids"].shape[1]
    assert out.sequences[0, length:].tolist() == fresh.sequences[0, length:].tolist()
    assert len(out.logits) == NEW_TOKENS and gap(out, fresh) < 1e-4
    assert fed[0] == length - snap.prefix_end  # only the new tokens went through the model
    prefix = kvstore.read(d / "prefix.safetensors")
    assert prefix.original_length == snap.prefix_end and prefix.input_ids.dtype == np.int64
    assert np.array_equal(prefix.input_ids, new["input_ids"][0, :snap.prefix_end].numpy())


def test_every_source_cut_to_its_prefix_gives_the_same_continuation(asked) -> None:
    """The captured Snapshot in memory, the kvsnap of the whole entry, its kvpack (read
    natively) and the pack decoded on the device all serve the prefix the same way."""
    name, model, snap, new, fresh, cli, entry, d = asked
    if name not in ("llava/2-images", "qwen2_5_vl/2-images+video"):
        pytest.skip("one case per model is enough")
    cli.run("fetch", entry, "--dtype", "f32", "-o", str(d / "whole.safetensors"))
    cli.run("fetch", entry, "--raw", "-o", str(d / "entry.kvpack"))
    import kvstore.torch as kvtorch
    for source in (snap, d / "whole.safetensors", d / "entry.kvpack", kvtorch.load_pack(d / "entry.kvpack", "cpu")):
        out = reuse(model, new, hf.load(source, model, prefix=True))
        assert gap(out, fresh) < 1e-4, source


def test_a_prompt_that_differs_inside_the_prefix_is_refused(asked) -> None:
    name, model, snap, new, _, _, _, d = asked
    ids = new["input_ids"].clone()
    ids[0, 3] = (ids[0, 3] + 1) % tiny.IMAGE
    wrong = dict(new, input_ids=ids)
    with pytest.raises(kvstore.ModelMismatchError, match="differs from the cached prefix at position 3"):
        reuse(model, wrong, hf.load(d / "prefix.safetensors", model, prefix=True))
    short = {k: v[:, :snap.prefix_end] for k, v in new.items() if k in ("input_ids", "attention_mask")}
    with pytest.raises(ValueError, match="pass the whole new prompt"):
        reuse(model, short, hf.load(d / "prefix.safetensors", model, prefix=True))
    image = torch.cat([new["input_ids"], torch.tensor([[tiny.IMAGE, 5]])], dim=1)
    with pytest.raises(ValueError, match=f"placeholder at position {new['input_ids'].shape[1]}"):
        reuse(model, {"input_ids": image, "attention_mask": torch.ones_like(image)},
              hf.load(d / "prefix.safetensors", model, prefix=True))


def test_m_rope_positions_continue_where_the_prefix_ends(asked) -> None:
    """The recorded position of the first prompt token equals transformers' rule over the spans
    (what a snapshot from another producer falls back on)."""
    name, model, snap, _, _, _, _, d = asked
    cache = hf.load(d / "prefix.safetensors", model, prefix=True)
    assert cache.seq_len == snap.prefix_end
    if name.startswith("llava"):  # 1-D RoPE: the new tokens simply continue at the prefix's length
        assert hf.PREFIX_POSITION_KEY not in snap.metadata and cache.next_position == snap.prefix_end
        return
    recorded = int(snap.metadata[hf.PREFIX_POSITION_KEY])
    assert cache.next_position == recorded and int(model.model.rope_deltas[0, 0]) == recorded - snap.prefix_end
    assert recorded < snap.prefix_end  # an image or video advances the position by less than its tokens
    bare = kvstore.Snapshot(model=snap.model, spans=snap.spans, layers=snap.layers)
    assert hf.prefix_next_position(bare) == recorded


def test_a_snapshot_without_input_ids_is_refused_for_a_prefix_load(kvstore_bin: str, tmp_path: Path) -> None:
    model, inputs, media = tiny.llava(images=1)
    snap = hf.capture(model, inputs, media=media)
    snap.input_ids = None
    kvstore.write(snap, tmp_path / "s.safetensors")
    with pytest.raises(kvstore.SnapshotError, match="input_ids: missing") as e:
        hf.load(tmp_path / "s.safetensors", model, prefix=True)
    assert e.value.field == "input_ids"
    hf.load(tmp_path / "s.safetensors", model)  # a whole load needs none


def test_a_merged_prefix_serves_a_new_question_in_both_modes(kvstore_bin: str, tmp_path: Path) -> None:
    """lightkv merges inside the images: fetch --prefix keeps whole groups, and the new question
    reads them with the size bias (proportional) or expanded (fetch --prefix --expand) alike."""
    model, inputs, media = tiny.qwen2_5_vl(images=2)
    snap = hf.capture(model, inputs, media=media)
    kvstore.write(snap, tmp_path / "s.safetensors")
    cli = CLI(kvstore_bin, tmp_path / "store")
    entry = cli.ingest(tmp_path / "s.safetensors", "lightkv:dense=0")  # random images are text-dense (docs/design/dense.md)
    cli.run("fetch", entry, "--prefix", "--dtype", "f32", "-o", str(tmp_path / "p.safetensors"))
    cli.run("fetch", entry, "--prefix", "--expand", "--dtype", "f32", "-o", str(tmp_path / "x.safetensors"))
    new = tiny.ask(inputs, snap.prefix_end, [11, 12, 13, 14, 15])
    merged = hf.load(tmp_path / "p.safetensors", model, prefix=True)
    assert len(set(merged.entry_counts)) > 1 and min(merged.entry_counts) < snap.prefix_end
    proportional = reuse(model, new, merged)
    expanded = reuse(model, new, hf.load(tmp_path / "x.safetensors", model, mode="expand", prefix=True))
    assert gap(proportional, expanded) < 1e-4


def test_media_other_than_the_caches_are_refused(asked) -> None:
    """The new prompt's ids cannot tell one image from another of the same size: `media` is
    checked against the sources the cache was captured with."""
    name, model, snap, new, fresh, _, _, d = asked
    if name not in ("llava/2-images", "qwen2_5_vl/2-images+video"):
        pytest.skip("one case per model is enough")
    _, _, media = CASES[name]()  # the same seeds: the media the fixture captured with
    # inputs: the request's processor output, whose videos' timing their sources cover
    out = reuse(model, new, hf.load(d / "prefix.safetensors", model, prefix=True, media=media, inputs=new))
    assert gap(out, fresh) < 1e-4
    assert hf.media_sources(model, new, media) == [s.source for s in snap.spans if s.is_vision]
    if "video" in name:
        # Qwen2.5-VL: the same video bytes at another timing (the processor's fps) sit at other
        # temporal positions, so the prefix is another one (a fresh prefill differs)
        with pytest.raises(kvstore.ModelMismatchError, match="pass the request's processor output as inputs="):
            hf.load(d / "prefix.safetensors", model, prefix=True, media=media)
        slower = dict(new, second_per_grid_ts=new["second_per_grid_ts"] * 2)
        with pytest.raises(kvstore.ModelMismatchError, match="image/video 2 of the cache .* at another timing"):
            hf.load(d / "prefix.safetensors", model, prefix=True, media=media, inputs=slower)
        assert hf.media_sources(model, slower, media)[:2] == hf.media_sources(model, new, media)[:2], "images: no timing"
    with pytest.raises(kvstore.ModelMismatchError, match="image/video 0 of the cache is sha256:.*another image"):
        hf.load(d / "prefix.safetensors", model, prefix=True, media=[b"another image"] + list(media[1:]))
    with pytest.raises(kvstore.ModelMismatchError, match="media holds 1 item"):
        hf.load(d / "prefix.safetensors", model, prefix=True, media=media[:1])
    with pytest.raises(TypeError, match="pass \\[item\\]"):  # one item, not a list of them
        hf.load(d / "prefix.safetensors", model, prefix=True, media=media[0])
    bare = kvstore.read(d / "prefix.safetensors")
    for span in bare.spans:
        span.source = None
    with pytest.raises(kvstore.ModelMismatchError, match="stored without a source"):
        hf.load(bare, model, prefix=True, media=media)


def test_captures_of_different_images_without_media_get_different_keys() -> None:
    """Without `media` the key still tells images apart: the pixels are hashed into it (the
    placeholder ids are the same for every image of a size)."""
    model, inputs, _ = tiny.llava(images=1)
    a = hf.capture(model, inputs)
    b = hf.capture(model, dict(inputs, pixel_values=inputs["pixel_values"] + 1))
    assert np.array_equal(a.input_ids, b.input_ids) and a.key != b.key
    assert hf.capture(model, inputs).key == a.key


def test_a_whole_m_rope_load_without_next_position_continues_where_the_capture_did() -> None:
    """`kvsnap.next_position` is optional: without it an M-RoPE cache continues at the position
    transformers' rule gives over the spans, not at the token count."""
    model, inputs, media = tiny.qwen2_5_vl(images=1)
    snap = hf.capture(model, inputs, media=media)
    recorded = snap.next_position
    assert recorded is not None and recorded < snap.original_length
    snap.next_position = None
    cache = hf.load(snap, model)
    assert cache.next_position == recorded
    assert int(model.model.rope_deltas[0, 0]) == recorded - snap.original_length
