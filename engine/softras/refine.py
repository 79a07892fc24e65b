"""Silhouette-driven mesh refinement and viewpoint estimation with the soft rasterizer.

:func:`refine` deforms a mesh so that its soft silhouettes match given masks under given cameras, minimising
``1 - mean soft IoU + laplacian_weight * Laplacian + flatten_weight * flatten`` (the paper's objective, losses
summed over vertices / edges) with Adam on per-vertex offsets while the rasterizer's sigma is annealed from coarse
to fine. Against a single mask the offsets lie in the camera's image plane (module notes below).
:func:`estimate_viewpoint` finds the camera (azimuth, elevation, distance around the origin, project
convention of :meth:`softras.Camera.from_angles`) from which a mesh best matches a mask, and
:func:`refine_to_image` chains the two for a single image.

Quality measure: everywhere below "IoU" is the mean over views of the soft IoU (:func:`softras.losses.soft_iou`)
between the masks and the silhouettes rendered at the *final* sigma (``sigma_end`` scaled to the image height).
At the default ``sigma_end`` the silhouette edge is blurred over ~0.2 pixel, so this is close to the hard IoU while
being exactly the quantity the last steps optimise. The best measured iterate is returned (the start is always
measured), so a result is never worse than its start.

Single masks: one silhouette says nothing about depth, yet free 3D offsets do move along it (perspective couples
depth to image position, and Adam scales each coordinate's step alike however small its gradient), which deforms the
mesh where no view can see it: refined predictions of the shipped generator lost much of their voxel IoU that way,
and keep it with offsets in the image plane (``docs/notes/2026-11-26-renders-fed-directly.md`` has the figures and
the command).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from softras.camera import DEFAULT_DISTANCE, DEFAULT_FOV, Camera
from softras.losses import FlattenLoss, LaplacianLoss, soft_iou, soft_iou_loss
from softras.raster import RasterSettings, render_silhouette

__all__ = ["RefineSettings", "RefineResult", "refine", "estimate_viewpoint", "refine_to_image"]

_REFERENCE_HEIGHT = 64  # image height the sigmas refer to
_POSE_LR = 0.01  # Adam step for azimuth / elevation (radians) and log-distance
_POSE_SIGMAS = (1e-3, 3e-5)  # coarse-to-fine sigmas of the pose search, at the reference height
_SEARCH_SIGMA = 1e-4  # sigma of the grid search renders, at the reference height
_SEARCH_HEIGHT = 64  # masks higher than this are area-downsampled for viewpoint estimation
_FACE_BUDGET = 1 << 18  # faces x views rendered per batch in the grid search
_ELEVATIONS = tuple(float(e) for e in range(-10, 61, 10))  # default viewpoint search grid, degrees
_AZIMUTHS = tuple(float(a) for a in range(0, 360, 15))
_POSE_STEPS = 50  # default Adam steps refining the best grid viewpoint
_POSE_EVAL_EVERY = 5  # steps between IoU measurements while refining the viewpoint
_MAX_ELEVATION = 89.0  # degrees; keeps the +Y up vector off the viewing direction
# The azimuth prior (_prior_choice): among grid poses whose silhouette IoU is within _PRIOR_MARGIN of the best, the
# one scoring best on IoU + _PRIOR_WEIGHT * log(prior probability of its azimuth): a prior 2.7 times as sure of one
# azimuth is worth 0.05 of IoU. Set beforehand, not tuned on the validation pictures it was then measured on
# (docs/notes/2026-11-27-viewpoint-head.md).
_PRIOR_MARGIN = 0.05
_PRIOR_WEIGHT = 0.05

ProgressCallback = Callable[[int, int, float], None]
StopCallback = Callable[[], bool]


@dataclass(frozen=True)
class RefineSettings:
    """How :func:`refine` optimises.

    Attributes:
        steps: number of Adam steps (0 returns the input).
        lr: Adam learning rate of the per-vertex offsets and of the similarity (log-scale, translation); roughly the
            largest move per step, object-frame units.
        laplacian_weight: weight of :class:`softras.losses.LaplacianLoss` (sum over vertices) on the deformed mesh.
        flatten_weight: weight of :class:`softras.losses.FlattenLoss` (sum over interior edges).
        sigma_start, sigma_end: rasterizer sigma at the first and last step, annealed geometrically in between.
            They refer to a 64-pixel-high image and are multiplied by ``(64 / H)**2`` for masks of height H, so the
            blur in pixels (``sqrt(sigma) * H / 2``) does not depend on the resolution. ``sigma_end`` is the paper's
            3e-5; starting at 3e-4 fitted chair silhouettes as well as 1e-3 (mean IoU 0.925 vs 0.917 over six views)
            at about 2/3 of the time, since coarse sigmas make many more (face, pixel) pairs.
        optimise_similarity: also optimise a global scale (as its log) and translation, applied about the object
            origin after the offsets: ``v = scale * (v0 + offset) + translation``.
        eval_every: the IoU measure (module docstring) is taken on the start, every ``eval_every`` steps, after the
            last step and when stopped, and the best of those iterates is returned. Each measurement costs about one
            forward render at ``sigma_end``; 1 measures every step.
    """

    steps: int = 200
    lr: float = 0.01
    laplacian_weight: float = 0.01
    flatten_weight: float = 0.001
    sigma_start: float = 3e-4
    sigma_end: float = 3e-5
    optimise_similarity: bool = False
    eval_every: int = 10

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0:
            raise ValueError(f"steps must be an integer >= 0, got {self.steps!r}")
        if isinstance(self.eval_every, bool) or not isinstance(self.eval_every, int) or self.eval_every < 1:
            raise ValueError(f"eval_every must be an integer >= 1, got {self.eval_every!r}")
        for name in ("lr", "sigma_start", "sigma_end"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        for name in ("laplacian_weight", "flatten_weight"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not isinstance(self.optimise_similarity, bool):
            raise ValueError(f"optimise_similarity must be a bool, got {self.optimise_similarity!r}")


@dataclass
class RefineResult:
    """Outcome of :func:`refine` / :func:`refine_to_image`.

    Attributes:
        vertices: (V, 3) float32, object frame, detached; the best iterate, similarity (if any) applied.
        cameras: the N cameras the IoUs refer to (the given ones, or the estimated / optimised one).
        iou_before, iou_after: mean soft IoU at the final sigma (module docstring) of the input and of ``vertices``;
            ``iou_after >= iou_before``.
        steps_run: Adam steps taken (fewer than ``settings.steps`` when stopped or when the iterate diverged).
        scale, translation: the similarity of the best iterate (float, (3,) float32) when it was optimised, else None.
    """

    vertices: torch.Tensor
    cameras: Camera
    iou_before: float
    iou_after: float
    steps_run: int
    scale: float | None = None
    translation: torch.Tensor | None = None


# ---------------------------------------------------------------------------------------------- validation
def _check_mesh(vertices: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Detached ``(vertices float32 (V, 3), faces int64 (F, 3))`` on the vertices' device, or ValueError."""
    if not isinstance(vertices, torch.Tensor) or vertices.dim() != 2 or vertices.shape[1] != 3 or vertices.shape[0] < 3:
        raise ValueError(f"vertices must be a tensor of shape (V, 3) with V >= 3, got {tuple(getattr(vertices, 'shape', ()))}")
    if not vertices.is_floating_point():
        raise ValueError(f"vertices must be a floating-point tensor, got {vertices.dtype}")
    if not bool(torch.isfinite(vertices).all()):
        raise ValueError("vertices must be finite (found NaN or inf)")
    if not isinstance(faces, torch.Tensor) or faces.dim() != 2 or faces.shape[1] != 3 or faces.shape[0] == 0:
        raise ValueError(f"faces must be a tensor of shape (F, 3) with F >= 1, got {tuple(getattr(faces, 'shape', ()))}")
    if faces.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"faces must be an integer tensor, got {faces.dtype}")
    if int(faces.min()) < 0 or int(faces.max()) >= vertices.shape[0]:
        raise ValueError(f"faces index vertices out of range [0, {vertices.shape[0]})")
    return vertices.detach().float(), faces.detach().to(vertices.device, torch.int64)


