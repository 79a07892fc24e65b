"""scripts/model_card.py: the model card from the weights' own metadata, their evaluation and the recipe of committed
configs; a released file's version, written without touching its tensors."""

import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from softras.model import WeightsError, load_weights
from softras.train import TrainConfig, train

from test_generator import tiny_config

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "models" / "softras_generator.pt"


def _model_card():
    spec = importlib.util.spec_from_file_location("model_card", ROOT / "scripts" / "model_card.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _prose(text: str) -> list[str]:
    """The card's lines outside tables and code blocks."""
    lines, code = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            code = not code
        elif not code and not line.startswith("|"):
            lines.append(line)
    return lines


def test_set_version_rewrites_the_metadata_only(tiny_data, tmp_path):
    weights = tmp_path / "w.pt"
    train(tiny_config(tiny_data, tmp_path / "run", steps=2, export=str(weights)), log=lambda m: None)
    before = torch.load(weights, weights_only=True)
    before["metadata"]["sessions"] = before["metadata"].pop("runs")  # as files written before 2026.12.0
    torch.save(before, weights)
    module = _model_card()
    module.set_version(weights, "2099.1.0")
    after = torch.load(weights, weights_only=True)
    assert after["metadata"]["version"] == "2099.1.0" and "sessions" not in after["metadata"]
    assert after["metadata"]["runs"] == before["metadata"]["sessions"] and after["config"] == before["config"]
    assert set(after["state_dict"]) == set(before["state_dict"])
    for key, value in before["state_dict"].items():
        assert after["state_dict"][key].dtype == value.dtype and torch.equal(after["state_dict"][key], value)
    assert "# SoftRas generator 2099.1.0: model card" in module.card(weights)
    torch.save({"state_dict": {}}, tmp_path / "junk.pt")
    with pytest.raises(WeightsError, match="not a softras generator weights file"):
        module.set_version(tmp_path / "junk.pt", "2099.1.0")


def test_an_export_without_a_version_gets_a_card_with_its_ledger(tiny_data, tmp_path, capsys):
    shapes_path, views_path = tiny_data
    weights = tmp_path / "w.pt"
    train(tiny_config(tiny_data, tmp_path / "run", steps=2, export=str(weights)), log=lambda m: None)
    from softras.cli import main

    assert main(["eval", "--weights", str(weights), "--data", str(shapes_path), "--views", str(views_path),
                 "--views-per-model", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    module = _model_card()
    command = "softras eval --views-per-model 2 ..."
    text = module.card(weights, result, command)
    assert "| version | unreleased (a training export) |" in text and "## Training recipe" not in text
    assert "## Training runs" in text and "| 0 -> 2 |" in text and "each seen in 2 pictures" in " ".join(text.split())
    assert f"| standard camera (elevation 30 degrees, distance 2.732) | **{result['intake']['mean_voxel_iou']:.4f}** |" in text
    assert "eye level" not in text.split("## Evaluation")[1].split("### Per category")[0]
    assert all(len(line) <= 120 for line in _prose(text))
    eye = tmp_path / "eye.json"
    eye.write_text(json.dumps(result))
    out = tmp_path / "eval.json"
    out.write_text(json.dumps(result))
    assert module.main([str(weights), "--eval", str(out), "--eye-level", str(eye)]) == 0
    printed = capsys.readouterr().out
    assert f"| eye level (elevation 0) | **{result['intake']['mean_voxel_iou']:.4f}** |" in printed


def test_the_recipe_matches_the_shipped_weights_ledger():
    module = _model_card()
    model, meta = load_weights(WEIGHTS)
    recipe = module.read_recipe(meta["version"])
    assert recipe is not None and recipe["version"] == meta["version"] and recipe["weights"] == "models/softras_generator.pt"
    every = module._all_runs(meta)
    stages = [s for s in recipe["stages"] if "config" in s]
    matched = []
    for stage in stages:
        cfg = TrainConfig.from_toml(ROOT / stage["config"])
        assert cfg.steps == stage["steps"][1] and stage["commands"] == [f"softras train --config {stage['config']}"]
        for run in module.stage_runs(stage, every):
            assert (run["lr"], run["views"], run.get("varied_views"), run["input_elevations"]) == \
                (cfg.lr, cfg.views, cfg.varied_views, cfg.input_elevations)
            assert (run["mirror"], run["category_balance"], run["ema_decay"], run["fill_jitter"], run["offset_jitter"]) == \
                (cfg.mirror, cfg.category_balance, cfg.ema_decay, cfg.fill_jitter, cfg.offset_jitter)
            assert run["augment"] == dataclasses.asdict(cfg.augment)
            matched.append(run)
    since = [r for r in every if r["start_step"] >= recipe["start"]["step"]]
    assert sorted(r["started"] for r in matched) == sorted(r["started"] for r in since)  # every run, one stage each
    assert [s["name"] for s in stages if not module.stage_runs(s, every)] == ["varied"]  # before averages kept ledgers

    shipped = TrainConfig.from_dict(meta["train_config"])  # the first source of the last average: stage 7a's run
    first = TrainConfig.from_toml(ROOT / next(s for s in stages if s["stage"] == "7a")["config"])
    same = lambda c: dataclasses.replace(c, out_dir="", export="", init_weights="", steps=0)  # noqa: E731
    assert same(shipped) == same(first)
    last_train = TrainConfig.from_toml(ROOT / stages[-1]["config"])
    assert last_train.model == model.cfg
    final = recipe["stages"][-1]
    assert final["coefficients"] == [p["coefficient"] for p in meta["average"]]
    assert [p["step"] for p in meta["average"]] == [stages[-1]["steps"][0], stages[-1]["steps"][1]]
    notes = {p.name for p in (ROOT / "docs" / "notes").iterdir()}
    assert all(s["notes"] in notes for s in recipe["stages"] if "notes" in s)


def test_the_committed_card_is_what_the_generator_writes():
    module = _model_card()
    result = json.loads((ROOT / "models" / "eval.json").read_text())
    eye = json.loads((ROOT / "models" / "eval_eye_level.json").read_text())
    text = module.card(WEIGHTS, result, module.EVAL_COMMAND, eye, module.EYE_LEVEL_COMMAND)
    assert text == (ROOT / "models" / "README.md").read_text()
    assert len(text.splitlines()) < 250 and all(len(line) <= 120 for line in _prose(text))
    version = load_weights(WEIGHTS)[1]["version"]
    assert f"# SoftRas generator {version}: model card" in text
    for section in ("## Intended use", "## Out-of-scope use", "## Architecture", "## Training data",
                    "## Training recipe", "## Evaluation", "### Robustness", "### Per category", "## Limitations",
                    "## Citation"):
        assert section in text
    assert f"| eye level (elevation 0) | **{eye['intake']['mean_voxel_iou']:.4f}** |" in text
    dates = module.read_recipe(version)["evaluation"]
    for name in ("models/eval.json", "models/eval_eye_level.json"):  # each figure names its command and date
        assert f"(run {dates[name]}, written to `{name}`)" in " ".join(text.split())
    assert f"**{result['other_cameras']['mean_voxel_iou']:.4f}**" in text
