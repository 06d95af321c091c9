#!/usr/bin/env python3
"""LightKV in KV space, written the straightforward numpy way.

A second, independent implementation of what `kvstore ingest --policy lightkv` does with the
default settings (docs/DESIGN.md, "LightKV in KV space"): the reference schedule by fraction of
depth (llava on anything but 28 layers), W x W windows per frame with the small-window rule,
ToMe bipartite matching of keys (cosine over all kv heads) inside each window, prompt-attention
weights, weighted means whose weights accumulate, groups reused by deeper layers, positions =
representative's, sizes = member counts. Used to cross-check the Swift compressor and as the
"numpy implementation" the speed target in docs/BENCHMARKS.md is measured against.

    python3 scripts/lightkv_numpy.py SNAP.safetensors -o out.npz [--time] [--compare FETCHED]

The output holds, per layer i, `layers.{i}.key` / `.value` ([kv_heads, n_i, dim], f32),
`layers.{i}.positions` and `layers.{i}.sizes` ([n_i], i32) -- the same names `kvstore fetch`
writes. `--time` prints load, compression and total seconds. `--compare FETCHED` checks the result
against `kvstore fetch --dtype f32` of `kvstore ingest --policy lightkv+f16` of the same snapshot:
positions and sizes must be equal; keys and values are reported against F16 rounding.
"""
import argparse
import json
import math
import sys
import time

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file


# ---------------------------------------------------------------- schedule, layout, windows

REFERENCE = {  # (fraction of depth, windows per side); ratio 0.5 each
    "llava": [(12 / 32, 4), (18 / 32, 2), (24 / 32, 1)],
    "qwen": [(12 / 28, 6), (17 / 28, 4), (22 / 28, 2)],
}


def schedule(num_layers, ref="auto", ratio=0.5):
    """[(layer, W, P)]: stages at round(f * L), strictly increasing, inside the model."""
    if ref == "auto":
        ref = "qwen" if num_layers == 28 else "llava"
    stages, previous = [], -1
    for f, w in REFERENCE[ref]:
        layer = max(int(math.floor(f * num_layers + 0.5)), previous + 1)  # round half away from 0
        if layer >= num_layers:
            break
        stages.append((layer, w, ratio))
        previous = layer
    return stages


def layout(spans, seq_len):
    """frame, row, col of every original position (frame -1 for text); frame grids; prompt range."""
    frame = np.full(seq_len, -1, np.int64)
    row = np.zeros(seq_len, np.int64)
    col = np.zeros(seq_len, np.int64)
    grids = []
    for s in spans:
        if s["kind"] not in ("image", "video"):
            continue
        rows, cols = s["grid"]
        for f in range(s.get("frames", 1)):
            start = s["start"] + f * rows * cols
            p = np.arange(start, min(start + rows * cols, seq_len))
            frame[p] = len(grids)
            row[p], col[p] = (p - start) // cols, (p - start) % cols
            grids.append((rows, cols))
    text = [s for s in spans if s["kind"] == "text"]
    prompt = [s for s in text if s.get("role") == "prompt"] or text
    prompt_range = (prompt[-1]["start"], prompt[-1]["end"]) if prompt else None
    return frame, row, col, grids, prompt_range


