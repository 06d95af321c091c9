"""Why no method here merges across a clip's frames (docs/FIDELITY.md, answers, clips): on the
answers benchmark's clips, each frame's keys and values against those of its own frame and of
the frame before: the share of entries with a partner at least 0.95 alike, and the mean best
partner's similarity (cosine, unit-normed per KV head, mean over heads; every layer, frames 2-4).
The frames overlap by most of their pixels; a key also carries its position (rotary embedding),
a value does not.

Usage: $(bash scripts/python-env.sh answers)/bin/python scripts/frame-similarity.py
"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

from kvstore.answers import items  # noqa: E402  (after the path above)
from kvstore.answers.model import Reader  # noqa: E402

THRESHOLD = 0.95


def best(a: torch.Tensor, b: torch.Tensor, same: bool) -> torch.Tensor:
    """Each entry of `a`'s best cosine to an entry of `b` (not itself), mean over heads."""
    sim = a @ b.transpose(1, 2)
    if same:
        sim = sim - 2 * torch.eye(a.shape[1])[None]
    return sim.max(-1).values.mean(0)


def main() -> None:
    torch.set_num_threads(1)
    reader = Reader.load()
    found: dict[str, list[torch.Tensor]] = {}
    for case in items.cases(photos=0, pages=0, texts=0):
        item = items.build(reader, case)
        ids = item.inputs["input_ids"][0]
        with torch.no_grad():
            cache = reader.model(**item.inputs, use_cache=True).past_key_values
        span = (ids == reader.image_token_id).nonzero().flatten()
        a, b = int(span[0]), int(span[-1]) + 1
        for layer in cache.layers:
            for name, tensor in (("keys", layer.keys), ("values", layer.values)):
                x = torch.nn.functional.normalize(tensor[0][:, a:b].float(), dim=-1)
                size = x.shape[1] // items.FRAMES
                for t in range(1, items.FRAMES):
                    frame, previous = x[:, t * size:(t + 1) * size], x[:, (t - 1) * size:t * size]
                    found.setdefault(f"{name} own", []).append(best(frame, frame, True))
                    found.setdefault(f"{name} before", []).append(best(frame, previous, False))
    for name, scores in found.items():
        s = torch.cat(scores)
        print(f"clips, {name} frame: {(s >= THRESHOLD).float().mean():.0%} of entries have a partner >= {THRESHOLD}, "
              f"mean best partner {s.mean():.3f}")


if __name__ == "__main__":
    main()
