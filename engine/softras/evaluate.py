"""Evaluation of a generator: voxel IoU per category (the paper's Table 1 form), silhouette IoU, robustness.

For each model, the generator reconstructs a mesh from each of a few views; the mesh is voxelised as surface plus
interior at 32^3 over [-0.5, 0.5]^3 and compared with the shape's ``voxels_shell``. Each view reaches the generator
as a user's picture does: through the intake (:func:`softras.inputs.generator_input`); ``path="direct"`` feeds the
renders resized to the generator's input size instead, a diagnostic of the generator alone. Silhouette IoU
compares the mesh's silhouette from the view's camera with the view's alpha. With few validation models (one in
most categories) a mean means little without its spread: the report gives each category's standard deviation over
its input views and a bootstrap interval of the overall mean that resamples whole models
(:func:`bootstrap_interval`). Voxel precision and recall tell
whether a low IoU comes from a prediction that is too fat or one that misses parts. With ``refine_steps`` each mesh
is first refined to its input's own mask as :meth:`softras.Reconstructor.reconstruct_intake` does (viewpoint
estimated, not given), which measures what the product's Refine option does to the shape in 3D.

:func:`evaluate_robustness` scores the same views perturbed as real pictures are (:data:`softras.augment.PERTURBATIONS`)
and the agreement (voxel IoU) between each perturbed prediction and the clean one.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from softras.augment import PERTURBATIONS
from softras.data import Shapes, ViewSet
from softras.inputs import generator_input
from softras.losses import soft_iou
from softras.model import Generator
from softras.raster import RasterSettings, render_silhouette
from softras.reconstruct import refine_prediction
from softras.voxelize import unpack_voxels, voxel_iou, voxel_precision_recall, voxelize

__all__ = ["EvalReport", "evaluate", "format_report", "RobustnessRow", "evaluate_robustness", "format_robustness",
           "predict_views", "evaluation_views", "category_mean", "bootstrap_interval"]


@dataclass
class EvalReport:
    """Per-category means of the voxel and silhouette IoUs and of voxel precision and recall, and the number of
    models per category; ``mean_voxel_iou`` averages the categories (the paper's protocol).

    ``voxel_iou_spread``: per category, the standard deviation of the voxel IoU over its input views (its models
    and their viewpoints). ``voxel_iou_interval``: the 95% bootstrap interval of ``mean_voxel_iou`` over models
    (:func:`bootstrap_interval`)."""

    voxel_iou: dict[str, float]
    silhouette_iou: dict[str, float]
    voxel_precision: dict[str, float]
    voxel_recall: dict[str, float]
    models: dict[str, int]
    failures: int = 0  # input pictures the intake refused (scored 0)
    voxel_iou_spread: dict[str, float] = field(default_factory=dict)
    voxel_iou_interval: tuple[float, float] = (float("nan"), float("nan"))

    @property
    def mean_voxel_iou(self) -> float:
        return float(np.mean(list(self.voxel_iou.values())))

    @property
    def mean_silhouette_iou(self) -> float:
        return float(np.mean(list(self.silhouette_iou.values())))

    def as_dict(self) -> dict:
        return {"voxel_iou": self.voxel_iou, "silhouette_iou": self.silhouette_iou, "models": self.models,
                "voxel_precision": self.voxel_precision, "voxel_recall": self.voxel_recall, "failures": self.failures,
                "mean_voxel_iou": self.mean_voxel_iou, "mean_silhouette_iou": self.mean_silhouette_iou,
                "voxel_iou_spread": self.voxel_iou_spread, "voxel_iou_interval": list(self.voxel_iou_interval)}


def evaluation_views(views: ViewSet, views_per_model: int,
                     elevations: list[float] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(models, views) (K,) int64: ``views_per_model`` evenly spaced views of every model among those at
    ``elevations`` (all views when None)."""
    candidates = views.views_at(elevations)
    step = max(1, len(candidates) // views_per_model)
    view_ids = candidates[::step][:views_per_model]
    return torch.arange(views.num_models).repeat_interleave(len(view_ids)), view_ids.repeat(views.num_models)


def _inputs(views: ViewSet, models: torch.Tensor, view_ids: torch.Tensor, size: int, path: str,
            perturb: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[torch.Tensor, list[bool]]:
    """Generator inputs (B, 4, size, size) of the views, and whether the intake took each picture (a refused one
    is all zeros)."""
    if path == "direct":
        return views.images_chw(models, view_ids, size), [True] * len(models)
    if path != "intake":
        raise ValueError(f"path must be 'intake' or 'direct', got {path!r}")
    inputs, ok = [], []
    for picture, m, v in zip(views.pictures(models, view_ids), models.tolist(), view_ids.tolist()):
        if perturb is not None:  # a perturbation with needs_view also gets the view's row and view index
            picture = perturb(picture, m, v) if getattr(perturb, "needs_view", False) else perturb(picture)
        try:
            inputs.append(generator_input(picture, size))
            ok.append(True)
        except ValueError:
            inputs.append(torch.zeros(4, size, size))
            ok.append(False)
    return torch.stack(inputs), ok


def _predict(model: Generator, inputs: torch.Tensor, refine_steps: int) -> torch.Tensor:
    """Vertices (B, V, 3) of the meshes predicted from ``inputs``, refined to their own masks when asked (the
    viewpoint weighed by the generator's azimuth probabilities where it has a viewpoint head, as the product does)."""
    code = model.encode(inputs)
    vertices, _ = model.decode(code, inputs)
    if refine_steps > 0:
        priors = model.azimuth_probabilities(code)
        with torch.enable_grad():
            vertices = torch.stack([refine_prediction(mesh, model.faces, (image[3] > 0.5).float(), refine_steps,
                                                      azimuth_prior=None if priors is None else priors[k]).vertices
                                    for k, (mesh, image) in enumerate(zip(vertices, inputs))])
    return vertices


@torch.no_grad()
def predict_views(model: Generator, views: ViewSet, models: torch.Tensor, view_ids: torch.Tensor, path: str = "intake",
                  perturb: Callable[[np.ndarray], np.ndarray] | None = None,
                  batch_size: int = 64) -> tuple[torch.Tensor, list[bool]]:
    """Vertices (K, V, 3) float32 on the CPU, object frame, of the meshes ``model`` predicts from the views
    (``models[k]``, ``view_ids[k]``) taken by ``path`` ('intake' or 'direct'; each picture first changed by
    ``perturb`` when given), and whether the intake took each picture (False: its prediction came from an empty
    input and is not to be scored)."""
    device = next(model.parameters()).device
    vertices, taken = [], []
    for start in range(0, len(models), batch_size):
        m, v = models[start : start + batch_size], view_ids[start : start + batch_size]
        inputs, ok = _inputs(views, m, v, model.cfg.image_size, path, perturb)
        vertices.append(_predict(model, inputs.to(device), 0).cpu())
        taken += ok
    return torch.cat(vertices), taken


def category_mean(scores: list[float] | np.ndarray, categories: list[str] | np.ndarray) -> float:
    """The mean over categories of each category's mean score (the paper's protocol), scores and categories (K,)."""
    per: dict[str, list[float]] = defaultdict(list)
    for c, score in zip(categories, scores):
        per[str(c)].append(float(score))
    return float(np.mean([np.mean(v) for v in per.values()]))


def bootstrap_interval(scores: np.ndarray, categories: np.ndarray, owners: np.ndarray, repeats: int = 2000,
                       level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of :func:`category_mean` of ``scores``, resampling whole models.

    scores, categories, owners: (K,) per scored view: its score (e.g. a voxel IoU, or the difference of two
    generators' on the same view), its category and the model it shows. Each of ``repeats`` resamples draws as many
    models as there are, with replacement, and keeps all the views of each; the interval holds the central
    ``level`` of the resampled category means. Deterministic for a given ``seed``. Returns (low, high).
    """
    scores, categories, owners = np.asarray(scores, float), np.asarray(categories), np.asarray(owners)
    if not (scores.shape == categories.shape == owners.shape) or scores.ndim != 1 or scores.size == 0:
        raise ValueError("scores, categories and owners must be non-empty and of the same length (K,)")
    models = np.unique(owners)
    views = [np.flatnonzero(owners == m) for m in models]
    rng = np.random.default_rng(seed)
    means = []
    for _ in range(repeats):
        idx = np.concatenate([views[k] for k in rng.choice(len(models), len(models))])
        means.append(category_mean(scores[idx], categories[idx]))
    low, high = np.percentile(means, [50 * (1 - level), 50 * (1 + level)])
    return float(low), float(high)


@torch.no_grad()
def evaluate(model: Generator, views: ViewSet, shapes: Shapes, views_per_model: int = 4, batch_size: int = 64,
             elevations: list[float] | None = None, refine_steps: int = 0, path: str = "intake") -> EvalReport:
    """Reconstruct every model of ``views`` from ``views_per_model`` evenly spaced views and score it.

    The input views are taken from those at ``elevations`` (degrees; all views when None), evenly spaced in order.
    ``path``: ``'intake'`` (each view as a user's picture, the default) or ``'direct'`` (diagnostic). A picture the
    intake refuses scores 0 and is counted in ``failures``. ``refine_steps > 0`` refines each mesh to its input's
    alpha > 0.5 with :func:`softras.reconstruct.refine_prediction` (viewpoint estimated) before it is scored.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    size = model.cfg.image_size
    models, vids = evaluation_views(views, views_per_model, elevations)
    settings = RasterSettings(size)
    vox, sil, precision, recall = defaultdict(list), defaultdict(list), defaultdict(list), defaultdict(list)
    scored: list[tuple[float, str, int]] = []  # (voxel IoU, category, model) per view
    failures = 0
    for start in range(0, len(models), batch_size):
        m, v = models[start : start + batch_size], vids[start : start + batch_size]
        inputs, ok = _inputs(views, m, v, size, path)
        vertices = _predict(model, inputs.to(device), refine_steps)
        rendered = render_silhouette(vertices, model.faces, views.cameras(v).to(device), settings)
        sil_iou = soft_iou((rendered > 0.5).float(), (views.images_chw(m, v, size)[:, 3].to(device) > 0.5).float())
        for k in range(len(m)):
            cat = str(views.category[m[k]])
            target = unpack_voxels(shapes.voxels_shell[views.model_index[m[k]]])
            predicted = voxelize(vertices[k].cpu(), model.faces.cpu())
            p, r = voxel_precision_recall(predicted, target)
            scores = (voxel_iou(predicted, target), float(sil_iou[k]), p, r) if ok[k] else (0.0, 0.0, 0.0, 0.0)
            failures += not ok[k]
            for values, score in zip((vox, sil, precision, recall), scores):
                values[cat].append(score)
            scored.append((scores[0], cat, int(m[k])))
    model.train(was_training)
    cats = sorted(vox)

    def means(values: dict[str, list[float]]) -> dict[str, float]:
        return {c: float(np.mean(values[c])) for c in cats}

    per_model = len(models) // views.num_models
    models_per_category = {c: len(vox[c]) // per_model for c in cats}
    interval = bootstrap_interval(*map(np.asarray, zip(*scored)))
    spread = {c: float(np.std(vox[c])) for c in cats}
    return EvalReport(means(vox), means(sil), means(precision), means(recall), models_per_category, failures,
                      spread, interval)


@dataclass
class RobustnessRow:
    """One kind of input: the category-mean voxel IoU, its difference from the clean intake figure, the mean voxel
    IoU between its predictions and the clean ones (``agreement``; 1 = the same shapes) and refused pictures."""

    name: str
    mean_voxel_iou: float
    change: float
    agreement: float
    failures: int


@torch.no_grad()
def evaluate_robustness(model: Generator, views: ViewSet, shapes: Shapes, views_per_model: int = 4,
                        batch_size: int = 64, elevations: list[float] | None = None,
                        perturbations: dict[str, Callable[[np.ndarray], np.ndarray]] | None = None) -> list[RobustnessRow]:
    """Voxel IoU of the clean views through the intake, of the direct path (diagnostic), and of the views
    perturbed by each of ``perturbations`` (default :data:`softras.augment.PERTURBATIONS` and the product-photo
    backdrops of :func:`softras.product_photos.photo_perturbations`) through the intake."""
    if perturbations is None:
        from softras.product_photos import photo_perturbations

        perturbations = {**PERTURBATIONS, **photo_perturbations(shapes, views)}
    was_training = model.training
    model.eval()
    models, vids = evaluation_views(views, views_per_model, elevations)
    targets = [unpack_voxels(shapes.voxels_shell[views.model_index[int(m)]]) for m in models]
    categories = [str(views.category[int(m)]) for m in models]

    def predictions(path: str, perturb: Callable[[np.ndarray], np.ndarray] | None) -> list[torch.Tensor | None]:
        vertices, taken = predict_views(model, views, models, vids, path, perturb, batch_size)
        return [voxelize(x, model.faces.cpu()) if good else None for x, good in zip(vertices, taken)]

    clean = predictions("intake", None)
    clean_iou = category_mean([voxel_iou(p, t) if p is not None else 0.0 for p, t in zip(clean, targets)], categories)
    cases = {"clean": ("intake", None), "direct (diagnostic)": ("direct", None)}
    cases.update({name: ("intake", f) for name, f in perturbations.items()})
    rows = []
    for name, (path, perturb) in cases.items():
        predicted = clean if name == "clean" else predictions(path, perturb)
        iou = category_mean([voxel_iou(p, t) if p is not None else 0.0 for p, t in zip(predicted, targets)], categories)
        agreement = float(np.mean([voxel_iou(p, c) if p is not None and c is not None else 0.0
                                   for p, c in zip(predicted, clean)]))
        rows.append(RobustnessRow(name, iou, iou - clean_iou, agreement, sum(p is None for p in predicted)))
    model.train(was_training)
    return rows


def format_robustness(rows: list[RobustnessRow]) -> str:
    """The robustness table: input, mean voxel IoU, change from clean, agreement with clean, refused pictures."""
    header = f"{'input':<22}{'voxel IoU':>11}{'vs clean':>10}{'agreement':>11}{'refused':>9}"
    lines = [header, "-" * len(header)]
    lines += [f"{r.name:<22}{r.mean_voxel_iou:>11.4f}{r.change:>+10.4f}{r.agreement:>11.4f}{r.failures:>9d}" for r in rows]
    return "\n".join(lines)


def format_report(report: EvalReport) -> str:
    """The per-category table: models, voxel IoU and its spread, silhouette IoU, voxel precision and recall, their
    means (the spread's is left blank: the interval below the table is the mean's), and the bootstrap interval of the
    mean voxel IoU."""
    columns = {"voxel IoU": report.voxel_iou, "spread": report.voxel_iou_spread, "silhouette IoU": report.silhouette_iou,
               "precision": report.voxel_precision, "recall": report.voxel_recall}
    widths = [len(name) + 2 for name in columns]

    def row(name: str, models: int, values: list[float | None]) -> str:
        return f"{name:<14}{models:>7}" + "".join(" " * w if v is None else f"{v:>{w}.4f}" for v, w in zip(values, widths))

    header = f"{'category':<14}{'models':>7}" + "".join(f"{name:>{w}}" for name, w in zip(columns, widths))
    rows = [header, "-" * len(header)]
    rows += [row(c, report.models[c], [col[c] for col in columns.values()]) for c in report.voxel_iou]
    means = [None if name == "spread" else float(np.mean(list(col.values()))) for name, col in columns.items()]
    low, high = report.voxel_iou_interval
    rows += ["-" * len(header), row("mean", sum(report.models.values()), means),
             f"95% bootstrap interval of the mean voxel IoU over models: [{low:.4f}, {high:.4f}]"]
    return "\n".join(rows)
