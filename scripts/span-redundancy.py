"""The redundancy the dense-span guard measures (docs/design/dense.md), on the answers
benchmark's model: per item and layer, the share of its vision span's entries with a spatial
neighbour (next in row or column of the 14 x 14 grid) whose keys, every head's concatenated and
unit-normed, are at least 0.95 alike; then per item the mean over all layers and over the more
redundant half of the layers (what `DenseSpanGuard` compares with `dense`). Pages count their
padding line breaks, as the guard sees them.

Usage: $(bash scripts/python-env.sh answers)/bin/python scripts/span-redundancy.py
"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

from kvstore.answers import items  # noqa: E402  (after the path above)
from kvstore.answers.model import GRID, Reader  # noqa: E402

NEAR = 0.95


def layer_shares(reader: Reader, case: items.Case) -> list[float]:
    """Per layer: the share of the span's entries with a near-duplicate neighbour."""
    out = []
    for keys in items.span_keys(reader, case):
        k = keys.permute(1, 0, 2).reshape(keys.shape[1], -1)   # entries, heads * dim
        k = torch.nn.functional.normalize(k, dim=-1).reshape(GRID, GRID, -1)
        right, down = (k[:, :-1] * k[:, 1:]).sum(-1) >= NEAR, (k[:-1] * k[1:]).sum(-1) >= NEAR
        alike = torch.zeros(GRID, GRID, dtype=torch.bool)
        alike[:, :-1] |= right
        alike[:, 1:] |= right
        alike[:-1] |= down
        alike[1:] |= down
        out.append(alike.float().mean().item())
    return out


def main() -> None:
    torch.set_num_threads(2)
    reader = Reader.load()
    print("| item | mean over layers | more redundant half | per layer |")
    print("| --- | ---: | ---: | --- |")
    for case in items.cases(videos=0, texts=0):   # one 14 x 14 span an item
        shares = layer_shares(reader, case)
        top = sorted(shares, reverse=True)[:(len(shares) + 1) // 2]
        print(f"| {case.kind} {case.name} | {sum(shares) / len(shares):.2f} | {sum(top) / len(top):.2f} | "
              + " ".join(f"{x:.2f}" for x in shares) + " |", flush=True)


if __name__ == "__main__":
    main()
