"""One-call renderers: project with a camera, rasterize, shade and blend."""

from __future__ import annotations

import torch

from softras.camera import Camera
from softras.raster.blend import shade, soft_blend, soft_silhouette
from softras.raster.rasterize import rasterize
from softras.raster.settings import RasterSettings

__all__ = ["render_silhouette", "render_rgba"]


def _batched(vertices: torch.Tensor, camera: Camera) -> torch.Tensor:
    if not isinstance(vertices, torch.Tensor) or vertices.dim() not in (2, 3) or vertices.shape[-1] != 3:
        raise ValueError(f"vertices must have shape (B, V, 3) or (V, 3), got {tuple(getattr(vertices, 'shape', ()))}")
    if vertices.dim() == 2:
        vertices = vertices.unsqueeze(0)
    if vertices.shape[0] == 1 and camera.batch_size > 1:
        vertices = vertices.expand(camera.batch_size, -1, -1)
    if vertices.shape[0] != camera.batch_size:
        raise ValueError(f"vertices batch {vertices.shape[0]} does not match camera batch {camera.batch_size}")
    if not bool(torch.isfinite(vertices).all()):
        raise ValueError("vertices must be finite (found NaN or inf)")
    return vertices


def render_silhouette(vertices: torch.Tensor, faces: torch.Tensor, camera: Camera, settings: RasterSettings) -> torch.Tensor:
    """Soft silhouettes of meshes seen by cameras.

    Args:
        vertices: (B, V, 3) or (V, 3) float, object frame; one mesh is seen by all B cameras.
        faces: (F, 3) int64.
        camera: B cameras (see :class:`softras.Camera`).
    Returns:
        (B, H, W) float in [0, 1]; row 0 is the top of the image.
    """
    vertices = _batched(vertices, camera)
    return soft_silhouette(rasterize(camera.project(vertices), faces, settings))


def render_rgba(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    camera: Camera,
    settings: RasterSettings,
    vertex_colors: torch.Tensor | None = None,
    face_colors: torch.Tensor | None = None,
) -> torch.Tensor:
    """Soft RGBA images of coloured meshes seen by cameras.

    Args:
        vertices: (B, V, 3) or (V, 3) float, object frame.
        faces: (F, 3) int64.
        camera: B cameras.
        vertex_colors: (B, V, C) or (V, C) float, or face_colors: (B, F, C) or (F, C) float (exactly one).
    Returns:
        (B, H, W, C + 1) float: colour channels blended over ``settings.background``, then alpha.
    """
    vertices = _batched(vertices, camera)
    b = vertices.shape[0]

    def batch(colors: torch.Tensor | None) -> torch.Tensor | None:
        if colors is not None and colors.dim() == 2:
            colors = colors.unsqueeze(0).expand(b, -1, -1)
        return colors

    fragments = rasterize(camera.project(vertices), faces, settings)
    colors = shade(fragments, faces, vertex_colors=batch(vertex_colors), face_colors=batch(face_colors))
    return soft_blend(fragments, colors, settings)
