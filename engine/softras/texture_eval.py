"""How well a projected texture reproduces its picture: ``softras eval --texture``.

Each validation render is taken through the user's path (picture -> intake -> generator -> viewpoint estimate ->
:func:`softras.texture.project_texture`), then the mesh is re-rendered from the input viewpoint at the picture's own
resolution with a hard z-buffer (:func:`render_hard`), sampling the texture per pixel at the interpolated UV, and
compared with the picture: mean absolute error of sRGB values in [0, 1] over the pixels inside the picture's mask
(alpha > 0.5) that the mesh covers. The same render with the vertex colours gives the figure it replaces. Where
:func:`~softras.texture.project_texture` refuses (bad viewpoint), the textured figure uses the vertex colours, as a
user would get them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from softras.camera import Camera
from softras.data import ViewSet
from softras.evaluate import _selection
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
    mesh covers it), ``coverage`` (fraction of mask pixels the mesh covers), ``from_picture`` (fraction of texels
    that took the picture's colour), the number of pictures, of fallbacks to vertex colours, and their messages;
    ``viewpoint_iou``: each picture's silhouette IoU from the estimated viewpoint (what ``MIN_VIEWPOINT_IOU`` is
    checked against); ``wrong_viewpoint_iou``: the same from that viewpoint turned 90 degrees about the vertical
    axis, what a failed estimate scores; ``viewpoint_error``: the angle in degrees between the estimated and the
    true viewing directions (the views file's camera; the generator predicts in the frame those cameras use), or
    the true one mirrored through x = 0 where that is nearer (the two see mirror-symmetric objects alike)."""

    mae_textured: float
    mae_vertex: float
    coverage: float
    from_picture: float
    pictures: int
    fallbacks: int
    messages: list[str]
    viewpoint_iou: list[float]
    wrong_viewpoint_iou: list[float]
    viewpoint_error: list[float]

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


def _picture_mae(picture: np.ndarray, render: torch.Tensor) -> tuple[float, float]:
    """(MAE over mask & covered pixels, covered fraction of the mask) of a render against a uint8 RGBA picture."""
    target = torch.from_numpy(picture).float() / 255
    mask = target[..., 3] > 0.5
    both = mask & (render[..., 3] > 0.5)
    if not bool(both.any()):
        return float("nan"), 0.0
    return float((render[..., :3] - target[..., :3]).abs()[both].mean()), float(both.sum() / mask.sum())


def evaluate_texture(reconstructor: Reconstructor, views: ViewSet, views_per_model: int = 4,
                     elevations: list[float] | None = None, texture_size: int = 1024) -> TextureReport:
    """Re-render MAE of textured and vertex-coloured reconstructions of ``views`` (see the module docstring), from
    ``views_per_model`` evenly spaced views per model at ``elevations`` (all when None)."""
    models, vids = _selection(views, views_per_model, elevations)
    settings, intake_settings = BakeSettings(size=texture_size), IntakeSettings(size=reconstructor.image_size)
    textured, vertex, coverage, shares, messages, ious, wrong, errors = [], [], [], [], [], [], [], []
    for m, v in zip(models.tolist(), vids.tolist()):
        picture = views.pictures(torch.tensor([m]), torch.tensor([v]))[0]
        intake = prepare_array(picture, settings=intake_settings)
        mesh = reconstructor.reconstruct_intake(intake).mesh
        outcome = project_texture(mesh, intake, picture, settings=settings)
        if outcome.camera is None:
            messages.append(outcome.message)
            continue
        ious.append(round(outcome.iou, 4))
        wrong.append(round(viewpoint_iou(mesh, _turned(outcome.camera, 90.0), intake.mask), 4))
        true_eye = views.cameras(torch.tensor([v])).eye[0]
        candidates = torch.stack([true_eye, true_eye * torch.tensor([-1.0, 1.0, 1.0])])  # and its mirror image
        cosine = F.cosine_similarity(outcome.camera.eye, candidates, dim=1).max().clamp(-1, 1)
        errors.append(round(float(torch.rad2deg(torch.acos(cosine))), 2))
        h, w = picture.shape[:2]
        camera = outcome.camera.widened(intake.crop_box, w, h)
        mae_t, covered = _picture_mae(picture, render_hard(outcome.mesh, camera, h, w))
        mae_v, _ = _picture_mae(picture, render_hard(outcome.mesh, camera, h, w, textured=False))
        textured.append(mae_t)
        vertex.append(mae_v)
        coverage.append(covered)
        shares.append(outcome.bake.from_picture if outcome.bake else 0.0)
        if outcome.message:
            messages.append(outcome.message)
    return TextureReport(float(np.nanmean(textured)), float(np.nanmean(vertex)), float(np.mean(coverage)),
                         float(np.mean(shares)), len(models), len(messages), messages, ious, wrong, errors)


def _turned(camera: Camera, degrees: float) -> Camera:
    """``camera`` with its eye turned about the vertical (Y) axis through the point it looks at."""
    a = torch.deg2rad(torch.tensor(degrees))
    rotation = torch.tensor([[torch.cos(a), 0.0, torch.sin(a)], [0.0, 1.0, 0.0], [-torch.sin(a), 0.0, torch.cos(a)]])
    eye = camera.at + (camera.eye - camera.at) @ rotation.T
    return Camera(eye, camera.at, camera.up, camera.fov, camera.aspect, camera.shift)


def format_texture_report(report: TextureReport) -> str:
    return (f"re-render from the input viewpoint vs the picture, inside its mask where the mesh covers it "
            f"({report.pictures} pictures, mesh covers {report.coverage:.1%} of the mask):\n"
            f"  mean absolute error (sRGB, 0-1): textured {report.mae_textured:.4f}, vertex colours {report.mae_vertex:.4f}\n"
            f"  texels from the picture: {report.from_picture:.1%}; fallbacks to vertex colours: {report.fallbacks}\n"
            f"  viewpoint silhouette IoU: min {min(report.viewpoint_iou, default=float('nan')):.3f}, "
            f"median {float(np.median(report.viewpoint_iou)) if report.viewpoint_iou else float('nan'):.3f}; "
            f"turned 90 degrees: max {max(report.wrong_viewpoint_iou, default=float('nan')):.3f}, median "
            f"{float(np.median(report.wrong_viewpoint_iou)) if report.wrong_viewpoint_iou else float('nan'):.3f}")
