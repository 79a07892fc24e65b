#!/usr/bin/env bash
# Set up the virtual environment and reconstruct the bundled example images into out/:
# one .glb mesh per image (engine frame, Y-up, vertex colours and a texture projected from the picture), a four-view
# preview PNG, and out/summary.json. Extra arguments go to the batch tool (e.g. --no-texture --output out/vertex_colours).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/python -m softras_blender.batch --input examples --output out --format glb --preview --overwrite "$@"
