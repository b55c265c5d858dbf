#!/usr/bin/env bash
# Install miStudio into ./.venv (created if missing). With --dev, also the test tools.
# torch comes first and only when no torch is installed: `pip install torch==2.13.0` takes the CPU build
# that lies on these machines' disks instead of downloading a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip --disable-pip-version-check)
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
    "${pip[@]}" install -q "torch==2.13.0"
fi
if [ "${1:-}" = "--dev" ]; then
    "${pip[@]}" install -q -e ".[dev]"
else
    "${pip[@]}" install -q -e .
fi