def band(index, length, parts):
    """Band of each index when `length` cells are cut into `parts`, the first length % parts longer."""
    base, rem = length // parts, length % parts
    long = rem * (base + 1)
    return np.where(index < long, index // (base + 1), rem + (index - long) // max(base, 1))


def effective_windows(requested, standing, rows, cols):
    """Small-window rule: the largest w <= W (and the grid's sides) with >= 8 entries per window."""
    w = max(1, min(requested, rows, cols))
    while w > 1 and standing < 8 * w * w:
        w -= 1
    return w


# ---------------------------------------------------------------- weights, means, matching

def prompt_weights(keys, queries, sizes):
    """sum over query heads and prompt tokens of softmax_j(q.k_j / sqrt(d) + log size_j).

    keys [kvh, nv, d] (vision entries), queries [qh, m, d]; query head h reads kv head h // (qh/kvh).
    """
    kvh, nv, d = keys.shape
    qh, m, _ = queries.shape
    q = queries.reshape(kvh, (qh // kvh) * m, d)               # GQA: heads of one kv head side by side
    logits = q @ keys.transpose(0, 2, 1) / np.float32(math.sqrt(d)) + np.log(sizes.astype(np.float32))
    logits -= logits.max(axis=-1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=-1, keepdims=True)
    return p.sum(axis=(0, 1))                                  # [nv]


def group_means(x, group, weights, sizes):
    """Weighted mean of x [heads, n, d] over each group (group ids 0..G-1, entries in order)."""
    total = np.bincount(group, weights=weights).astype(np.float32)
    bad = ~(total > 0) | ~np.isfinite(total)                   # weights summing to <= 0: use sizes
    if bad.any():
        weights = np.where(bad[group], sizes.astype(np.float32), weights)
        total = np.bincount(group, weights=weights).astype(np.float32)
    order = np.argsort(group, kind="stable")
    starts = np.searchsorted(group[order], np.arange(total.size))
    w = (weights / total[group]).astype(np.float32)
    return np.add.reduceat(x[:, order, :] * w[order][None, :, None], starts, axis=1)


def bipartite(features, ratio):
    """ToMe matching in one window: [(a, b)] item indices, A = even items, B = odd items."""
    n = features.shape[0]
    r = min(int(ratio * n), n // 2)
    if r <= 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    a, b = np.arange(0, n, 2), np.arange(1, n, 2)
    sim = features[a] @ features[b].T
    best = sim.argmax(axis=1)                                  # ties: first B
    score = sim[np.arange(a.size), best]
    top = np.argsort(-score, kind="stable")[:r]                # ties: earlier A
    return a[top], b[best[top]]


# ---------------------------------------------------------------- the compressor

def compress(snapshot, spans, seq_len, num_layers):
    frame, row, col, grids, prompt_range = layout(spans, seq_len)
    stages = schedule(num_layers)
    rep = np.arange(seq_len)                                   # representative of each original position
    out = {}
    for i in range(num_layers):
        k, v = snapshot[f"layers.{i}.key"], snapshot[f"layers.{i}.value"]
        n = k.shape[1]
        pos = snapshot.get(f"layers.{i}.positions", np.arange(n, dtype=np.int32)).astype(np.int64)
        size = snapshot.get(f"layers.{i}.sizes", np.ones(n, np.int32)).astype(np.int64)
        vis = np.flatnonzero(frame[pos] >= 0)
        txt = np.flatnonzero(frame[pos] < 0)
        if not any(s[0] <= i for s in stages) or vis.size == 0:
            out.update({f"layers.{i}.key": k.astype(np.float32), f"layers.{i}.value": v.astype(np.float32),
                        f"layers.{i}.positions": pos.astype(np.int32), f"layers.{i}.sizes": size.astype(np.int32)})
            continue
        k, v = k.astype(np.float32), v.astype(np.float32)
        kv, vv, sv = k[:, vis], v[:, vis], size[vis]

        # weights: the prompt's attention to each vision entry
        q = snapshot.get(f"layers.{i}.prompt_query")
        if q is None or q.shape[1] == 0:
            inprompt = np.flatnonzero((pos >= prompt_range[0]) & (pos < prompt_range[1])) if prompt_range else []
            q = k[:, inprompt] if len(inprompt) else None
        w = prompt_weights(kv, q.astype(np.float32), sv) if q is not None else sv.astype(np.float32)

        # groups earlier stages formed (reuse), named by representative position
        reps, gid = np.unique(rep[pos[vis]], return_inverse=True)
        stage = next((s for s in stages if s[0] == i), None)
        if stage is not None:
            _, windows, ratio = stage
            kvh, _, d = kv.shape
            feat = group_means(kv, gid, w, sv).transpose(1, 0, 2).reshape(reps.size, kvh * d)
            feat /= np.maximum(np.linalg.norm(feat, axis=1, keepdims=True), 1e-8)
            new_rep = reps.copy()
            gframe = frame[reps]
            for f in np.unique(gframe):
                g = np.flatnonzero(gframe == f)                # ascending representative = row-major
                rows, cols = grids[f]
                ww = effective_windows(windows, g.size, rows, cols)
                win = band(row[reps[g]], rows, ww) * ww + band(col[reps[g]], cols, ww)
                for x in range(ww * ww):
                    items = g[win == x]
                    a, b = bipartite(feat[items], ratio)
                    new_rep[items[a]] = reps[items[b]]
            rep[pos[vis]] = new_rep[gid]
            reps, gid = np.unique(rep[pos[vis]], return_inverse=True)

        mk = group_means(kv, gid, w, sv)
        mv = group_means(vv, gid, w, sv)
        msize = np.bincount(gid, weights=sv).astype(np.int64)
        positions = np.concatenate([pos[txt], reps])
        order = np.argsort(positions, kind="stable")
        out[f"layers.{i}.key"] = np.ascontiguousarray(np.concatenate([k[:, txt], mk], axis=1)[:, order])
        out[f"layers.{i}.value"] = np.ascontiguousarray(np.concatenate([v[:, txt], mv], axis=1)[:, order])
        out[f"layers.{i}.positions"] = positions[order].astype(np.int32)
        out[f"layers.{i}.sizes"] = np.concatenate([size[txt], msize])[order].astype(np.int32)
    return out


def compare(out, fetched_path, num_layers):
    """Positions and sizes equal per layer; keys and values equal up to the store's F16 rounding."""
    fetched = load_file(fetched_path)
    mismatched, worst, differ, total, worst_ulp = [], {"key": 0.0, "value": 0.0}, 0, 0, 0.0
    for i in range(num_layers):
        p = f"layers.{i}."
        if any(out[p + t].shape != fetched[p + t].shape or (out[p + t] != fetched[p + t]).any()
               for t in ("positions", "sizes")):
            mismatched.append(i)
            continue
        for t in ("key", "value"):
            ours, theirs = out[p + t], fetched[p + t].astype(np.float32)
            worst[t] = max(worst[t], float(np.abs(ours - theirs).max()))
            rounded = ours.astype(np.float16).astype(np.float32)
            ulp = np.abs(np.spacing(theirs.astype(np.float16))).astype(np.float32)
            differ += int((rounded != theirs).sum())
            total += rounded.size
            worst_ulp = max(worst_ulp, float((np.abs(rounded - theirs) / ulp).max()))
    print(f"positions/sizes: {'equal in all ' + str(num_layers) + ' layers' if not mismatched else 'DIFFER in layers ' + str(mismatched)}")
    print(f"max |numpy f32 - fetched|: keys {worst['key']:.4g}, values {worst['value']:.4g}; "
          f"numpy rounded to F16: {differ} of {total} elements differ, by at most {worst_ulp:.0f} F16 ulp")
    return 1 if mismatched else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("snapshot")
    ap.add_argument("-o", "--output", help=".npz or .safetensors")
    ap.add_argument("--time", action="store_true", help="print load / compress / total seconds")
    ap.add_argument("--compare", metavar="FETCHED", help="kvstore fetch --dtype f32 output to check against")
    args = ap.parse_args()

    t0 = time.perf_counter()
    with safe_open(args.snapshot, "np") as f:
        meta = f.metadata()
    snapshot = load_file(args.snapshot)
    spans = json.loads(meta["kvsnap.spans"])
    num_layers = 1 + max(int(name.split(".")[1]) for name in snapshot if name.startswith("layers."))
    seq_len = int(meta.get("kvsnap.seq_len", spans[-1]["end"]))
    t1 = time.perf_counter()
    out = compress(snapshot, spans, seq_len, num_layers)
    t2 = time.perf_counter()
    if args.output:
        if args.output.endswith(".npz"):
            np.savez(args.output, **out)
        else:
            save_file(out, args.output)
    t3 = time.perf_counter()
    if args.time:
        print(f"load {t1 - t0:.3f} s  compress {t2 - t1:.3f} s  write {t3 - t2:.3f} s  total {t3 - t0:.3f} s")
    if args.compare:
        return compare(out, args.compare, num_layers)


if __name__ == "__main__":
    sys.exit(main())
