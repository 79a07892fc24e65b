"""How well a projected texture reproduces its picture: ``softras eval --texture``.

Each validation render is taken through the user's path (picture -> intake -> generator -> viewpoint estimate, weighed
by the generator's azimuth probabilities where it has a viewpoint head ->
:func:`softras.texture.project_texture`), then the mesh is re-rendered at the picture's own resolution with a hard
z-buffer (:func:`render_hard`), sampling the texture per pixel at the interpolated UV, and compared with the picture:
mean absolute error of sRGB values in [0, 1] over the pixels inside the picture's mask (alpha > 0.5) that the mesh
covers. The same render with the vertex colours gives the figure it replaces. Where
:func:`~softras.texture.project_texture` refuses (bad viewpoint), the textured figure uses the vertex colours, as a
user would get them.

Two re-renders are measured. Through the *estimated* camera (the one the texture was baked through) the picture comes
back wherever the estimate put it, so that figure measures the bake alone and cannot see a wrong viewpoint. Through
the view's *true* camera (the views file's; the generator predicts in the object frame those cameras use) a texture
painted onto the wrong side of the mesh shows as the wrong colours: that is what a user sees of the reconstruction
from the picture's own viewpoint, and the honest figure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from softras.camera import Camera
from softras.data import ViewSet
from softras.evaluate import evaluation_views
from softras.intake import IntakeSettings, prepare_array
from softras.mesh import Mesh
from softras.raster import zbuffer
from softras.reconstruct import Reconstructor
from softras.texture import BakeSettings, project_texture, viewpoint_iou

__all__ = ["render_hard", "sample_texture", "TextureReport", "evaluate_texture", "format_texture_report"]


def sample_texture(image: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear lookup of ``uv`` (N, 2) (v down, see :class:`softras.mesh.Texture`) in ``image`` (H, W, 3) uint8
    sRGB; returns (N, 3) float32 sRGB in [0, 1]. Coordinates outside [0, 1] take the border texels."""
    texels = image.permute(2, 0, 1)[None].float() / 255
    grid = (2 * uv - 1)[None, None]
    return F.grid_sample(texels, grid, mode="bilinear", padding_mode="border", align_corners=False)[0, :, 0].T


@torch.no_grad()
def render_hard(mesh: Mesh, camera: Camera, height: int, width: int, textured: bool = True) -> torch.Tensor:
    """A z-buffered render of ``mesh`` by ``camera`` (batch 1): (H, W, 4) float32, sRGB colour then coverage
    (0 or 1), colour 0 where no face covers the pixel centre. Colour from the texture (bilinear at the
    perspective-correct UV) when ``textured`` and the mesh has one, else from the vertex colours (grey without)."""
    z = zbuffer(camera.project(mesh.vertices[None]), mesh.faces, height, width)
    covered = z.covered[0].view(-1)
    face, bary = z.face[0].view(-1)[covered], z.bary[0].view(-1, 3)[covered]
    if textured and mesh.texture is not None:
        uv = (bary[:, :, None] * mesh.texture.uv[face]).sum(1)
        colors = sample_texture(mesh.texture.image, uv)
    else:
        vertex_colors = mesh.vertex_colors if mesh.vertex_colors is not None else torch.full_like(mesh.vertices, 0.7)
        colors = (bary[:, :, None] * vertex_colors[mesh.faces[face]]).sum(1)
    out = torch.zeros(height * width, 4)
    out[covered] = torch.cat([colors, torch.ones_like(colors[:, :1])], dim=1)
    return out.view(height, width, 4)


@dataclass
class TextureReport:
    """Means over the evaluated pictures: ``mae_textured`` and ``mae_vertex`` (sRGB, 0-1, inside the mask where the
    mesh covers it) re-rendered through the estimated camera, ``coverage`` (fraction of mask pixels the mesh covers
    there), ``mae_textured_true``, ``mae_vertex_true`` and ``coverage_true`` the same through the view's true camera
    (module docstring), ``from_picture`` (fraction of texels that took the picture's colour), the number of pictures,
    of fallbacks to vertex colours, and their messages;
    ``viewpoint_iou``: each picture's silhouette IoU from the estimated viewpoint (what ``MIN_VIEWPOINT_IOU`` is
    checked against); ``wrong_viewpoint_iou``: the same from that viewpoint turned 90 degrees about the vertical
    axis, what a failed estimate scores; ``viewpoint_error``: the angle in degrees between the estimated and the
    true viewing directions (the views file's camera; the generator predicts in the frame those cameras use), or
    the true one mirrored through x = 0 where that is nearer (the two see mirror-symmetric objects alike);
    ``off_45`` and ``off_90``: how many of those errors exceed 45 and 90 degrees (90: front and back confused)."""

    mae_textured: float
    mae_vertex: float
    coverage: float
    mae_textured_true: float
    mae_vertex_true: float
    coverage_true: float
    from_picture: float
    pictures: int
    fallbacks: int
    messages: list[str]
    viewpoint_iou: list[float]
    wrong_viewpoint_iou: list[float]
    viewpoint_error: list[float]

    @property
    def off_45(self) -> int:
        return sum(e > 45.0 for e in self.viewpoint_error)

    @property
    def off_90(self) -> int:
        return sum(e > 90.0 for e in self.viewpoint_error)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()} | {"off_45": self.off_45, "off_90": self.off_90}


