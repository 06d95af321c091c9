"""Why no method here merges across a clip's frames (docs/FIDELITY.md, answers, clips): on the
answers benchmark's clips, per layer, the share of a frame's entries whose keys have a partner
at least 0.95 alike (cosine, unit-normed per KV head, mean over heads) in their own frame, and in
the frame before. The frames overlap by most of their pixels, but a key carries its position
(rotary embedding), and the same content one frame later sits a frame's length further on.

Usage: $(bash scripts/python-env.sh answers)/bin/python scripts/frame-similarity.py
"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

from kvstore.answers import items  # noqa: E402  (after the path above)
from kvstore.answers.model import Reader  # noqa: E402

THRESHOLD = 0.95


def main() -> None:
    torch.set_num_threads(1)
    reader = Reader.load()
    own, before = [], []
    for case in items.cases(photos=0, pages=0, texts=0):
        for keys in items.span_keys(reader, case):
            k = torch.nn.functional.normalize(keys, dim=-1)   # kv heads, entries, head dim
            size = k.shape[1] // items.FRAMES
            for t in range(1, items.FRAMES):
                frame, previous = k[:, t * size:(t + 1) * size], k[:, (t - 1) * size:t * size]
                inside = frame @ frame.transpose(1, 2) - 2 * torch.eye(size)[None]   # not its own partner
                own.append((inside.max(-1).values.mean(0) >= THRESHOLD).float().mean())
                before.append(((frame @ previous.transpose(1, 2)).max(-1).values.mean(0) >= THRESHOLD).float().mean())
    print(f"clips: {torch.stack(own).mean():.0%} of a frame's entries have a partner >= {THRESHOLD} alike in their own "
          f"frame, {torch.stack(before).mean():.0%} in the frame before (mean over layers, frames 2-{items.FRAMES})")


if __name__ == "__main__":
    main()
