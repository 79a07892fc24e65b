"""Triangle meshes, the icosphere template and the mesh topology the losses need."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["Mesh", "Texture", "icosphere", "subdivide", "edges", "adjacent_face_pairs"]


@dataclass
class Texture:
    """A colour texture and where each face corner samples it.

    Attributes:
        uv: (F, 3, 2) float32 texture coordinates of every face corner, in [0, 1]: u to the right, v *down*, so
            (0, 0) is the image's top-left corner and texel (row i, column j) has its centre at
            ((j + 0.5) / W, (i + 0.5) / H) (glTF's convention; OBJ and Blender store 1 - v).
        image: (H, W, 3) uint8 sRGB, row 0 at the top.
    """

    uv: torch.Tensor
    image: torch.Tensor

    def __post_init__(self) -> None:
        self.uv = torch.as_tensor(self.uv, dtype=torch.float32)
        self.image = torch.as_tensor(self.image)
        if self.uv.dim() != 3 or self.uv.shape[1:] != (3, 2):
            raise ValueError(f"uv must have shape (F, 3, 2), got {tuple(self.uv.shape)}")
        if not bool(torch.isfinite(self.uv).all()):
            raise ValueError("uv must be finite")
        if self.image.dtype != torch.uint8 or self.image.dim() != 3 or self.image.shape[2] != 3 or min(self.image.shape[:2]) < 1:
            raise ValueError(f"image must be (H, W, 3) uint8, got {tuple(self.image.shape)} {self.image.dtype}")


@dataclass
class Mesh:
    """One triangle mesh.

    Attributes:
        vertices: (V, 3) float32, object frame (Y-up).
        faces: (F, 3) int64 vertex indices, counter-clockwise seen from outside where orientation is known.
        vertex_colors: (V, 3) float32 sRGB in [0, 1], or None.
        texture: a :class:`Texture` with one UV triangle per face, or None.
    """

    vertices: torch.Tensor
    faces: torch.Tensor
    vertex_colors: torch.Tensor | None = None
    texture: Texture | None = None

    def __post_init__(self) -> None:
        self.vertices = torch.as_tensor(self.vertices, dtype=torch.float32)
        self.faces = torch.as_tensor(self.faces, dtype=torch.int64)
        if self.vertices.dim() != 2 or self.vertices.shape[1] != 3:
            raise ValueError(f"vertices must have shape (V, 3), got {tuple(self.vertices.shape)}")
        if self.faces.dim() != 2 or self.faces.shape[1] != 3:
            raise ValueError(f"faces must have shape (F, 3), got {tuple(self.faces.shape)}")
        if self.faces.numel() and (int(self.faces.min()) < 0 or int(self.faces.max()) >= self.vertices.shape[0]):
            raise ValueError(f"faces index vertices out of range [0, {self.vertices.shape[0]})")
        if not bool(torch.isfinite(self.vertices).all()):
            raise ValueError("vertices must be finite (found NaN or inf)")
        if self.vertex_colors is not None:
            self.vertex_colors = torch.as_tensor(self.vertex_colors, dtype=torch.float32)
            if self.vertex_colors.shape != self.vertices.shape:
                raise ValueError(f"vertex_colors must have shape {tuple(self.vertices.shape)}, got {tuple(self.vertex_colors.shape)}")
        if self.texture is not None and self.texture.uv.shape[0] != self.faces.shape[0]:
            raise ValueError(f"texture has UVs for {self.texture.uv.shape[0]} faces, the mesh has {self.faces.shape[0]}")

    @property
    def num_vertices(self) -> int:
        return self.vertices.shape[0]

    @property
    def num_faces(self) -> int:
        return self.faces.shape[0]


def icosphere(level: int = 3, radius: float = 1.0) -> Mesh:
    """Icosphere by repeated 4-way subdivision of an icosahedron, faces oriented outward.

    Level L has ``10 * 4**L + 2`` vertices and ``20 * 4**L`` faces (level 3: 642 vertices, 1280 faces).
    Vertex order is deterministic, so a generator's per-vertex outputs stay tied to the same template.
    """
    if level < 0:
        raise ValueError(f"level must be >= 0, got {level}")
    t = (1.0 + math.sqrt(5.0)) / 2.0
    verts = [(-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0), (0, -1, t), (0, 1, t),
             (0, -1, -t), (0, 1, -t), (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1)]
    faces = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4), (11, 10, 2),
             (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9), (4, 9, 5),
             (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1)]
    v = torch.nn.functional.normalize(torch.tensor(verts, dtype=torch.float64), dim=1)
    f = torch.tensor(faces, dtype=torch.int64)
    for _ in range(level):
        count = v.shape[0]
        v, f = subdivide(v, f)
        v = torch.cat([v[:count], torch.nn.functional.normalize(v[count:], dim=1)])
    return Mesh((v * radius).float(), f)


def subdivide(vertices: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split every triangle into four at its edges' midpoints (the shape does not change).

    vertices: (V, 3) float, any frame; faces: (F, 3) int64. Returns ``(vertices, faces)``: (V + E, 3), the input
    vertices first, in order, then the midpoints of the E unique edges in the order of :func:`edges`; (4F, 3) int64,
    each face's corner triangles and then its middle one, oriented as the face. An icosphere of level L subdivided
    is the level L + 1 icosphere before its new vertices are pushed onto the sphere, so per-vertex data of a level-L
    template extends to level L + 1 by averaging over each edge (``(x[a] + x[b]) / 2`` for edge (a, b)).
    """
    e = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], dim=0).sort(dim=1).values
    unique, inverse = torch.unique(e, dim=0, return_inverse=True)  # as edges(faces), with each face edge's row
    middle = (inverse + vertices.shape[0]).reshape(3, -1).T  # midpoints of edges (01, 12, 20) per face
    a, b, c = faces.unbind(1)
    ab, bc, ca = middle.unbind(1)
    new_faces = torch.cat([torch.stack(x, 1) for x in ((a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca))], dim=0)
    return torch.cat([vertices, (vertices[unique[:, 0]] + vertices[unique[:, 1]]) / 2]), new_faces


