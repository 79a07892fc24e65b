"""The generator's viewpoint head: azimuth probabilities from the encoder's code, stored with the weights, trained by
scripts/train_viewpoint_head.py with the encoder frozen, and used by the reconstruction's viewpoint estimates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from softras.intake import IntakeSettings, prepare_array
from softras.losses import azimuth_targets
from softras.model import Generator, GeneratorConfig, load_weights, save_weights
from softras.reconstruct import Reconstructor

from conftest import TINY_MODEL

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import train_viewpoint_head as head_script  # noqa: E402


@pytest.fixture(scope="module")
def head_weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = Generator(GeneratorConfig(**TINY_MODEL, viewpoint_bins=8, viewpoint_hidden=16))
    return save_weights(model, tmp_path_factory.mktemp("head") / "head.pt")


def test_head_reads_the_code_and_leaves_the_mesh_alone(head_weights):
    model, _ = load_weights(head_weights)
    images = torch.rand(3, 4, 32, 32)
    code = model.encode(images)
    p = model.azimuth_probabilities(code)
    assert p.shape == (3, 8) and p.dtype == torch.float32
    assert torch.allclose(p.sum(1), torch.ones(3)) and bool((p >= 0).all())
    vertices, colors = model(images)
    assert torch.equal(vertices, model.decode(code, images)[0]) and torch.equal(colors, model.decode(code, images)[1])
    plain = Generator(GeneratorConfig(**TINY_MODEL))
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("viewpoint.")})
    plain.eval()
    assert plain.azimuth_probabilities(plain.encode(images)) is None
    assert torch.equal(plain(images)[0], vertices)  # the head changes nothing else


def test_reconstruction_carries_the_prior(head_weights, tiny_weights):
    picture = np.zeros((48, 48, 4), np.uint8)
    picture[10:40, 14:34] = (200, 60, 40, 255)
    intake = prepare_array(picture, settings=IntakeSettings(size=32))
    with_head = Reconstructor(head_weights).reconstruct_intake(intake, refine_steps=2)
    assert with_head.azimuth_prior.shape == (8,) and abs(float(with_head.azimuth_prior.sum()) - 1) < 1e-5
    assert Reconstructor(tiny_weights).reconstruct_intake(intake).azimuth_prior is None


def test_soft_targets_and_report():
    azimuths = torch.tensor([0.0, 100.0, 356.0])
    t = azimuth_targets(azimuths, 24, 0.5)
    assert torch.allclose(t.sum(1), torch.ones(3))
    assert t.argmax(1).tolist() == [0, 7, 0]  # 100 degrees is nearest bin 7 (105); 356 wraps to bin 0 (360)
    perfect = head_script.report(azimuth_targets(torch.tensor([30.0, 210.0]), 24, 0.5), torch.tensor([30.0, 210.0]))
    assert perfect["top1"] == 1.0 and perfect["over_135"] == 0.0
    backwards = head_script.report(azimuth_targets(torch.tensor([210.0]), 24, 0.5), torch.tensor([30.0]))
    assert backwards["top1"] == 0.0 and backwards["over_135"] == 1.0


def test_script_adds_a_trained_head_and_keeps_the_rest(tiny_data, tiny_weights, tmp_path):
    _, views = tiny_data
    out = tmp_path / "with_head.pt"
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "train_viewpoint_head.py"), "--weights", str(tiny_weights),
                          "--views", str(views), "--out", str(out), "--bins", "8", "--hidden", "16", "--copies", "1",
                          "--epochs", "10"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    model, metadata = load_weights(out)
    original, _ = load_weights(tiny_weights)
    assert model.cfg.viewpoint_bins == 8 and "top1" in metadata["viewpoint_head"]["validation_elevation_30"]
    for name, tensor in original.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name


def test_training_teaches_the_head_without_touching_the_encoder(tiny_data, tiny_weights, tmp_path):
    from softras.data import ViewSet, sample_two_views
    from softras.losses import FlattenLoss, LaplacianLoss
    from softras.raster import RasterSettings
    from softras.train import TrainConfig, train, training_losses

    shapes, views = tiny_data
    raw = dict(views=str(views), shapes=str(shapes), out_dir=str(tmp_path / "run"), steps=2, batch_size=4, lr=1e-3,
               sigma=1e-4, checkpoint_every=1, validate_every=0, device="cpu", export=str(tmp_path / "w.pt"),
               init_weights=str(tiny_weights), model=dict(TINY_MODEL, viewpoint_bins=8, viewpoint_hidden=16))
    cfg = TrainConfig.from_dict(raw)
    model = Generator(cfg.model)
    batch = sample_two_views(ViewSet(views, "train"), 4, torch.Generator().manual_seed(0), 32, mirror=True)
    assert torch.equal(batch.azimuths_a.abs() % 45, torch.zeros(4))  # the tiny views' azimuths, negated if mirrored
    settings, lap, flat = RasterSettings(32, sigma=cfg.sigma), LaplacianLoss(model.faces, 42), FlattenLoss(model.faces)
    grads = []
    for weight in (0.0, 1.0):
        model.zero_grad()
        losses = training_losses(model, model.faces, batch, settings, lap, flat, dataclass_replace(cfg, viewpoint_weight=weight))
        assert "viewpoint" in losses and losses["viewpoint"].item() > 0
        losses["total"].backward()
        grads.append([p.grad.clone() for p in model.encoder.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*grads))  # the head reads the code detached
    assert model.viewpoint.mlp[0].weight.grad.abs().sum() > 0
    # weights without a head (tiny_weights) start the configured one; the run exports it and resumes from its checkpoint
    train(cfg, log=lambda m: None)
    exported, _ = load_weights(tmp_path / "w.pt")
    assert exported.cfg.viewpoint_bins == 8
    train(dataclass_replace(cfg, steps=3), log=lambda m: None)


def dataclass_replace(cfg, **changes):
    import dataclasses

    return dataclasses.replace(cfg, **changes)


def test_a_checkpoint_from_before_the_head_resumes(tiny_data, tmp_path):
    """Checkpoints written before GeneratorConfig had the viewpoint fields lack them; they take their defaults."""
    from softras.train import TrainConfig, train

    shapes, views = tiny_data
    cfg = TrainConfig.from_dict(dict(views=str(views), shapes=str(shapes), out_dir=str(tmp_path), steps=1, batch_size=4,
                                     sigma=1e-4, checkpoint_every=1, validate_every=0, device="cpu", model=TINY_MODEL))
    train(cfg, log=lambda m: None)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    for key in ("viewpoint_bins", "viewpoint_hidden"):
        del state["config"]["model"][key]
    torch.save(state, tmp_path / "checkpoint.pt")
    train(dataclass_replace(cfg, steps=2), log=lambda m: None)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 2


def test_a_share_of_the_azimuth_gradient_reaches_the_encoder(tiny_data):
    """viewpoint_encoder_share scales the head's gradient into the encoder: 0 detaches it, s gives s times that of 1."""
    from softras.data import ViewSet, sample_two_views
    from softras.losses import FlattenLoss, LaplacianLoss
    from softras.raster import RasterSettings
    from softras.train import TrainConfig, training_losses

    shapes, views = tiny_data
    raw = dict(views=str(views), shapes=str(shapes), out_dir="unused", sigma=1e-4, device="cpu",
               model=dict(TINY_MODEL, viewpoint_bins=8, viewpoint_hidden=16))
    cfg = TrainConfig.from_dict(raw)
    torch.manual_seed(0)
    model = Generator(cfg.model).eval()  # BatchNorm statistics fixed: every pass computes the same function
    batch = sample_two_views(ViewSet(views, "train"), 4, torch.Generator().manual_seed(0), 32, mirror=True)
    settings, lap, flat = RasterSettings(32, sigma=cfg.sigma), LaplacianLoss(model.faces, 42), FlattenLoss(model.faces)

    def encoder_gradient(share: float) -> torch.Tensor:
        model.zero_grad()
        losses = training_losses(model, model.faces, batch, settings, lap, flat,
                                 dataclass_replace(cfg, viewpoint_encoder_share=share))
        losses["total"].backward()
        return torch.cat([p.grad.flatten() for p in model.encoder.parameters()])

    detached, full, part = encoder_gradient(0.0), encoder_gradient(1.0), encoder_gradient(0.25)
    assert (full - detached).norm() > 1e-3 * full.norm()
    assert torch.allclose(part - detached, 0.25 * (full - detached), atol=1e-6 * float(full.abs().max()) + 1e-9)
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="viewpoint_encoder_share"):
            TrainConfig.from_dict(dict(raw, viewpoint_encoder_share=bad))
