"""Product photos made from renders, and the foreground benchmark on them (``softras foreground-bench``).

A product photo is an opaque picture of an object on a light studio backdrop. :func:`product_photos` makes them from
an engine render of a shape, on one of :data:`BACKDROPS`:

- ``white``: pure white (255); ``grey 226``: light grey (226, 226, 226);
- ``white, contact shadow``: white with the shadow that the object casts on a white ground plane under it, rendered
  with the engine's rasterizer (:func:`ground_shadow`): the mesh is projected onto the plane through its lowest point
  along each of several directions of an area light above it, and each projection is rendered from the picture's
  camera; their mean is the shadow, soft away from the contact and dark at it, seen in perspective and hidden
  behind the object. (The network's training pictures get their shadows from a 2-D compositor instead:
  ``datagen.foreground_pictures``.)
- ``high-key``: white, the object lit by a strong ambient light and its exposure pushed (light parts clip to white);
- ``coloured``: a plain mid-saturated colour (the border estimate's home ground: a check that nothing got worse);

then JPEG (quality 90). The true alpha comes with it. :func:`mask_benchmark` takes each photo through the intake
with each foreground method and compares the intake's mask (its output's alpha > 0.5) with the true alpha cropped
and resampled through the same crop box: the share of the object lost, the share of extra area taken in (both as
fractions of the true object's area), and the mask IoU. A picture the intake refuses counts as all lost.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from PIL import Image

from softras.camera import Camera
from softras.data import Shapes, render_views, split_by_model
from softras.intake import IntakeSettings, prepare_array, resize_rgba
from softras.raster import RasterSettings, render_silhouette

__all__ = ["BACKDROPS", "METHODS", "ground_shadow", "product_photos", "true_mask", "MaskScores", "mask_benchmark",
           "format_mask_benchmark", "HIGH_KEY_LIGHT", "shadow_photo", "ShadowOnWhite", "photo_perturbations"]

BACKDROPS = ("white", "grey 226", "white, contact shadow", "high-key", "coloured")
METHODS = ("border", "net", "combined", "auto")
HIGH_KEY_LIGHT = (0.3, 1.0, -0.5, 0.8)
"""Key-light direction and ambient share of the high-key photos (mostly ambient)."""
HIGH_KEY_EXPOSURE = 1.1
SHADOW_STRENGTH = 0.55
"""How much the full shadow darkens the white ground (the rest is the light the plane gets from elsewhere)."""


def ground_shadow(vertices: torch.Tensor, faces: torch.Tensor, camera: Camera, size: int,
                  directions: np.ndarray, shadow_size: int = 96) -> np.ndarray:
    """The shadow (size, size) float32 in [0, 1] that a mesh casts on the ground plane through its lowest point,
    seen by ``camera``: the mean over ``directions`` (K, 3) (towards the light, y > 0) of the mesh projected onto
    the plane along each, rendered as a silhouette at ``shadow_size`` px (a soft shadow needs no more) and resized
    bilinearly. The object itself is not drawn (callers composite it over)."""
    floor = float(vertices[:, 1].min())
    settings = RasterSettings(shadow_size, sigma=1e-7 * (64 / shadow_size) ** 2, gamma=1e-5)
    out = np.zeros((shadow_size, shadow_size), np.float32)
    for d in np.asarray(directions, np.float32):
        if d[1] <= 0:
            raise ValueError("light directions must point upwards (y > 0)")
        t = (vertices[:, 1:2] - floor) / float(d[1])
        flat = vertices - t * torch.from_numpy(d)[None]
        flat[:, 1] = floor
        with torch.no_grad():
            out += render_silhouette(flat, faces, camera, settings)[0].numpy()
    out = Image.fromarray(out / len(directions)).resize((size, size), Image.Resampling.BILINEAR)
    return np.clip(np.asarray(out, np.float32), 0, 1)


def _area_light(rng: np.random.Generator, count: int = 12) -> np.ndarray:
    """``count`` directions (K, 3) of a soft area light 0-30 degrees from straight above, around a random tilt."""
    tilt, around = np.radians(rng.uniform(5, 25)), rng.uniform(0, 2 * np.pi)
    centre = np.array([np.sin(tilt) * np.cos(around), np.cos(tilt), np.sin(tilt) * np.sin(around)])
    spread = np.radians(18.0)
    dirs = []
    for k in range(count):
        phi, r = 2 * np.pi * (k + rng.uniform()) / count, spread * np.sqrt(rng.uniform(0.2, 1.0))
        a = np.cross(centre, [1.0, 0.0, 0.0])
        a /= np.linalg.norm(a)
        b = np.cross(centre, a)
        d = centre + np.tan(r) * (np.cos(phi) * a + np.sin(phi) * b)
        dirs.append(d / np.linalg.norm(d))
    return np.asarray(dirs, np.float32)


def _jpeg(rgb: np.ndarray, quality: int = 90) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")).copy()


def _over(render: np.ndarray, background: np.ndarray) -> np.ndarray:
    """An RGBA render (S, S, 4) uint8 over a background (S, S, 3) float in [0, 1]: (S, S, 3) uint8."""
    x = render.astype(np.float32) / 255
    rgb = x[..., :3] * x[..., 3:] + background * (1 - x[..., 3:])
    return np.rint(np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def shadow_photo(render: np.ndarray, shapes: Shapes, model: int, camera: Camera, rng: np.random.Generator) -> np.ndarray:
    """``render`` (S, S, 4) uint8 of ``shapes`` model ``model`` seen by ``camera`` on white with the ground shadow
    of :func:`ground_shadow` under a random soft area light: (S, S, 3) uint8, before JPEG."""
    mesh, _ = shapes.mesh(model)
    shadow = ground_shadow(mesh.vertices, mesh.faces, camera, render.shape[0], _area_light(rng))
    return _over(render, np.repeat((1 - SHADOW_STRENGTH * shadow)[..., None], 3, 2))


def product_photos(shapes: Shapes, model: int, elevation: float, azimuth: float, backdrops: tuple[str, ...], size: int,
                   rng: np.random.Generator, distance: float = 2.732, fov: float = 30.0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Product photos of ``shapes`` model ``model`` from the camera at ``elevation``, ``azimuth`` (degrees), one per
    backdrop of ``backdrops`` (each one of :data:`BACKDROPS`): backdrop -> ((size, size, 3) uint8 photo, JPEG
    quality 90; (size, size) uint8 true alpha). One render serves every backdrop but 'high-key' (its own light)."""
    unknown = set(backdrops) - set(BACKDROPS)
    if unknown:
        raise ValueError(f"backdrops must be among {BACKDROPS}, got {sorted(unknown)}")
    out = {}
    render = None
    for backdrop in backdrops:
        if backdrop == "high-key":
            picture = render_views(shapes, [model], [elevation], [azimuth], size=size, distance=distance, fov=fov,
                                   lights=np.asarray(HIGH_KEY_LIGHT, np.float32)[None, None])[0, 0].copy()
            picture[..., :3] = np.clip(picture[..., :3].astype(np.float32) * HIGH_KEY_EXPOSURE, 0, 255).astype(np.uint8)
        else:
            if render is None:
                render = render_views(shapes, [model], [elevation], [azimuth], size=size, distance=distance, fov=fov)[0, 0]
            picture = render
        if backdrop == "white, contact shadow":
            camera = Camera.from_angles(distance, elevation, azimuth, fov=fov)
            rgb = shadow_photo(picture, shapes, model, camera, rng)
        else:
            color = {"white": (1.0, 1.0, 1.0), "grey 226": (226 / 255,) * 3, "high-key": (1.0, 1.0, 1.0)}.get(backdrop)
            if color is None:  # coloured: a mid-saturated hue
                color = tuple(0.5 + 0.3 * np.cos(2 * np.pi * (rng.uniform(0, 1) + np.array([0, 1 / 3, 2 / 3]))))
            rgb = _over(picture, np.broadcast_to(np.asarray(color, np.float32), (size, size, 3)))
        out[backdrop] = (_jpeg(rgb), picture[..., 3].copy())
    return out


