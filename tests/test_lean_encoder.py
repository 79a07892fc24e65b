"""The lean encoder (GeneratorConfig.encoder_reduce) and scripts/research/distill_encoder.py, which starts one from a
trained generator."""

import dataclasses
import sys
from pathlib import Path

import torch

from softras.model import Generator, GeneratorConfig, load_weights, save_weights
from softras.train import TrainConfig

from conftest import TINY_MODEL

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts" / "research"))
import distill_encoder  # noqa: E402


def test_lean_encoder_cuts_the_first_fc_layer_and_round_trips(tmp_path):
    paper, lean = Generator(), Generator(GeneratorConfig(encoder_reduce=32))
    assert paper.encoder.fc[0].in_features == 256 * 8 * 8 and lean.encoder.fc[0].in_features == 32 * 8 * 8
    count = lambda m: sum(p.numel() for p in m.parameters())
    assert count(lean) < 0.55 * count(paper)
    path = save_weights(lean, tmp_path / "lean.pt")
    assert path.stat().st_size <= 30 * 2**20  # the limit for the shipped file (float16)
    loaded, _ = load_weights(path)
    assert loaded.cfg.encoder_reduce == 32
    image = torch.rand(2, 4, 64, 64)
    with torch.no_grad():
        assert torch.allclose(loaded(image)[0], lean.eval()(image)[0], atol=2e-2)


def test_distillation_copies_the_teacher_and_fits_the_new_layers(tiny_data):
    shapes, views = tiny_data
    cfg = TrainConfig.from_dict(dict(views=str(views), shapes=str(shapes), model=TINY_MODEL, fill_jitter=0.1))
    torch.manual_seed(0)
    teacher = Generator(cfg.model).eval()
    features, targets = distill_encoder.feature_bank(teacher, cfg, samples=40, seed=1, batch=16)
    assert features.shape == (40, 32, 4, 4) and targets.shape == (40, 64)
    student = distill_encoder.distill(teacher, 8, features, targets, steps=150, batch=40, lr=1e-2, log_every=1000)
    assert student.cfg == dataclasses.replace(teacher.cfg, encoder_reduce=8)
    for name, value in teacher.state_dict().items():  # every layer but the first FC is the teacher's
        if not name.startswith("encoder.fc.0."):
            assert torch.equal(student.state_dict()[name], value), name
    n_conv = len(teacher.encoder.conv)
    with torch.no_grad():
        before = Generator(student.cfg).eval()
        error = lambda m: float(((m.encoder.fc[0](m.encoder.conv[n_conv:](features).flatten(1)) - targets) ** 2).mean())
        assert error(student) < 0.2 * error(before)


def test_paired_comparison_of_weights(tiny_data, tiny_weights, tmp_path, monkeypatch, capsys):
    import compare_weights

    shapes, views = tiny_data
    other = save_weights(Generator(GeneratorConfig(**TINY_MODEL)), tmp_path / "other.pt")
    for b, same in ((tiny_weights, True), (other, False)):
        monkeypatch.setattr(sys, "argv", ["compare_weights.py", str(tiny_weights), str(b), "--views", str(views),
                                          "--data", str(shapes), "--views-per-model", "2", "--bootstrap", "50"])
        compare_weights.main()
        text = capsys.readouterr().out
        assert ("B - A: +0.0000, 95% bootstrap interval over models [+0.0000, +0.0000]" in text) == same, text
        assert "  ball " in text and "  box " in text
