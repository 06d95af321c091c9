"""`kvstore.weights.fingerprint`: the same weights give the same fingerprint wherever they lie;
a change to any tensor, to the config or to the set of files gives another; a folder whose
weights cannot be read is a clear error."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from kvstore.errors import FingerprintError
from kvstore.weights import fingerprint


def model(folder: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"rope_theta": 10000.0}')
    save_file({"embed.weight": rng.standard_normal((64, 32)).astype(np.float32),
               "layers.0.q_proj.weight": rng.standard_normal((32, 32)).astype(np.float32),
               "layers.0.norm.weight": np.ones(8, np.float32)}, str(folder / "model-00001-of-00002.safetensors"))
    save_file({"lm_head.weight": rng.standard_normal((64, 32)).astype(np.float32)},
              str(folder / "model-00002-of-00002.safetensors"))
    return folder


def test_the_same_weights_anywhere_give_one_fingerprint_and_other_weights_another(tmp_path: Path) -> None:
    a = model(tmp_path / "a")
    b = tmp_path / "elsewhere" / "b"
    shutil.copytree(a, b)
    assert len(fingerprint(a)) == 16 and fingerprint(a) == fingerprint(b), "a copy at another path is the same model"
    assert fingerprint(model(tmp_path / "reseeded", seed=1)) != fingerprint(a), "other weights of the same shapes"


@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_a_tensor_changed_at_its_start_middle_or_end_changes_it(tmp_path: Path, where: str) -> None:
    a = model(tmp_path / "a")
    before = fingerprint(a)
    path = a / "model-00001-of-00002.safetensors"
    data = bytearray(path.read_bytes())
    header = 8 + int.from_bytes(data[:8], "little")
    start, end = json.loads(data[8:header])["layers.0.q_proj.weight"]["data_offsets"]
    at = {"start": start, "middle": start + (end - start) // 2, "end": end - 4}[where]
    data[header + at] ^= 0x40
    path.write_bytes(bytes(data))
    assert fingerprint(a) != before


def test_the_config_and_the_set_of_files_are_part_of_it(tmp_path: Path) -> None:
    a = model(tmp_path / "a")
    before = fingerprint(a)
    (a / "config.json").write_text('{"rope_theta": 1000000.0}')
    assert fingerprint(a) != before
    (a / "config.json").write_text('{"rope_theta": 10000.0}')
    assert fingerprint(a) == before
    (a / "model-00002-of-00002.safetensors").rename(a / "model-00003-of-00003.safetensors")
    assert fingerprint(a) != before
    (a / "tokenizer.json").write_text("{}")  # not weights: ids, not weights, reach the cache
    (a / "model-00003-of-00003.safetensors").rename(a / "model-00002-of-00002.safetensors")
    assert fingerprint(a) == before


def test_other_weight_formats_are_sampled(tmp_path: Path) -> None:
    folder = tmp_path / "bin"
    folder.mkdir()
    blob = np.random.default_rng(0).integers(0, 255, 1 << 20, dtype=np.uint8)
    (folder / "pytorch_model.bin").write_bytes(blob.tobytes())
    before = fingerprint(folder)
    blob[409_607] ^= 1  # between two samples: sampled, not read whole (a fine-tune changes every sample)
    (folder / "pytorch_model.bin").write_bytes(blob.tobytes())
    assert fingerprint(folder) == before
    step = ((1 << 20) - 64) // 63
    blob[5 * step] ^= 1  # inside a sample
    (folder / "pytorch_model.bin").write_bytes(blob.tobytes())
    assert fingerprint(folder) != before


def test_unreadable_weights_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FingerprintError, match="not a folder"):
        fingerprint(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FingerprintError, match="no weight files"):
        fingerprint(tmp_path / "empty")
    a = model(tmp_path / "a")
    path = a / "model-00001-of-00002.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(FingerprintError, match="data_offsets .* outside the file"):
        fingerprint(a)
    path.write_bytes((10**12).to_bytes(8, "little") + data[8:])
    with pytest.raises(FingerprintError, match="a safetensors header of 1000000000000 bytes"):
        fingerprint(a)
    header = int.from_bytes(data[:8], "little")
    path.write_bytes(data[:8] + b"[" * header + data[8 + header:])
    with pytest.raises(FingerprintError, match="not JSON"):
        fingerprint(a)
    path.write_bytes(b"\x01\x00")
    with pytest.raises(FingerprintError, match="shorter than a safetensors header"):
        fingerprint(a)
