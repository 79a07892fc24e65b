"""Sparse soft rasterization: (face, pixel) pairs within each face's cull radius.

A dense soft rasterizer evaluates every face at every pixel (H * W * F pairs). Almost all of those pairs are
culled anyway: a pixel farther than the cull radius outside a face gets ``D < eps``. Here each face is binned to
the pixels of its bounding box grown by the cull radius, the pairs are enumerated directly (no H x W x F tensor is
ever formed), and only pairs inside the face or within the radius are kept, so memory and time grow with the
touched pairs. Everything is differentiable PyTorch, so the same code runs on CPU and CUDA.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.checkpoint import checkpoint

from softras.raster.settings import RasterSettings

__all__ = ["Fragments", "rasterize"]

# Faces with less than a millionth of a pixel of screen area are dropped, and edge lengths are floored, so that
# collapsed faces (coincident vertices) contribute nothing and cannot produce infinite gradients.
_MIN_AREA_PIXELS = 1e-6
_MIN_EDGE2 = 1e-12  # squared screen units


@dataclass
class Fragments:
    """Soft fragments of a batch of meshes: one row per kept (face, pixel) pair.

    Attributes:
        pixel: (P,) int64 flat pixel index ``b * H * W + row * W + column``.
        face: (P,) int64 flat face index ``b * F + f``.
        logit: (P,) float ``delta * d**2 / sigma``; the face probability is ``D = sigmoid(logit)``.
        bary: (P, 3) float perspective-correct barycentric coordinates of the pixel centre, clamped to the face.
        depth: (P,) float normalised depth ``(far - z) / (far - near)`` at the pixel (1 at near, 0 at far).
        batch_size, height, width, num_faces: sizes of the rasterized batch.
    """

    pixel: torch.Tensor
    face: torch.Tensor
    logit: torch.Tensor
    bary: torch.Tensor
    depth: torch.Tensor
    batch_size: int
    height: int
    width: int
    num_faces: int

    @property
    def num_pixels(self) -> int:
        return self.batch_size * self.height * self.width


def _check_inputs(screen: torch.Tensor, faces: torch.Tensor) -> None:
    if not isinstance(screen, torch.Tensor) or screen.dim() != 3 or screen.shape[-1] != 3:
        raise ValueError(f"vertices must have shape (B, V, 3), got {tuple(getattr(screen, 'shape', ()))}")
    if not screen.is_floating_point():
        raise ValueError(f"vertices must be a floating-point tensor, got {screen.dtype}")
    if not isinstance(faces, torch.Tensor) or faces.dim() != 2 or faces.shape[-1] != 3:
        raise ValueError(f"faces must have shape (F, 3), got {tuple(getattr(faces, 'shape', ()))}")
    if faces.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"faces must be an integer tensor, got {faces.dtype}")
    if screen.shape[1] == 0 or faces.shape[0] == 0:
        raise ValueError("mesh is empty: vertices and faces must be non-empty")
    if int(faces.min()) < 0 or int(faces.max()) >= screen.shape[1]:
        raise ValueError(f"faces index vertices out of range [0, {screen.shape[1]})")
    if not bool(torch.isfinite(screen).all()):
        raise ValueError("vertices must be finite (found NaN or inf)")


def _bin_faces(
    uv: torch.Tensor, z: torch.Tensor, solid: torch.Tensor, settings: RasterSettings
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Enumerate the (face, pixel) pairs of each face's grown bounding box.

    Args:
        uv: (N, 3, 2) face vertices in height-normalised screen units, detached.
        z: (N, 3) vertex depths. solid: (N,) bool, the face has more than a negligible screen area.
    Returns:
        face: (P,) int64 index into N; column, row: (P,) int64 pixel coordinates.
    """
    h, w = settings.height_width
    radius_px = settings.cull_radius * h / 2
    col = (uv[..., 0] * h + w) / 2  # continuous pixel coordinates; pixel centres at integer + 0.5
    row = (1 - uv[..., 1]) * h / 2
    c0 = torch.ceil(col.amin(1) - radius_px - 0.5).clamp(min=0)
    c1 = torch.floor(col.amax(1) + radius_px - 0.5).clamp(max=w - 1)
    r0 = torch.ceil(row.amin(1) - radius_px - 0.5).clamp(min=0)
    r1 = torch.floor(row.amax(1) + radius_px - 0.5).clamp(max=h - 1)
    visible = (z.amin(1) >= settings.near) & (z.amin(1) <= settings.far) & solid
    ncols = torch.where(visible, (c1 - c0 + 1).clamp(min=0), torch.zeros_like(c0)).long()
    nrows = torch.where(visible, (r1 - r0 + 1).clamp(min=0), torch.zeros_like(r0)).long()
    counts = ncols * nrows
    face = torch.repeat_interleave(torch.arange(uv.shape[0], device=uv.device), counts)
    local = torch.arange(face.shape[0], device=uv.device) - (torch.cumsum(counts, 0) - counts)[face]
    ncols_p = ncols[face]
    return face, c0.long()[face] + local % ncols_p, r0.long()[face] + local // ncols_p


