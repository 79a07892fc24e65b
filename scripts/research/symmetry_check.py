"""How mirror-symmetric the shapes and a generator's predictions are, and what forcing symmetry would gain.

For every validation model and input view (through the intake, as `softras eval` takes them), the predicted mesh
is voxelised as it is and mirrored through the x = 0 plane of the object frame. Per category (means) it prints the
voxel IoU of the prediction, of its union and of its intersection with its mirror image (the two extremes of a
symmetrised prediction), the prediction's own symmetry (IoU with its mirror image), and the ground truth's symmetry
about x = 0 and, for comparison, about z = 0.

    python scripts/research/symmetry_check.py --weights models/softras_generator.pt --views cache/views128_e0_30.npz
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np
import torch

from softras.data import Shapes, ViewSet
from softras.evaluate import evaluation_views, predict_views
from softras.model import load_weights
from softras.voxelize import unpack_voxels, voxel_iou, voxelize

COLUMNS = ("prediction", "union", "intersection", "pred_sym_x", "truth_sym_x", "truth_sym_z")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", default="models/softras_generator.pt")
    parser.add_argument("--views", default="cache/views128_e0_30.npz")
    parser.add_argument("--data", default="../shared/data/shapes_train.npz")
    parser.add_argument("--elevation", type=float, default=30.0)
    parser.add_argument("--views-per-model", type=int, default=4)
    args = parser.parse_args()
    model, _ = load_weights(args.weights)
    shapes, views = Shapes.load(args.data), ViewSet(args.views, "val")
    models, view_ids = evaluation_views(views, args.views_per_model, [args.elevation])
    scores: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    vertices, _ = predict_views(model, views, models, view_ids)
    for k, predicted in enumerate(vertices):
        truth = unpack_voxels(shapes.voxels_shell[views.model_index[models[k]]])
        pred = voxelize(predicted, model.faces)
        pred_mirror = voxelize(predicted * torch.tensor([-1.0, 1.0, 1.0]), model.faces)
        row = scores[str(views.category[models[k]])]
        for name, value in zip(COLUMNS, (voxel_iou(pred, truth), voxel_iou(pred | pred_mirror, truth),
                                         voxel_iou(pred & pred_mirror, truth), voxel_iou(pred, pred_mirror),
                                         voxel_iou(truth, truth.flip(0)), voxel_iou(truth, truth.flip(2)))):
            row[name].append(value)
    print("category".ljust(14) + "".join(c.rjust(14) for c in COLUMNS))
    for cat in sorted(scores):
        print(cat.ljust(14) + "".join(f"{np.mean(scores[cat][c]):14.3f}" for c in COLUMNS))
    print("mean".ljust(14) + "".join(f"{np.mean([np.mean(scores[k][c]) for k in scores]):14.3f}" for c in COLUMNS))


if __name__ == "__main__":
    main()
