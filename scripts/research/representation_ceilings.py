"""What bounds the generator's voxel IoU, apart from the generator? Two ceilings on the validation models.

    .venv/bin/python scripts/research/representation_ceilings.py --data ../shared/data/shapes_train.npz --retrieval
    .venv/bin/python scripts/research/representation_ceilings.py --data ../shared/data/shapes_train.npz --template
    .venv/bin/python scripts/research/representation_ceilings.py --data ../shared/data/shapes_train.npz \
        --weights models/softras_generator.pt --views cache/views128_e0_30.npz

``--retrieval``: the best any retrieval of a training shape could do. For each validation model, the voxel IoU of
the training shape (or its mirror image about x = 0, which training also shows) whose ``voxels_shell`` agrees best
with the model's; an oracle (it looks at the answer), so no retrieval method can exceed it.

``--weights W --views V``: a retrieval that needs no answer, against the generator it uses. Each validation
model's views at elevation 30 (``--views-per-model``, evenly spaced, as ``softras eval`` picks them) go through the
intake to the generator; its prediction, voxelised, retrieves the training shape (or mirror) whose
``voxels_shell`` agrees with it best, and both the prediction and the retrieved shape are scored.

``--template``: what the shipped template (the level-3 icosphere, 642 vertices) and the next finer one (level 4,
2562) can represent. Each validation model's surface is fitted in 3D, knowing the answer: Adam moves the sphere's
vertices to lower the symmetric squared Chamfer distance between points sampled on it and on the true surface
(plus a light uniform Laplacian), ``--steps`` steps; then ``--steps`` more either as it is or subdivided
(:func:`softras.mesh.subdivide`) to 2562 vertices. Each fitted mesh is voxelised and scored like a reconstruction,
so the figures bound what a generator predicting either template could reach, and their difference what a finer
template could add. (Fitting the sphere to many silhouettes instead measures the optimiser more than the template:
from a sphere it lands below the generator's own predictions.)

Both print the mean over models, the mean over categories, and the per-category means.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np
import torch

from softras.data import Shapes, ViewSet, split_by_model
from softras.evaluate import evaluation_views, predict_views
from softras.losses import LaplacianLoss, chamfer_distance
from softras.mesh import icosphere, sample_surface, subdivide
from softras.model import load_weights
from softras.voxelize import unpack_voxels, voxel_iou, voxelize


def shell_grids(shapes: Shapes, indices, mirrored: bool = False) -> torch.Tensor:
    """(len(indices), 32**3) float: the models' ``voxels_shell``, flattened; with ``mirrored`` their mirror images
    about x = 0."""
    grids = [unpack_voxels(shapes.voxels_shell[i]) for i in indices]
    return torch.stack([g.flip(0) if mirrored else g for g in grids]).reshape(len(grids), -1).float()


def candidate_grids(shapes: Shapes, train: np.ndarray) -> torch.Tensor:
    """(2 * len(train), 32**3) float: the training shapes' ``voxels_shell`` and then their mirror images."""
    return torch.cat([shell_grids(shapes, train), shell_grids(shapes, train, mirrored=True)])


