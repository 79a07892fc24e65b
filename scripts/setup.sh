#!/usr/bin/env bash
# Create (or update) the project's virtual environment in .venv with the pinned dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt -e .
.venv/bin/python -c "import softras, torch; print(f'softras {softras.__version__} with torch {torch.__version__} ready in .venv')"
