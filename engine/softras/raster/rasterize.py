"""Sparse soft rasterization: (face, pixel) pairs within each face's cull radius.

A dense soft rasterizer evaluates every face at every pixel (H * W * F pairs). Almost all of those pairs are
culled anyway: a pixel farther than the cull radius outside a face gets ``D < eps``. Here each face is binned to
the pixels of its bounding box grown by the cull radius, the pairs are enumerated directly (no H x W x F tensor is
ever formed), and only pairs inside the face or within the radius are kept, so memory and time grow with the
touched pairs. The per-pair geometry has a closed-form backward pass (:class:`_SoftFragments`); everything is
PyTorch tensor code, so the same code runs on CPU and CUDA.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

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
    local = torch.arange(face.shape[0], device=uv.device) - (torch.cumsum(counts, 0) - counts).index_select(0, face)
    ncols_p = ncols.index_select(0, face)
    return face, c0.long().index_select(0, face) + local % ncols_p, r0.long().index_select(0, face) + local // ncols_p


def face_corners(per_vertex: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Per-vertex values (B, V, C) -> their faces' corners (B * F, 3, C), face n of mesh b at row ``b * F + n``,
    the face numbering of :class:`Fragments` ``face``. faces: (F, 3) integer vertex indices, any strides."""
    b, f = per_vertex.shape[0], faces.shape[0]
    return per_vertex.index_select(1, faces.long().reshape(-1)).reshape(b * f, 3, -1)


