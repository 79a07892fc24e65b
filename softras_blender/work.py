"""What runs in the worker thread: engine calls on plain data captured from Blender. Never touches bpy.

Each request is built on the main thread (:mod:`.operators`) from numpy arrays and plain values; each function
reports progress through a :class:`~.jobs.Reporter`, stops at the next check when cancelled, and returns plain
numpy results that the main thread puts into the scene.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import engine
from .convert import CameraParams, Pixels, fit_size
from .jobs import Reporter

__all__ = ["ReconstructRequest", "ReconstructResult", "reconstruct", "FitRequest", "FitResult", "fit", "MASK_SIDE",
           "BakedTexture", "RebakeRequest", "rebake"]

MASK_SIDE = 128
"""Masks are resampled so that their longer side is about this many pixels for fitting."""


@dataclass(frozen=True)
class ReconstructRequest:
    """image: the reference picture; weights: generator weights file or None for the engine default; device:
    'AUTO', 'CPU' or 'CUDA'; refine_steps: silhouette refinement steps against the picture's own mask (0: none);
    texture_size: side of the texture baked from the picture (0: no texture)."""

    image: Pixels
    weights: str | None
    device: str
    refine_steps: int
    texture_size: int = 0
    mask: np.ndarray | None = None
    """(H, W) bool foreground painted by the artist, row 0 at the top, or None: the intake finds it."""


@dataclass(frozen=True)
class BakedTexture:
    """uv (F, 3, 2) float32 per face corner, v down (:class:`softras.mesh.Texture`); image (S, S, 3) uint8 sRGB,
    row 0 at the top."""

    uv: np.ndarray
    image: np.ndarray


@dataclass(frozen=True)
class ReconstructResult:
    """vertices (V, 3) float32 engine object frame (Y-up, inside about [-0.5, 0.5]^3); faces (F, 3) int64; colors
    (V, 3) float32 sRGB in [0, 1]; iou: (before, after) of the refinement, or None without one; texture: the baked
    texture or None; texture_message: why no texture was baked where one was asked for; azimuth_prior: (N,) float32,
    the generator's azimuth probabilities for the picture (None without a viewpoint head), kept for re-baking."""

    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray
    iou: tuple[float, float] | None
    texture: BakedTexture | None = None
    texture_message: str | None = None
    azimuth_prior: np.ndarray | None = None
    foreground: np.ndarray | None = None
    """(H, W) uint8 (255 = object), row 0 at the top: the foreground the intake used, at the picture's size."""
    foreground_source: str | None = None
    """Where it came from: 'alpha', 'mask' (painted), 'border' or 'net' (see :mod:`softras.intake`)."""


def _bake(mesh, intake, picture: np.ndarray, camera, size: int, reporter: Reporter,
          azimuth_prior=None) -> tuple[BakedTexture | None, str | None]:
    """:func:`softras.texture.project_texture` of an engine mesh, as plain arrays (or the reason it fell back)."""
    from softras.texture import BakeSettings, project_texture

    reporter.progress(0.85, "Baking the texture")
    outcome = project_texture(mesh, intake, picture, camera, BakeSettings(size=size), azimuth_prior)
    reporter.check()
    texture = outcome.mesh.texture
    if texture is None:
        return None, outcome.message
    return BakedTexture(texture.uv.numpy(), texture.image.numpy()), None


def reconstruct(request: ReconstructRequest, reporter: Reporter) -> ReconstructResult:
    """Intake, generator prediction and optional refinement with viewpoint estimation (``refine_to_image``)."""
    reporter.progress(0.02, "Loading PyTorch and the engine")
    engine.load()
    from softras.intake import IntakeSettings, foreground_mask, prepare_array

    reporter.check()
    reporter.progress(0.1, "Loading the generator")
    model = engine.reconstructor(request.weights, request.device)
    reporter.check()
    reporter.progress(0.2, "Preparing the image")
    intake = prepare_array(request.image.srgb(), request.mask, IntakeSettings(size=model.image_size))
    reporter.check()
    reporter.progress(0.3, "Predicting the mesh" + (" and refining it to the picture's silhouette" if request.refine_steps else ""))

    def on_step(step: int, total: int, best: float) -> None:
        reporter.progress(0.4 + 0.6 * step / total, f"Refining {step}/{total}, IoU {best:.3f}")

    result = model.reconstruct_intake(intake, request.refine_steps, callback=on_step, should_stop=reporter.should_stop)
    reporter.check()
    mesh = result.mesh
    iou = None if result.iou_before is None else (result.iou_before, result.iou_after)
    texture, message = None, None
    if request.texture_size:
        texture, message = _bake(mesh, intake, request.image.srgb(), result.camera, request.texture_size, reporter,
                                 result.azimuth_prior)
    prior = None if result.azimuth_prior is None else result.azimuth_prior.numpy()
    return ReconstructResult(mesh.vertices.numpy(), mesh.faces.numpy(), mesh.vertex_colors.numpy(), iou, texture, message,
                             prior, foreground_mask(intake), intake.foreground_source)


