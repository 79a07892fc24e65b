"""A straightforward dense soft rasterizer: every face at every pixel.

It is the reference that the benchmark times against and the tests check the sparse rasterizer with. It follows
the definitions directly and shares no code with :mod:`softras.raster`. Memory is O(B * H * W * F).
"""

from __future__ import annotations

import torch

from softras.raster.settings import RasterSettings

__all__ = ["dense_render"]


def _segment_distance2(p: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared distance from points p (N, 1, 2) to segments a-b (1, F, 2) -> (N, F)."""
    ab = b - a
    t = (((p - a) * ab).sum(-1) / (ab * ab).sum(-1).clamp(min=1e-30)).clamp(0, 1)
    return ((a + t[..., None] * ab - p) ** 2).sum(-1)


def dense_render(
    screen_vertices: torch.Tensor,
    faces: torch.Tensor,
    settings: RasterSettings,
    vertex_colors: torch.Tensor | None = None,
) -> torch.Tensor:
    """Render soft silhouettes, or RGBA when vertex colours are given, by brute force.

    Args:
        screen_vertices: (B, V, 3) ``(ndc_x, ndc_y, depth)`` as from :meth:`softras.Camera.project`.
        faces: (F, 3) int64.
        vertex_colors: (B, V, C) or None.
    Returns:
        (B, H, W) silhouettes, or (B, H, W, C + 1) colour then alpha.
    """
    h, w = settings.height_width
    dtype, device = screen_vertices.dtype, screen_vertices.device
    rows, cols = torch.meshgrid(torch.arange(h, dtype=dtype, device=device), torch.arange(w, dtype=dtype, device=device),
                                indexing="ij")
    pix = torch.stack([((2 * cols + 1) / w - 1) * (w / h), 1 - (2 * rows + 1) / h], -1).reshape(-1, 1, 2)
    r2 = settings.cull_radius**2
    images = []
    for bi in range(screen_vertices.shape[0]):
        tri = screen_vertices[bi][faces]  # (F, 3, 3)
        a, b, c = (torch.stack([tri[None, :, k, 0] * (w / h), tri[None, :, k, 1]], -1) for k in range(3))
        za, zb, zc = (tri[None, :, k, 2] for k in range(3))
        d2 = torch.minimum(torch.minimum(_segment_distance2(pix, a, b), _segment_distance2(pix, b, c)), _segment_distance2(pix, c, a))

        def edge_fn(p0: torch.Tensor, p1: torch.Tensor) -> torch.Tensor:
            return (p1[..., 0] - p0[..., 0]) * (pix[..., 1] - p0[..., 1]) - (p1[..., 1] - p0[..., 1]) * (pix[..., 0] - p0[..., 0])

        area = edge_fn(a, b) + edge_fn(b, c) + edge_fn(c, a)
        wa, wb, wc = edge_fn(b, c) / area, edge_fn(c, a) / area, edge_fn(a, b) / area
        inside = (wa >= 0) & (wb >= 0) & (wc >= 0)
        wa, wb, wc = wa.clamp(min=0), wb.clamp(min=0), wc.clamp(min=0)
        s = wa + wb + wc
        wa, wb, wc = wa / s / za, wb / s / zb, wc / s / zc
        z = 1 / (wa + wb + wc)
        valid = ((za >= settings.near) & (zb >= settings.near) & (zc >= settings.near) & (z <= settings.far)
                 & (area.abs() > 2e-6 * (2 / h) ** 2) & (inside | (d2 <= r2)))
        prob = torch.where(valid, torch.sigmoid(torch.where(inside, d2, -d2) / settings.sigma), torch.zeros_like(d2))
        alpha = 1 - torch.prod(1 - prob, dim=1)
        if vertex_colors is None:
            images.append(alpha.reshape(h, w))
            continue
        col = vertex_colors[bi][faces]  # (F, 3, C)
        pc = (wa[..., None] * col[None, :, 0] + wb[..., None] * col[None, :, 1] + wc[..., None] * col[None, :, 2]) * z[..., None]
        zn = (settings.far - z) / (settings.far - settings.near)
        zn = torch.where(valid, zn, torch.full_like(zn, -1e9))
        logits = torch.cat([zn, torch.full_like(zn[:, :1], settings.background_depth)], 1) / settings.gamma
        logw = torch.cat([torch.log(prob.clamp(min=1e-30)), torch.zeros_like(zn[:, :1])], 1) + logits
        weights = torch.softmax(logw, dim=1)
        bg = torch.as_tensor(settings.background, dtype=dtype, device=device)
        rgb = (weights[:, :-1, None] * pc).sum(1) + weights[:, -1:] * bg
        images.append(torch.cat([rgb, alpha[:, None]], -1).reshape(h, w, -1))
    return torch.stack(images)