def _check_masks(masks: torch.Tensor, name: str, dims: int, device: torch.device) -> torch.Tensor:
    """Masks as float32 (N, H, W) on ``device``; each must be non-empty and not full (at threshold 0.5)."""
    shape = "(N, H, W)" if dims == 3 else "(H, W)"
    if not isinstance(masks, torch.Tensor) or masks.dim() != dims or 0 in masks.shape:
        raise ValueError(f"{name} must be a tensor of shape {shape} with positive sizes, got {tuple(getattr(masks, 'shape', ()))}")
    masks = masks.detach().to(device, torch.float32).reshape(-1, *masks.shape[-2:])
    if not bool(torch.isfinite(masks).all()) or float(masks.min()) < 0 or float(masks.max()) > 1:
        raise ValueError(f"{name} must hold finite values in [0, 1]")
    covered = (masks >= 0.5).flatten(1).float().mean(1)
    for i, c in enumerate(covered.tolist()):
        which = f"{name}[{i}]" if dims == 3 else name
        if c == 0.0:
            raise ValueError(f"{which} is empty (no value >= 0.5): nothing to fit")
        if c == 1.0:
            raise ValueError(f"{which} is full (every value >= 0.5): the object fills the frame")
    return masks


def _check_cameras(cameras: Camera, name: str, masks: torch.Tensor, device: torch.device) -> Camera:
    """``cameras`` as float32 on ``device`` if it has one camera per mask and aspect W / H, else ValueError."""
    n, h, w = masks.shape
    if not isinstance(cameras, Camera) or cameras.batch_size != n:
        got = cameras.batch_size if isinstance(cameras, Camera) else type(cameras).__name__
        raise ValueError(f"{name} must be a Camera with batch {n} (one per mask), got {got}")
    cameras = cameras.to(device, torch.float32)
    if not torch.allclose(cameras.aspect, torch.full_like(cameras.aspect, w / h), rtol=1e-3):
        raise ValueError(f"{name} must have aspect W / H = {w / h:.4g} to match the masks, got {cameras.aspect.tolist()}")
    return cameras


