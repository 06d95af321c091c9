"""How many media entries have a near-duplicate, on the answers benchmark's model
(docs/design/aircache.md, "Reducing only near-duplicates"): per layer, each entry's best cosine
similarity to another entry of its span (keys, unit-normed per KV head, mean over heads), and the
share of entries whose best partner is at least 0.8, 0.9 and 0.95 alike. Pages count the
document's own tokens only (not the line breaks that pad a page to its span).

Usage: $(bash scripts/python-env.sh answers)/bin/python scripts/key-similarity.py
"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

from kvstore.answers import items  # noqa: E402  (after the path above)
from kvstore.answers.documents import DOCUMENTS  # noqa: E402
from kvstore.answers.model import Reader  # noqa: E402

THRESHOLDS = (0.8, 0.9, 0.95)


def shares(reader: Reader, case: items.Case) -> torch.Tensor:
    """[layers, thresholds]: the share of the span's entries with a partner that alike."""
    layers = items.span_keys(reader, case)
    n = layers[0].shape[1]
    rows = torch.arange(n)
    if case.kind == "page":
        text = next(d for d in DOCUMENTS if d.name == case.name).text
        rows = rows[:len(reader.tokenizer(text, add_special_tokens=False)["input_ids"])]
    out = []
    for keys in layers:
        k = torch.nn.functional.normalize(keys, dim=-1)
        sim = k @ k.transpose(1, 2) - 2 * torch.eye(n)[None]   # no entry is its own partner
        best = sim.max(-1).values.mean(0)[rows]
        out.append([(best >= t).float().mean().item() for t in THRESHOLDS])
    return torch.tensor(out)


def main() -> None:
    torch.set_num_threads(1)
    reader = Reader.load()
    found: dict[str, list[torch.Tensor]] = {"photo": [], "page": []}
    for case in items.cases(videos=0, texts=0):
        found[case.kind].append(shares(reader, case))
    for kind, per_item in found.items():
        m = torch.stack(per_item)   # items, layers, thresholds
        mean, low, high = m.mean((0, 1)), m.mean(1).min(0).values, m.mean(1).max(0).values
        for t, x, lo, hi in zip(THRESHOLDS, mean.tolist(), low.tolist(), high.tolist()):
            print(f"{kind}s: {x:.0%} of entries have a partner >= {t} alike (items {lo:.0%}-{hi:.0%}, mean over {m.shape[1]} layers)")


if __name__ == "__main__":
    main()
