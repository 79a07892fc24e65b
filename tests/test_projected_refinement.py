"""The Pixel2Mesh-style second stage (GeneratorConfig.projected_features) and training only some parts."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from softras.camera import Camera
from softras.inputs import generator_input
from softras.mesh import icosphere
from softras.model import Generator, GeneratorConfig, load_weights, save_weights
from softras.raster import RasterSettings, render_silhouette
from softras.train import TrainConfig, train

from conftest import TINY_MODEL

HEAD = dict(TINY_MODEL, viewpoint_bins=8, viewpoint_hidden=16)


def test_the_new_stage_starts_as_the_identity():
    torch.manual_seed(0)
    base = Generator(GeneratorConfig(**HEAD)).eval()
    staged = Generator(GeneratorConfig(**HEAD, projected_features=8)).eval()
    missing = staged.load_state_dict(base.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("refinement.") for k in missing)
    images = torch.rand(3, 4, 32, 32)
    with torch.no_grad():
        expected, _ = base(images)
        assert torch.equal(staged(images)[0], expected)
        assert torch.equal(staged.decode(staged.encode(images), images)[0], expected)  # maps computed by decode
        staged.refinement.mlp[-1].bias.fill_(1.0)
        moved = staged(images)[0]
    assert (moved - expected).abs().max() > 0.05 and moved.abs().max() <= 0.5


def test_the_new_stage_needs_a_viewpoint_head():
    with pytest.raises(ValueError, match="viewpoint head"):
        GeneratorConfig(**TINY_MODEL, projected_features=8)


def test_vertices_are_sampled_where_the_intake_puts_their_silhouette():
    """A pear (narrow top, wide bottom, off-centre) rendered by the standard camera and prepared by the intake: its
    vertices' sample points span the intake's silhouette box and lie on its silhouette (a mirrored or upside-down
    mapping would put the narrow top's points beside the wide bottom's silhouette)."""
    sphere = icosphere(3)
    v = sphere.vertices * 0.3
    v = v * torch.where(v[:, 1:2] > 0, torch.tensor([0.35, 1.2, 0.35]), torch.tensor([1.0, 0.8, 1.0]))
    v = v + torch.tensor([0.1, 0.05, -0.08])
    azimuth = torch.tensor([40.0])
    alpha = render_silhouette(v, sphere.faces, Camera.from_angles(azimuth=azimuth), RasterSettings(256, sigma=1e-6))[0]
    picture = np.zeros((256, 256, 4), np.uint8)
    picture[..., :3] = 200
    picture[..., 3] = (alpha.clamp(0, 1) * 255).round().byte().numpy()
    prepared = generator_input(picture, 64)[3]  # (64, 64) alpha as the generator sees it
    stage = Generator(GeneratorConfig(**dict(HEAD, image_size=64), projected_features=8)).refinement
    grid, axes = stage.sample_points(v[None], azimuth)  # (1, V, 2) in [-1, 1], x right, y down
    pixels = (grid[0] + 1) / 2 * 64
    rows, cols = torch.nonzero(prepared > 0.5, as_tuple=True)
    assert torch.allclose(pixels.amin(0), torch.stack([cols.min(), rows.min()]).float(), atol=1.5)
    assert torch.allclose(pixels.amax(0), torch.stack([cols.max(), rows.max()]).float() + 1, atol=1.5)
    sampled = F.grid_sample(prepared[None, None], grid[:, :, None, :], align_corners=False)[0, 0, :, 0]
    assert sampled.quantile(0.05) > 0.25 and sampled.mean() > 0.7
    flipped = F.grid_sample(prepared[None, None], (grid * torch.tensor([1.0, -1.0]))[:, :, None, :], align_corners=False)
    assert flipped.quantile(0.05) < 0.05  # the check above can fail
    assert torch.allclose(axes[0] @ axes[0].T, torch.eye(3), atol=1e-6)  # orthonormal; forward: from the eye to the origin
    assert torch.allclose(axes[0, 2], -torch.nn.functional.normalize(Camera.from_angles(azimuth=azimuth).eye, dim=-1)[0], atol=1e-6)


def test_the_new_stage_moves_vertices_along_the_camera_axes():
    """A last layer that moves every vertex right by 0.1 * tanh(1) moves it along the camera's right axis, which
    turns with the azimuth."""
    stage = Generator(GeneratorConfig(**HEAD, projected_features=8)).refinement
    with torch.no_grad():
        stage.mlp[-1].bias.copy_(torch.tensor([1.0, 0.0, 0.0]))
    vertices = icosphere(1).vertices[None].repeat(2, 1, 1) * 0.2
    maps = [torch.rand(2, c, 32 // 2 ** (i + 1), 32 // 2 ** (i + 1)) for i, c in enumerate(TINY_MODEL["conv_channels"])]
    azimuth = torch.tensor([0.0, 90.0])
    moved = stage(vertices, maps, azimuth) - vertices
    right = torch.stack(Camera.from_angles(azimuth=azimuth).basis(), dim=1)[:, 0]  # (2, 3)
    assert torch.allclose(moved, 0.1 * math.tanh(1.0) * right[:, None, :].expand_as(moved), atol=1e-6)
    assert not torch.allclose(right[0], right[1], atol=0.5)


def _config(tiny_data, tmp_path, **overrides) -> TrainConfig:
    shapes, views = tiny_data
    raw = dict(views=str(views), shapes=str(shapes), out_dir=str(tmp_path / "run"), steps=3, batch_size=4, lr=1e-2,
               sigma=1e-4, checkpoint_every=1, validate_every=0, device="cpu",
               model=dict(HEAD, projected_features=8), train_parts=["refinement"])
    raw.update(overrides)
    return TrainConfig.from_dict(raw)


def test_training_only_the_new_stage_leaves_the_rest_as_it_was(tiny_data, tmp_path):
    torch.manual_seed(1)
    start = save_weights(Generator(GeneratorConfig(**HEAD)).eval(), tmp_path / "start.pt")  # no second stage
    train(_config(tiny_data, tmp_path, init_weights=str(start)), log=lambda m: None)
    before = load_weights(start)[0].state_dict()
    after = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert [s["train_parts"] for s in after["sessions"]] == [["refinement"]]
    state = after["model"]
    for name, tensor in before.items():  # weights and BatchNorm statistics alike
        assert torch.equal(state[name].to(tensor.dtype), tensor), name
    assert any(state[k].abs().sum() > 0 for k in ("refinement.mlp.4.weight", "refinement.mlp.4.bias"))


def test_train_parts_must_name_parts_of_the_generator(tiny_data, tmp_path):
    with pytest.raises(ValueError, match="lacks"):
        train(_config(tiny_data, tmp_path, train_parts=["decoder"]), log=lambda m: None)
