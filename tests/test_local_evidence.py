"""The local evidence branch (softras.model.LocalEvidence): vertices attend over image features."""

import dataclasses

import pytest
import torch

from softras.model import Generator, GeneratorConfig, load_weights, save_weights
from softras.train import train

from conftest import TINY_MODEL
from test_generator import tiny_config

LOCAL = dict(TINY_MODEL, local_features=16, local_heads=4)


def test_a_generator_gains_the_branch_without_changing_its_predictions():
    torch.manual_seed(0)
    plain = Generator(GeneratorConfig(**TINY_MODEL)).eval()
    local = Generator(GeneratorConfig(**LOCAL)).eval()
    missing, unexpected = local.load_state_dict(plain.state_dict(), strict=False)
    assert unexpected == [] and missing and all(k.startswith("local.") for k in missing)
    images = torch.rand(3, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(plain(images)[0], local(images)[0])


def test_the_branch_learns_and_then_reads_the_image_where_the_code_does_not():
    torch.manual_seed(0)
    model = Generator(GeneratorConfig(**LOCAL))
    images = torch.rand(4, 4, 32, 32)
    optimizer = torch.optim.Adam(model.local.parameters(), lr=1e-2)
    for _ in range(5):  # pull the vertices towards a point: the zero-initialised last layer moves first
        vertices, _ = model(images)
        loss = (vertices - 0.3).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert model.local.out[-1].weight.abs().sum() > 0
    model.eval()
    code = model.encode(images[:1])
    other = images[:1].clone()
    other[..., :8, :8] = 1 - other[..., :8, :8]  # one corner of the picture changed, the code held fixed
    with torch.no_grad():
        a, _ = model.decode(code, images[:1])
        b, _ = model.decode(code, other)
    assert not torch.allclose(a, b)


def test_config_checks_and_weights_round_trip(tmp_path):
    with pytest.raises(ValueError, match="local_features must be divisible"):
        GeneratorConfig(**dict(LOCAL, local_features=10))
    model = Generator(GeneratorConfig(**LOCAL))
    loaded, _ = load_weights(save_weights(model, tmp_path / "w.pt", half=False))
    assert loaded.cfg.local_features == 16
    assert torch.equal(loaded.local.vertex, model.local.vertex)


def test_training_adds_the_branch_to_weights_without_it(tiny_data, tmp_path):
    plain_weights = tmp_path / "plain.pt"
    train(tiny_config(tiny_data, tmp_path / "plain", steps=1, export=str(plain_weights)), log=lambda m: None)
    cfg = tiny_config(tiny_data, tmp_path / "local", steps=0, init_weights=str(plain_weights), model=LOCAL)
    train(cfg, log=lambda m: None)
    saved = torch.load(tmp_path / "local" / "checkpoint.pt", weights_only=True)
    model = Generator(GeneratorConfig(**LOCAL))
    model.load_state_dict(saved["model"])
    plain, _ = load_weights(plain_weights)
    images = torch.rand(2, 4, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model.eval()(images)[0], plain(images)[0], atol=1e-6)
    other = dataclasses.replace(GeneratorConfig(**LOCAL), conv_channels=(8, 16, 16))
    with pytest.raises(ValueError, match="another model config"):
        train(tiny_config(tiny_data, tmp_path / "bad", steps=0, init_weights=str(plain_weights),
                          model=dataclasses.asdict(other)), log=lambda m: None)


def test_the_branch_can_learn_at_its_own_rate(tiny_data, tmp_path):
    from softras.train import _param_groups

    cfg = tiny_config(tiny_data, tmp_path / "run", steps=2, model=LOCAL, local_lr=5e-3)
    model = Generator(cfg.model)
    groups = _param_groups(model, cfg)
    assert [g["lr"] for g in groups] == [cfg.lr, 5e-3]
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in model.local.parameters()}
    train(cfg, log=lambda m: None)
    saved = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert [g["lr"] for g in saved["optimizer"]["param_groups"]] == [cfg.lr, 5e-3]
    train(tiny_config(tiny_data, tmp_path / "run", steps=3, model=LOCAL, local_lr=1e-3), log=lambda m: None)  # resumes
    saved = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert saved["step"] == 3 and [g["lr"] for g in saved["optimizer"]["param_groups"]] == [cfg.lr, 1e-3]
    with pytest.raises(ValueError, match="local_lr needs"):
        train(tiny_config(tiny_data, tmp_path / "plain", steps=1, local_lr=1e-3), log=lambda m: None)
