#!/usr/bin/env bash
# Gradescope's image setup: a Python that jax supports and the grader's locked packages, nothing else.
#
# The image's python3 (3.10 on Ubuntu 22.04: too old for jax) only installs uv, from bootstrap.lock. uv then
# brings the Python that requirements.lock names ("# python: X.Y"): the image's own where it has that version,
# else a managed build (downloaded from GitHub), and installs requirements.lock into $env/venv: exact versions,
# every file checked against its hash. run_autograder grades with $env/venv/bin/python.
#
# $AUTOGRADER_ENV (default /opt/course-grader) holds uv, the Python and the environment: outside root's home and
# searchable by every user, since without bubblewrap the worker runs as an unprivileged user of its own.
# $AUTOGRADER_UV, when set, is the uv to use instead of installing one (the project's tests give a stand-in).
set -euo pipefail
cd "$(dirname "$0")"
umask 022
env="${AUTOGRADER_ENV:-/opt/course-grader}"
python_version="$(sed -n 's/^# python: //p' requirements.lock)"
if [[ ! "$python_version" =~ ^3\.[0-9]+$ ]]; then
    echo "setup.sh: requirements.lock names no Python ('# python: 3.X' expected)" >&2
    exit 1
fi
uv="${AUTOGRADER_UV:-}"
missing=()
# bubblewrap isolates each submission's worker where the image allows namespaces; elsewhere the grader falls back
# to an unprivileged user per job and records which in every results.json.
command -v bwrap >/dev/null || missing+=(bubblewrap)
[[ -n "$uv" ]] || python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
if ((${#missing[@]})) && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [[ -z "$uv" ]]; then
    python3 -m pip install --no-cache-dir --disable-pip-version-check --require-hashes --no-deps --upgrade \
        --target "$env/uv" -r bootstrap.lock
    uv="$env/uv/bin/uv"
fi
export UV_PYTHON_INSTALL_DIR="$env/python" UV_CACHE_DIR="$env/cache"
"$uv" venv --clear --python "$python_version" "$env/venv"
"$uv" pip sync --require-hashes --python "$env/venv/bin/python" requirements.lock
rm -rf "$UV_CACHE_DIR"
# A broken environment fails here, at setup, where the staff sees it, rather than at every submission.
"$env/venv/bin/python" -c "import flax, jax, optax, pytest, pytest_jsonreport, scipy; print('grader environment: jax', jax.__version__)"
