"""The real-model answers benchmark: every policy's answers against the full cache's, split by
content, as a markdown table (`make answers`; docs/FIDELITY.md, "Answers on a real model").

    result = run(POLICIES)                  # loads model.Reader, builds items.cases(), evaluates
    print(result.markdown())

Each kind of item (photo, page, text: `items`) is one `kvstore.eval.evaluate` call on the same
model, so the same code measures a user's model (`kvstore.eval.hub`) and ours.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from .. import eval as answers
from ..eval import Agreement, Report
from .items import FRAMES, KINDS, Case, build, cases
from .model import NAME, Reader, decoded_decoder

#: Every built-in policy (`kvstore policies`) and the settings the answers issue measured.
#: `none+lz4` and `lightkv+int8+lz4` are left out: a codec is lossless, so their answers are
#: those of `none` and `lightkv+int8`.
POLICIES = (
    "none", "int8", "int4g128m0t0r1",
    "lightkv", "lightkv@qwen", "lightkv35", "lightkv+int8", "lightkv+int4", "lightkv+int4g128m0t0",
    "uniform55", "random55", "prompt-topk55", "prompt-topk55:profile=flat", "prompt-topk35:profile=flat",
    "tome55", "aircache10", "aircache35", "airmerge20", "airmerge35", "airmerge20+int4g128m0t0r1",
    "airmerge35:evict=0:near=0.95:guide=none+int4g128m0t0r1", "airmerge35:budget=redundancy:protect=0.5+int8",
    "airmerge20:budget=redundancy:protect=0.5+int4g128m0t0r1", "airmerge35:budget=redundancy:protect=0.5:distinct=on+int8",
    "airmerge20:budget=redundancy:protect=0.5:distinct=on+int4g128m0t0r1",
)
KIND_NAMES = {"photo": "photos", "video": "clips of 4 frames", "page": "documents as pages (text-dense spans)",
              "text": "documents as text (with a photo)"}


@dataclass
class Result:
    """One report per kind of item, with the run's facts."""

    reports: dict[str, Report]
    seconds: float
    f16_bytes: dict[str, int] = field(default_factory=dict)  # keys + values of the captured tokens in F16, per kind
    max_new_tokens: int = 16

    def markdown(self) -> str:
        policies = [p.policy for p in next(iter(self.reports.values())).policies]
        kinds = [k for k in KINDS if k in self.reports]
        lines = [f"Model: {NAME}; items: " + ", ".join(f"{self.reports[k].items} {k}s" for k in kinds)
                 + f"; {self.max_new_tokens} answer tokens; {self.seconds / 60:.1f} min.", "",
                 "Mean KL (full cache ‖ compressed) of the next-token distributions over the full cache's answer, "
                 "same question (the one the cache was compressed for) and new question (prefix reused):", ""]
        seen = [k for k in ("photo", "video") if k in kinds]
        head = ["policy"] + [f"{k} vision kept" for k in seen] + ["stored / F16"]
        for k in kinds:
            head += [f"{k}: same KL", f"{k}: new KL"]
        lines += ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1)]
        for i, policy in enumerate(policies):
            rows = {k: self.reports[k].policies[i] for k in kinds}
            out = sum(r.bytes_out for r in rows.values())
            f16 = sum(self.f16_bytes.get(k, 0) for k in kinds)
            cells = [f"`{policy}`"] + [f"{100 * rows[k].kept:.0f}%" for k in seen] + [f"{out / f16:.3f}" if f16 else "-"]
            for k in kinds:
                cells += [_kl(rows[k].same), _kl(rows[k].new)]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "Top-1 agreement and exact greedy answers (questions whose every answer token agrees), "
                  "same question / new question:", ""]
        head = ["policy"] + [f"{k}: top-1" for k in kinds] + [f"{k}: exact" for k in kinds]
        lines += ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1)]
        for i, policy in enumerate(policies):
            rows = {k: self.reports[k].policies[i] for k in kinds}
            cells = [f"`{policy}`"] + [f"{_top1(rows[k].same)} / {_top1(rows[k].new)}" for k in kinds]
            cells += [f"{_exact(rows[k].same)} / {_exact(rows[k].new)}" for k in kinds]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "Later question: the new question captured and stored after the first (it names the first "
                  "question's prefix: a guided reduction's is the one the first question guided) and loaded whole; "
                  "mean KL and exact answers:", ""]
        head = ["policy"] + [f"{k}: later KL" for k in kinds] + [f"{k}: exact" for k in kinds]
        lines += ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1)]
        for i, policy in enumerate(policies):
            rows = {k: self.reports[k].policies[i] for k in kinds}
            cells = [f"`{policy}`"] + [_kl(rows[k].later) for k in kinds] + [_exact(rows[k].later) for k in kinds]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def _kl(a: Agreement | None) -> str:
    return "-" if a is None else f"{a.kl:.4f}"


def _top1(a: Agreement | None) -> str:
    return "-" if a is None else f"{a.top1:.3f}"


def _exact(a: Agreement | None) -> str:
    return "-" if a is None else f"{round(a.exact * a.questions)}/{a.questions}"


