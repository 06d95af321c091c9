"""Answers on your model: what a compression policy does to what the model says.

    model, items = kvstore.eval.hub("Qwen/Qwen2.5-VL-7B-Instruct", ["chart.png"],
                                    ["What is the trend?", "Which year is highest?"])
    report = kvstore.eval.evaluate(model, items, ["none", "lightkv+int8", "aircache35"])
    print(report.table())

For each item (one image or video, and questions about it) the first question's prefill is
captured (`kvstore.hf.capture`), stored once per policy (a scratch store, or the one given), and
fetched back. The reference is the full cache: the model's greedy answer to the question, with
its next-token distribution at each step. Each policy's cache then reads the same answer
(teacher forcing: the reference's tokens are fed whatever the compressed cache would have said)
and is compared step by step:

- `kl`: mean KL(full || compressed) of the next-token distributions over those steps;
- `top1`: the share of steps whose most likely token is the reference's;
- `exact`: the share of questions whose greedy answer from the compressed cache equals the
  reference's. The forced run is that greedy run up to its first disagreement, so a question
  is exact when every one of its steps agrees.

Two uses are measured. The **same** question: the entry loaded whole (`hf.load`, proportional
attention) continues its own prompt. **New** questions (every question after the first): the
entry's shareable prefix (`fetch --prefix`, `hf.load(..., prefix=True)`) with the new prompt
prefilled on top, against a fresh full prefill of that prompt with its pixels. **Later**
questions: each new question captured and stored too, after the first, as a serving node
stores the next question about an image, and loaded whole. It names the first question's
stored prefix (a guided reduction's prefix is the one the first question guided,
docs/design/segments.md) and keeps its own prompt's keys and values as captured. `none` gives
KL 0 and exact answers in all three (up to float rounding).
"""
from __future__ import annotations

import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList

from . import hf, snapshot, tiny
from .client import Client, Ingested, check_input
from .errors import EvalError, KVStoreError
from .snapshot import Snapshot

FETCH_DTYPE = {torch.float32: "f32", torch.bfloat16: "bf16", torch.float16: "f16"}
VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".avi", ".mkv")
Media = bytes | str | os.PathLike[str]
#: progress(done, total, what): called after the references of an item and after each policy.
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Item:
    """One image or video (or several, asked about together) and the questions about it:
    `inputs` the processor's output for the first question (captured and stored), `media` the
    bytes or files of its images and videos in input order (their sha256 become the spans'
    sources), `questions` the processor's outputs for further questions about the same media
    (whole prompts: they begin with the first's tokens up to its prompt)."""

    inputs: Mapping[str, Any]
    media: Sequence[Media] = ()
    questions: Sequence[Mapping[str, Any]] = ()


@dataclass(frozen=True)
class Agreement:
    """How a compressed cache's answers agree with the full cache's, over `questions`
    questions and `steps` answer tokens (module docstring)."""

    kl: float
    top1: float
    exact: float
    questions: int
    steps: int


@dataclass(frozen=True)
class PolicyAnswers:
    """One policy over every item: `kept` the share of vision tokens its entries hold (mean
    over layers and items; text is always kept), `bytes_in` / `bytes_out` the snapshots' and
    the stored entries' sizes (of the first questions), `same`, `new` and `later` the agreement
    for the captured question, for new questions on the prefix, and for new questions stored
    after it (None when no item has a second question)."""

    policy: str
    stored_policy: str
    kept: float
    bytes_in: int
    bytes_out: int
    same: Agreement
    new: Agreement | None
    later: Agreement | None = None


@dataclass(frozen=True)
class Report:
    model: str
    items: int
    max_new_tokens: int
    policies: list[PolicyAnswers] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        """A fixed-width table: policy, kept %, stored bytes, then KL / top-1 / exact for the
        same question, for new ones and for new ones stored later."""
        head = ("policy", "kept", "bytes", "same KL", "top-1", "exact", "new KL", "top-1", "exact",
                "later KL", "top-1", "exact")
        rows = [head]
        for p in self.policies:
            rows.append((p.policy, f"{100 * p.kept:.0f}%", str(p.bytes_out), *_cells(p.same), *_cells(p.new),
                         *_cells(p.later)))
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                 for r in rows]
        return "\n".join(lines)


def _cells(a: Agreement | None) -> tuple[str, str, str]:
    if a is None:
        return "-", "-", "-"
    return f"{a.kl:.2e}", f"{a.top1:.3f}", f"{round(a.exact * a.questions)}/{a.questions}"