class _PairGeometry:
    """Geometry of (face, pixel) pairs, with what the backward pass needs.

    Every quantity is a contiguous (P,) vector, one per vertex or edge, so each elementwise step runs over plain
    memory; the pairs' face data is gathered row by row (1-D gathers are several times faster on a CPU than
    gathering rows of a (N, 16) table or broadcasting over (P, 3, 2) views of one).
    """

    def __init__(self, per_face: torch.Tensor, inv_len2: torch.Tensor, face: torch.Tensor, px: torch.Tensor, py: torch.Tensor):
        """per_face: (16, N) rows: vertex u (3), vertex v (3), edge u (3), edge v (3) (edge i runs from vertex i to
        vertex i + 1), vertex depths (3), inverse twice-area (1). inv_len2: (3, N) inverse squared edge lengths.
        face: (P,) int64 pairs' faces; px, py: (P,) their pixel centres, screen units."""
        rows = [row.index_select(0, face) for row in per_face]
        self.ux, self.uy, self.ex, self.ey, self.z = rows[0:3], rows[3:6], rows[6:9], rows[9:12], rows[12:15]
        self.inv_area = rows[15]
        self.inv_len2 = [row.index_select(0, face) for row in inv_len2]
        self.qx = [px - u for u in self.ux]  # from vertex i to the pixel centre
        self.qy = [py - u for u in self.uy]
        self.cross = [self.ex[i] * self.qy[i] - self.ey[i] * self.qx[i] for i in range(3)]  # edge i vs pixel
        self.bary_screen = [self.cross[(i + 1) % 3] * self.inv_area for i in range(3)]  # vertex i faces edge i + 1
        self.inside = (self.bary_screen[0] >= 0) & (self.bary_screen[1] >= 0) & (self.bary_screen[2] >= 0)
        self.clamped = [b.clamp(min=0) for b in self.bary_screen]
        self.weighted = [c / z for c, z in zip(self.clamped, self.z)]  # perspective-correct, up to a common factor
        self.total = self.weighted[0] + self.weighted[1] + self.weighted[2]  # > 0: some screen weight is positive
        self.z_pixel = (self.clamped[0] + self.clamped[1] + self.clamped[2]) / self.total

    def _to_edge(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Foot parameter t in [0, 1] of the point of edge i nearest the pixel centre, and the residual r = q - t e."""
        t = ((self.qx[i] * self.ex[i] + self.qy[i] * self.ey[i]) * self.inv_len2[i]).clamp(0, 1)
        return t, self.qx[i] - t * self.ex[i], self.qy[i] - t * self.ey[i]

    def distance2(self) -> torch.Tensor:
        """(P,) squared distance from the pixel centre to the face's boundary."""
        d2 = [rx.square() + ry.square() for _, rx, ry in map(self._to_edge, range(3))]
        return torch.minimum(torch.minimum(d2[0], d2[1]), d2[2])

    def logit_gradient(self, grad_logit: torch.Tensor, settings: RasterSettings) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradient of the logit ``delta * d2 / sigma`` with respect to the nearest edge's rows.

        ``d2 = |q - t e|^2`` at the nearest point of the nearest edge, so ``d(d2) = 2 r . (dq - t de)``: the foot's
        own motion drops out (r is orthogonal to e where 0 < t < 1, and t is constant where it is clamped).

        Returns:
            row: (4, P) int64 indices into the 16 per-face rows (u, v, edge u, edge v of the nearest edge);
            value: (4, P) their gradients.
        """
        edge = torch.zeros_like(self.inside, dtype=torch.int64)
        t, rx, ry = self._to_edge(0)
        d2 = rx.square() + ry.square()
        for i in (1, 2):
            t_i, rx_i, ry_i = self._to_edge(i)
            d2_i = rx_i.square() + ry_i.square()
            nearer = d2_i < d2
            edge, d2, t = torch.where(nearer, i, edge), torch.where(nearer, d2_i, d2), torch.where(nearer, t_i, t)
            rx, ry = torch.where(nearer, rx_i, rx), torch.where(nearer, ry_i, ry)
        g = torch.where(self.inside, grad_logit, -grad_logit) * (-2 / settings.sigma)
        gx, gy = g * rx, g * ry
        return torch.stack([edge, edge + 3, edge + 6, edge + 9]), torch.stack([gx, gy, gx * t, gy * t])

    def bary_depth_gradient(self, grad_bary: torch.Tensor | None, grad_depth: torch.Tensor | None,
                            settings: RasterSettings) -> torch.Tensor:
        """(16, P) gradient of the perspective-correct barycentrics and the depth with respect to the gathered rows."""
        zero = torch.zeros_like(self.total)
        g_weighted, g_clamped = [zero] * 3, [zero] * 3
        if grad_bary is not None:
            bary = [w / self.total for w in self.weighted]
            mean = grad_bary[:, 0] * bary[0] + grad_bary[:, 1] * bary[1] + grad_bary[:, 2] * bary[2]
            g_weighted = [(grad_bary[:, i] - mean) / self.total for i in range(3)]
        if grad_depth is not None:  # z_pixel = sum(clamped) / total
            g_z_pixel = grad_depth / (-(settings.far - settings.near) * self.total)
            g_weighted = [g - g_z_pixel * self.z_pixel for g in g_weighted]
            g_clamped = [g_z_pixel] * 3
        g_clamped = [gc + gw / z for gc, gw, z in zip(g_clamped, g_weighted, self.z)]
        g_z = [-gw * w / z for gw, w, z in zip(g_weighted, self.weighted, self.z)]
        g_bary_screen = [torch.where(b > 0, gc, 0) for b, gc in zip(self.bary_screen, g_clamped)]
        g_inv_area = sum(gb * self.cross[(i + 1) % 3] for i, gb in enumerate(g_bary_screen))
        g_ux, g_uy, g_ex, g_ey = [], [], [], []
        for i in range(3):  # cross_i = ex_i qy_i - ey_i qx_i with q = p - u
            g_cross = g_bary_screen[(i + 2) % 3] * self.inv_area
            g_ux.append(g_cross * self.ey[i])
            g_uy.append(-g_cross * self.ex[i])
            g_ex.append(g_cross * self.qy[i])
            g_ey.append(-g_cross * self.qx[i])
        return torch.stack([*g_ux, *g_uy, *g_ex, *g_ey, *g_z, g_inv_area])


class _SoftFragments(torch.autograd.Function):
    """(face, pixel) pairs -> the kept pairs' logit, bary and depth, differentiable in the per-face rows.

    The backward pass gathers the kept pairs' face data again and evaluates the gradient in closed form, so only each
    kept pair's face index and pixel centre are stored, no intermediate of the forward pass.
    """

    @staticmethod
    def forward(ctx, per_face: torch.Tensor, inv_len2: torch.Tensor, face: torch.Tensor, px: torch.Tensor, py: torch.Tensor,
                settings: RasterSettings):
        pairs = _PairGeometry(per_face, inv_len2, face, px, py)
        d2 = pairs.distance2()
        idx = ((pairs.inside | (d2 <= settings.cull_radius**2)) & (pairs.z_pixel <= settings.far)).nonzero().squeeze(1)
        face, px, py = face.index_select(0, idx), px.index_select(0, idx), py.index_select(0, idx)
        d2, inside, total = d2.index_select(0, idx), pairs.inside.index_select(0, idx), pairs.total.index_select(0, idx)
        logit = torch.where(inside, d2, -d2) / settings.sigma
        bary = torch.stack([w.index_select(0, idx) / total for w in pairs.weighted], dim=1)
        depth = (settings.far - pairs.z_pixel.index_select(0, idx)) / (settings.far - settings.near)
        ctx.save_for_backward(per_face, inv_len2, face, px, py)
        ctx.settings = settings
        ctx.mark_non_differentiable(idx)
        ctx.set_materialize_grads(False)  # an unused output (bary and depth, mostly) costs nothing in the backward
        return idx, logit, bary, depth

    @staticmethod
    def backward(ctx, _grad_idx, grad_logit, grad_bary, grad_depth):
        per_face, inv_len2, face, px, py = ctx.saved_tensors
        grad = torch.zeros_like(per_face)
        pairs = _PairGeometry(per_face, inv_len2, face, px, py)
        if grad_bary is not None or grad_depth is not None:
            grad.scatter_add_(1, face.expand(per_face.shape[0], -1), pairs.bary_depth_gradient(grad_bary, grad_depth, ctx.settings))
        if grad_logit is not None:
            row, value = pairs.logit_gradient(grad_logit, ctx.settings)
            grad.view(-1).index_add_(0, (row * per_face.shape[1] + face).view(-1), value.view(-1))
        return grad, None, None, None, None, None


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
    fv = face_corners(screen_vertices, faces)  # (N, 3, 3), N = B * F
    uv = torch.stack([fv[..., 0] * (w / h), fv[..., 1]], dim=-1)  # (N, 3, 2) height-normalised units
    z = fv[..., 2]
    edge = uv.roll(-1, dims=1) - uv  # edge i runs from vertex i to vertex i + 1
    twice_area = edge[:, 0, 0] * edge[:, 1, 1] - edge[:, 0, 1] * edge[:, 1, 0]

    # Collapsed faces are never binned; the double `where` keeps their infinite 1/area out of the backward pass too.
    solid = twice_area.abs() > 2 * _MIN_AREA_PIXELS * (2 / h) ** 2
    inv_area = torch.where(solid, 1.0 / torch.where(solid, twice_area, torch.ones_like(twice_area)), torch.zeros_like(twice_area))
    with torch.no_grad():
        face, column, row = _bin_faces(uv.detach(), z.detach(), solid, settings)

    # Per-face rows, gathered per pair by the autograd function; 1 / |edge|^2 only places the nearest point on an
    # edge, which the distance does not depend on to first order, so it is not differentiated.
    per_face = torch.cat([uv[..., 0].t(), uv[..., 1].t(), edge[..., 0].t(), edge[..., 1].t(), z.t(), inv_area[None]]).contiguous()
    inv_len2 = (1.0 / (edge * edge).sum(-1).clamp(min=_MIN_EDGE2)).t().contiguous().detach()
    centre_x = (2 * torch.arange(w, dtype=uv.dtype, device=uv.device) + 1 - w) / h  # pixel centres, screen units
    centre_y = 1 - (2 * torch.arange(h, dtype=uv.dtype, device=uv.device) + 1) / h
    px, py = centre_x.index_select(0, column), centre_y.index_select(0, row)
    idx, logit, bary, depth = _SoftFragments.apply(per_face, inv_len2, face, px, py, settings)
    face, column, row = face.index_select(0, idx), column.index_select(0, idx), row.index_select(0, idx)
    pixel = (face // f) * (h * w) + row * w + column
    return Fragments(pixel, face, logit, bary, depth, b, h, w, f)
