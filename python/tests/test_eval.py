"""Answers on a model (kvstore.eval, `python -m kvstore eval-answers`) on the tiny random LLaVA
and Qwen2.5-VL: `none` answers as the full cache does, for the same question and a new one on
the prefix; a lossy policy moves the distributions; bad inputs are named errors, one line each
from the CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import kvstore  # noqa: E402
from kvstore import eval as answers, tiny  # noqa: E402
from kvstore.__main__ import main  # noqa: E402

TOKENS = 6
QUESTIONS = ["what is in the picture", "what colour is it", "how many are there on the left"]
# dense=0: a tiny random model's image keys differ from their neighbours, so every image would
# be text-dense and kept whole (docs/design/dense.md); these tests are about what a reduction does.
POLICIES = ["none", "aircache35:dense=0"]


@pytest.fixture(scope="module", params=["llava", "qwen2_5_vl"])
def run(request, kvstore_bin: str, tmp_path_factory: pytest.TempPathFactory):
    """Both policies over one image and three questions, into a given store (the CLI tests use
    a scratch one). The progress callback's calls are kept."""
    model, items = answers.tiny_items(request.param, QUESTIONS)
    store = tmp_path_factory.mktemp("store") / "s"
    calls: list[tuple[int, int]] = []
    report = answers.evaluate(model, items, POLICIES, max_new_tokens=TOKENS, store=store,
                              progress=lambda done, total, what: calls.append((done, total)))
    return request.param, report, {p.policy: p for p in report.policies}, store, calls


def test_policy_none_answers_as_the_full_cache_does(run) -> None:
    _, report, by, _, _ = run
    none = by["none"]
    for agreement, questions in ((none.same, 1), (none.new, len(QUESTIONS) - 1), (none.later, len(QUESTIONS) - 1)):
        assert agreement is not None and agreement.questions == questions
        assert agreement.kl < 1e-6 and agreement.top1 == 1.0 and agreement.exact == 1.0
        assert 0 < agreement.steps <= questions * TOKENS
    assert none.kept == 1.0 and none.stored_policy.startswith("none") and 0 < none.bytes_out < none.bytes_in
    assert report.items == 1 and report.max_new_tokens == TOKENS


def test_a_lossy_policy_moves_the_next_token_distributions(run) -> None:
    _, _, by, _, _ = run
    lossy, none = by[POLICIES[1]], by["none"]
    assert lossy.stored_policy.startswith("aircache35") and 0.25 < lossy.kept < 0.45
    assert 0 < lossy.bytes_out < none.bytes_out
    for agreement in (lossy.same, lossy.new, lossy.later):
        assert agreement is not None and agreement.kl > 0 and agreement.kl < 10
        assert 0 <= agreement.top1 <= 1 and 0 <= agreement.exact <= 1
        assert (agreement.exact == 1.0) == (agreement.top1 == 1.0)  # exact: every step of every answer agrees
    assert lossy.same.steps == none.same.steps and lossy.new.steps == none.new.steps  # the same answers read
    assert lossy.later.steps == none.later.steps


def test_progress_counts_the_references_and_each_policy(run) -> None:
    _, _, _, _, calls = run
    total = 1 + len(POLICIES)
    assert calls == [(n, total) for n in range(1, total + 1)]


def test_entries_stored_in_a_given_store_are_removed_again(run) -> None:
    _, _, _, store, _ = run
    assert store.exists() and kvstore.Client(store).ls() == []


def test_entries_stored_before_a_later_policy_fails_are_removed_too(kvstore_bin: str, tmp_path: Path) -> None:
    """A bad policy after a good one: the good one's entry was left in the user's store."""
    model, items = answers.tiny_items("llava", QUESTIONS[:1])
    store = tmp_path / "s"
    with pytest.raises(kvstore.KVStoreError):
        answers.evaluate(model, items, ["none", "bogus-policy"], max_new_tokens=2, store=store)
    assert kvstore.Client(store).ls() == []