# ---------------------------------------------------------------- answers

@dataclass(frozen=True)
class _Answer:
    tokens: list[int]
    logits: torch.Tensor  # [steps, vocab], float64


class _Forced(LogitsProcessor):
    """Teacher forcing inside generate: the next token is the reference's, whatever the scores
    (raw logits, which `output_logits` returns, are left as the model gave them)."""

    def __init__(self, tokens: list[int], start: int) -> None:
        self.tokens, self.start = tokens, start

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        forced = torch.full_like(scores, -math.inf)
        forced[:, self.tokens[input_ids.shape[1] - self.start]] = 0
        return forced


def _greedy(model: torch.nn.Module, config: GenerationConfig, inputs: Mapping[str, Any],
            cache: Any = None, forced: list[int] | None = None) -> _Answer:
    """Greedy decoding from `inputs` (with pixels) or, given a loaded `cache`, from its ids alone;
    with `forced`, those tokens are fed instead of the model's choices."""
    request = dict(inputs) if cache is None else {"input_ids": inputs["input_ids"],
                                                  "attention_mask": inputs["attention_mask"],
                                                  "past_key_values": cache}
    start = request["input_ids"].shape[1]
    processors = LogitsProcessorList([_Forced(forced, start)] if forced is not None else [])
    if forced is not None:
        config = GenerationConfig(**{**config.to_dict(), "max_new_tokens": len(forced)})
    with torch.no_grad():
        out = model.generate(**request, generation_config=config, logits_processor=processors)
    return _Answer(out.sequences[0, start:].tolist(), torch.stack([l[0] for l in out.logits]).to("cpu", torch.float64))


class _Tally:
    """Per-step KL and top-1 agreement, per-question exactness, pooled over questions."""

    def __init__(self) -> None:
        self.kl: list[float] = []
        self.agree: list[bool] = []
        self.exact: list[bool] = []

    def add(self, reference: _Answer, got: _Answer) -> None:
        p = torch.log_softmax(reference.logits, dim=-1)
        q = torch.log_softmax(got.logits, dim=-1)
        self.kl += (p.exp() * (p - q)).sum(dim=-1).clamp_min(0).tolist()
        agree = (got.logits.argmax(dim=-1) == torch.tensor(reference.tokens)).tolist()
        self.agree += agree
        self.exact.append(all(agree))

    def result(self) -> Agreement | None:
        if not self.exact:
            return None
        return Agreement(kl=sum(self.kl) / len(self.kl), top1=sum(self.agree) / len(self.agree),
                         exact=sum(self.exact) / len(self.exact), questions=len(self.exact), steps=len(self.agree))


@dataclass
class _PolicyTally:
    same: _Tally = field(default_factory=_Tally)
    new: _Tally = field(default_factory=_Tally)
    later: _Tally = field(default_factory=_Tally)
    stored_policy: str = ""
    bytes_in: int = 0
    bytes_out: int = 0
    vision_kept: int = 0
    vision: int = 0


# ---------------------------------------------------------------- evaluate

def _check(model: torch.nn.Module, items: Sequence[Item], policies: Sequence[str]) -> None:
    """Every bad input before any prefill: EvalError, ModelMismatchError, FileNotFoundError."""
    hf.check_supported(model.config)
    if not items:
        raise EvalError("no inputs: give at least one item (an image or video and a question)")
    if not policies:
        raise EvalError("no policy to evaluate: give at least one (`kvstore policies` lists them)")
    for n, item in enumerate(items):
        if "input_ids" not in item.inputs:
            raise EvalError(f"item {n}: inputs carry no input_ids (pass the processor's output for a question)")
        end = prefix_end(model, item.inputs)
        prefix = item.inputs["input_ids"][0, :end].tolist()
        for k, question in enumerate(item.questions):
            ids = question["input_ids"][0].tolist()
            if ids[:end] != prefix or len(ids) <= end:
                raise EvalError(f"item {n}, new question {k}: its prompt does not begin with the first question's "
                                f"{end} tokens before its prompt and go on past them (a question about the same media "
                                "in the same chat template does)")
        for m in item.media:
            if not isinstance(m, (bytes, bytearray)):
                check_input(m)


def _store(store: str | os.PathLike[str] | Client | None, scratch: str) -> Client:
    if isinstance(store, Client):
        return store
    return Client(store if store is not None else os.path.join(scratch, "store"))


