"""Hard (z-buffered) rasterization: the nearest face at every pixel centre, from the soft rasterizer's fragments.

The soft rasterizer already enumerates, per pixel, every face whose triangle contains the pixel centre (``logit >= 0``)
with its perspective-correct barycentrics and depth; keeping only the nearest of those gives a classic z-buffer. Used
where a picture must be looked up or reproduced exactly (texture baking, re-rendering a textured mesh), not for
gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from softras.raster.rasterize import rasterize
from softras.raster.settings import RasterSettings

__all__ = ["ZBuffer", "zbuffer"]

_SIGMA = 1e-12  # a cull radius of ~1e-5 NDC: only pixel centres inside a face are enumerated


@dataclass
class ZBuffer:
    """The nearest surface at each pixel centre of B images.

    Attributes:
        face: (B, H, W) int64 face index into the rasterized faces, -1 where no face covers the pixel centre.
        bary: (B, H, W, 3) float perspective-correct barycentrics of the pixel centre in that face (0 where empty).
        depth: (B, H, W) float distance along the viewing direction (object-frame units), +inf where empty.
    """

    face: torch.Tensor
    bary: torch.Tensor
    depth: torch.Tensor

    @property
    def covered(self) -> torch.Tensor:
        """(B, H, W) bool: a face covers the pixel centre."""
        return self.face >= 0


@torch.no_grad()
def zbuffer(screen_vertices: torch.Tensor, faces: torch.Tensor, height: int, width: int,
            near: float = 0.1, far: float = 100.0) -> ZBuffer:
    """Z-buffer a batch of meshes sharing one topology.

    Args:
        screen_vertices: (B, V, 3) float ``(ndc_x, ndc_y, depth)`` from :meth:`softras.Camera.project`.
        faces: (F, 3) int64. Both sides of every face are drawn.
        height, width: image size in pixels. near, far: depth range, as in :class:`RasterSettings`.
    Returns:
        :class:`ZBuffer`.
    """
    settings = RasterSettings((height, width), sigma=_SIGMA, near=near, far=far)
    fr = rasterize(screen_vertices, faces, settings)
    inside = (fr.logit >= 0).nonzero().squeeze(1)
    pixel, normalised = fr.pixel[inside], fr.depth[inside]
    nearest = torch.full((fr.num_pixels,), -1.0, dtype=normalised.dtype, device=normalised.device)
    nearest = nearest.scatter_reduce(0, pixel, normalised, reduce="amax")
    winner = normalised >= nearest[pixel]  # ties: the last fragment wins below
    chosen = torch.full((fr.num_pixels,), -1, dtype=torch.int64, device=pixel.device)
    chosen[pixel[winner]] = inside[winner]
    has = chosen >= 0
    f = fr.num_faces
    face = torch.where(has, fr.face[chosen.clamp(min=0)] % f, -1)
    bary = torch.where(has[:, None], fr.bary[chosen.clamp(min=0)], 0.0)
    depth = torch.where(has, far - nearest * (far - near), torch.inf)
    shape = (fr.batch_size, height, width)
    return ZBuffer(face.view(shape), bary.view(*shape, 3), depth.view(shape))