def _picture_mae(picture: np.ndarray, render: torch.Tensor) -> tuple[float, float]:
    """(MAE over mask & covered pixels, covered fraction of the mask) of a render against a uint8 RGBA picture."""
    target = torch.from_numpy(picture).float() / 255
    mask = target[..., 3] > 0.5
    both = mask & (render[..., 3] > 0.5)
    if not bool(both.any()):
        return float("nan"), 0.0
    return float((render[..., :3] - target[..., :3]).abs()[both].mean()), float(both.sum() / mask.sum())


def evaluate_texture(reconstructor: Reconstructor, views: ViewSet, views_per_model: int = 4,
                     elevations: list[float] | None = None, texture_size: int = 1024,
                     viewpoint_prior: bool = True) -> TextureReport:
    """Re-render MAE of textured and vertex-coloured reconstructions of ``views`` through the estimated and the true
    cameras (see the module docstring), from ``views_per_model`` evenly spaced views per model at ``elevations`` (all
    when None). ``viewpoint_prior``: weigh the viewpoint estimate with the generator's azimuth probabilities, as the
    product does (without a viewpoint head, or when False, by the mask alone)."""
    models, vids = evaluation_views(views, views_per_model, elevations)
    settings, intake_settings = BakeSettings(size=texture_size), IntakeSettings(size=reconstructor.image_size)
    maes: dict[str, list[float]] = {key: [] for key in ("textured", "vertex", "coverage", "textured_true", "vertex_true",
                                                        "coverage_true")}
    shares, messages, ious, wrong, errors = [], [], [], [], []
    for m, v in zip(models.tolist(), vids.tolist()):
        picture = views.pictures(torch.tensor([m]), torch.tensor([v]))[0]
        intake = prepare_array(picture, settings=intake_settings)
        result = reconstructor.reconstruct_intake(intake)
        mesh = result.mesh
        outcome = project_texture(mesh, intake, picture, None, settings, result.azimuth_prior if viewpoint_prior else None)
        if outcome.camera is None:
            messages.append(outcome.message)
            continue
        ious.append(round(outcome.iou, 4))
        wrong.append(round(viewpoint_iou(mesh, _turned(outcome.camera, 90.0), intake.mask), 4))
        true_camera = views.cameras(torch.tensor([v]))
        true_eye = true_camera.eye[0]
        candidates = torch.stack([true_eye, true_eye * torch.tensor([-1.0, 1.0, 1.0])])  # and its mirror image
        cosine = F.cosine_similarity(outcome.camera.eye, candidates, dim=1).max().clamp(-1, 1)
        errors.append(round(float(torch.rad2deg(torch.acos(cosine))), 2))
        h, w = picture.shape[:2]
        for camera, suffix in ((outcome.camera.widened(intake.crop_box, w, h), ""), (true_camera, "_true")):
            mae_t, covered = _picture_mae(picture, render_hard(outcome.mesh, camera, h, w))
            mae_v, _ = _picture_mae(picture, render_hard(outcome.mesh, camera, h, w, textured=False))
            maes["textured" + suffix].append(mae_t)
            maes["vertex" + suffix].append(mae_v)
            maes["coverage" + suffix].append(covered)
        shares.append(outcome.bake.from_picture if outcome.bake else 0.0)
        if outcome.message:
            messages.append(outcome.message)
    mean = {key: float(np.nanmean(values) if "coverage" not in key else np.mean(values)) for key, values in maes.items()}
    return TextureReport(mean["textured"], mean["vertex"], mean["coverage"], mean["textured_true"], mean["vertex_true"],
                         mean["coverage_true"], float(np.mean(shares)), len(models), len(messages), messages, ious, wrong,
                         errors)


def _turned(camera: Camera, degrees: float) -> Camera:
    """``camera`` with its eye turned about the vertical (Y) axis through the point it looks at."""
    a = torch.deg2rad(torch.tensor(degrees))
    rotation = torch.tensor([[torch.cos(a), 0.0, torch.sin(a)], [0.0, 1.0, 0.0], [-torch.sin(a), 0.0, torch.cos(a)]])
    eye = camera.at + (camera.eye - camera.at) @ rotation.T
    return Camera(eye, camera.at, camera.up, camera.fov, camera.aspect, camera.shift)


def format_texture_report(report: TextureReport) -> str:
    """The report as a few lines of text (the JSON has the per-picture lists)."""
    errors = report.viewpoint_error
    return (f"re-render vs the picture, inside its mask where the mesh covers it ({report.pictures} pictures), "
            f"mean absolute error (sRGB, 0-1):\n"
            f"  through the true camera:      textured {report.mae_textured_true:.4f}, vertex colours "
            f"{report.mae_vertex_true:.4f} (mesh covers {report.coverage_true:.1%} of the mask)\n"
            f"  through the estimated camera: textured {report.mae_textured:.4f}, vertex colours "
            f"{report.mae_vertex:.4f} (mesh covers {report.coverage:.1%} of the mask; blind to a wrong viewpoint)\n"
            f"  viewpoint error to the true camera (or its mirror image): median "
            f"{float(np.median(errors)) if errors else float('nan'):.1f} degrees, > 45 degrees: {report.off_45} of "
            f"{len(errors)}, > 90 degrees: {report.off_90}\n"
            f"  texels from the picture: {report.from_picture:.1%}; fallbacks to vertex colours: {report.fallbacks}\n"
            f"  viewpoint silhouette IoU: min {min(report.viewpoint_iou, default=float('nan')):.3f}, "
            f"median {float(np.median(report.viewpoint_iou)) if report.viewpoint_iou else float('nan'):.3f}; "
            f"turned 90 degrees: max {max(report.wrong_viewpoint_iou, default=float('nan')):.3f}, median "
            f"{float(np.median(report.wrong_viewpoint_iou)) if report.wrong_viewpoint_iou else float('nan'):.3f}")
