"""Weight averages of generators (softras.weight_average, `softras average`): the arithmetic, reading training
checkpoints, and the averaged file's validation, metadata and model card."""

import importlib.util
from pathlib import Path

import pytest
import torch

from conftest import TINY_MODEL
from softras.cli import main
from softras.model import Generator, GeneratorConfig, load_weights, sha256
from softras.train import train, validate
from softras.weight_average import average_generators, average_weight_files, read_generator

from test_generator import tiny_config


def _model_card():
    """scripts/model_card.py as a module."""
    spec = importlib.util.spec_from_file_location("model_card", Path(__file__).parents[1] / "scripts" / "model_card.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _generator(seed: int, **overrides) -> Generator:
    torch.manual_seed(seed)
    model = Generator(GeneratorConfig(**{**TINY_MODEL, **overrides}))
    with torch.no_grad():  # BatchNorm statistics that differ between the two, so that their average is checked too
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
                m.num_batches_tracked.fill_(seed + 1)
    return model.eval()


def test_average_is_the_weighted_sum_of_every_floating_tensor():
    a, b = _generator(0), _generator(1)
    mixed = average_generators([a, b], [0.25, 0.75])
    sa, sb, sm = a.state_dict(), b.state_dict(), mixed.state_dict()
    assert set(sm) == set(sa)
    for key, value in sm.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, 0.25 * sa[key] + 0.75 * sb[key])
        else:
            assert torch.equal(value, sa[key])  # the batch counters: the first generator's
    assert any(not torch.equal(sa[k], sb[k]) for k in sa if sa[k].is_floating_point())
    alone = average_generators([a, b], [1.0, 0.0])
    images = torch.rand(2, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(alone(images)[0], a(images)[0])
        assert not torch.allclose(mixed(images)[0], a(images)[0])


def test_average_refuses_bad_coefficients_and_other_configs():
    a, b = _generator(0), _generator(1)
    with pytest.raises(ValueError, match="sum to 1"):
        average_generators([a, b], [0.5, 0.6])
    with pytest.raises(ValueError, match=">= 0"):
        average_generators([a, b], [1.5, -0.5])
    with pytest.raises(ValueError, match="one coefficient per generator"):
        average_generators([a, b], [1.0])
    with pytest.raises(ValueError, match="different configs"):
        average_generators([a, _generator(1, palette_size=3)], [0.5, 0.5])


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_a_training_checkpoint_reads_as_its_weight_average(tiny_data, tmp_path, ema_decay):
    cfg = tiny_config(tiny_data, tmp_path, steps=2, ema_decay=ema_decay)
    train(cfg, log=lambda m: None)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    model, metadata = read_generator(tmp_path / "checkpoint.pt")
    expected = ({k.removeprefix("module."): v for k, v in state["ema"].items() if k.startswith("module.")}
                if ema_decay else state["model"])
    for key, value in model.state_dict().items():
        assert torch.equal(value, expected[key])
    if ema_decay:
        assert not all(torch.equal(state["model"][k], expected[k]) for k in expected)
    assert metadata["step"] == 2 and metadata["train_config"]["out_dir"] == str(tmp_path)
    assert not model.training


def test_softras_average_writes_a_validated_file_and_the_card_describes_it(tiny_data, tmp_path, capsys):
    start = tmp_path / "start.pt"
    train(tiny_config(tiny_data, tmp_path / "start", steps=2, export=str(start)), log=lambda m: None)
    train(tiny_config(tiny_data, tmp_path / "tuned", steps=4, init_weights=str(start), ema_decay=0.5, seed=3),
          log=lambda m: None)
    checkpoint = tmp_path / "tuned" / "checkpoint.pt"
    out = tmp_path / "soup.pt"
    assert main(["average", str(start), str(checkpoint), "--coefficients", "0.5", "0.5", "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)

    model, metadata = load_weights(out)
    expected = average_generators([read_generator(start)[0], read_generator(checkpoint)[0]], [0.5, 0.5])
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, expected.state_dict()[key].half().to(value.dtype))
    start_meta = load_weights(start)[1]
    report, protocol = validate(model, tiny_config(tiny_data, tmp_path / "start", steps=2, export=str(start)))
    assert metadata["validation"]["mean_voxel_iou"] == pytest.approx(report.mean_voxel_iou)
    assert metadata["validation_protocol"] == protocol
    assert metadata["train_config"] == start_meta["train_config"] and metadata["step"] == 4
    sources = metadata["average"]
    assert [(s["file"], s["coefficient"], s["step"]) for s in sources] == [(str(start), 0.5, 2), (str(checkpoint), 0.5, 4)]
    assert sources[0]["sha256"] == sha256(start) and sources[0]["runs"] == []
    assert [(s["start_step"], s["end_step"]) for s in sources[1]["runs"]] == [(2, 4)]

    text = _model_card().card(out)
    assert "## Weight average" in text and "a weight average of steps 2, 4" in text
    assert f"| `{checkpoint}` |" in text and "| 2 -> 4 |" in text and "over 2 run(s)" in text


def _run_from_an_average(tiny_data, tmp_path) -> tuple[Path, Path, Path, Path]:
    """A start (steps 0-2), a fine-tune of it (2-4), their half-and-half average, and a run from that average
    (4-5): returns (the start's export, the fine-tune's checkpoint, the average, the final run's export)."""
    start, tuned = tmp_path / "start.pt", tmp_path / "tuned" / "checkpoint.pt"
    train(tiny_config(tiny_data, tmp_path / "start", steps=2, export=str(start)), log=lambda m: None)
    train(tiny_config(tiny_data, tmp_path / "tuned", steps=4, init_weights=str(start), seed=3), log=lambda m: None)
    soup, final = tmp_path / "soup.pt", tmp_path / "final.pt"
    average_weight_files([start, tuned], [0.5, 0.5], soup)
    train(tiny_config(tiny_data, tmp_path / "after", steps=5, init_weights=str(soup), export=str(final)),
          log=lambda m: None)
    return start, tuned, soup, final


def test_a_run_from_a_weight_average_keeps_the_average_sources_in_its_ledger_and_card(tiny_data, tmp_path):
    start, tuned, soup, final = _run_from_an_average(tiny_data, tmp_path)

    runs = load_weights(final)[1]["runs"]
    assert [(s["start_step"], s["end_step"]) for s in runs] == [(0, 2), (4, 5)]
    assert "init_weights" not in runs[0]
    origin = runs[1]["init_weights"]
    assert origin["file"] == str(soup) and origin["sha256"] == sha256(soup)
    assert origin["average"] == load_weights(soup)[1]["average"]
    tuned_run = origin["average"][1]["runs"][0]  # a run from plain weights names them, without sources
    assert tuned_run["init_weights"] == {"file": str(start), "sha256": sha256(start)}

    text = _model_card().card(final)
    assert f"began from `{soup}` (`{sha256(soup)[:16]}...`), a weight average of:" in text
    assert f"| `{tuned}` | `{sha256(tuned)[:16]}...` | 0.5 | 4 |" in text and "| 2 -> 4 |" in text
    assert "over 3 run(s)" in text and "## Weight average" not in text


def test_softras_average_reports_bad_input_and_writes_nothing(tiny_weights, tmp_path, capsys):
    out = tmp_path / "soup.pt"
    assert main(["average", str(tiny_weights), str(tiny_weights), "--coefficients", "0.7", "0.7", "-o", str(out)]) == 2
    assert "sum to 1" in capsys.readouterr().err and not out.exists()
    assert main(["average", str(tiny_weights), str(tmp_path / "missing.pt"), "-o", str(out)]) == 2
    assert "not found" in capsys.readouterr().err and not out.exists()
    (tmp_path / "junk.pt").write_bytes(b"not torch")
    assert main(["average", str(tiny_weights), str(tmp_path / "junk.pt"), "-o", str(out)]) == 2
    assert "not a readable weights file" in capsys.readouterr().err and not out.exists()


def _old_ledger_key(value):
    """``value`` with every ``runs`` key named ``sessions``, however nested, as files written before weights version
    2026.12.0 name the ledger of training runs."""
    if isinstance(value, dict):
        return {("sessions" if k == "runs" else k): _old_ledger_key(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_old_ledger_key(v) for v in value]
    return value


def test_files_written_with_the_old_ledger_key_read_it_as_runs(tiny_data, tmp_path):
    start, tuned, soup, final = _run_from_an_average(tiny_data, tmp_path)

    for path in (soup, final):  # the runs at the top, in the average's sources, in the average a run started from
        payload = torch.load(path, weights_only=True)
        old = tmp_path / f"old_{path.name}"
        torch.save({**payload, "metadata": _old_ledger_key(payload["metadata"])}, old)
        assert "'runs'" not in repr(torch.load(old, weights_only=True)["metadata"])
        model, metadata = load_weights(old)
        assert metadata == load_weights(path)[1] and "sessions" not in repr(metadata)
        assert metadata["runs"] and all(torch.equal(v, load_weights(path)[0].state_dict()[k])
                                        for k, v in model.state_dict().items())
    old_final = load_weights(tmp_path / "old_final.pt")[1]
    assert old_final["runs"][1]["init_weights"]["average"][1]["runs"][0]["end_step"] == 4

    state = torch.load(tuned, weights_only=True)  # a training checkpoint: read, averaged and resumed
    (tmp_path / "resumed").mkdir()
    old_checkpoint = tmp_path / "resumed" / "checkpoint.pt"
    torch.save(_old_ledger_key(state), old_checkpoint)
    assert read_generator(old_checkpoint)[1]["runs"] == read_generator(tuned)[1]["runs"]
    train(tiny_config(tiny_data, tmp_path / "resumed", steps=5, init_weights=str(start), seed=3), log=lambda m: None)
    resumed = torch.load(old_checkpoint, weights_only=True)
    assert "sessions" not in resumed
    assert [(r["start_step"], r["end_step"]) for r in resumed["runs"]] == [(0, 2), (2, 4), (4, 5)]
