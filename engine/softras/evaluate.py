"""Evaluation of a generator: voxel IoU per category (the paper's Table 1 form) and silhouette IoU.

For each model, the generator reconstructs a mesh from each of a few views; the mesh is voxelised as surface plus
interior at 32^3 over [-0.5, 0.5]^3 and compared with the shape's ``voxels_shell``. Silhouette IoU compares the
mesh's silhouette from the input view with the input's alpha.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import torch

from softras.data import Shapes, ViewSet
from softras.losses import soft_iou
from softras.model import Generator
from softras.raster import RasterSettings, render_silhouette
from softras.voxelize import unpack_voxels, voxel_iou, voxelize

__all__ = ["EvalReport", "evaluate", "format_report"]


@dataclass
class EvalReport:
    """Mean IoUs per category; ``mean_voxel_iou`` averages the categories (the paper's protocol)."""

    voxel_iou: dict[str, float]
    silhouette_iou: dict[str, float]
    models: dict[str, int] = field(default_factory=dict)

    @property
    def mean_voxel_iou(self) -> float:
        return float(np.mean(list(self.voxel_iou.values())))

    @property
    def mean_silhouette_iou(self) -> float:
        return float(np.mean(list(self.silhouette_iou.values())))

    def as_dict(self) -> dict:
        return {"voxel_iou": self.voxel_iou, "silhouette_iou": self.silhouette_iou, "models": self.models,
                "mean_voxel_iou": self.mean_voxel_iou, "mean_silhouette_iou": self.mean_silhouette_iou}


@torch.no_grad()
def evaluate(model: Generator, views: ViewSet, shapes: Shapes, views_per_model: int = 4, batch_size: int = 64,
             elevations: list[float] | None = None) -> EvalReport:
    """Reconstruct every model of ``views`` from ``views_per_model`` evenly spaced views and score it.

    The input views are taken from those at ``elevations`` (degrees; all views when None), evenly spaced in order.
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
    vox, sil = defaultdict(list), defaultdict(list)
    for start in range(0, len(models), batch_size):
        m, v = models[start : start + batch_size], vids[start : start + batch_size]
        images = views.images_chw(m, v).to(device)
        vertices, _ = model(images)
        rendered = render_silhouette(vertices, model.faces, views.cameras(v).to(device), settings)
        sil_iou = soft_iou((rendered > 0.5).float(), (images[:, 3] > 0.5).float())
        for k in range(len(m)):
            cat = str(views.category[m[k]])
            target = unpack_voxels(shapes.voxels_shell[views.model_index[m[k]]])
            vox[cat].append(voxel_iou(voxelize(vertices[k].cpu(), model.faces.cpu()), target))
            sil[cat].append(float(sil_iou[k]))
    model.train(was_training)
    cats = sorted(vox)
    return EvalReport({c: float(np.mean(vox[c])) for c in cats}, {c: float(np.mean(sil[c])) for c in cats},
                      {c: len(vox[c]) // len(view_ids) for c in cats})


def format_report(report: EvalReport) -> str:
    rows = [f"{'category':<14}{'models':>7}{'voxel IoU':>11}{'silhouette IoU':>16}", "-" * 48]
    for c in report.voxel_iou:
        rows.append(f"{c:<14}{report.models[c]:>7}{report.voxel_iou[c]:>11.4f}{report.silhouette_iou[c]:>16.4f}")
    rows += ["-" * 48, f"{'mean':<14}{sum(report.models.values()):>7}{report.mean_voxel_iou:>11.4f}{report.mean_silhouette_iou:>16.4f}"]
    return "\n".join(rows)