@dataclass(frozen=True)
class RebakeRequest:
    """Bake a reconstruction's texture again after its vertices moved (Fit to Silhouette): vertices (V, 3) and
    colors (V, 3) sRGB in the engine's object frame, faces (F, 3) int64 in the order the texture's UVs follow,
    the reference picture, the texture side and the reconstruction's azimuth probabilities (N,) if it kept them."""

    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray
    image: Pixels
    texture_size: int
    azimuth_prior: np.ndarray | None = None


def rebake(request: RebakeRequest, reporter: Reporter) -> tuple[BakedTexture | None, str | None]:
    """Intake of the picture, viewpoint estimate for the moved mesh and the bake (or the reason it fell back)."""
    reporter.progress(0.02, "Loading PyTorch and the engine")
    engine.load()
    import torch
    from softras.intake import prepare_array
    from softras.mesh import Mesh

    reporter.check()
    reporter.progress(0.2, "Preparing the image and estimating the viewpoint")
    picture = request.image.srgb()
    intake = prepare_array(picture)
    mesh = Mesh(torch.from_numpy(request.vertices).float(), torch.from_numpy(request.faces),
                torch.from_numpy(request.colors).float())
    prior = None if request.azimuth_prior is None else torch.from_numpy(request.azimuth_prior).float()
    return _bake(mesh, intake, picture, None, request.texture_size, reporter, prior)


@dataclass(frozen=True)
class FitRequest:
    """vertices (V, 3) float64 and triangles (F, 3) int64 in Blender's world frame; views: one (camera, mask
    image) pair per view, all sharing the render aspect; steps: Adam steps; device: 'AUTO', 'CPU' or 'CUDA'."""

    vertices: np.ndarray
    triangles: np.ndarray
    views: tuple[tuple[CameraParams, Pixels], ...]
    steps: int
    device: str


@dataclass(frozen=True)
class FitResult:
    """vertices (V, 3) float64 world frame; IoU (mean over views) before and after; steps actually run."""

    vertices: np.ndarray
    iou_before: float
    iou_after: float
    steps_run: int


def fit(request: FitRequest, reporter: Reporter) -> FitResult:
    """``softras.refine.refine`` of the world-space mesh against the masks seen through the cameras."""
    reporter.progress(0.02, "Loading PyTorch and the engine")
    engine.load()
    import torch
    import torch.nn.functional as F
    from softras import Camera
    from softras.refine import RefineSettings, refine

    device = engine.resolve_device(request.device)
    height, width = None, None
    masks, cameras = [], []
    for camera, image in request.views:
        reporter.check()
        foreground = image.mask()
        if not foreground.any():
            raise ValueError(f"mask image '{image.name}' is empty: no pixel is foreground (alpha or luminance > 0.5)")
        if height is None:
            height, width = fit_size(camera.aspect, MASK_SIDE)
        full = torch.from_numpy(foreground.astype(np.float32))[None, None]
        masks.append(F.interpolate(full, size=(height, width), mode="area")[0, 0])  # coverage of each mask pixel
        cameras.append(camera.to_softras(aspect=width / height))
    reporter.progress(0.1, "Fitting")

    def on_step(step: int, total: int, best: float) -> None:
        reporter.progress(0.1 + 0.9 * step / total, f"Fitting {step}/{total}, IoU {best:.3f}")

    result = refine(
        torch.from_numpy(request.vertices).float().to(device), torch.from_numpy(request.triangles).to(device),
        torch.stack(masks).to(device), Camera.cat(cameras).to(device), RefineSettings(steps=request.steps),
        callback=on_step, should_stop=reporter.should_stop,
    )
    reporter.check()
    return FitResult(result.vertices.double().cpu().numpy(), result.iou_before, result.iou_after, result.steps_run)
