"""Projected textures: the input picture itself, at full resolution, baked onto the reconstructed mesh.

A reconstruction's 642 vertex colours are predicted from a 64 x 64 input; the picture it came from is usually far
sharper. :func:`project_texture` gives the mesh a UV layout (:class:`UVLayout`, fixed for a topology) and bakes a
texture (:func:`bake_texture`) by looking every texel's surface point up in the picture through the input viewpoint:

- the viewpoint is the orbit camera of the intake's 64 px frame (:func:`softras.refine.estimate_viewpoint`, or the
  camera refinement ended with); the intake's crop box maps that frame onto the original picture
  (:meth:`softras.Camera.widened`);
- a texel takes the picture's colour where its surface point is visible: nearest in the z-buffer
  (:func:`softras.raster.zbuffer`) within a depth tolerance, facing the camera, and inside the picture's foreground;
  the three factors are soft ramps, so the weight is in [0, 1] and the colour blends into the fallbacks;
- where it is hidden, it takes the colour of its mirror image (object frame x -> -x: most objects are symmetric
  about x = 0) where that point is visible, else the predicted vertex colour, interpolated;
- texels outside every UV triangle are filled by dilating the filled ones outward (seams padded, so bilinear
  filtering and the first mipmap levels do not bleed the background in), the rest take the mean colour.

Frames: object frame Y-up (as :class:`softras.mesh.Mesh`); pictures are (H, W, C) straight sRGB, row 0 at the top;
texture coordinates as :class:`softras.mesh.Texture` (v down). All colours are sRGB.

Bad cases are refused with a message, and the caller keeps the vertex colours (:class:`TextureOutcome`): a picture
whose object spans fewer than ``MIN_OBJECT_PIXELS`` (the generator's own input then holds as much), an empty mask,
and a viewpoint estimate whose silhouette IoU against the mask is below ``MIN_VIEWPOINT_IOU``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from softras.camera import Camera
from softras.intake import IntakeResult
from softras.losses import soft_iou
from softras.mesh import Mesh, Texture
from softras.raster import RasterSettings, render_silhouette, zbuffer
from softras.refine import estimate_viewpoint

__all__ = [
    "UVLayout", "template_layout", "BakeSettings", "Bake", "bake_texture", "dilation_sources", "TextureOutcome",
    "project_texture", "viewpoint_iou", "MIN_OBJECT_PIXELS", "MIN_VIEWPOINT_IOU", "DEFAULT_TEXTURE_SIZE",
]

DEFAULT_TEXTURE_SIZE = 1024
MIN_OBJECT_PIXELS = 64
"""Least side, in original picture pixels, of the intake's square crop around the object: below it the picture
holds no more detail than the generator's own 64 px input, and vertex colours are kept."""
MIN_VIEWPOINT_IOU = 0.5
"""Least silhouette IoU (64 px, the mesh from the estimated viewpoint against the intake mask) for the viewpoint to
be trusted: below it the projection would paint the picture on the wrong parts. Measured with ``softras eval
--texture`` on the 180 validation pictures at elevation 30: the estimates score median 0.78 (5th percentile 0.59,
least 0.41); the same meshes seen from the estimate turned 90 degrees, a gross failure, score median 0.49, and
0.5 refuses 56% of those while refusing 4 estimates (2%). It cannot catch a wrong viewpoint that sees a similar
silhouette: 46 of the 180 estimates are more than 45 degrees off the true camera and score 0.57-0.95 (README,
Textures)."""
_MARGIN = 0.06  # gap between a UV triangle and its cell's edges (and the diagonal), as a fraction of the cell


