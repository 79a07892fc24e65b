"""Evaluation of a generator: voxel IoU per category (the paper's Table 1 form) and silhouette IoU.

For each model, the generator reconstructs a mesh from each of a few views; the mesh is voxelised as surface plus
interior at 32^3 over [-0.5, 0.5]^3 and compared with the shape's ``voxels_shell``. Silhouette IoU compares the
mesh's silhouette from the input view with the input's alpha. Voxel precision and recall tell whether a low IoU
comes from a prediction that is too fat or one that misses parts. With ``refine_steps`` each mesh is first refined
to its input's own mask as :meth:`softras.Reconstructor.reconstruct_intake` does (viewpoint estimated, not given),
which measures what the product's Refine option does to the shape in 3D.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch

from softras.data import Shapes, ViewSet
from softras.losses import soft_iou
from softras.model import Generator
from softras.raster import RasterSettings, render_silhouette
from softras.reconstruct import refine_prediction
from softras.voxelize import unpack_voxels, voxel_iou, voxel_precision_recall, voxelize

__all__ = ["EvalReport", "evaluate", "format_report"]


@dataclass
class EvalReport:
    """Per-category means of the voxel and silhouette IoUs and of voxel precision and recall, and the number of
    models per category; ``mean_voxel_iou`` averages the categories (the paper's protocol)."""

    voxel_iou: dict[str, float]
    silhouette_iou: dict[str, float]
    voxel_precision: dict[str, float]
    voxel_recall: dict[str, float]
    models: dict[str, int]

    @property
    def mean_voxel_iou(self) -> float:
        return float(np.mean(list(self.voxel_iou.values())))

    @property
    def mean_silhouette_iou(self) -> float:
        return float(np.mean(list(self.silhouette_iou.values())))

    def as_dict(self) -> dict:
        return {"voxel_iou": self.voxel_iou, "silhouette_iou": self.silhouette_iou, "models": self.models,
                "voxel_precision": self.voxel_precision, "voxel_recall": self.voxel_recall,
                "mean_voxel_iou": self.mean_voxel_iou, "mean_silhouette_iou": self.mean_silhouette_iou}


@torch.no_grad()
def evaluate(model: Generator, views: ViewSet, shapes: Shapes, views_per_model: int = 4, batch_size: int = 64,
             elevations: list[float] | None = None, refine_steps: int = 0) -> EvalReport:
    """Reconstruct every model of ``views`` from ``views_per_model`` evenly spaced views and score it.

    The input views are taken from those at ``elevations`` (degrees; all views when None), evenly spaced in order.
    ``refine_steps > 0`` refines each mesh to its input's alpha > 0.5 with
    :func:`softras.reconstruct.refine_prediction` (viewpoint estimated) before it is scored.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    candidates = views.views_at(elevations)
    step = max(1, len(candidates) // views_per_model)
    view_ids = candidates[::step][:views_per_model]
    models = torch.arange(views.num_models).repeat_interleave(len(view_ids))
    vids = view_ids.repeat(views.num_models)
    settings = RasterSettings(views.image_size)
    vox, sil, precision, recall = defaultdict(list), defaultdict(list), defaultdict(list), defaultdict(list)
    for start in range(0, len(models), batch_size):
        m, v = models[start : start + batch_size], vids[start : start + batch_size]
        images = views.images_chw(m, v).to(device)
        vertices, _ = model(images)
        if refine_steps > 0:
            with torch.enable_grad():
                vertices = torch.stack([refine_prediction(mesh, model.faces, (image[3] > 0.5).float(), refine_steps).vertices
                                        for mesh, image in zip(vertices, images)])
        rendered = render_silhouette(vertices, model.faces, views.cameras(v).to(device), settings)
        sil_iou = soft_iou((rendered > 0.5).float(), (images[:, 3] > 0.5).float())
        for k in range(len(m)):
            cat = str(views.category[m[k]])
            target = unpack_voxels(shapes.voxels_shell[views.model_index[m[k]]])
            predicted = voxelize(vertices[k].cpu(), model.faces.cpu())
            vox[cat].append(voxel_iou(predicted, target))
            p, r = voxel_precision_recall(predicted, target)
            precision[cat].append(p)
            recall[cat].append(r)
            sil[cat].append(float(sil_iou[k]))
    model.train(was_training)
    cats = sorted(vox)

    def means(values: dict[str, list[float]]) -> dict[str, float]:
        return {c: float(np.mean(values[c])) for c in cats}

    models_per_category = {c: len(vox[c]) // len(view_ids) for c in cats}
    return EvalReport(means(vox), means(sil), means(precision), means(recall), models_per_category)


def format_report(report: EvalReport) -> str:
    """The per-category table: models, voxel IoU, silhouette IoU, voxel precision and recall, and their means."""
    columns = {"voxel IoU": report.voxel_iou, "silhouette IoU": report.silhouette_iou,
               "precision": report.voxel_precision, "recall": report.voxel_recall}
    widths = [len(name) + 2 for name in columns]

    def row(name: str, models: int, values: list[float]) -> str:
        return f"{name:<14}{models:>7}" + "".join(f"{v:>{w}.4f}" for v, w in zip(values, widths))

    header = f"{'category':<14}{'models':>7}" + "".join(f"{name:>{w}}" for name, w in zip(columns, widths))
    rows = [header, "-" * len(header)]
    rows += [row(c, report.models[c], [col[c] for col in columns.values()]) for c in report.voxel_iou]
    means = [float(np.mean(list(col.values()))) for col in columns.values()]
    rows += ["-" * len(header), row("mean", sum(report.models.values()), means)]
    return "\n".join(rows)
