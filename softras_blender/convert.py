"""Conversions between Blender data and the engine's inputs: frames, image pixels, masks and cameras.

Frames: the engine's object frame is Y-up, Blender's world is Z-up; :func:`y_up_to_z_up` maps ``(x, y, z)`` to
``(x, -z, y)`` (a +90 degree rotation about X, so shapes keep their handedness). Cameras are converted in Blender's
*world* frame (Z-up, scene units): the engine's :class:`softras.Camera` works in any right-handed frame given its
up vector.

Images: Blender's ``Image.pixels`` has row 0 at the *bottom*; everything here returns rows top first (the engine's
convention). Byte images hold values in the image's colour space (normally sRGB) with straight alpha; float images
(EXR, HDR, 16-bit PNG, generated float buffers) hold scene-linear colour with premultiplied alpha. The engine wants
straight sRGB, see :meth:`Pixels.srgb`.

Only :meth:`Pixels.srgb` (linear images) and :meth:`CameraParams.to_softras` import the engine (and torch), so
reading pixels and cameras on Blender's main thread stays cheap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import bpy
import numpy as np

from . import engine

__all__ = [
    "y_up_to_z_up", "z_up_to_y_up", "Pixels", "read_pixels", "CameraParams", "camera_params", "render_aspect", "fit_size",
]

_LINEAR_SPACES = ("ACES2065-1", "ACEScg")  # besides every "Linear ..." space
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601, as Pillow's convert("L") used by softras.intake


def y_up_to_z_up(points: np.ndarray) -> np.ndarray:
    """Engine object frame (Y-up) to Blender (Z-up): ``(x, y, z) -> (x, -z, y)``; any (..., 3) array."""
    p = np.asarray(points)
    if p.shape[-1] != 3:
        raise ValueError(f"points must have shape (..., 3), got {p.shape}")
    return np.stack([p[..., 0], -p[..., 2], p[..., 1]], axis=-1)


def z_up_to_y_up(points: np.ndarray) -> np.ndarray:
    """The inverse of :func:`y_up_to_z_up`: ``(x, y, z) -> (x, z, -y)``; any (..., 3) array."""
    p = np.asarray(points)
    if p.shape[-1] != 3:
        raise ValueError(f"points must have shape (..., 3), got {p.shape}")
    return np.stack([p[..., 0], p[..., 2], -p[..., 1]], axis=-1)


# ---------------------------------------------------------------------------------------------- images
@dataclass(frozen=True)
class Pixels:
    """An image's pixels as Blender stores them, rows top first.

    Attributes:
        data: (H, W, 4) uint8 for byte images (values in the image's colour space, 8 bits exactly as stored) or
            float32 for float images.
        linear: the colour is linear light (float images, byte images tagged with a linear colour space) rather
            than sRGB-encoded; Non-Color data counts as sRGB-encoded (used as is).
        premultiplied: colour is premultiplied by alpha (float images, byte images with alpha mode 'Premultiplied').
        name: the image's name, for messages.
    """

    data: np.ndarray
    linear: bool
    premultiplied: bool
    name: str

    def srgb(self) -> np.ndarray:
        """(H, W, 4) straight sRGB colour and alpha: the stored uint8 array when no conversion is needed, else
        float32 in [0, 1] (linear colour encoded with ``softras.colorspace.linear_to_srgb``)."""
        if not (self.linear or self.premultiplied):
            return self.data
        x = self.data.astype(np.float32) / 255 if self.data.dtype == np.uint8 else self.data.astype(np.float32)
        if self.premultiplied:
            alpha = x[..., 3:]
            x[..., :3] = np.where(alpha > 0, x[..., :3] / np.maximum(alpha, 1e-6), 0.0)
        if self.linear:
            engine.load()
            from softras.colorspace import linear_to_srgb

            x[..., :3] = linear_to_srgb(x[..., :3])
        return np.clip(x, 0.0, 1.0).astype(np.float32)

    def mask(self) -> np.ndarray:
        """(H, W) bool foreground, as the engine's intake reads masks: the alpha channel if it is not fully opaque,
        else the luminance of the sRGB colour; > 0.5 is foreground."""
        x = self.srgb()
        x = x.astype(np.float32) / 255 if x.dtype == np.uint8 else x
        alpha = x[..., 3]
        if float(alpha.min()) < 1 - 0.5 / 255:
            return alpha > 0.5
        return x[..., :3] @ _LUMA > 0.5


def read_pixels(image: bpy.types.Image) -> Pixels:
    """Read an image's pixels (loading its file if needed) on the main thread.

    Raises:
        ValueError: the image has no pixels (missing or unreadable file, render result, empty image).
    """
    width, height = image.size
    n = width * height * 4
    if width * height == 0 or len(image.pixels) != n:
        where = f" (file {image.filepath!r} missing or unreadable?)" if image.source == "FILE" else ""
        raise ValueError(f"image '{image.name}' has no pixels{where}")
    buf = np.empty(n, np.float32)
    image.pixels.foreach_get(buf)
    data = buf.reshape(height, width, 4)[::-1]
    settings = image.colorspace_settings
    if image.is_float:
        linear, premultiplied = not settings.is_data, True
    else:
        data = np.rint(data * 255).astype(np.uint8)  # byte images are exactly k / 255: lossless, 4x smaller
        linear = not settings.is_data and (settings.name.startswith("Linear") or settings.name in _LINEAR_SPACES)
        premultiplied = image.alpha_mode == "PREMUL"
    data = np.ascontiguousarray(data)
    if image.alpha_mode == "NONE":  # alpha is to be ignored
        data[..., 3] = 255 if data.dtype == np.uint8 else 1.0
        premultiplied = False
    return Pixels(data, linear, premultiplied, image.name)


# ---------------------------------------------------------------------------------------------- cameras
@dataclass(frozen=True)
class CameraParams:
    """A perspective Blender camera in the engine's terms, world frame (Z-up, scene units).

    ``eye`` is the camera's world location, ``at = eye + forward`` (its local -Z axis), ``up`` its local +Y axis;
    ``fov`` the full vertical field of view in degrees and ``aspect`` the render's width / height including the pixel
    aspect; ``shift`` the lens shift as a principal-point offset in NDC units (see :mod:`softras.camera`).
    """

    eye: tuple[float, float, float]
    at: tuple[float, float, float]
    up: tuple[float, float, float]
    fov: float
    aspect: float
    shift: tuple[float, float]

    def to_softras(self, aspect: float | None = None) -> Any:
        """A batch-1 float32 :class:`softras.Camera`. ``aspect`` overrides the image aspect (for masks whose pixel
        size rounds it slightly); the vertical field of view is kept."""
        return engine.load().Camera.look_at(
            eye=np.array(self.eye, np.float32)[None], at=np.array(self.at, np.float32)[None],
            up=np.array(self.up, np.float32)[None], fov=self.fov, aspect=self.aspect if aspect is None else aspect,
            shift=np.array(self.shift, np.float32)[None],
        )


def render_aspect(scene: bpy.types.Scene) -> float:
    """Width / height of the rendered frame: resolution times pixel aspect."""
    r = scene.render
    return (r.resolution_x * r.pixel_aspect_x) / (r.resolution_y * r.pixel_aspect_y)


def camera_params(obj: bpy.types.Object, scene: bpy.types.Scene) -> CameraParams:
    """Convert a camera object under ``scene``'s render settings (resolution, pixel aspect).

    Follows Blender's view plane (``BKE_camera_params_compute_viewplane``): the sensor size (sensor width for
    'AUTO' and 'HORIZONTAL', height for 'VERTICAL') spans the frame's width or height ('AUTO': the larger one) at
    focal length ``lens``, and ``shift_x`` / ``shift_y`` move the frame by that many times the fitted dimension.

    Raises:
        ValueError: not a camera, or an orthographic / panoramic camera.
    """
    if obj is None or obj.type != "CAMERA":
        raise ValueError(f"'{getattr(obj, 'name', None)}' is not a camera object")
    cam = obj.data
    if cam.type != "PERSP":
        kind = {"ORTHO": "orthographic", "PANO": "panoramic"}.get(cam.type, cam.type.lower())
        raise ValueError(f"camera '{obj.name}' is {kind}; only perspective cameras are supported")
    aspect = render_aspect(scene)
    fit = cam.sensor_fit
    if fit == "AUTO":
        fit = "HORIZONTAL" if aspect >= 1 else "VERTICAL"
    sensor = cam.sensor_height if cam.sensor_fit == "VERTICAL" else cam.sensor_width
    tan_fit = sensor / 2 / cam.lens
    if fit == "HORIZONTAL":  # the sensor spans the width; frame height = width / aspect
        tan_y, fac_x, fac_y = tan_fit / aspect, 1.0, aspect
    else:  # the sensor spans the height
        tan_y, fac_x, fac_y = tan_fit, 1.0 / aspect, 1.0
    # shift is in units of the fitted dimension; NDC spans 2 units across each dimension; the frame moves, so
    # points move the other way
    shift = (-2 * cam.shift_x * fac_x, -2 * cam.shift_y * fac_y)
    m = np.array(obj.matrix_world, dtype=np.float64)
    axes = m[:3, :3] / np.linalg.norm(m[:3, :3], axis=0)
    eye = m[:3, 3]
    return CameraParams(
        eye=tuple(eye.tolist()), at=tuple((eye - axes[:, 2]).tolist()), up=tuple(axes[:, 1].tolist()),
        fov=math.degrees(2 * math.atan(tan_y)), aspect=aspect, shift=(float(shift[0]), float(shift[1])),
    )


def fit_size(aspect: float, long_side: int = 128) -> tuple[int, int]:
    """(height, width) of a mask for frames of ``aspect`` = width / height: the longer side near ``long_side``
    (within 3/4 of it), chosen so that width / height matches ``aspect`` as closely as whole pixels allow."""
    best: tuple[float, int, int] | None = None
    for side in range(long_side, max(2, (3 * long_side) // 4) - 1, -1):
        h, w = (side, max(1, round(side * aspect))) if aspect < 1 else (max(1, round(side / aspect)), side)
        error = abs(w / h - aspect) / aspect
        if best is None or error < best[0] - 1e-12:
            best = (error, h, w)
        if error < 1e-4:
            break
    assert best is not None
    return best[1], best[2]