def _check_options(settings: RefineSettings, callback: ProgressCallback | None, should_stop: StopCallback | None) -> None:
    if not isinstance(settings, RefineSettings):
        raise ValueError(f"settings must be a RefineSettings, got {type(settings).__name__}")
    for name, fn in (("callback", callback), ("should_stop", should_stop)):
        if fn is not None and not callable(fn):
            raise ValueError(f"{name} must be callable or None, got {type(fn).__name__}")


def _scaled_sigma(sigma: float, height: int) -> float:
    return sigma * (_REFERENCE_HEIGHT / height) ** 2


# ---------------------------------------------------------------------------------------------- optimisation
def _descend(
    model: Callable[[], tuple[torch.Tensor, Camera]],
    faces: torch.Tensor,
    masks: torch.Tensor,
    groups: list[dict],
    steps: int,
    eval_every: int,
    sigmas: tuple[float, float],
    regulariser: Callable[[torch.Tensor], torch.Tensor] | None,
    callback: ProgressCallback | None,
    should_stop: StopCallback | None,
) -> tuple[float, float, int]:
    """Adam on the parameter ``groups`` of ``model`` (which returns vertices (V, 3) and N cameras).

    The soft IoU loss (plus ``regulariser(vertices)``) is taken at sigmas annealed geometrically from ``sigmas[0]``
    to ``sigmas[1]`` (already scaled to the mask height). The IoU measure is taken at ``sigmas[1]`` on the start,
    every ``eval_every`` steps, after the last step and when stopped. Leaves the parameters at the best measured
    iterate and returns ``(iou_before, iou_best, steps_run)``.
    """
    size = tuple(masks.shape[1:])
    final = RasterSettings(size, sigma=sigmas[1])

    def measure() -> float:
        with torch.no_grad():
            vertices, cameras = model()
            return soft_iou(render_silhouette(vertices, faces, cameras, final), masks).mean().item()

    params = [p for g in groups for p in g["params"]]
    before = best = measure()
    best_state = [p.detach().clone() for p in params]

    def keep_if_best() -> None:
        nonlocal best, best_state
        iou = measure()
        if iou > best:
            best, best_state = iou, [p.detach().clone() for p in params]

    optimiser = torch.optim.Adam(groups, fused=True)
    steps_run = 0
    for k in range(steps):
        if should_stop is not None and should_stop():
            if k % eval_every:
                keep_if_best()  # the current iterate was not measured yet
            break
        sigma = sigmas[0] * (sigmas[1] / sigmas[0]) ** (k / max(steps - 1, 1))
        vertices, cameras = model()
        loss = soft_iou_loss(render_silhouette(vertices, faces, cameras, RasterSettings(size, sigma=sigma)), masks)
        if regulariser is not None:
            loss = loss + regulariser(vertices)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if not all(bool(torch.isfinite(p).all()) for p in params):
            break  # diverged: keep the best measured iterate
        steps_run = k + 1
        if steps_run % eval_every == 0 or steps_run == steps:
            keep_if_best()
        if callback is not None:
            callback(steps_run, steps, best)
    with torch.no_grad():
        for p, state in zip(params, best_state):
            p.copy_(state)
    return before, best, steps_run


