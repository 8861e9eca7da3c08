#!/usr/bin/env bash
# Gradescope's image setup: the grader's Python packages, pinned to the versions it was tested with.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m pip install --no-cache-dir --disable-pip-version-check -r requirements.txt
