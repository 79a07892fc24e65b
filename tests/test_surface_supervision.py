"""3D supervision: points on the true surface (softras.mesh.sample_surface, softras.data.surface_samples), the
Chamfer distance (softras.losses.chamfer_distance) and its term in training (TrainConfig.surface_weight)."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from softras.data import Shapes, ViewSet, sample_two_views, surface_samples
from softras.losses import FlattenLoss, LaplacianLoss, chamfer_distance
from softras.mesh import icosphere, sample_surface, vertices_and_face_centroids
from softras.model import Generator
from softras.raster import RasterSettings
from softras.train import TrainConfig, train, training_losses
from softras.voxelize import voxel_iou, voxelize

from conftest import TINY_MODEL, _box


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


def test_vertices_and_face_centroids():
    vertices = torch.tensor([[0.0, 0, 0], [3, 0, 0], [0, 3, 0], [0, 0, 3]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    points = vertices_and_face_centroids(vertices, faces)
    assert torch.equal(points, torch.cat([vertices, torch.tensor([[1.0, 1, 0], [0, 1, 1]])]))
    batched = vertices_and_face_centroids(torch.stack([vertices, 2 * vertices]), faces)
    assert batched.shape == (2, 6, 3) and torch.equal(batched[1], 2 * points)


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


def test_a_sphere_fitted_by_chamfer_distance_takes_the_box_shape():
    """What the training term asks of the shape: vertices and face centroids pulled onto the true surface turn the
    template into the box, scored as the evaluation scores a reconstruction."""
    v, f = _box(0.4, 1.0, 0.4)
    box_v, box_f = torch.from_numpy(v), torch.from_numpy(f.astype(np.int64))
    target = sample_surface(box_v, box_f, 1000, torch.Generator().manual_seed(0))[None]
    sphere = icosphere(2, 0.3)
    offsets = torch.zeros_like(sphere.vertices, requires_grad=True)
    optimizer = torch.optim.Adam([offsets], lr=0.01)
    truth = voxelize(box_v, box_f)
    before = voxel_iou(voxelize(sphere.vertices, sphere.faces), truth)
    for _ in range(150):
        loss = chamfer_distance(vertices_and_face_centroids(sphere.vertices + offsets, sphere.faces)[None], target).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = voxel_iou(voxelize((sphere.vertices + offsets).detach(), sphere.faces), truth)
    assert after > 0.7 and after > before + 0.2


def test_surface_samples_per_view_set_model(tiny_data):
    shapes_path, views_path = tiny_data
    shapes, views = Shapes.load(shapes_path), ViewSet(views_path, "train")
    bank = surface_samples(shapes, views.model_index, 64, seed=3)
    assert bank.shape == (views.num_models, 64, 3) and bank.dtype == torch.float32
    assert torch.equal(bank, surface_samples(shapes, views.model_index, 64, seed=3))
    for k, i in enumerate(views.model_index):  # each model's points lie within its own bounding box, touching it
        vertices = shapes.mesh(int(i))[0].vertices
        assert torch.all(bank[k] >= vertices.min(0).values - 1e-6) and torch.all(bank[k] <= vertices.max(0).values + 1e-6)
    with pytest.raises(ValueError, match="3D supervision needs every model's shape"):
        surface_samples(shapes, np.array([0, -1]), 8)


def test_batches_carry_surface_points_mirrored_with_their_objects(tiny_data):
    shapes_path, views_path = tiny_data
    views = ViewSet(views_path, "train")
    bank = surface_samples(Shapes.load(shapes_path), views.model_index, 32)
    plain = sample_two_views(views, 8, torch.Generator().manual_seed(5), 32, mirror=True)
    batch = sample_two_views(views, 8, torch.Generator().manual_seed(5), 32, mirror=True, surfaces=bank, surface_points=16)
    assert plain.surface is None and batch.surface.shape == (8, 16, 3)
    assert torch.equal(plain.inputs, batch.inputs) and torch.equal(plain.models, batch.models)  # other draws unchanged
    assert batch.mirrored.any() and not batch.mirrored.all()
    for k in range(8):
        points = batch.surface[k].clone()
        if batch.mirrored[k]:
            points[:, 0] = -points[:, 0]
        own = bank[batch.models[k]]
        assert (points[:, None] - own[None]).abs().sum(-1).min(1).values.max() == 0  # drawn from the model's own points


def test_the_surface_term_enters_the_training_loss(tiny_data, tmp_path):
    shapes_path, views_path = tiny_data
    raw = dict(views=str(views_path), shapes=str(shapes_path), out_dir=str(tmp_path), steps=2, batch_size=4,
               sigma=1e-4, checkpoint_every=1, validate_every=0, device="cpu", model=TINY_MODEL, surface_weight=3.0,
               surface_points=16)
    cfg = TrainConfig.from_dict(raw)
    torch.manual_seed(0)
    model = Generator(cfg.model).eval()
    views = ViewSet(views_path, "train")
    bank = surface_samples(Shapes.load(shapes_path), views.model_index, 32)
    batch = sample_two_views(views, 4, torch.Generator().manual_seed(0), 32, surfaces=bank, surface_points=16)
    settings, lap, flat = RasterSettings(32, sigma=cfg.sigma), LaplacianLoss(model.faces, 42), FlattenLoss(model.faces)
    with torch.no_grad():
        with_term = training_losses(model, model.faces, batch, settings, lap, flat, cfg)
        without = training_losses(model, model.faces, replace(batch, surface=None), settings, lap, flat, cfg)
    assert "surface" not in without and float(with_term["surface"]) > 0
    assert torch.allclose(with_term["total"] - without["total"], 3.0 * with_term["surface"])

    train(cfg, log=lambda m: None)  # a run with the term logs it and records its weight in the ledger of runs
    logged = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [h["step"] for h in logged] == [1, 2] and all(h["surface"] > 0 for h in logged)
    runs = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["runs"]
    assert runs[-1]["surface_weight"] == 3.0
    for bad in (dict(surface_weight=-1.0), dict(surface_points=0)):
        with pytest.raises(ValueError, match="surface_weight"):
            TrainConfig.from_dict(dict(raw, **bad))