def _detached(camera: Camera) -> Camera:
    return Camera(*(t.detach() for t in (camera.eye, camera.at, camera.up, camera.fov, camera.aspect, camera.shift)))


def _refine(
    base: torch.Tensor,
    faces: torch.Tensor,
    masks: torch.Tensor,
    cameras: Callable[[], Camera],
    pose_params: list[torch.Tensor],
    settings: RefineSettings,
    callback: ProgressCallback | None,
    should_stop: StopCallback | None,
) -> RefineResult:
    """Refine ``base`` (V, 3) against ``masks`` (N, H, W) under ``cameras()``, optionally also optimising the
    tensors in ``pose_params`` that ``cameras`` depends on (Adam step ``_POSE_LR``). With one mask the per-vertex
    offsets are (V, 2) along the starting camera's right and up vectors, else (V, 3) in the object frame."""
    if masks.shape[0] == 1:
        with torch.no_grad():
            right, up, _ = cameras().basis()
        plane = torch.cat([right, up])  # (2, 3)
    else:
        plane = torch.eye(3, device=base.device)
    offsets = torch.zeros(base.shape[0], plane.shape[0], device=base.device, requires_grad=True)
    log_scale = torch.zeros((), device=base.device, requires_grad=True)
    translation = torch.zeros(3, device=base.device, requires_grad=True)
    groups = [{"params": [offsets] + ([log_scale, translation] if settings.optimise_similarity else []), "lr": settings.lr}]
    if pose_params:
        groups.append({"params": pose_params, "lr": _POSE_LR})

    def vertices() -> torch.Tensor:
        v = base + offsets @ plane
        return torch.exp(log_scale) * v + translation if settings.optimise_similarity else v

    laplacian = LaplacianLoss(faces.cpu(), base.shape[0]).to(base.device) if settings.laplacian_weight else None
    flatten = FlattenLoss(faces.cpu()).to(base.device) if settings.flatten_weight else None

    def regulariser(v: torch.Tensor) -> torch.Tensor:
        loss = v.new_zeros(())
        if laplacian is not None:
            loss = loss + settings.laplacian_weight * laplacian(v[None])
        if flatten is not None:
            loss = loss + settings.flatten_weight * flatten(v[None])
        return loss

    height = masks.shape[1]
    sigmas = (_scaled_sigma(settings.sigma_start, height), _scaled_sigma(settings.sigma_end, height))
    before, after, steps_run = _descend(
        lambda: (vertices(), cameras()), faces, masks, groups, settings.steps, settings.eval_every, sigmas, regulariser,
        callback, should_stop,
    )
    with torch.no_grad():
        result = RefineResult(vertices().detach().clone(), _detached(cameras()), before, after, steps_run)
    if settings.optimise_similarity:
        result.scale, result.translation = math.exp(log_scale.item()), translation.detach().clone()
    return result