def best_matches(queries: torch.Tensor, candidates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each query grid (Q, N), the candidate (C, N) of highest voxel IoU: (its IoU (Q,), its index (Q,))."""
    inter = queries @ candidates.T
    union = queries.sum(1, keepdim=True) + candidates.sum(1)[None] - inter
    return (inter / union.clamp(min=1)).max(1)


def retrieval_ious(shapes: Shapes, val: np.ndarray, train: np.ndarray) -> np.ndarray:
    """(len(val),) float: each validation model's best voxel IoU with a training shape or its x-mirror."""
    return best_matches(shell_grids(shapes, val), candidate_grids(shapes, train))[0].numpy()


def generator_and_retrieval_ious(shapes: Shapes, weights: str, views_path: str, views_per_model: int,
                                 train: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per selected view (K,): the category, the generator's voxel IoU through the intake, and that of the training
    shape its prediction retrieves (module docstring); a picture the intake refuses scores 0 in both."""
    model, _ = load_weights(weights)
    views = ViewSet(views_path, "val")
    models, view_ids = evaluation_views(views, views_per_model, [30.0])
    vertices, taken = predict_views(model, views, models, view_ids)
    predicted = torch.stack([voxelize(v, model.faces) for v in vertices]).reshape(len(vertices), -1).float()
    truths = shell_grids(shapes, [views.model_index[m] for m in models.tolist()])
    candidates = candidate_grids(shapes, train)
    retrieved = candidates[best_matches(predicted, candidates)[1]]
    ok = torch.tensor(taken, dtype=torch.float32)

    def iou(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
        inter = (a * b).sum(1)
        return (ok * inter / (a.sum(1) + b.sum(1) - inter).clamp(min=1)).numpy()

    categories = np.array([str(views.category[m]) for m in models.tolist()])
    return categories, iou(predicted, truths), iou(retrieved, truths)


def fit_surface(vertices: torch.Tensor, faces: torch.Tensor, target: torch.Tensor, steps: int) -> torch.Tensor:
    """``vertices`` (V, 3) moved for ``steps`` Adam steps towards the surface sampled by ``target`` (P, 3)."""
    offsets = torch.zeros_like(vertices, requires_grad=True)
    optimizer = torch.optim.Adam([offsets], lr=0.005)
    laplacian = LaplacianLoss(faces, vertices.shape[0])
    for _ in range(steps):
        moved = vertices + offsets
        smoothing = 1e-3 * laplacian(moved[None]) * 642 / len(vertices)  # as much per vertex as on 642 vertices
        loss = chamfer_distance(sample_surface(moved, faces, 1500)[None], target[None])[0] + smoothing
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return (vertices + offsets).detach()


def template_ious(shapes: Shapes, index: int, steps: int) -> tuple[float, float]:
    """Voxel IoUs of the 642- and 2562-vertex templates fitted to model ``index``'s surface (module docstring)."""
    mesh, _ = shapes.mesh(index)
    target = sample_surface(mesh.vertices, mesh.faces, 2000)
    sphere = icosphere(3, radius=0.5)
    coarse = fit_surface(sphere.vertices, sphere.faces, target, steps)
    fine_vertices, fine_faces = subdivide(coarse, sphere.faces)
    voxels = unpack_voxels(shapes.voxels_shell[index])
    return tuple(voxel_iou(voxelize(fit_surface(v, f, target, steps), f), voxels)
                 for v, f in ((coarse, sphere.faces), (fine_vertices, fine_faces)))


def report(name: str, categories: np.ndarray, ious: np.ndarray) -> None:
    per = defaultdict(list)
    for c, v in zip(categories, ious):
        per[str(c)].append(float(v))
    means = {c: float(np.mean(v)) for c, v in sorted(per.items())}
    print(f"{name}: mean over models {np.mean(ious):.4f}, over categories {np.mean(list(means.values())):.4f}")
    print("  " + "  ".join(f"{c} {v:.2f}" for c, v in means.items()), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="shapes file, e.g. ../shared/data/shapes_train.npz")
    ap.add_argument("--retrieval", action="store_true", help="the retrieval oracle")
    ap.add_argument("--template", action="store_true", help="the 642- and 2562-vertex templates' fits")
    ap.add_argument("--steps", type=int, default=200, help="Adam steps per fit and stage (default 200)")
    ap.add_argument("--weights", help="a generator's weights: its predictions and the retrieval they drive")
    ap.add_argument("--views", default="cache/views128_e0_30.npz", help="views file for --weights")
    ap.add_argument("--views-per-model", type=int, default=4, help="input views per validation model (default 4)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N validation models")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    shapes = Shapes.load(args.data)
    split = split_by_model(shapes.category, shapes.model_id)
    val, train = np.flatnonzero(split == "val")[: args.limit], np.flatnonzero(split == "train")
    categories = shapes.category[val]
    if args.retrieval:
        report("retrieval oracle (best training shape or its mirror)", categories, retrieval_ious(shapes, val, train))
    if args.weights:
        view_categories, generated, retrieved = generator_and_retrieval_ious(shapes, args.weights, args.views,
                                                                             args.views_per_model, train)
        report(f"generator {args.weights} through the intake", view_categories, generated)
        report("the training shape its prediction retrieves", view_categories, retrieved)
    if args.template:
        start = time.perf_counter()
        coarse, fine = np.asarray([template_ious(shapes, int(i), args.steps) for i in val]).T
        seconds = time.perf_counter() - start
        for vertices, ious in ((642, coarse), (2562, fine)):
            report(f"{vertices}-vertex template fitted to the true surface", categories, ious)
        print(f"  2562 - 642: {np.mean(fine - coarse):+.4f} ({seconds:.0f} s)")

if __name__ == "__main__":
    main()
