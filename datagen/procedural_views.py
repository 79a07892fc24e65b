"""Training views of a procedural shape pack, rendered with the engine's rasterizer (no Blender), memory-mapped.

    python -m datagen.procedural_views --shapes cache/infinigen_shapes.npz --out cache/views_infinigen.npz

The standard camera of the real training views (distance 2.732, 30 degree field of view) at elevations 0 and 30
and ``--azimuths`` evenly spaced azimuths, at 128 px, each render under its own random key light and ambient
(``datagen.varied_views.random_lights``). Every model is a training model (``split`` 'train'): procedural shapes are
never validated on. Thousands of shapes do not fit in memory as one array (5,000 x 16 views x 128^2 x 4 bytes is
5.2 GB), so the renders go into a memory-mapped part file in chunks of models (an interrupted run resumes at the
last finished chunk) and are streamed into an uncompressed views file, which :class:`softras.data.ViewSet`
memory-maps in turn. Same shapes, arguments and seed: the same file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from datagen.varied_views import random_lights
from softras.data import Shapes, render_views, write_views_stream


def view_grid(elevations: list[float], azimuths: int) -> tuple[np.ndarray, np.ndarray]:
    """Elevations and azimuths (degrees, float32 (V,)): every elevation at ``azimuths`` evenly spaced azimuths."""
    az = np.arange(azimuths, dtype=np.float32) * (360.0 / azimuths)
    return (np.repeat(np.asarray(elevations, np.float32), azimuths), np.tile(az, len(elevations)))


def render(shapes_path: Path, out: Path, elevations: list[float], azimuths: int, size: int, ambient: tuple[float, float],
           seed: int, chunk: int = 50) -> Path:
    """Render (or resume) the views file ``out``; returns its path."""
    shapes = Shapes.load(shapes_path)
    el, az = view_grid(elevations, azimuths)
    n, v = len(shapes), len(el)
    lights = random_lights((n, v), ambient, np.random.default_rng(seed))
    part, state = out.with_suffix(".part.npy"), out.with_suffix(".part.json")
    settings = {"shapes": str(shapes_path), "models": n, "views": v, "size": size, "seed": seed,
                "elevations": el.tolist(), "azimuths": az.tolist(), "ambient": list(ambient)}
    done = 0
    if part.exists() and state.exists():
        saved = json.loads(state.read_text())
        if saved["settings"] == settings:
            done = saved["done"]
    if done == 0:
        images = np.lib.format.open_memmap(part, mode="w+", dtype=np.uint8, shape=(n, v, size, size, 4))
    else:
        images = np.load(part, mmap_mode="r+")
    start, made = time.monotonic(), 0
    for first in range(done, n, chunk):
        rows = np.arange(first, min(first + chunk, n))
        images[rows] = render_views(shapes, rows, el, az, size=size, lights=lights[rows])
        images.flush()
        state.write_text(json.dumps({"settings": settings, "done": int(rows[-1] + 1)}))
        made += len(rows)
        rate = made / (time.monotonic() - start)
        print(f"[{rows[-1] + 1}/{n}] {rate * 60:.0f} models/min, ETA {(n - rows[-1] - 1) / rate / 60:.1f} min",
              flush=True)
    path = write_views_stream(out, images, elevations=el, azimuths=az, distance=np.float32(2.732),
                              fov=np.float32(30.0), model_index=np.arange(n), category=shapes.category,
                              model_id=shapes.model_id, split=np.full(n, "train"))
    del images
    part.unlink()
    state.unlink()
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", type=Path, required=True, help="a shape pack (the shapes_train.npz layout)")
    parser.add_argument("--out", type=Path, required=True, help="the views file to write")
    parser.add_argument("--elevations", type=float, nargs="+", default=[0.0, 30.0])
    parser.add_argument("--azimuths", type=int, default=8, help="azimuths per elevation, evenly spaced")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--ambient", type=float, nargs=2, default=(0.55, 0.85), metavar=("LOW", "HIGH"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if len(args.elevations) * args.azimuths < 2:
        parser.error("at least two views per model are needed (training draws two)")
    path = render(args.shapes, args.out, args.elevations, args.azimuths, args.size, tuple(args.ambient), args.seed)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
