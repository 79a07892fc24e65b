"""How much can silhouettes from a set of elevations tell about a shape? Voxel IoU of visual hulls.

    .venv/bin/python scripts/research/visual_hull_iou.py --data ../shared/data/shapes_train.npz --sets 30 0,30 0,-30,30
    .venv/bin/python scripts/research/visual_hull_iou.py --data ../shared/data/shapes_train.npz --sets 30 0,30 --size 128

For each validation model, the views (24 azimuths per elevation, rendered with the engine's rasterizer) carve a
32^3 grid: a voxel stays where its centre projects into every silhouette, dilated by one pixel (a voxel spans
about 1.4 px at 64x64, so a thin part still keeps its voxels). The hull is scored against ``voxels_shell`` like a
reconstruction. A generator supervised by silhouettes from those elevations can at best learn this hull. ``--size``
renders the silhouettes at another resolution (the one-pixel dilation shrinks with the pixels).
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np
import torch

from softras.camera import Camera
from softras.data import Shapes, render_views, split_by_model
from softras.voxelize import unpack_voxels


def hull_ious(shapes: Shapes, index: int, elevation_sets: list[list[float]], size: int = 64) -> list[float]:
    """Voxel IoU of the visual hull of model ``index`` for each set of elevations."""
    elevations = sorted({e for s in elevation_sets for e in s})
    azimuths = np.arange(0.0, 360.0, 15.0)
    el, az = np.repeat(elevations, len(azimuths)), np.tile(azimuths, len(elevations))
    alpha = torch.from_numpy(render_views(shapes, [index], el, az, size=size)[0, ..., 3]).float()
    alpha = torch.nn.functional.max_pool2d(alpha[:, None], 3, 1, 1)[:, 0] > 127
    centres = (torch.arange(32) + 0.5) / 32 - 0.5
    points = torch.stack(torch.meshgrid(centres, centres, centres, indexing="ij"), -1).reshape(-1, 3)
    cameras = Camera.from_angles(2.732, torch.from_numpy(el).float(), torch.from_numpy(az).float())
    pixels = cameras.to_pixels(points, size, size).long().clamp(0, size - 1)
    col, row = pixels[..., 0], pixels[..., 1]
    inside = alpha[torch.arange(len(el))[:, None], row, col].view(len(elevations), len(azimuths), -1)
    target = torch.as_tensor(unpack_voxels(shapes.voxels_shell[index])).reshape(-1).bool()
    ious = []
    for chosen in elevation_sets:
        hull = inside[[elevations.index(e) for e in chosen]].all(0).all(0)
        ious.append(float((hull & target).sum() / (hull | target).sum()))
    return ious


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="shapes file, e.g. ../shared/data/shapes_train.npz")
    ap.add_argument("--sets", nargs="+", default=["30", "0,30"], help="elevation sets, comma-separated degrees, "
                    "in any order (a set must not start with a minus sign: write 0,-30,30)")
    ap.add_argument("--split", choices=("val", "train", "all"), default="val")
    ap.add_argument("--size", type=int, default=64, help="silhouette resolution in pixels (default 64)")
    args = ap.parse_args()
    sets = [[float(e) for e in s.split(",")] for s in args.sets]
    shapes = Shapes.load(args.data)
    split = split_by_model(shapes.category, shapes.model_id)
    chosen = np.arange(len(shapes)) if args.split == "all" else np.flatnonzero(split == args.split)
    per_category = [defaultdict(list) for _ in sets]
    for i in chosen:
        for k, iou in enumerate(hull_ious(shapes, int(i), sets, size=args.size)):
            per_category[k][str(shapes.category[i])].append(iou)
    for s, cats in zip(args.sets, per_category):
        means = {c: float(np.mean(v)) for c, v in sorted(cats.items())}
        print(f"elevations {s}: mean voxel IoU over categories {np.mean(list(means.values())):.4f}  "
              + "  ".join(f"{c} {v:.2f}" for c, v in means.items()))


if __name__ == "__main__":
    main()
