"""Points on a mesh's surface (softras.mesh.sample_surface) and the Chamfer distance (softras.losses.chamfer_distance),
with which scripts/research/representation_ceilings.py fits templates to shapes."""

import pytest
import torch

from softras.losses import chamfer_distance
from softras.mesh import sample_surface


def test_surface_points_lie_on_the_triangles_in_proportion_to_their_area():
    # two triangles in the z = 0 plane: one of area 0.5 (x in [0, 1]), one of area 1.5 (x in [2, 5])
    vertices = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [2, 0, 0], [5, 0, 0], [2, 1, 0]])
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
    points = sample_surface(vertices, faces, 4000, torch.Generator().manual_seed(0))
    assert points.shape == (4000, 3) and torch.all(points[:, 2] == 0)
    first = points[:, 0] <= 1
    assert abs(float(first.float().mean()) - 0.25) < 0.03
    assert torch.all(points[first, 0] + points[first, 1] <= 1 + 1e-6) and torch.all(points >= -1e-6)
    second = points[~first]
    assert torch.all((second[:, 0] - 2) / 3 + second[:, 1] <= 1 + 1e-6)
    again = sample_surface(vertices, faces, 4000, torch.Generator().manual_seed(0))
    assert torch.equal(points, again)


def test_surface_points_follow_the_vertices():
    vertices = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]], requires_grad=True)
    points = sample_surface(vertices, torch.tensor([[0, 1, 2]]), 10, torch.Generator().manual_seed(1))
    points.sum().backward()
    assert torch.allclose(vertices.grad.sum(0), torch.full((3,), 10.0))  # barycentric weights sum to 1 per point
    with pytest.raises(ValueError, match="zero area"):
        sample_surface(torch.zeros(3, 3), torch.tensor([[0, 1, 2]]), 5)


def test_chamfer_distance_values_and_gradient():
    a = torch.tensor([[[0.0, 0, 0]]])
    b = torch.tensor([[[1.0, 0, 0], [0, 2, 0]]])
    assert torch.allclose(chamfer_distance(a, b), torch.tensor([1.0 + (1.0 + 4.0) / 2]))
    assert torch.allclose(chamfer_distance(b, b), torch.zeros(1))
    # the gradient is that of the distances to the nearest neighbours, as through a plain min
    torch.manual_seed(0)
    p, t = torch.randn(2, 30, 3, requires_grad=True), torch.randn(2, 20, 3, requires_grad=True)
    chamfer_distance(p, t).sum().backward()
    got = p.grad.clone(), t.grad.clone()
    p.grad, t.grad = None, None
    d = torch.cdist(p, t).square()
    (d.min(2).values.mean(1) + d.min(1).values.mean(1)).sum().backward()
    assert torch.allclose(got[0], p.grad, atol=1e-5) and torch.allclose(got[1], t.grad, atol=1e-5)
    with pytest.raises(ValueError, match="points and targets"):
        chamfer_distance(torch.zeros(2, 3, 3), torch.zeros(1, 3, 3))