def evaluate(model: torch.nn.Module, items: Sequence[Item], policies: Sequence[str], max_new_tokens: int = 16,
             store: str | os.PathLike[str] | Client | None = None, progress: Progress | None = None) -> Report:
    """Each policy's answers against the full cache's, on `model` (module docstring).

    `store`: None for a scratch store (removed afterwards), a store folder, a `kvstore serve`
    URL or a `Client`; entries this call stores in a given store are removed again (each
    policy's copy carries its own `kvsnap.key`, so one store holds them all). Raises EvalError
    (no inputs, policies or input_ids, a new question that does not begin with its item's
    prefix), ModelMismatchError (a model type `kvstore.hf` does not support), FileNotFoundError
    (a media file), UsageError (a policy the store does not know)."""
    items, policies = list(items), list(dict.fromkeys(policies))
    if max_new_tokens < 1:
        raise EvalError(f"max_new_tokens is {max_new_tokens}: answers need at least one token")
    _check(model, items, policies)
    generation = model.generation_config
    eos = generation.eos_token_id
    pad = generation.pad_token_id if generation.pad_token_id is not None else eos
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos,
                              pad_token_id=pad[0] if isinstance(pad, list) else pad,
                              output_logits=True, return_dict_in_generate=True)
    dtype = FETCH_DTYPE.get(next(model.parameters()).dtype, "f16")
    tallies = {p: _PolicyTally() for p in policies}
    total, done = len(items) * (1 + len(policies)), 0
    created: list[str] = []
    with tempfile.TemporaryDirectory(prefix="kvstore-eval-") as scratch:
        client = _store(store, scratch)
        finished = False
        try:
            for n, item in enumerate(items):
                snap = hf.capture(model, item.inputs, media=item.media)
                entries = _ingest(client, snap, policies, os.path.join(scratch, "snapshot.safetensors"), created)
                same = _greedy(model, config, item.inputs)
                new = [_greedy(model, config, q) for q in item.questions]
                done += 1
                if progress:
                    progress(done, total, f"item {n + 1}/{len(items)}: full-cache answers")
                later = [_ingest(client, hf.capture(model, q, media=item.media), policies,
                                 os.path.join(scratch, "snapshot.safetensors"), created, f"#question={k + 1}")
                         for k, q in enumerate(item.questions)]
                for policy, entry in entries.items():
                    _measure(model, config, client, snap, item, entry, dtype, same, new, tallies[policy], scratch)
                    for question, reference, stored in zip(item.questions, new, later):
                        whole = client.fetch(stored[policy], os.path.join(scratch, "later.safetensors"), dtype=dtype)
                        tallies[policy].later.add(reference, _greedy(model, config, question, hf.load(whole, model),
                                                                     forced=reference.tokens))
                    done += 1
                    if progress:
                        progress(done, total, f"item {n + 1}/{len(items)}: {policy}")
            finished = True
        finally:
            # What it added goes, whether it finished or not (every entry as it was stored); a
            # failure to remove never hides the failure that stopped the run.
            if store is not None and created:
                try:
                    client.remove(*created)
                except KVStoreError:
                    if finished:
                        raise
    return Report(model=hf.model_name(model), items=len(items), max_new_tokens=max_new_tokens, policies=[
        PolicyAnswers(policy=p, stored_policy=t.stored_policy, kept=t.vision_kept / t.vision if t.vision else 1.0,
                      bytes_in=t.bytes_in, bytes_out=t.bytes_out, same=t.same.result(),  # type: ignore[arg-type]
                      new=t.new.result(), later=t.later.result())
        for p, t in tallies.items()])


def _ingest(client: Client, snap: Snapshot, policies: Sequence[str], path: str, created: list[str],
            question: str = "") -> dict[str, Ingested]:
    """The snapshot stored once per policy, each copy under its own key (an entry's id is its
    content, so copies with one key would all keep the first policy); each one new to the
    store is added to `created` as soon as it is stored."""
    key = snap.key or "kvstore-eval"
    entries = {}
    try:
        for policy in policies:
            snap.key = f"{key}{question}#policy={policy}"
            snapshot.write(snap, path)
            entries[policy] = stored = client.ingest(path, policy=policy)
            if not stored.already_stored:
                created.append(stored)
    finally:
        snap.key = key
    return entries