def _pair_geometry(
    per_face: torch.Tensor, face: torch.Tensor, column: torch.Tensor, row: torch.Tensor, settings: RasterSettings
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Soft coverage of (face, pixel) pairs.

    Args:
        per_face: (N, 19) per face: vertices uv (6), edges (6), inverse squared edge lengths (3), depths (3),
            inverse twice-area (1). face, column, row: (P,) int64 pairs.
    Returns:
        keep (P,) bool: the pair is inside the face or within the cull radius, and nearer than ``far``;
        logit (P,), bary (P, 3), depth (P,) as in :class:`Fragments`.
    """
    h, w = settings.height_width
    v_uv, v_edge, v_inv_len2, v_z, v_inv_area = per_face[face].split([6, 6, 3, 3, 1], dim=1)
    v_uv, v_edge = v_uv.view(-1, 3, 2), v_edge.view(-1, 3, 2)
    # pixel centres in screen units, looked up per pair
    centre_x = (2 * torch.arange(w, dtype=per_face.dtype, device=per_face.device) + 1 - w) / h
    centre_y = 1 - (2 * torch.arange(h, dtype=per_face.dtype, device=per_face.device) + 1) / h
    px = torch.stack([centre_x[column], centre_y[row]], dim=-1)  # (P, 2)
    q = px[:, None, :] - v_uv  # (P, 3, 2) from each vertex to the pixel centre
    t = ((q * v_edge).sum(-1) * v_inv_len2).clamp(0, 1)
    d2 = (q - t[..., None] * v_edge).square().sum(-1).amin(1)  # squared distance to the boundary
    cross = v_edge[..., 0] * q[..., 1] - v_edge[..., 1] * q[..., 0]  # (P, 3), edge i vs pixel
    bary_screen = cross.roll(-1, dims=1) * v_inv_area  # weight of vertex i is opposite edge i + 1
    inside = (bary_screen >= 0).all(1)
    clamped = bary_screen.clamp(min=0)
    persp = clamped / (clamped.sum(1, keepdim=True) * v_z)
    inv_z = persp.sum(1, keepdim=True)
    z_pixel = 1.0 / inv_z.squeeze(1)
    keep = (inside | (d2 <= settings.cull_radius**2)) & (z_pixel <= settings.far)
    logit = torch.where(inside, d2, -d2) / settings.sigma
    depth = (settings.far - z_pixel) / (settings.far - settings.near)
    return keep, logit, persp / inv_z, depth


def rasterize(screen_vertices: torch.Tensor, faces: torch.Tensor, settings: RasterSettings) -> Fragments:
    """Soft-rasterize a batch of meshes that share one topology.

    Args:
        screen_vertices: (B, V, 3) float, ``(ndc_x, ndc_y, depth)`` per vertex as returned by
            :meth:`softras.Camera.project` (NDC in [-1, 1] across the image, +y up; depth along the view axis).
        faces: (F, 3) int64 vertex indices. Both sides of every face are drawn.
        settings: image size, sigma, eps, near and far.
    Returns:
        :class:`Fragments`, differentiable with respect to ``screen_vertices``.
    """
    _check_inputs(screen_vertices, faces)
    b, _, _ = screen_vertices.shape
    f = faces.shape[0]
    h, w = settings.height_width
    fv = screen_vertices[:, faces.long()].reshape(b * f, 3, 3)
    uv = torch.stack([fv[..., 0] * (w / h), fv[..., 1]], dim=-1)  # (N, 3, 2) height-normalised units
    z = fv[..., 2]
    edge = uv.roll(-1, dims=1) - uv  # edge i runs from vertex i to vertex i + 1
    twice_area = edge[:, 0, 0] * edge[:, 1, 1] - edge[:, 0, 1] * edge[:, 1, 0]

    # Collapsed faces are never binned; the double `where` keeps their infinite 1/area out of the backward pass too.
    solid = twice_area.abs() > 2 * _MIN_AREA_PIXELS * (2 / h) ** 2
    inv_area = torch.where(solid, 1.0 / torch.where(solid, twice_area, torch.ones_like(twice_area)), torch.zeros_like(twice_area))
    with torch.no_grad():
        face, column, row = _bin_faces(uv.detach(), z.detach(), solid, settings)

    # Per-face quantities, gathered once per pair.
    inv_len2 = 1.0 / (edge * edge).sum(-1).clamp(min=_MIN_EDGE2)
    per_face = torch.cat([uv.flatten(1), edge.flatten(1), inv_len2, z, inv_area[:, None]], dim=1)
    if face.shape[0] > settings.recompute_above:
        keep, logit, bary, depth = checkpoint(_pair_geometry, per_face, face, column, row, settings, use_reentrant=False)
    else:
        keep, logit, bary, depth = _pair_geometry(per_face, face, column, row, settings)
    idx = keep.nonzero().squeeze(1)
    face, column, row, logit, bary, depth = face[idx], column[idx], row[idx], logit[idx], bary[idx], depth[idx]
    pixel = (face // f) * (h * w) + row * w + column
    return Fragments(pixel, face, logit, bary, depth, b, h, w, f)
