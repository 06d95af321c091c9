#!/usr/bin/env bash
# Prints the path of a Python virtual environment holding python/requirements-test.txt (or,
# with the argument `answers`, python/requirements-answers.txt: the real-model benchmark's
# weights on top of the test pins), creating it first if it does not exist yet. It lives
# outside the checkout ($KVSTORE_PY_CACHE, default ~/.cache/kvstore-py) in a folder named by a
# hash of the requirements files and the Python version, so CI and later runs reuse one install
# (torch takes minutes). A half-finished install (no .complete marker) is removed and redone.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
name="${1:-test}"
case "$name" in
    test|answers) ;;
    *) echo "python-env: unknown environment '$name' (expected: test, answers)" >&2; exit 2 ;;
esac
requirements="$root/python/requirements-$name.txt"
python="${PYTHON:-python3}"
# requirements-answers.txt includes requirements-test.txt: both go into the key
key=$( { cat "$requirements"; [ "$name" = test ] || cat "$root/python/requirements-test.txt"; \
         "$python" -c 'import sys; print(sys.version_info[:2])'; } | sha256sum | cut -c1-16)
cache="${KVSTORE_PY_CACHE:-$HOME/.cache/kvstore-py}"
venv="$cache/$key"
if [ ! -f "$venv/.complete" ]; then
    echo "python-env: installing python/requirements-$name.txt into $venv (once; torch takes minutes)" >&2
    rm -rf "$venv"
    mkdir -p "$cache"
    if ! "$python" -m venv "$venv" >&2; then
        echo "python-env: '$python -m venv' failed (on Debian: apt-get install python3-venv)" >&2
        exit 1
    fi
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements" >&2
    touch "$venv/.complete"
fi
echo "$venv"