def run(policies: Sequence[str] = POLICIES, chosen: Sequence[Case] | None = None, max_new_tokens: int = 16,
        reader: Reader | None = None, log: Callable[[str], None] | None = None, threads: int = 1,
        jobs: int = 1) -> Result:
    """Loads the model (unless given), builds the items and evaluates every policy on each kind.
    `threads`: torch's CPU threads a process. One by default: on a shared 2-core machine two
    threads wait on each other (a 16-token answer took 16 s with two, 1.7 s with one, measured
    here). `jobs` > 1: the kinds of item are split over that many processes (each loads the
    model), by their number of questions."""
    chosen = list(chosen if chosen is not None else cases())
    if jobs > 1 and reader is None:
        return _parallel(policies, chosen, max_new_tokens, threads, jobs, log)
    import torch
    torch.set_num_threads(threads)
    start = time.monotonic()
    say = log or (lambda message: None)
    if reader is None:
        say("loading the decoder (GGUF, dequantized) and the vision encoder")
        reader = Reader.load()
    shape = reader.model.config.text_config
    per_token = shape.num_hidden_layers * 2 * shape.num_key_value_heads * (
        shape.hidden_size // shape.num_attention_heads) * 2
    reports, f16 = {}, {}
    for kind in KINDS:
        group = [c for c in chosen if c.kind == kind]
        if not group:
            continue
        items = [build(reader, c) for c in group]
        f16[kind] = sum(per_token * (int(i.inputs["input_ids"].shape[1]) - 1) for i in items)

        def progress(done: int, total: int, what: str, kind: str = kind) -> None:
            say(f"[{time.monotonic() - start:6.0f}s] {kind} {done}/{total} {what}")

        reports[kind] = answers.evaluate(reader.model, items, policies, max_new_tokens=max_new_tokens,
                                         progress=progress)
    return Result(reports, time.monotonic() - start, f16, max_new_tokens)


def _worker(policies: Sequence[str], chosen: Sequence[Case], max_new_tokens: int, threads: int) -> Result:
    return run(policies, chosen, max_new_tokens, threads=threads,
               log=lambda message: print(message, file=sys.stderr, flush=True))


def _parallel(policies: Sequence[str], chosen: list[Case], max_new_tokens: int, threads: int, jobs: int,
              log: Callable[[str], None] | None) -> Result:
    """`run` over groups of kinds in `jobs` processes (spawned: torch and fork do not mix), the
    kinds dealt largest first to the group with the least work (questions, a clip's counted once
    a frame); reports merged in KINDS order."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    start = time.monotonic()
    decoded_decoder()  # made once, before the workers read it
    # a clip's question costs about FRAMES photo questions (its prefix is FRAMES images long)
    size = {k: sum(len(c.questions) * (FRAMES if k == "video" else 1) for c in chosen if c.kind == k) for k in KINDS}
    groups: list[list[str]] = [[] for _ in range(jobs)]
    for kind in sorted((k for k in KINDS if size[k]), key=lambda k: -size[k]):
        min(groups, key=lambda g: sum(size[k] for k in g)).append(kind)
    groups = [g for g in groups if g]
    if log:
        log(f"{len(groups)} processes: " + "; ".join(", ".join(g) for g in groups))
    with ProcessPoolExecutor(len(groups), mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(_worker, [policies] * len(groups), [[c for c in chosen if c.kind in g] for g in groups],
                                [max_new_tokens] * len(groups), [threads] * len(groups)))
    reports = {k: r.reports[k] for k in KINDS for r in results if k in r.reports}
    f16 = {k: r.f16_bytes[k] for k in KINDS for r in results if k in r.f16_bytes}
    return Result(reports, time.monotonic() - start, f16, max_new_tokens)


def main(argv: Sequence[str] | None = None) -> int:
    import argparse
    parser = argparse.ArgumentParser(prog="python -m kvstore.answers", description=__doc__.split("\n")[0])
    parser.add_argument("--policy", nargs="+", default=list(POLICIES), metavar="P",
                        help="policies (default: every built-in one and the answers issue's settings)")
    parser.add_argument("--photos", type=int, default=None, metavar="N", help="the first N photos only")
    parser.add_argument("--videos", type=int, default=None, metavar="N", help="the first N clips only")
    parser.add_argument("--pages", type=int, default=None, metavar="N", help="the first N documents as pages only")
    parser.add_argument("--texts", type=int, default=None, metavar="N", help="the first N documents as text only")
    parser.add_argument("--max-new-tokens", type=int, default=16, metavar="N")
    parser.add_argument("--threads", type=int, default=1, metavar="N", help="torch CPU threads a process (default 1)")
    parser.add_argument("--jobs", type=int, default=2, metavar="N",
                        help="processes, the kinds of item split between them (default 2: this machine's cores)")
    parser.add_argument("-o", "--output", help="also write the markdown table to this file")
    parser.add_argument("--json", help="also write every report as JSON to this file")
    args = parser.parse_args(argv)
    counts = {k: v for k, v in (("photos", args.photos), ("videos", args.videos), ("pages", args.pages),
                                ("texts", args.texts)) if v is not None}
    result = run(args.policy, cases(**counts), args.max_new_tokens,
                 log=lambda message: print(message, file=sys.stderr, flush=True), threads=args.threads,
                 jobs=args.jobs)
    text = result.markdown()
    print(text)
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as f:
            f.write(text)
    if args.json:
        import json
        with open(args.json, "w") as f:
            json.dump({"model": NAME, "seconds": result.seconds, "f16_bytes": result.f16_bytes,
                       "reports": {k: r.to_json() for k, r in result.reports.items()}}, f, indent=1)
    return 0