def true_mask(alpha: np.ndarray, crop_box: tuple[int, int, int, int], size: int, oversample: int = 4) -> np.ndarray:
    """The true alpha (H, W) uint8 taken through the intake's crop box and resampling: (size, size) bool, > 0.5."""
    left, top, right, bottom = crop_box
    work = oversample * size
    crop = Image.fromarray(alpha).crop((left, top, right, bottom)).resize((work, work), Image.Resampling.BILINEAR)
    a = torch.from_numpy(np.asarray(crop, np.float32) / 255)[None, None]
    rgba = torch.cat([torch.ones(1, 3, work, work), a], 1)
    return (resize_rgba(rgba, size)[0, 3] > 0.5).numpy()


@dataclass
class MaskScores:
    """Per backdrop and method: the share of pictures losing more than 10% of the object, the share taking in more
    than 10% extra, the mean mask IoU, and how often the 'auto' rule chose the network."""

    pictures: int
    lost: dict[str, dict[str, float]] = field(default_factory=dict)
    extra: dict[str, dict[str, float]] = field(default_factory=dict)
    iou: dict[str, dict[str, float]] = field(default_factory=dict)
    auto_net_share: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"pictures_per_backdrop": self.pictures, "lost_over_10pct": self.lost, "extra_over_10pct": self.extra,
                "mean_mask_iou": self.iou, "auto_chose_net": self.auto_net_share}


