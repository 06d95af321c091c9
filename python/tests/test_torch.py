"""`kvstore.torch.load_pack` (device-side decode), run on CPU: the same numbers as the numpy
reader for every built-in policy, dtype and --expand; damage raises before decoding."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import kvstore  # noqa: E402
import kvstore.torch as kvtorch  # noqa: E402

DTYPES = {"f16": torch.float16, "bf16": torch.bfloat16, "f32": torch.float32}


def _host(t: "torch.Tensor") -> np.ndarray:
    return t.to(torch.float32).cpu().numpy() if t.is_floating_point() else t.cpu().numpy()


def test_device_decode_equals_the_numpy_reader(stored, tmp_path: Path) -> None:
    _, _, ids = stored
    for name, (cli, entry) in ids.items():
        path = tmp_path / "e.kvpack"
        cli.run("fetch", entry, "--raw", "-o", str(path))
        with kvstore.read_pack(path) as pack:
            for user, dtype in DTYPES.items():
                for expand in (False, True):
                    device = kvtorch.load_pack(path, "cpu", dtype=dtype, expand=expand)
                    assert len(device.layers) == pack.num_layers
                    for i, got in enumerate(device.layers):
                        want = pack.expanded_layer(i, user) if expand else pack.layer(i, user)
                        assert got.key.dtype == dtype and got.key.device.type == "cpu"
                        where = f"{name} {user} expand={expand} layer {i}"
                        assert np.array_equal(_host(got.key), want.key.astype(np.float32)), where
                        assert np.array_equal(_host(got.value), want.value.astype(np.float32)), where
                        assert np.array_equal(_host(got.positions), want.positions), where
                        assert np.array_equal(_host(got.sizes), want.sizes), where
                        assert (got.members is None) == (want.members is None), where


def test_damage_raises(stored, tmp_path: Path) -> None:
    cli, entry = stored[2]["lightkv+int4/image"]
    path = tmp_path / "e.kvpack"
    cli.run("fetch", entry, "--raw", "-o", str(path))
    data = bytearray(path.read_bytes())
    data[200] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(kvstore.PackError, match="checksum"):
        kvtorch.load_pack(path, "cpu")


def test_rejects_other_dtypes(stored, tmp_path: Path) -> None:
    cli, entry = stored[2]["none/image"]
    cli.run("fetch", entry, "--raw", "-o", str(tmp_path / "e.kvpack"))
    with pytest.raises(ValueError, match="float16"):
        kvtorch.load_pack(tmp_path / "e.kvpack", "cpu", dtype=torch.int8)
