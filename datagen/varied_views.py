"""Render a views file of varied cameras and lights with the engine's rasterizer (no Blender, ~3 min on 2 cores).

Real pictures are not taken from the standard camera: they look from eye level to well above, from close (strong
perspective) to far (nearly none), under any light. This file gives training and evaluation such views of the
same shapes, split into train / val exactly as the Cycles views are (``softras.data.split_by_model``):

- ``--views`` cameras shared by all models, each with its own elevation (uniform in ``--elevations``, degrees),
  azimuth (uniform in [0, 360)), distance (log-uniform in ``--distances``) and field of view (chosen so that the
  visible half-width at the origin is uniform in ``--half-widths``; 0.73 at the standard camera);
- a key light per render from a random direction above the horizon (10-80 degrees up, any azimuth) and an
  ambient share uniform in ``--ambient``.

    python -m datagen.varied_views --data ../shared/data/shapes_train.npz --out cache/views_varied.npz
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from softras.data import Shapes, render_views, save_views, split_by_model


def varied_cameras(count: int, elevations: tuple[float, float], distances: tuple[float, float],
                   half_widths: tuple[float, float], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``count`` random cameras: elevations, azimuths, distances and fovs (degrees, full angle), float32 (count,)."""
    distance = np.exp(rng.uniform(math.log(distances[0]), math.log(distances[1]), count))
    half_width = rng.uniform(*half_widths, count)
    return {"elevations": rng.uniform(*elevations, count).astype(np.float32),
            "azimuths": rng.uniform(0.0, 360.0, count).astype(np.float32),
            "distance": distance.astype(np.float32),
            "fov": np.degrees(2 * np.arctan(half_width / distance)).astype(np.float32)}


def random_lights(shape: tuple[int, int], ambient: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """float32 (*shape, 4): a key-light direction 10-80 degrees above the horizon, any azimuth, and an ambient share."""
    up, around = np.radians(rng.uniform(10.0, 80.0, shape)), rng.uniform(0.0, 2 * np.pi, shape)
    direction = np.stack([np.cos(up) * np.sin(around), np.sin(up), -np.cos(up) * np.cos(around)], axis=-1)
    return np.concatenate([direction, rng.uniform(*ambient, shape)[..., None]], axis=-1).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="shapes file (shared/data/shapes_train.npz)")
    parser.add_argument("--out", required=True, help="views file to write")
    parser.add_argument("--views", type=int, default=48, help="cameras (views per model)")
    parser.add_argument("--size", type=int, default=128, help="render size in pixels")
    parser.add_argument("--elevations", type=float, nargs=2, default=(0.0, 50.0), metavar=("LOW", "HIGH"))
    parser.add_argument("--distances", type=float, nargs=2, default=(2.2, 6.0), metavar=("NEAR", "FAR"))
    parser.add_argument("--half-widths", type=float, nargs=2, default=(0.78, 0.95), metavar=("LOW", "HIGH"))
    parser.add_argument("--ambient", type=float, nargs=2, default=(0.45, 0.85), metavar=("LOW", "HIGH"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.views < 2:
        parser.error("--views must be at least 2 (training draws two views per object)")
    shapes = Shapes.load(args.data)
    rng = np.random.default_rng(args.seed)
    cameras = varied_cameras(args.views, args.elevations, args.distances, args.half_widths, rng)
    lights = random_lights((len(shapes), args.views), args.ambient, rng)
    indices = np.arange(len(shapes))
    images = render_views(shapes, indices, cameras["elevations"], cameras["azimuths"], size=args.size,
                          distance=cameras["distance"], fov=cameras["fov"], lights=lights)
    path = save_views(args.out, images=images, **cameras, model_index=indices, category=shapes.category,
                      model_id=shapes.model_id, split=split_by_model(shapes.category, shapes.model_id))
    print(f"{path}: {len(shapes)} models x {args.views} views at {args.size} px")


if __name__ == "__main__":
    main()
