"""scripts/compare_weights.py: the paired comparison behind every weights decision (docs/notes/)."""

import re
import sys
from pathlib import Path

import pytest
import torch

from conftest import TINY_MODEL
from softras.data import Shapes, ViewSet
from softras.evaluate import evaluate
from softras.model import Generator, GeneratorConfig, load_weights, save_weights

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import compare_weights  # noqa: E402


def _run(monkeypatch, capsys, *argv: str) -> str:
    monkeypatch.setattr(sys, "argv", ["compare_weights.py", *argv])
    compare_weights.main()
    return capsys.readouterr().out


@pytest.mark.parametrize("elevation", [["--elevation", "30"], ["--elevation"]])
def test_paired_comparison_matches_eval_and_is_zero_against_itself(tiny_data, tiny_weights, tmp_path, monkeypatch,
                                                                    capsys, elevation):
    shapes, views = tiny_data
    torch.manual_seed(7)
    other = save_weights(Generator(GeneratorConfig(**TINY_MODEL)), tmp_path / "other.pt")
    common = ["--views", str(views), "--data", str(shapes), "--views-per-model", "2", "--bootstrap", "50", *elevation]
    same = _run(monkeypatch, capsys, str(tiny_weights), str(tiny_weights), *common)
    assert "B - A: +0.0000, 95% bootstrap interval over models [+0.0000, +0.0000]" in same
    text = _run(monkeypatch, capsys, str(tiny_weights), str(other), *common)
    a, b, diff = (float(x) for x in re.search(r"A .*: (\S+)\nB .*: (\S+)\nB - A: (\S+),", text).groups())
    expected = [evaluate(load_weights(w)[0], ViewSet(views, "val"), Shapes.load(shapes), views_per_model=2,
                         elevations=[30.0] if len(elevation) == 2 else None).mean_voxel_iou for w in (tiny_weights, other)]
    assert (a, b) == pytest.approx(expected, abs=1e-4) and diff == pytest.approx(b - a, abs=2e-4)
    lo, hi = (float(x) for x in re.search(r"interval over models \[(\S+), (\S+)\]", text).groups())
    assert lo <= hi


def test_several_b_are_each_compared_with_a_as_when_given_alone(tiny_data, tiny_weights, tmp_path, monkeypatch, capsys):
    shapes, views = tiny_data
    others = []
    for seed in (3, 4):
        torch.manual_seed(seed)
        others.append(str(save_weights(Generator(GeneratorConfig(**TINY_MODEL)), tmp_path / f"other{seed}.pt")))
    common = ["--views", str(views), "--data", str(shapes), "--views-per-model", "2", "--bootstrap", "50"]
    together = _run(monkeypatch, capsys, str(tiny_weights), *others, *common)
    alone = [_run(monkeypatch, capsys, str(tiny_weights), other, *common) for other in others]
    assert together == "".join(alone)
    assert together.count("B - A:") == 2 and alone[0] != alone[1]