def _measure(model: torch.nn.Module, config: GenerationConfig, client: Client, snap: Snapshot, item: Item,
             entry: Ingested, dtype: str, same: _Answer, new: Sequence[_Answer], tally: _PolicyTally,
             scratch: str) -> None:
    whole = client.fetch(entry, os.path.join(scratch, "whole.safetensors"), dtype=dtype)
    tally.same.add(same, _greedy(model, config, item.inputs, hf.load(whole, model), forced=same.tokens))
    if item.questions:
        prefix = client.fetch(entry, os.path.join(scratch, "prefix.safetensors"), dtype=dtype, prefix=True)
        for question, reference in zip(item.questions, new):
            cache = hf.load(prefix, model, prefix=True)
            tally.new.add(reference, _greedy(model, config, question, cache, forced=reference.tokens))
    stored = entry.entry or client.show(entry)
    vision = sum(s.count for s in snap.spans if s.is_vision)
    tally.stored_policy = entry.policy
    tally.bytes_in += entry.bytes_in
    tally.bytes_out += stored.bytes_out + stored.segment_bytes  # a segmented entry's prefix counts too
    tally.vision += vision * len(snap.layers)
    tally.vision_kept += stored.entries_kept - (snap.original_length - vision) * len(snap.layers)


# ---------------------------------------------------------------- inputs

def prefix_end(model: torch.nn.Module, inputs: Mapping[str, Any]) -> int:
    """Where the shareable prefix of a request ends: its first prompt token (KVSNAP.md)."""
    ids = inputs["input_ids"][0].tolist()
    return snapshot.prefix_end(hf.spans_of(ids, hf.vision_items(model, inputs)), len(ids))


def tiny_items(kind: str, questions: Sequence[str]) -> tuple[torch.nn.Module, list[Item]]:
    """A tiny random model (`llava` or `qwen2_5_vl`, kvstore.tiny) and one item: its image with
    each question (text as tiny-vocabulary ids, `tiny.tokens`) after the image's prefix."""
    builders = {"llava": tiny.llava, "qwen2_5_vl": tiny.qwen2_5_vl}
    if kind not in builders:
        raise EvalError(f"no tiny model {kind!r} (there are: {', '.join(builders)})")
    if not questions:
        raise EvalError("no question: give at least one")
    model, inputs, media = builders[kind]()
    end = prefix_end(model, inputs)
    asked = [tiny.ask(inputs, end, tiny.tokens(q)) for q in questions]
    return model, [Item(asked[0], media, asked[1:])]


def hub(model_id: str, media: Sequence[str | os.PathLike[str]], questions: Sequence[str],
        device: str | None = None, dtype: torch.dtype | None = None) -> tuple[torch.nn.Module, list[Item]]:
    """A Hugging Face model (id or directory) and one item per media file: the file (an image,
    or a video by its suffix: .mp4 .mov .webm .avi .mkv) with each question, through the
    processor's chat template. CUDA and bfloat16 when there is a GPU, else CPU and float32."""
    if not questions:
        raise EvalError("no question: give at least one")
    if not media:
        raise EvalError("no media: give at least one image or video file")
    paths = [check_input(m) for m in media]
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor
    hf.check_supported(AutoConfig.from_pretrained(model_id))  # the config alone, before the weights
    pixels = [_pixels(path) for path in paths]
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = dtype or (torch.bfloat16 if device == "cuda" else torch.float32)
    processor = AutoProcessor.from_pretrained(model_id)
    model = AutoModelForImageTextToText.from_pretrained(model_id, dtype=dtype).to(device).eval()
    return model, [_hub_item(processor, model, path, p, questions) for path, p in zip(paths, pixels)]


def _pixels(path: str) -> dict[str, Any]:
    """The processor's media argument for one file: `videos` by suffix, else an RGB image."""
    if path.lower().endswith(VIDEO_SUFFIXES):
        return {"videos": [path]}
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise EvalError(f"{path}: reading images needs Pillow (pip install pillow)") from None
    try:
        return {"images": [Image.open(path).convert("RGB")]}
    except UnidentifiedImageError:
        raise EvalError(f"{path}: not an image (a video needs one of the suffixes {' '.join(VIDEO_SUFFIXES)})") from None


def _hub_item(processor: Any, model: torch.nn.Module, path: str, pixels: dict[str, Any],
              questions: Sequence[str]) -> Item:
    kind = "video" if "videos" in pixels else "image"
    asked = []
    for question in questions:
        messages = [{"role": "user", "content": [{"type": kind}, {"type": "text", "text": question}]}]
        text = processor.apply_chat_template(messages, add_generation_prompt=True)
        asked.append(dict(processor(text=text, return_tensors="pt", **pixels).to(model.device)))
    return Item(asked[0], [path], asked[1:])


__all__ = ["Agreement", "Item", "PolicyAnswers", "Report", "evaluate", "hub", "prefix_end", "tiny_items"]
