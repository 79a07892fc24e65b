import math

import pytest
import torch

from softras.mesh import edges, icosphere, subdivide


def _signed_volume(vertices: torch.Tensor, faces: torch.Tensor) -> float:
    a, b, c = vertices[faces].unbind(1)
    return float((a * torch.linalg.cross(b, c)).sum() / 6)


def _area(vertices: torch.Tensor, faces: torch.Tensor) -> float:
    a, b, c = vertices[faces].unbind(1)
    return float(torch.linalg.cross(b - a, c - a).norm(dim=1).sum() / 2)


@pytest.mark.parametrize("level", [0, 1, 3])
def test_icosphere_counts_and_outward_faces(level):
    sphere = icosphere(level, radius=2.0)
    assert sphere.num_vertices == 10 * 4**level + 2 and sphere.num_faces == 20 * 4**level
    assert torch.allclose(sphere.vertices.norm(dim=1), torch.full((sphere.num_vertices,), 2.0), atol=1e-5)
    centres = sphere.vertices[sphere.faces].mean(1)
    a, b, c = sphere.vertices[sphere.faces].unbind(1)
    assert bool(((torch.linalg.cross(b - a, c - a) * centres).sum(1) > 0).all())


def test_subdivide_keeps_the_shape_and_orientation():
    cube = torch.tensor([[x, y, z] for x in (-1.0, 1.0) for y in (-1.0, 1.0) for z in (-1.0, 1.0)])
    faces = torch.tensor([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                          [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    vertices, fine = subdivide(cube, faces)
    unique = edges(faces)
    assert vertices.shape == (8 + len(unique), 3) and fine.shape == (48, 3)
    assert torch.equal(vertices[:8], cube)
    assert torch.equal(vertices[8:], (cube[unique[:, 0]] + cube[unique[:, 1]]) / 2)
    assert math.isclose(_signed_volume(vertices, fine), _signed_volume(cube, faces), rel_tol=1e-6)
    assert math.isclose(_area(vertices, fine), 24.0, rel_tol=1e-6)
    assert len(edges(fine)) == 2 * len(unique) + 3 * len(faces)  # every edge split, three new edges per face
    # each fine face lies in its parent's plane, facing the same way
    parent = faces.repeat(4, 1)
    normal = lambda v, f: torch.linalg.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    assert torch.allclose(torch.nn.functional.normalize(normal(vertices, fine), dim=1),
                          torch.nn.functional.normalize(normal(cube, parent), dim=1), atol=1e-6)


def test_subdividing_an_icosphere_and_pushing_new_vertices_out_is_the_next_level():
    coarse = icosphere(2)
    vertices, faces = subdivide(coarse.vertices.double(), coarse.faces)
    vertices[coarse.num_vertices:] = torch.nn.functional.normalize(vertices[coarse.num_vertices:], dim=1)
    finer = icosphere(3)
    assert torch.equal(faces, finer.faces)
    assert torch.allclose(vertices.float(), finer.vertices, atol=1e-6)