def refine(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    masks: torch.Tensor,
    cameras: Camera,
    settings: RefineSettings = RefineSettings(),
    callback: ProgressCallback | None = None,
    should_stop: StopCallback | None = None,
) -> RefineResult:
    """Deform a mesh so that its silhouettes under ``cameras`` match ``masks``.

    Any triangle mesh works (no template assumptions; the regularisers handle borders and non-manifold edges).
    With a single mask the vertices move only across the camera's view, in its image plane (module docstring).

    Args:
        vertices: (V, 3) float, object frame. faces: (F, 3) int32/int64.
        masks: (N, H, W) float in [0, 1], row 0 at the top; each must have some but not all values >= 0.5.
        cameras: N cameras (:class:`softras.Camera`) with aspect W / H, one per mask.
        settings: see :class:`RefineSettings`.
        callback: called after every step as ``callback(step, total, iou)`` with the 1-based step, the number of
            steps and the best IoU measured so far (see ``RefineSettings.eval_every``).
        should_stop: polled before every step; when it returns True the best iterate so far is returned.
    Returns:
        :class:`RefineResult` on the vertices' device; ``iou_after >= iou_before``.
    Raises:
        ValueError naming the argument for malformed or non-finite vertices, faces, empty or full masks, or cameras
        whose batch or aspect does not match the masks.
    """
    base, faces = _check_mesh(vertices, faces)
    masks = _check_masks(masks, "masks", 3, base.device)
    _check_options(settings, callback, should_stop)
    cameras = _check_cameras(cameras, "cameras", masks, base.device)
    return _refine(base, faces, masks, lambda: cameras, [], settings, callback, should_stop)


# ---------------------------------------------------------------------------------------------- viewpoint
def _orbit(pose: torch.Tensor, fov: float, aspect: float) -> Camera:
    """Camera from ``pose`` (3,) = (azimuth rad, elevation rad, log distance), see :meth:`Camera.from_angles`."""
    elevation = torch.rad2deg(pose[1]).clamp(-_MAX_ELEVATION, _MAX_ELEVATION)
    return Camera.from_angles(torch.exp(pose[2]), elevation, torch.rad2deg(pose[0]), fov=fov, aspect=aspect)


def _search_mask(mask: torch.Tensor) -> torch.Tensor:
    """(1, h, w) mask, area-downsampled to at most ``_SEARCH_HEIGHT`` rows keeping the aspect ratio."""
    h, w = mask.shape[-2:]
    if h <= _SEARCH_HEIGHT:
        return mask
    size = (_SEARCH_HEIGHT, max(1, round(w * _SEARCH_HEIGHT / h)))
    return F.interpolate(mask[None], size=size, mode="area")[0]


def _prior_choice(scores: torch.Tensor, az: torch.Tensor, prior: torch.Tensor) -> int:
    """Index into the grid (``scores``: (E * A,) silhouette IoUs, ``az``: (E * A,) azimuths in degrees) of the pose
    chosen with the azimuth ``prior`` (N,) probabilities (bin k centred on k * 360 / N degrees): among the poses whose
    IoU is within ``_PRIOR_MARGIN`` of the best, the highest ``IoU + _PRIOR_WEIGHT * log p(azimuth)``. The silhouette
    alone often cannot tell front from back (a mesh symmetric about x = 0, seen level, shows the same outline from
    azimuths a and 180 - a); the prior, from the picture itself, can."""
    n = prior.numel()
    p = prior.to(scores.device)[torch.round(az / (360.0 / n)).long() % n]
    score = scores + _PRIOR_WEIGHT * torch.log(p.clamp(min=1e-6))
    return int(torch.where(scores >= scores.max() - _PRIOR_MARGIN, score, -math.inf).argmax())


