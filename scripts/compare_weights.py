"""Paired comparison of generators on the same validation pictures, through the intake.

A and each B reconstruct every selected view (as `softras eval` selects them); per view the voxel IoU against the shape's
``voxels_shell``. Prints both category-mean figures (the paper's protocol), their difference with a 95% bootstrap
interval over validation models (the split has one model in many categories, so a difference of a few thousandths
is often noise), the share of views where B is better, and the per-category means; with several B, each against A.

    python scripts/compare_weights.py models/softras_generator.pt runs/lean/best.pt --views-per-model 8
    python scripts/compare_weights.py A B --views cache/views_varied.npz --elevation   # other cameras, every view
    python scripts/compare_weights.py A B1 B2 B3   # A is reconstructed once
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from softras.data import Shapes, ViewSet
from softras.evaluate import bootstrap_interval, category_mean, evaluation_views, predict_views
from softras.model import load_weights
from softras.voxelize import unpack_voxels, voxel_iou, voxelize


def view_ious(weights: str, views: ViewSet, shapes: Shapes, models: torch.Tensor, view_ids: torch.Tensor) -> np.ndarray:
    """Voxel IoU (K,) of each selected view's reconstruction through the intake (0 where the intake refuses)."""
    model, _ = load_weights(weights)
    vertices, taken = predict_views(model, views, models, view_ids)
    truths = (unpack_voxels(shapes.voxels_shell[views.model_index[m]]) for m in models.tolist())
    return np.asarray([voxel_iou(voxelize(v, model.faces), truth) if ok else 0.0
                       for v, ok, truth in zip(vertices, taken, truths)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a")
    parser.add_argument("b", nargs="+")
    parser.add_argument("--views", default="cache/views128_e0_30.npz")
    parser.add_argument("--data", default="../shared/data/shapes_train.npz")
    parser.add_argument("--elevation", type=float, nargs="*", default=[30.0],
                        help="input views at these elevations, degrees; given without values: every view (a views "
                             "file of varied cameras)")
    parser.add_argument("--views-per-model", type=int, default=8)
    parser.add_argument("--bootstrap", type=int, default=2000)
    args = parser.parse_args()
    shapes, views = Shapes.load(args.data), ViewSet(args.views, "val")
    models, view_ids = evaluation_views(views, args.views_per_model, args.elevation or None)
    categories = np.array([str(views.category[i]) for i in models.tolist()])
    a = view_ious(args.a, views, shapes, models, view_ids)
    ma = category_mean(a, categories)
    for weights in args.b:
        b = view_ious(weights, views, shapes, models, view_ids)
        mb = category_mean(b, categories)
        lo, hi = bootstrap_interval(b - a, categories, models.numpy(), repeats=args.bootstrap)
        print(f"A {args.a}: {ma:.4f}\nB {weights}: {mb:.4f}\nB - A: {mb - ma:+.4f}, 95% bootstrap interval over "
              f"models [{lo:+.4f}, {hi:+.4f}]; B better on {np.mean(b > a):.0%} of {len(a)} views")
        for c in np.unique(categories):
            s = categories == c
            print(f"  {c:<14} A {a[s].mean():.3f}  B {b[s].mean():.3f}  {b[s].mean() - a[s].mean():+.3f}")


if __name__ == "__main__":
    main()
