"""Fixtures: the built `kvstore` binary ($KVSTORE_BIN, else the checkout's build, else the
PATH), a scratch store, and synthetic snapshots written by `kvstore synth` (with `input_ids`,
I64 and I32, for the image and video shapes)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import kvstore

ROOT = Path(__file__).resolve().parents[2]


def _binary() -> str | None:
    for candidate in (os.environ.get("KVSTORE_BIN"), ROOT / ".build/debug/kvstore", ROOT / ".build/release/kvstore",
                      shutil.which("kvstore")):
        if candidate and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


@pytest.fixture(scope="session")
def kvstore_bin() -> str:
    binary = _binary()
    if binary is None:
        pytest.fail("no kvstore binary: run `swift build` (make test does) or set KVSTORE_BIN")
    os.environ["KVSTORE_BIN"] = binary  # for Client() and examples
    return binary


class CLI:
    def __init__(self, binary: str, store: Path) -> None:
        self.binary, self.store = binary, store

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [self.binary, args[0], *([] if args[0] in ("synth", "policies") else ["--store", str(self.store)]),
               *args[1:]]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr}")
        return done

    def ingest(self, path: Path | str, policy: str = "none") -> str:
        return self.run("ingest", "--policy", policy, str(path)).stdout.strip()

    def synth(self, path: Path, *args: str, ids: bool = True) -> Path:
        """`ids=False`: without `input_ids`, so the entry is stored whole, one pack
        (docs/design/segments.md, "When an entry is segmented")."""
        self.run("synth", "-o", str(path), *args)
        if not ids:
            snap = kvstore.read(path)
            snap.input_ids = None
            kvstore.write(snap, path)
        return path

    def policies(self) -> list[str]:
        lines = self.run("policies").stdout.splitlines()
        names = []
        for line in lines[1:]:
            if not line.startswith("  "):
                break
            if not line.startswith("   "):  # deeper: the description of a name too long for its column
                names.append(line.split()[0])
        return names


@pytest.fixture
def cli(kvstore_bin: str, tmp_path: Path) -> CLI:
    return CLI(kvstore_bin, tmp_path / "store")


SHAPES = {
    # head_dim 40 leaves tails after every 16- and 32-wide SIMD step of the Swift decoder
    "image": ("--preset", "tiny", "--layers", "5", "--grid", "10x12", "--head-dim", "40", "--images", "2"),
    "video": ("--preset", "tiny", "--layers", "4", "--grid", "6x6", "--frames", "3", "--head-dim", "24"),
}


IDS = {"image": np.int64, "video": np.int32}


@pytest.fixture(scope="session")
def stored(kvstore_bin: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[CLI, Path, dict[str, tuple[CLI, str]]]:
    """Every built-in policy ingested from each input shape and dtype, a store per policy
    (an entry's id is its input's content, so one store keeps the first policy only)."""
    d = tmp_path_factory.mktemp("packs")
    cli = CLI(kvstore_bin, d / "synth")
    ids = {}
    inputs = {name: cli.synth(d / f"{name}.safetensors", *args) for name, args in SHAPES.items()}
    for dtype in ("bf16", "f32"):
        inputs[f"image-{dtype}"] = cli.synth(d / f"image-{dtype}.safetensors", *SHAPES["image"], "--dtype", dtype)
    for name, path in inputs.items():  # token ids I64, I32, or none (whatever synth writes)
        snap = kvstore.read(path)
        dtype = IDS.get(name)
        snap.input_ids = None if dtype is None else (np.arange(snap.original_length) * 7919 % 151_000).astype(dtype)
        kvstore.write(snap, path)
    for n, policy in enumerate(cli.policies()):
        store = CLI(kvstore_bin, d / f"store-{n}")
        for name in ("image", "video"):
            ids[f"{policy}/{name}"] = (store, store.ingest(inputs[name], policy))
        if policy in ("none", "lightkv", "lightkv+int8"):
            for dtype in ("bf16", "f32"):
                ids[f"{policy}/image-{dtype}"] = (store, store.ingest(inputs[f"image-{dtype}"], policy))
    return cli, d, ids