def test_the_table_and_the_json_name_every_policy(kvstore_bin: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval-answers", "--tiny", "llava", "--question", "a", "b", "--policy", "none", "tome55",
                 "--max-new-tokens", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [p["policy"] for p in report["policies"]] == ["none", "tome55"]
    for p in report["policies"]:
        assert set(p) == {"policy", "stored_policy", "kept", "bytes_in", "bytes_out", "same", "new", "later"}
        for use in ("same", "new", "later"):
            assert set(p[use]) == {"kl", "top1", "exact", "questions", "steps"}
    assert main(["eval-answers", "--tiny", "qwen2_5_vl", "--question", "a", "--policy", "none",
                 "--max-new-tokens", "2"]) == 0
    head, row = capsys.readouterr().out.splitlines()
    assert head.split() == ["policy", "kept", "bytes", "same", "KL", "top-1", "exact", "new", "KL", "top-1", "exact",
                            "later", "KL", "top-1", "exact"]
    assert row.split()[:2] == ["none", "100%"] and row.split()[-6:] == ["-"] * 6  # no new question


def test_bad_inputs_raise_named_errors(kvstore_bin: str, tmp_path: Path) -> None:
    model, items = answers.tiny_items("llava", ["a", "b"])
    with pytest.raises(kvstore.EvalError, match="no policy"):
        answers.evaluate(model, items, [])
    with pytest.raises(kvstore.EvalError, match="no inputs"):
        answers.evaluate(model, [], ["none"])
    with pytest.raises(kvstore.EvalError, match="no question"):
        answers.tiny_items("llava", [])
    with pytest.raises(FileNotFoundError, match="missing.png"):
        answers.evaluate(model, [answers.Item(items[0].inputs, [tmp_path / "missing.png"])], ["none"])
    with pytest.raises(FileNotFoundError, match="missing.png"):  # before any download
        answers.hub("no/such-model", [tmp_path / "missing.png"], ["a"])
    question = items[0].questions[0]
    moved = dict(question, input_ids=question["input_ids"].clone())
    moved["input_ids"][0, 2] += 1  # a token before the image differs
    with pytest.raises(kvstore.EvalError, match="new question 0: its prompt does not begin with"):
        answers.evaluate(model, [answers.Item(items[0].inputs, questions=[moved])], ["none"])
    with pytest.raises(kvstore.UsageError, match="nope"):
        answers.evaluate(model, items, ["none", "nope"], max_new_tokens=1)
    from transformers import LlamaConfig, LlamaForCausalLM
    text = LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2))
    with pytest.raises(kvstore.ModelMismatchError, match="model type 'llama' is not supported"):
        answers.evaluate(text, items, ["none"])


@pytest.mark.parametrize("args, code, message", [
    (["--tiny", "llava", "--policy", "none"], 1, "no question"),
    (["--tiny", "llava", "--question", "a"], 1, "no policy"),
    (["--tiny", "llava", "--question", "a", "--policy", "nope"], 1, 'policy "nope"'),
    (["--tiny", "llava", "--media", "x.png", "--question", "a", "--policy", "none"], 1, "--media goes with --model"),
    (["--model", "MODEL", "--media", "missing.png", "--question", "a", "--policy", "none"], 2, "missing.png"),
    (["--model", "MODEL", "--media", "IMAGE", "--question", "a", "--policy", "none"], 1, "'llama' is not supported"),
])
def test_the_cli_answers_bad_inputs_in_one_line(kvstore_bin: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 args: list[str], code: int, message: str) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (tmp_path / "image.png").write_bytes(b"not read")
    args = [str(tmp_path / "model") if a == "MODEL" else str(tmp_path / "image.png") if a == "IMAGE" else a
            for a in args]
    assert main(["eval-answers", *args]) == code
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_the_cli_exits_without_a_traceback(kvstore_bin: str, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "kvstore", "eval-answers", "--model", "m", "--media",
                           str(tmp_path / "gone.mp4"), "--question", "a", "--policy", "none"],
                          capture_output=True, text=True, cwd=Path(kvstore.__file__).parents[1],
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == f"error: No such file or directory: {tmp_path / 'gone.mp4'}"