# ---------------------------------------------------------------------------------------------- UV layout
@dataclass(frozen=True)
class UVLayout:
    """Faces packed in pairs into a ``cols`` x ``rows`` grid of cells over [0, 1]^2 (u right, v down).

    Face ``2k`` is the lower-left half of cell ``k`` (row-major), face ``2k + 1`` the upper-right half, each a right
    triangle inset by ``margin`` (fraction of the cell) from the cell's edges and from the diagonal, so no two faces'
    triangles touch. Corner i of a face goes to the triangle's corner i (the right angle is corner 0).
    """

    num_faces: int
    cols: int
    rows: int
    margin: float = _MARGIN

    def __post_init__(self) -> None:
        if self.num_faces < 1 or self.cols * self.rows * 2 < self.num_faces or not 0 <= self.margin < 0.2:
            raise ValueError(f"invalid UV layout: {self}")

    @property
    def _legs(self) -> tuple[float, float]:
        """(a, length): corner 0 sits at (a, a) in cell units, the legs are ``length`` long."""
        a = self.margin
        return a, 1.0 - a - a * (1 + math.sqrt(2))  # the hypotenuse keeps a distance ``a`` from the diagonal

    def uv(self) -> torch.Tensor:
        """(F, 3, 2) float32 texture coordinates of every face corner (see :class:`softras.mesh.Texture`)."""
        a, length = self._legs
        lower = torch.tensor([[a, a], [a + length, a], [a, a + length]], dtype=torch.float64)
        corners = torch.stack([lower, 1.0 - lower])  # the upper-right triangle: the lower one turned by 180 degrees
        k = torch.arange(self.num_faces)
        cell = k // 2
        origin = torch.stack([cell % self.cols, cell // self.cols], dim=1).double()
        local = corners[k % 2]  # (F, 3, 2) in cell units
        scale = torch.tensor([self.cols, self.rows], dtype=torch.float64)
        return ((origin[:, None, :] + local) / scale).float()

    def locate(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The face and barycentrics of every texel centre of a ``size`` x ``size`` texture.

        Returns:
            face: (size, size) int64, -1 for texels outside every face's triangle;
            bary: (size, size, 3) float32 weights of the face's corners (0 outside), so that
            ``sum_i bary_i * uv[face, i]`` is the texel centre.
        """
        centres = (torch.arange(size, dtype=torch.float64) + 0.5) / size
        x = centres[None, :].expand(size, size) * self.cols  # (row, column) grids in cell units
        y = centres[:, None].expand(size, size) * self.rows
        col, row = x.floor(), y.floor()
        s, t = x - col, y - row
        upper = s + t >= 1
        a, length = self._legs
        s, t = torch.where(upper, 1 - s, s), torch.where(upper, 1 - t, t)  # the upper triangle, turned back
        w1, w2 = (s - a) / length, (t - a) / length
        bary = torch.stack([1 - w1 - w2, w1, w2], dim=-1)
        face = 2 * (row * self.cols + col).long() + upper.long()
        inside = (bary >= 0).all(-1) & (face < self.num_faces)
        return torch.where(inside, face, -1), torch.where(inside[..., None], bary, 0.0).float()


@functools.lru_cache(maxsize=4)
def _texel_map(layout: UVLayout, size: int, padding: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """What every bake of a layout at a size needs, computed once (read-only results): the flat indices (N,) of
    the texels inside a face, their faces (N,) and barycentrics (N, 3) (:meth:`UVLayout.locate`), and the
    (size, size) :func:`dilation_sources` of the texture."""
    face, bary = layout.locate(size)
    texels = (face >= 0).view(-1).nonzero().squeeze(1)
    return texels, face.view(-1)[texels], bary.view(-1, 3)[texels], dilation_sources(face >= 0, padding)


def template_layout(num_faces: int) -> UVLayout:
    """The layout of a mesh with ``num_faces`` faces: the squarest grid that holds them in pairs (the generator's
    1280-face template: 26 x 25 cells)."""
    cells = (num_faces + 1) // 2
    cols = math.ceil(math.sqrt(cells))
    return UVLayout(num_faces, cols, math.ceil(cells / cols))


# ---------------------------------------------------------------------------------------------- baking
@dataclass(frozen=True)
class BakeSettings:
    """How a texture is baked; lengths in object-frame units, angles as cosines."""

    size: int = DEFAULT_TEXTURE_SIZE
    """Texture side in texels."""
    zbuffer_size: int = 256
    """Side of the z-buffer rendered in the intake's square frame to decide visibility."""
    depth_tolerance: float = 0.02
    """A point is visible while it lies at most this far behind the z-buffer's surface; the weight falls to 0 at
    twice this."""
    facing: tuple[float, float] = (0.05, 0.2)
    """Cosines between the face normal and the direction to the eye over which the weight rises from 0 to 1
    (faces seen edge-on stretch few picture pixels over many texels)."""
    foreground: tuple[float, float] = (0.5, 0.9)
    """Foreground (alpha or mask) values over which the weight rises from 0 to 1, so that the object's outline,
    blended with the background in the picture, is not painted on."""
    padding: int = 4
    """Dilation steps (texels) filling the gaps around the UV triangles."""

    def __post_init__(self) -> None:
        if self.size < 8 or self.zbuffer_size < 8 or self.padding < 0 or not self.depth_tolerance > 0:
            raise ValueError(f"invalid bake settings: {self}")


@dataclass
class Bake:
    """A baked texture and where its texels' colours came from (fractions of the texels inside UV triangles,
    summing to 1): the picture, the mirror-symmetric point in the picture, or the vertex colours."""

    texture: Texture
    from_picture: float
    from_mirror: float
    from_vertices: float


def _ramp(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return ((x - lo) / (hi - lo)).clamp(0, 1)


class _PictureLookup:
    """Colour and foreground of surface points in the picture, and their visibility, for one camera."""

    def __init__(self, picture: torch.Tensor, camera: Camera, intake: IntakeResult, zbuf: torch.Tensor,
                 settings: BakeSettings) -> None:
        h, w = picture.shape[:2]
        self.picture_size = (h, w)
        self.picture_camera = camera.widened(intake.crop_box, w, h)
        self.camera, self.settings, self.zbuf = camera, settings, zbuf
        self.use_alpha = intake.foreground_source == "alpha"
        self.mask = intake.mask[None, None].float()
        # Only the part of the picture that the crop box covers can be seen; it is the part converted to float.
        left, top, right, bottom = intake.crop_box
        self.x0, self.y0 = max(0, left - 1), max(0, top - 1)
        x1, y1 = min(w, right + 1), min(h, bottom + 1)
        region = picture[self.y0:y1, self.x0:x1]
        region = region.float() / 255 if region.dtype == torch.uint8 else region.float()
        if region.shape[2] == 3:
            region = torch.cat([region, torch.ones_like(region[..., :1])], dim=2)
        region = torch.cat([region[..., :3] * region[..., 3:], region[..., 3:]], dim=2)  # premultiplied: no dark fringes
        self.region = region.permute(2, 0, 1)[None].contiguous()  # (1, 4, h', w')

    def __call__(self, points: torch.Tensor, normals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """points, normals: (N, 3) object frame. Returns weight (N,) in [0, 1] and colour (N, 3) sRGB."""
        s = self.settings
        projected = self.camera.project(points)[0]  # (N, 3): ndc x, ndc y, depth
        n = self.zbuf.shape[0]
        col = ((projected[:, 0] + 1) / 2 * n).floor().long()
        row = ((1 - projected[:, 1]) / 2 * n).floor().long()
        on_frame = (col >= 0) & (col < n) & (row >= 0) & (row < n)
        front = self.zbuf[row.clamp(0, n - 1), col.clamp(0, n - 1)]
        behind = projected[:, 2] - front
        weight = on_frame * _ramp(-behind, -2 * s.depth_tolerance, -s.depth_tolerance)
        to_eye = F.normalize(self.camera.eye - points, dim=1)
        weight = weight * _ramp((normals * to_eye).sum(1), *s.facing)

        pixels = self.picture_camera.to_pixels(points, *self.picture_size)[0]  # (N, 2) column, row
        size = torch.tensor([self.region.shape[3], self.region.shape[2]], dtype=pixels.dtype)
        offset = torch.tensor([self.x0, self.y0], dtype=pixels.dtype)
        grid = (2 * (pixels - offset) / size - 1)[None, None]
        rgba = F.grid_sample(self.region, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0, :, 0].T
        if self.use_alpha:
            foreground = rgba[:, 3]
        else:
            ndc = torch.stack([projected[:, 0], -projected[:, 1]], dim=1)[None, None]
            foreground = F.grid_sample(self.mask, ndc, mode="bilinear", padding_mode="zeros", align_corners=False)[0, 0, 0]
        weight = weight * _ramp(foreground, *s.foreground)
        color = torch.where(rgba[:, 3:] > 0, rgba[:, :3] / rgba[:, 3:].clamp(min=1e-6), 0.0).clamp(0, 1)
        return weight, color


def dilation_sources(filled: torch.Tensor, steps: int) -> torch.Tensor:
    """Where dilating ``filled`` (H, W) bool outward by ``steps`` texels takes each texel's colour from.

    Each step, every empty texel with a filled 8-neighbour (the first in a fixed order: left, right, up, down, then
    the diagonals) becomes filled with that neighbour's colour, which is ultimately the colour of some texel filled
    at the start. Returns (H, W) int64 flat indices of those original texels, -1 for texels still empty after
    ``steps``. A texture layout's plan is the same for every bake, so it is computed once (:func:`_texel_map`).
    """
    h, w = filled.shape
    source = torch.where(filled, torch.arange(h * w).view(h, w), -1)
    offsets = ((0, -1), (0, 1), (-1, 0), (1, 0), (-1, -1), (-1, 1), (1, -1), (1, 1))
    for _ in range(steps):
        padded = F.pad(source[None, None], (1, 1, 1, 1), value=-1)[0, 0]
        grown = source.clone()
        for dy, dx in offsets:
            neighbour = padded[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
            grown = torch.where((grown < 0) & (neighbour >= 0), neighbour, grown)
        source = grown
    return source


def _apply_sources(image: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    h, w, c = image.shape
    flat = image.reshape(h * w, c)
    return torch.where((source >= 0).view(-1, 1), flat[source.view(-1).clamp(min=0)], flat).view(h, w, c)


def _as_picture(picture: np.ndarray | torch.Tensor) -> torch.Tensor:
    p = picture if isinstance(picture, torch.Tensor) else torch.from_numpy(np.array(picture))
    if p.dim() != 3 or p.shape[2] not in (3, 4) or min(p.shape[:2]) < 1:
        raise ValueError(f"picture must be an (H, W, 3) or (H, W, 4) array, got {tuple(p.shape)}")
    if p.dtype != torch.uint8 and not p.is_floating_point():
        raise ValueError(f"picture must be uint8 or float in [0, 1], got {p.dtype}")
    return p


@torch.no_grad()
def bake_texture(mesh: Mesh, picture: np.ndarray | torch.Tensor, camera: Camera, intake: IntakeResult,
                 settings: BakeSettings = BakeSettings(), layout: UVLayout | None = None) -> Bake:
    """Bake a texture for ``mesh`` from ``picture`` seen through ``camera``.

    Args:
        mesh: vertices (V, 3) object frame, faces (F, 3), vertex colours (V, 3) sRGB (the hidden texels' last
            resort; grey when None). Any texture it has is ignored.
        picture: (H, W, 3) or (H, W, 4) straight sRGB, uint8 or float in [0, 1], row 0 at the top: the original
            picture that ``intake`` was prepared from (its crop box refers to it).
        camera: batch 1, the intake's square frame (:func:`softras.refine.estimate_viewpoint` of ``intake.mask``).
        intake: the picture's :class:`~softras.intake.IntakeResult` (crop box, mask, foreground source).
        settings: texture size, visibility ramps, padding. layout: default :func:`template_layout`.
    Returns:
        :class:`Bake` whose texture has ``layout``'s UVs and a (size, size, 3) uint8 image.
    """
    picture = _as_picture(picture)
    layout = layout or template_layout(mesh.num_faces)
    if layout.num_faces != mesh.num_faces:
        raise ValueError(f"the UV layout has {layout.num_faces} faces, the mesh {mesh.num_faces}")
    if camera.batch_size != 1:
        raise ValueError("bake_texture takes one camera")
    vertices, faces = mesh.vertices.float(), mesh.faces
    colors = mesh.vertex_colors if mesh.vertex_colors is not None else torch.full_like(vertices, 0.7)
    zsize = settings.zbuffer_size
    zbuf = zbuffer(camera.project(vertices[None]), faces, zsize, zsize).depth[0]
    lookup = _PictureLookup(picture, camera, intake, zbuf, settings)

    texels, f, b, sources = _texel_map(layout, settings.size, settings.padding)
    corners = faces[f]  # (N, 3)
    points = (b[..., None] * vertices[corners]).sum(1)
    fv = vertices[faces]
    normals = F.normalize(torch.linalg.cross(fv[:, 1] - fv[:, 0], fv[:, 2] - fv[:, 0], dim=1), dim=1)[f]
    mirror = torch.tensor([-1.0, 1.0, 1.0])
    w_direct, c_direct = lookup(points, normals)
    c_vertex = (b[..., None] * colors[corners]).sum(1)
    hidden = (w_direct < 1).nonzero().squeeze(1)  # only these need their mirror image
    w_mirror, c_mirror = lookup(points[hidden] * mirror, normals[hidden] * mirror)
    fallback = c_vertex.index_copy(0, hidden, w_mirror[:, None] * c_mirror + (1 - w_mirror[:, None]) * c_vertex[hidden])
    color = w_direct[:, None] * c_direct + (1 - w_direct[:, None]) * fallback

    size = settings.size
    image = torch.zeros(size * size, 3)
    image[texels] = color.clamp(0, 1)
    image = _apply_sources(image.view(size, size, 3), sources)
    image = torch.where((sources >= 0)[..., None], image, color.mean(0) if len(color) else 0.5)
    share_direct = float(w_direct.mean()) if len(f) else 0.0
    share_mirror = float(((1 - w_direct[hidden]) * w_mirror).sum() / max(1, len(f)))
    texture = Texture(layout.uv(), (image * 255).round().to(torch.uint8))
    return Bake(texture, share_direct, share_mirror, 1.0 - share_direct - share_mirror)


# ---------------------------------------------------------------------------------------------- the product path
@dataclass
class TextureOutcome:
    """What :func:`project_texture` did: ``mesh`` is the input mesh with a texture, or unchanged (vertex colours)
    with ``message`` saying why; ``camera`` (intake frame) and ``iou`` are the viewpoint used and its silhouette
    IoU against the mask, when one was found; ``bake`` the bake's details."""

    mesh: Mesh
    message: str | None = None
    camera: Camera | None = None
    iou: float | None = None
    bake: Bake | None = None


def viewpoint_iou(mesh: Mesh, camera: Camera, mask: torch.Tensor) -> float:
    """Silhouette IoU of ``mesh`` seen by ``camera`` (batch 1) against ``mask`` (S, S), both taken at 0.5."""
    with torch.no_grad():
        silhouette = render_silhouette(mesh.vertices, mesh.faces, camera, RasterSettings(mask.shape[-1]))
    return float(soft_iou((silhouette > 0.5).float(), (mask[None] > 0.5).float())[0])


def project_texture(mesh: Mesh, intake: IntakeResult, picture: np.ndarray | torch.Tensor,
                    camera: Camera | None = None, settings: BakeSettings = BakeSettings(),
                    azimuth_prior: torch.Tensor | None = None) -> TextureOutcome:
    """Texture a reconstruction from its own picture, or say why not and keep its vertex colours.

    Args:
        mesh: the reconstruction (object frame, vertex colours).
        intake: the picture's intake result (the generator's input came from it).
        picture: the original picture, (H, W, 3|4) uint8 or float straight sRGB (see :func:`bake_texture`).
        camera: the input viewpoint in the intake frame if known (e.g. refinement's ``cameras``), else estimated
            with :func:`softras.refine.estimate_viewpoint` against ``intake.mask``, weighed by ``azimuth_prior``
            (the generator's azimuth probabilities for the picture, :attr:`Reconstruction.azimuth_prior`) if given.
    """
    picture = _as_picture(picture)
    side = intake.crop_box[2] - intake.crop_box[0]
    if side < MIN_OBJECT_PIXELS:
        return TextureOutcome(mesh, f"picture too small for a texture: the object spans {side} px, fewer than "
                                    f"{MIN_OBJECT_PIXELS}; kept the vertex colours")
    if not bool((intake.mask >= 0.5).any()):
        return TextureOutcome(mesh, "mask empty: no foreground to take a texture from; kept the vertex colours")
    if camera is None:
        camera = estimate_viewpoint(mesh.vertices, mesh.faces, intake.mask, azimuth_prior=azimuth_prior)
    iou = viewpoint_iou(mesh, camera, intake.mask)
    if iou < MIN_VIEWPOINT_IOU:
        return TextureOutcome(mesh, f"viewpoint estimate failed: the mesh's silhouette matches the picture's with IoU "
                                    f"{iou:.2f} < {MIN_VIEWPOINT_IOU}; kept the vertex colours", camera, iou)
    bake = bake_texture(mesh, picture, camera, intake, settings)
    textured = Mesh(mesh.vertices, mesh.faces, mesh.vertex_colors, bake.texture)
    return TextureOutcome(textured, None, camera, iou, bake)
