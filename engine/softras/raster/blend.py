"""Shading and blending of soft fragments into silhouettes and RGBA images."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from softras.raster.rasterize import Fragments, face_corners
from softras.raster.settings import RasterSettings

__all__ = ["soft_silhouette", "shade", "blend_colors", "soft_blend"]


def soft_silhouette(fragments: Fragments) -> torch.Tensor:
    """Probabilistic union of the faces: ``S = 1 - prod_j (1 - D_j)``.

    The product is accumulated as a sum of ``log(1 - sigmoid(logit)) = logsigmoid(-logit)``, which stays exact
    and finite for pixels deep inside faces.

    Returns:
        (B, H, W) float in [0, 1].
    """
    fr = fragments
    log_transparency = torch.zeros(fr.num_pixels, dtype=fr.logit.dtype, device=fr.logit.device)
    log_transparency = log_transparency.index_add(0, fr.pixel, F.logsigmoid(-fr.logit))
    return (-torch.expm1(log_transparency)).view(fr.batch_size, fr.height, fr.width)


def shade(
    fragments: Fragments,
    faces: torch.Tensor,
    vertex_colors: torch.Tensor | None = None,
    face_colors: torch.Tensor | None = None,
) -> torch.Tensor:
    """Colour of every fragment, from exactly one of per-vertex or per-face colours.

    Args:
        faces: (F, 3) int64, the topology that was rasterized.
        vertex_colors: (B, V, C) float, interpolated with the fragments' perspective-correct barycentrics.
        face_colors: (B, F, C) float, constant over each face.
    Returns:
        (P, C) float, one row per fragment.
    """
    if (vertex_colors is None) == (face_colors is None):
        raise ValueError("give exactly one of vertex_colors and face_colors")
    b, f = fragments.batch_size, fragments.num_faces
    if face_colors is not None:
        if face_colors.dim() != 3 or face_colors.shape[:2] != (b, f):
            raise ValueError(f"face_colors must have shape ({b}, {f}, C), got {tuple(face_colors.shape)}")
        return face_colors.reshape(b * f, -1).index_select(0, fragments.face)
    if vertex_colors.dim() != 3 or vertex_colors.shape[0] != b:
        raise ValueError(f"vertex_colors must have shape ({b}, V, C), got {tuple(vertex_colors.shape)}")
    if faces.shape[0] != f or int(faces.max()) >= vertex_colors.shape[1]:
        raise ValueError("vertex_colors do not match the rasterized faces")
    corner_colors = face_corners(vertex_colors, faces).index_select(0, fragments.face)  # (P, 3, C)
    return (fragments.bary[..., None] * corner_colors).sum(1)


def blend_colors(fragments: Fragments, colors: torch.Tensor, settings: RasterSettings) -> torch.Tensor:
    """Aggregate fragment colours by a softmax over normalised depth, over the background colour.

    ``I = (sum_j w_j C_j + w_b C_b) / (sum_j w_j + w_b)`` with ``w_j = D_j exp(z_j / gamma)`` and
    ``w_b = exp(background_depth / gamma)``, evaluated relative to the per-pixel maximum for stability.

    Args:
        colors: (P, C) float fragment colours (see :func:`shade`).
    Returns:
        (B, H, W, C) float blended colour channels.
    """
    fr = fragments
    if colors.dim() != 2 or colors.shape[0] != fr.pixel.shape[0]:
        raise ValueError(f"colors must have shape ({fr.pixel.shape[0]}, C), got {tuple(colors.shape)}")
    c = colors.shape[1]
    background = torch.as_tensor(settings.background, dtype=colors.dtype, device=colors.device)
    if background.shape != (c,):
        raise ValueError(f"settings.background has {background.numel()} channels, colors have {c}")
    with torch.no_grad():
        z_max = torch.full((fr.num_pixels,), settings.background_depth, dtype=fr.depth.dtype, device=fr.depth.device)
        z_max = z_max.scatter_reduce(0, fr.pixel, fr.depth, reduce="amax")
    weight = torch.sigmoid(fr.logit) * torch.exp((fr.depth - z_max.index_select(0, fr.pixel)) / settings.gamma)
    weight_bg = torch.exp((settings.background_depth - z_max) / settings.gamma)
    total = weight_bg.index_add(0, fr.pixel, weight)
    color_sum = (weight_bg[:, None] * background).index_add(0, fr.pixel, weight[:, None] * colors)
    return (color_sum / total[:, None]).view(fr.batch_size, fr.height, fr.width, c)


def soft_blend(fragments: Fragments, colors: torch.Tensor, settings: RasterSettings) -> torch.Tensor:
    """:func:`blend_colors` with alpha from :func:`soft_silhouette`.

    Args:
        colors: (P, C) float fragment colours (see :func:`shade`).
    Returns:
        (B, H, W, C + 1) float: blended colour channels, then alpha.
    """
    return torch.cat([blend_colors(fragments, colors, settings), soft_silhouette(fragments)[..., None]], dim=-1)