def test_a_kvstore_serve_store_gives_the_same_answers(kvstore_bin: str, tmp_path: Path) -> None:
    """Through the HTTP API (prefix fetched with ?prefix=1): the numbers a scratch store gives,
    and nothing left behind."""
    from test_remote import serve
    model, items = answers.tiny_items("qwen2_5_vl", QUESTIONS[:2])
    server = serve(kvstore_bin, tmp_path / "serve")
    try:
        remote = answers.evaluate(model, items, ["none", "tome55"], max_new_tokens=3, store=server.client())
        assert server.client().ls() == []
    finally:
        server.stop()
    local = answers.evaluate(model, items, ["none", "tome55"], max_new_tokens=3)
    for r, l in zip(remote.policies, local.policies):
        assert (r.policy, r.kept, r.same.exact, r.new.exact) == (l.policy, l.kept, l.same.exact, l.new.exact)
        assert abs(r.bytes_out - l.bytes_out) < 64  # the pack header's few varying bytes (its time) aside
        assert abs(r.same.kl - l.same.kl) < 1e-9 and abs(r.new.kl - l.new.kl) < 1e-9


def llava_folder(d: Path) -> Path:
    """The tiny LLaVA saved as a hub model folder would hold it: weights, a word-level tokenizer
    over its vocabulary, a CLIP image processor (32 px) and a chat template."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlavaProcessor, PreTrainedTokenizerFast
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
    vocab = {w: 3 + i for i, w in enumerate("abcdefghijklmnopqrstuvwxyz")} | {"USER": 30, "ASSISTANT": 31, ":": 32}
    special = {"<unk>": 0, "</s>": 2, "<image>": tiny.IMAGE}
    words = Tokenizer(models.WordLevel(vocab | special, unk_token="<unk>"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    words.add_special_tokens(list(special))
    template = ("{% for m in messages %}{{ m['role'] | upper }}: {% for c in m['content'] %}{% if c['type'] == 'image' %}"
                "<image> {% else %}{{ c['text'] }}{% endif %}{% endfor %} {% endfor %}ASSISTANT:")
    processor = LlavaProcessor(image_processor=CLIPImageProcessorPil(size={"shortest_edge": 32},
                                                                     crop_size={"height": 32, "width": 32}),
                               tokenizer=PreTrainedTokenizerFast(tokenizer_object=words, unk_token="<unk>",
                                                                 eos_token="</s>", pad_token="</s>"),
                               patch_size=8, vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=template)
    tiny.llava()[0].save_pretrained(d)
    processor.save_pretrained(d)
    return d


def test_a_model_folder_with_its_processor_answers_about_image_files(kvstore_bin: str, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """--model with --media: the chat template builds every question's prompt, one item per file."""
    image = pytest.importorskip("PIL.Image")
    folder = llava_folder(tmp_path / "model")
    for n in range(2):
        image.fromarray(np.random.default_rng(n).integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(tmp_path / f"{n}.png")
    assert main(["eval-answers", "--model", str(folder), "--media", str(tmp_path / "0.png"), str(tmp_path / "1.png"),
                 "--question", "what is it", "is it red", "--policy", "none", "--max-new-tokens", "3", "--json"]) == 0
    [none] = json.loads(capsys.readouterr().out)["policies"]
    assert none["same"]["questions"] == 2 and none["new"]["questions"] == none["later"]["questions"] == 2
    assert none["same"]["exact"] == none["new"]["exact"] == none["later"]["exact"] == 1.0
    assert max(none["same"]["kl"], none["new"]["kl"], none["later"]["kl"]) < 1e-6
    (tmp_path / "notes.txt").write_text("no image")
    assert main(["eval-answers", "--model", str(folder), "--media", str(tmp_path / "notes.txt"), "--question", "a",
                 "--policy", "none"]) == 1
    assert "notes.txt: not an image" in capsys.readouterr().err