def _estimate_pose(
    base: torch.Tensor, faces: torch.Tensor, mask: torch.Tensor, distance: float, fov: float,
    elevations: torch.Tensor, azimuths: torch.Tensor, refine_steps: int, prior: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pose (3,) = (azimuth rad, elevation rad, log distance) best matching ``mask`` (1, H, W), weighed by the
    azimuth ``prior`` when given; see estimate_viewpoint."""
    mask = _search_mask(mask)
    h, w = mask.shape[1:]
    el, az = torch.meshgrid(elevations, azimuths, indexing="ij")
    el, az = el.reshape(-1).to(base.device), az.reshape(-1).to(base.device)
    settings = RasterSettings((h, w), sigma=_scaled_sigma(_SEARCH_SIGMA, h))
    chunk = max(1, _FACE_BUDGET // faces.shape[0])
    scores = []
    with torch.no_grad():
        for s in range(0, el.shape[0], chunk):
            cams = Camera.from_angles(distance, el[s:s + chunk], az[s:s + chunk], fov=fov, aspect=w / h, device=base.device)
            sil = render_silhouette(base, faces, cams, settings)
            scores.append(soft_iou(sil, mask.expand_as(sil)))
        scores = torch.cat(scores)
        i = int(scores.argmax()) if prior is None else _prior_choice(scores, az, prior)
    pose = torch.tensor([math.radians(float(az[i])), math.radians(float(el[i])), math.log(distance)], device=base.device, requires_grad=True)
    sigmas = tuple(_scaled_sigma(s, h) for s in _POSE_SIGMAS)
    _descend(lambda: (base, _orbit(pose, fov, w / h)), faces, mask, [{"params": [pose], "lr": _POSE_LR}],
             refine_steps, _POSE_EVAL_EVERY, sigmas, None, None, None)
    return pose.detach()


def _check_prior(prior: torch.Tensor | None) -> torch.Tensor | None:
    """``prior`` as float32 (N,) probabilities, or ValueError."""
    if prior is None:
        return None
    if not isinstance(prior, torch.Tensor) or prior.dim() != 1 or prior.numel() < 2 or not prior.is_floating_point():
        raise ValueError(f"azimuth_prior must be a 1-d float tensor of at least 2 bins, got {getattr(prior, 'shape', prior)!r}")
    prior = prior.detach().float()
    if not bool(torch.isfinite(prior).all()) or bool((prior < 0).any()) or float(prior.sum()) <= 0:
        raise ValueError("azimuth_prior must be finite, non-negative and not all zero")
    return prior / prior.sum()


def _check_viewpoint_args(
    distance: float, fov: float, elevations: Sequence[float], azimuths: Sequence[float], refine_steps: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The search grids as float32 (E,) and (A,) degrees, or ValueError naming the bad argument."""
    if not (isinstance(distance, (int, float)) and math.isfinite(distance) and distance > 0):
        raise ValueError(f"distance must be a finite number > 0, got {distance!r}")
    if not (isinstance(fov, (int, float)) and 0 < fov < 180):
        raise ValueError(f"fov must be a number in (0, 180) degrees, got {fov!r}")
    grids = []
    for name, values, limit in (("elevations", elevations, _MAX_ELEVATION), ("azimuths", azimuths, math.inf)):
        t = torch.as_tensor(values, dtype=torch.float32).reshape(-1)
        if t.numel() == 0 or not bool(torch.isfinite(t).all()) or bool((t.abs() > limit).any()):
            raise ValueError(f"{name} must be a non-empty sequence of finite degrees" + (f" within +-{limit}" if limit < math.inf else ""))
        grids.append(t)
    if isinstance(refine_steps, bool) or not isinstance(refine_steps, int) or refine_steps < 0:
        raise ValueError(f"refine_steps must be an integer >= 0, got {refine_steps!r}")
    return grids[0], grids[1]


def estimate_viewpoint(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    mask: torch.Tensor,
    distance: float = DEFAULT_DISTANCE,
    fov: float = DEFAULT_FOV,
    elevations: tuple[float, ...] = _ELEVATIONS,
    azimuths: tuple[float, ...] = _AZIMUTHS,
    refine_steps: int = _POSE_STEPS,
    azimuth_prior: torch.Tensor | None = None,
) -> Camera:
    """The orbit camera from which the mesh's silhouette best matches ``mask``, weighed by an azimuth prior.

    The mesh is taken as it is in its object frame (it is not moved); the camera orbits the origin as in
    :meth:`softras.Camera.from_angles`, looking at the origin with +Y up. First every (elevation, azimuth) of the
    grid is rendered at ``distance`` in a few batched calls and scored by IoU; then azimuth, elevation and distance
    of the chosen grid point are refined by Adam on the soft IoU with sigma annealed coarse to fine, keeping the best
    iterate. Masks taller than 64 rows are area-downsampled for the search.

    The silhouette alone often cannot tell front from back: a mesh symmetric about x = 0, seen level from afar, shows
    the same outline from azimuths ``a`` and ``180 - a``. Without a prior the grid point of highest IoU is chosen (the
    first in the grid order, elevation-major, among equals). With ``azimuth_prior`` (a generator's
    :meth:`softras.model.Generator.azimuth_probabilities` of the same picture), among the grid points whose IoU is
    within ``_PRIOR_MARGIN`` (0.05) of the best, the one with the highest ``IoU + _PRIOR_WEIGHT * log p(azimuth)``.

    Args:
        vertices: (V, 3) float, object frame. faces: (F, 3) int32/int64.
        mask: (H, W) float in [0, 1], row 0 at the top; some but not all values >= 0.5.
        distance: starting camera distance from the origin. fov: full vertical field of view, degrees.
        elevations, azimuths: search grid, degrees (elevations within +-89).
        refine_steps: Adam steps of the continuous refinement (0 returns the chosen grid point).
        azimuth_prior: (N,) float probabilities of the picture's azimuth, bin k centred on k * 360 / N degrees, or
            None.
    Returns:
        A :class:`softras.Camera` of batch 1, aspect W / H, float32 on the vertices' device.
    """
    base, faces = _check_mesh(vertices, faces)
    mask = _check_masks(mask, "mask", 2, base.device)
    el, az = _check_viewpoint_args(distance, fov, elevations, azimuths, refine_steps)
    prior = _check_prior(azimuth_prior)
    pose = _estimate_pose(base, faces, mask, float(distance), float(fov), el, az, refine_steps, prior)
    return _orbit(pose, float(fov), mask.shape[2] / mask.shape[1])


def refine_to_image(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    mask: torch.Tensor,
    camera: Camera | None = None,
    settings: RefineSettings = RefineSettings(),
    optimise_pose: bool = True,
    callback: ProgressCallback | None = None,
    should_stop: StopCallback | None = None,
    azimuth_prior: torch.Tensor | None = None,
) -> RefineResult:
    """Refine a mesh to one silhouette ``mask``, estimating the camera when it is not given.

    With ``camera`` None the viewpoint is found by :func:`estimate_viewpoint` (default grid, distance and 30 degree
    field of view; weighed by ``azimuth_prior`` when given) and, when ``optimise_pose`` is True, its azimuth,
    elevation and distance keep being optimised jointly with the vertices; a given camera is used as it is
    (``optimise_pose`` and ``azimuth_prior`` are then not used).

    Args:
        vertices: (V, 3) float, object frame. faces: (F, 3) int32/int64.
        mask: (H, W) float in [0, 1]; some but not all values >= 0.5.
        camera: a Camera of batch 1 and aspect W / H, or None.
        settings, callback, should_stop: as in :func:`refine`.
        azimuth_prior: (N,) probabilities of the picture's azimuth, as in :func:`estimate_viewpoint`.
    Returns:
        :class:`RefineResult`; ``cameras`` holds the camera used (estimated and possibly optimised).
    """
    base, faces = _check_mesh(vertices, faces)
    masks = _check_masks(mask, "mask", 2, base.device)
    _check_options(settings, callback, should_stop)
    if not isinstance(optimise_pose, bool):
        raise ValueError(f"optimise_pose must be a bool, got {optimise_pose!r}")
    prior = _check_prior(azimuth_prior)
    if camera is not None:
        cameras = _check_cameras(camera, "camera", masks, base.device)
        return _refine(base, faces, masks, lambda: cameras, [], settings, callback, should_stop)
    el, az = torch.tensor(_ELEVATIONS, dtype=torch.float32), torch.tensor(_AZIMUTHS, dtype=torch.float32)
    pose = _estimate_pose(base, faces, masks, DEFAULT_DISTANCE, DEFAULT_FOV, el, az, _POSE_STEPS, prior)
    pose.requires_grad_(optimise_pose)
    aspect = masks.shape[2] / masks.shape[1]
    return _refine(base, faces, masks, lambda: _orbit(pose, DEFAULT_FOV, aspect), [pose] if optimise_pose else [],
                   settings, callback, should_stop)
