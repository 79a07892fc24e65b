"""Training speed of this checkout against another one, measured in the same run.

A benchmark's absolute figures drift by a third between runs on a shared 2-core machine; a ratio measured by
alternating the two checkouts in one run does not. Each round times, in a fresh process per checkout, the training
step of ``softras bench --suite pipeline`` (batch 64 x 2 views, forward + backward + Adam; the lean and the
paper-sized generator) and one training batch's inputs (64 renders of 128x128 px, augmented and taken through the
intake, on one thread as the training loop's input thread runs them). Prints every round, then the medians and the
ratio this / reference.

    git worktree add /tmp/reference HEAD~3
    python scripts/research/compare_speed.py /tmp/reference --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

_MEASURE = """
import json, sys, time
import numpy as np
import torch
sys.path.insert(0, sys.argv[1])
import softras
assert softras.__file__.startswith(sys.argv[1]), softras.__file__
from softras.augment import AugmentSettings
try:
    import softras.bench.pipeline as bench
except ModuleNotFoundError:  # a checkout from before the benchmarks became a package
    import softras.bench_pipeline as bench
# the public names, or the private ones of a checkout from before they were public
synthetic_renders, synthetic_batch, train_step_ms = (
    getattr(bench, new, None) or getattr(bench, old)
    for new, old in (("synthetic_renders", "_renders"), ("synthetic_batch", "_train_batch"),
                     ("train_step_ms", "_train_step_ms")))
from softras.inputs import InputSettings, generator_inputs
from softras.model import Generator, GeneratorConfig
from softras.train import TrainConfig

torch.manual_seed(0)
cfg, batch = TrainConfig(views="", shapes=""), synthetic_batch(64, 64)
lean = train_step_ms(Generator(GeneratorConfig(encoder_reduce=32)), batch, cfg, 5)
paper = train_step_ms(Generator(), batch, cfg, 5)
torch.set_num_threads(1)
pictures, settings, times = synthetic_renders(64, 128), InputSettings(0.1, 0.03, AugmentSettings()), []
for k in range(4):
    start = time.perf_counter()
    generator_inputs(pictures, 64, settings, np.random.default_rng(k))
    times.append(1000 * (time.perf_counter() - start))
print(json.dumps({"lean step": lean, "paper step": paper, "inputs": sorted(times[1:])[1]}))
"""


def measure(engine: Path) -> dict[str, float]:
    """Milliseconds of the lean and paper training steps and of one batch's inputs, softras imported from ``engine``."""
    out = subprocess.run([sys.executable, "-c", _MEASURE, str(engine)], check=True, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": ""})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reference", type=Path, help="root of the checkout to compare against")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    here = Path(__file__).resolve().parents[1]
    engines = {"reference": args.reference.resolve() / "engine", "this": here / "engine"}
    for engine in engines.values():
        if not (engine / "softras" / "__init__.py").exists():
            parser.error(f"no softras package under {engine}")
    results: dict[str, list[dict[str, float]]] = {name: [] for name in engines}
    for k in range(args.rounds):
        for name, engine in engines.items():
            results[name].append(measure(engine))
            print(f"round {k + 1} {name:9s} " + "  ".join(f"{key} {v:.0f} ms" for key, v in results[name][-1].items()),
                  flush=True)
    print("median over rounds, and this / reference:")
    for key in results["this"][0]:
        ref, this = (statistics.median(r[key] for r in results[name]) for name in ("reference", "this"))
        print(f"  {key:11s} reference {ref:7.0f} ms  this {this:7.0f} ms  ratio {this / ref:.2f}")


if __name__ == "__main__":
    main()