def sample_surface(vertices: torch.Tensor, faces: torch.Tensor, count: int,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """``count`` points spread uniformly by area over a triangle mesh's surface.

    vertices: (V, 3) float, any frame; faces: (F, 3) int64. Returns (count, 3) points in the vertices' frame and
    dtype, differentiable in ``vertices`` (which faces are drawn is not); deterministic for a given ``generator``.
    A mesh of zero area raises ValueError.
    """
    corners = vertices[faces]
    area = torch.linalg.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]).norm(dim=1).detach()
    if not bool(area.sum() > 0):
        raise ValueError("cannot sample the surface of a mesh with zero area")
    chosen = corners[torch.multinomial(area, count, replacement=True, generator=generator)]
    u, v = torch.rand(2, count, 1, generator=generator, dtype=vertices.dtype, device=vertices.device)
    outside = u + v > 1  # reflect into the triangle
    u, v = torch.where(outside, 1 - u, u), torch.where(outside, 1 - v, v)
    return chosen[:, 0] + u * (chosen[:, 1] - chosen[:, 0]) + v * (chosen[:, 2] - chosen[:, 0])


def edges(faces: torch.Tensor) -> torch.Tensor:
    """Unique undirected edges (E, 2) int64, each sorted ascending, of faces (F, 3)."""
    e = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], dim=0).sort(dim=1).values
    return torch.unique(e, dim=0)


def adjacent_face_pairs(faces: torch.Tensor) -> torch.Tensor:
    """Pairs of faces sharing an edge, as (E, 4) int64 rows ``(v0, v1, a, b)``.

    ``(v0, v1)`` is the shared edge, ``a`` and ``b`` the vertices opposite to it in the two faces. Edges shared
    by other than exactly two faces (borders, non-manifold edges) are left out.
    """
    f = faces
    e = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]], dim=0)
    opposite = torch.cat([f[:, 2], f[:, 0], f[:, 1]], dim=0)
    e_sorted = e.sort(dim=1).values
    uniq, inverse, counts = torch.unique(e_sorted, dim=0, return_inverse=True, return_counts=True)
    order = torch.argsort(inverse, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    manifold = counts == 2
    first = order[starts[manifold]]
    second = order[starts[manifold] + 1]
    return torch.stack([uniq[manifold, 0], uniq[manifold, 1], opposite[first], opposite[second]], dim=1)
