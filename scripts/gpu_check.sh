#!/usr/bin/env bash
# The CUDA path in one call on a GPU machine (torch with CUDA, pytest; no bpy needed), well under 8 minutes:
# the CUDA tests, `softras bench --device cuda` (rasterizer suite) and the pipeline suite on CUDA, written to OUT.
#   scripts/gpu_check.sh OUT [DEVICE]      DEVICE: cuda (default) or cpu, to try the script on a machine without a GPU
# Files in OUT: env.txt (GPU, driver, torch), pytest.txt, bench_raster.json, bench_pipeline.json, summary.txt.
set -uo pipefail
out=${1:?usage: scripts/gpu_check.sh OUT [cuda|cpu]}
device=${2:-cuda}
cd "$(dirname "$0")/.."
mkdir -p "$out"
py=${PYTHON:-python3}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && py=.venv/bin/python
export PYTHONPATH="$PWD/engine${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
status=0
{
  date -u +%FT%TZ
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  "$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available(),
            torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
} > "$out/env.txt" 2>&1
cat "$out/env.txt"
if [ "$device" = cuda ]; then
  timeout 240 "$py" -m pytest -m cuda tests/test_cuda.py -q -p no:cacheprovider 2>&1 | tee "$out/pytest.txt" || status=1
fi
for suite in raster pipeline; do
  timeout 150 "$py" -m softras.cli bench --suite "$suite" --device "$device" --json > "$out/bench_$suite.json" 2> "$out/bench_$suite.log" \
    || { echo "bench --suite $suite failed (see bench_$suite.log)"; status=1; }
done
"$py" - "$out" <<'PY' | tee "$out/summary.txt"
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print((out / "env.txt").read_text().strip())
for suite in ("raster", "pipeline"):
    path = out / f"bench_{suite}.json"
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        print(f"{suite}: no result")
        continue
    print(f"{suite} on {result.get('device')} (torch {result.get('torch')}):")
    for row in result.get(suite, []):
        print("  " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
PY
exit $status