def _score(mask: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    area = max(int(truth.sum()), 1)
    lost = float((truth & ~mask).sum()) / area
    extra = float((mask & ~truth).sum()) / area
    iou = float((mask & truth).sum()) / max(int((mask | truth).sum()), 1)
    return lost, extra, iou


def mask_benchmark(shapes: Shapes, split: str = "val", views_per_model: int = 4, size: int = 256,
                   backdrops: tuple[str, ...] = BACKDROPS, methods: tuple[str, ...] = METHODS,
                   weights: str | None = None, max_models: int | None = None, seed: int = 0,
                   progress=None) -> MaskScores:
    """Product photos of the ``split`` models (``views_per_model`` azimuths each, elevations 10-40 degrees) on each
    backdrop, through the intake with each foreground method (``weights``: the network's file, default the shipped
    one); see the module docstring."""
    chosen = np.flatnonzero(split_by_model(shapes.category, shapes.model_id) == split)
    if max_models is not None:
        chosen = chosen[:max_models]
    if len(chosen) == 0:
        raise ValueError(f"no models in split {split!r}")
    base = IntakeSettings(foreground_weights=weights)
    scores = {(b, m): [] for b in backdrops for m in methods}
    auto_net = {b: [] for b in backdrops}
    for n, model in enumerate(chosen):
        for k in range(views_per_model):
            rng = np.random.default_rng([seed, int(model), k])
            azimuth = (360.0 * k / views_per_model + rng.uniform(0, 360.0 / views_per_model)) % 360
            elevation = float(rng.uniform(10.0, 40.0))
            photos = product_photos(shapes, int(model), elevation, azimuth, backdrops, size, rng)
            for backdrop, (photo, alpha) in photos.items():
                for method in methods:
                    try:
                        result = prepare_array(photo, settings=replace(base, foreground=method))
                    except ValueError:
                        scores[backdrop, method].append((1.0, 0.0, 0.0))
                        continue
                    truth = true_mask(alpha, result.crop_box, base.size, base.oversample)
                    scores[backdrop, method].append(_score(result.mask.numpy() > 0.5, truth))
                    if method == "auto":
                        auto_net[backdrop].append(result.foreground_source in ("net", "combined"))
        if progress is not None:
            progress(f"{n + 1}/{len(chosen)} models")
    out = MaskScores(len(chosen) * views_per_model)
    for b in backdrops:
        out.lost[b], out.extra[b], out.iou[b] = {}, {}, {}
        for m in methods:
            s = np.asarray(scores[b, m])
            out.lost[b][m] = float(np.mean(s[:, 0] > 0.1))
            out.extra[b][m] = float(np.mean(s[:, 1] > 0.1))
            out.iou[b][m] = float(np.mean(s[:, 2]))
        if auto_net[b]:
            out.auto_net_share[b] = float(np.mean(auto_net[b]))
    return out


def format_mask_benchmark(scores: MaskScores) -> str:
    """One row per backdrop and method: pictures losing > 10%, taking in > 10% extra, mean mask IoU."""
    header = f"{'backdrop':<24}{'method':<9}{'lose >10%':>11}{'extra >10%':>12}{'mask IoU':>10}"
    lines = [f"{scores.pictures} pictures per backdrop", header, "-" * len(header)]
    for b in scores.iou:
        for m in scores.iou[b]:
            note = f"   (auto chose the network for {scores.auto_net_share[b]:.0%})" if m == "auto" and b in scores.auto_net_share else ""
            lines.append(f"{b:<24}{m:<9}{scores.lost[b][m]:>11.1%}{scores.extra[b][m]:>12.1%}{scores.iou[b][m]:>10.4f}{note}")
    return "\n".join(lines)


class ShadowOnWhite:
    """A robustness perturbation that needs the view: a views file's render (S, S, 4) uint8 of row ``model`` and view
    ``view`` -> on white with its rendered ground shadow (:func:`shadow_photo`), JPEG 90. Deterministic per view."""

    needs_view = True

    def __init__(self, shapes: Shapes, views) -> None:
        self.shapes, self.views = shapes, views

    def __call__(self, picture: np.ndarray, model: int, view: int) -> np.ndarray:
        index = int(self.views.model_index[model])
        if index < 0:
            raise ValueError("a view without a shape in the shapes file has no ground shadow")
        camera = self.views.cameras(torch.tensor([view]))
        rng = np.random.default_rng([index, view])
        return _jpeg(shadow_photo(picture, self.shapes, index, camera, rng))


def photo_perturbations(shapes: Shapes, views) -> dict:
    """The product-photo backdrops as robustness perturbations (``softras eval --robustness``): light grey (226),
    high-key on white (the render's exposure raised, as the high-key photos' is), white with a rendered ground
    shadow; all JPEG 90."""

    def grey(p: np.ndarray) -> np.ndarray:
        return _jpeg(_over(p, np.full((*p.shape[:2], 3), 226 / 255, np.float32)))

    def high_key(p: np.ndarray) -> np.ndarray:
        p = p.copy()
        p[..., :3] = np.clip(p[..., :3].astype(np.float32) * HIGH_KEY_EXPOSURE, 0, 255).astype(np.uint8)
        return _jpeg(_over(p, np.ones((*p.shape[:2], 3), np.float32)))

    return {"light grey 226 JPEG": grey, "brighter on white JPEG": high_key,
            "white, ground shadow": ShadowOnWhite(shapes, views)}
