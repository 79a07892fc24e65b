import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from softras.data import Shapes, ViewSet, sample_two_views
from softras.evaluate import evaluate, format_report
from softras.model import Generator, GeneratorConfig, WeightsError, load_weights, save_weights
from softras.train import TrainConfig, train

from conftest import TINY_MODEL


def tiny_config(tiny_data, out_dir: Path, **overrides) -> TrainConfig:
    shapes, views = tiny_data
    raw = dict(views=str(views), shapes=str(shapes), out_dir=str(out_dir), steps=4, batch_size=4, lr=1e-3,
               sigma=1e-4, checkpoint_every=2, validate_every=0, device="cpu", model=TINY_MODEL)
    raw.update(overrides)
    return TrainConfig.from_dict(raw)


def test_generator_output_shapes_and_unit_box():
    model = Generator(GeneratorConfig(**TINY_MODEL))
    vertices, colors = model(torch.rand(3, 4, 32, 32))
    assert vertices.shape == (3, 42, 3) and colors.shape == (3, 42, 3)
    assert vertices.abs().max() < 0.5 and colors.min() >= 0 and colors.max() <= 1
    with pytest.raises(ValueError, match="images"):
        model(torch.rand(3, 3, 32, 32))


def test_paper_architecture_sizes():
    model = Generator()
    assert model.shape_decoder.sign.shape == (642, 3) and model.faces.shape == (1280, 3)
    convs = [m for m in model.encoder.conv if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256] and all(c.kernel_size == (5, 5) and c.stride == (2, 2) for c in convs)
    assert [m.out_features for m in model.encoder.fc if isinstance(m, torch.nn.Linear)] == [1024, 1024, 512]


def test_colors_come_from_the_image():
    model = Generator(GeneratorConfig(**TINY_MODEL))
    image = torch.zeros(1, 4, 32, 32)
    image[:, 0] = 1.0  # pure red foreground
    image[:, 3, 8:24, 8:24] = 1.0
    _, colors = model(image)
    assert torch.allclose(colors, torch.tensor([1.0, 0.0, 0.0]).expand_as(colors), atol=1e-4)


def test_tiny_training_lowers_the_loss(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, tmp_path, steps=40, checkpoint_every=10)
    train(cfg, log=lambda m: None)
    history = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == [10, 20, 30, 40]
    # the loss logged at step 10 vs the loss of the trained model on the same fixed batch
    views = ViewSet(cfg.views, "train")
    batch = sample_two_views(views, 8, torch.Generator().manual_seed(123), 32)
    from softras.losses import FlattenLoss, LaplacianLoss
    from softras.raster import RasterSettings
    from softras.train import training_losses

    def loss_of(model: Generator) -> float:
        model.eval()
        s = RasterSettings(32, sigma=cfg.sigma)
        with torch.no_grad():
            return float(training_losses(model, model.faces, batch, s, LaplacianLoss(model.faces, 42), FlattenLoss(model.faces), cfg)["iou"])

    torch.manual_seed(cfg.seed)
    untrained = Generator(cfg.model)
    trained = Generator(cfg.model)
    trained.load_state_dict(torch.load(tmp_path / "checkpoint.pt", weights_only=True)["model"])
    assert loss_of(trained) < loss_of(untrained) - 0.05


def test_training_exports_loadable_weights_with_metadata(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, tmp_path, steps=2, export=str(tmp_path / "w.pt"))
    train(cfg, log=lambda m: None)
    model, meta = load_weights(tmp_path / "w.pt")
    assert meta["step"] == 2 and set(meta["validation"]["voxel_iou"]) == {"box", "ball"}
    assert [(s["start_step"], s["end_step"]) for s in meta["runs"]] == [(0, 2)]


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_resume_reproduces_the_next_steps_exactly(tiny_data, tmp_path, ema_decay):
    straight = tiny_config(tiny_data, tmp_path / "a", steps=4, ema_decay=ema_decay)
    train(straight, log=lambda m: None)
    interrupted = tiny_config(tiny_data, tmp_path / "b", steps=2, ema_decay=ema_decay)
    train(interrupted, log=lambda m: None)
    interrupted.steps = 4
    train(interrupted, log=lambda m: None)
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert a["step"] == b["step"] == 4
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert ("ema" in a) == ("ema" in b) == (ema_decay > 0)
    for k in a.get("ema", {}):
        assert torch.equal(a["ema"][k], b["ema"][k]), k


def test_input_worker_processes_give_the_same_run(tiny_data, tmp_path):
    """Inputs prepared in forked processes (for a GPU that outruns one core's intake) are the same batches: the
    batch of a step depends only on (seed, step, rank)."""
    augment = {"reframe": 0.5, "no_alpha": 0.5, "jpeg": 0.5}
    threads = tiny_config(tiny_data, tmp_path / "a", steps=3, fill_jitter=0.1, augment=augment)
    processes = tiny_config(tiny_data, tmp_path / "b", steps=3, fill_jitter=0.1, augment=augment, input_workers=2)
    for cfg in (threads, processes):
        train(cfg, log=lambda m: None)
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="input_workers"):
        tiny_config(tiny_data, tmp_path / "c", input_workers=-1)


def test_weight_average_is_what_gets_validated_and_exported(tiny_data, tmp_path):
    """With ema_decay d the exported weights are the running average: first the step-1 weights, then
    d * average + (1 - d) * weights after every step; a checkpoint without an average starts one at its weights."""
    cfg = tiny_config(tiny_data, tmp_path / "run", steps=1)
    train(cfg, log=lambda m: None)
    first = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["model"]
    cfg = tiny_config(tiny_data, tmp_path / "run", steps=2, ema_decay=0.75, export=str(tmp_path / "w.pt"))
    train(cfg, log=lambda m: None)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    second = state["model"]
    exported, meta = load_weights(tmp_path / "w.pt")
    assert meta["runs"][-1]["ema_decay"] == 0.75 and int(state["ema"]["n_averaged"]) == 2
    for k, v in exported.state_dict().items():
        if v.is_floating_point():
            expected = 0.75 * first[k].float() + 0.25 * second[k].float()
            assert torch.allclose(v.float(), expected, atol=2e-3, rtol=2e-3), k
            assert torch.allclose(state["ema"]["module." + k], expected, atol=1e-6), k
    with pytest.raises(ValueError, match="ema_decay"):
        tiny_config(tiny_data, tmp_path / "x", ema_decay=1.0)


def test_resumed_run_uses_the_configured_learning_rate(tiny_data, tmp_path):
    train(tiny_config(tiny_data, tmp_path, steps=2, lr=1e-3), log=lambda m: None)
    train(tiny_config(tiny_data, tmp_path, steps=3, lr=2e-4), log=lambda m: None)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["step"] == 3 and all(g["lr"] == 2e-4 for g in state["optimizer"]["param_groups"])
    assert [(s["start_step"], s["end_step"]) for s in state["runs"]] == [(0, 2), (2, 3)]


def test_weights_round_trip_and_bad_files(tmp_path):
    model = Generator(GeneratorConfig(**TINY_MODEL)).eval()
    path = save_weights(model, tmp_path / "w.pt", metadata={"step": 3})
    loaded, meta = load_weights(path)
    assert meta == {"step": 3}
    x = torch.rand(2, 4, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x)[0], loaded(x)[0], atol=2e-3)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_weights(tmp_path / "missing.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a torch file at all")
    with pytest.raises(WeightsError, match="not a readable weights file"):
        load_weights(tmp_path / "garbage.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(WeightsError, match="not a readable weights file"):
        load_weights(truncated)
    torch.save({"hello": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="not a softras generator"):
        load_weights(tmp_path / "other.pt")
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["shape_decoder.centroid.weight"] = torch.zeros(5, 5)
    torch.save(payload, tmp_path / "mismatch.pt")
    with pytest.raises(WeightsError, match="wrong shape"):
        load_weights(tmp_path / "mismatch.pt")


def test_weights_written_before_the_local_evidence_branch_was_removed(tmp_path):
    model = Generator(GeneratorConfig(**TINY_MODEL)).eval()
    payload = torch.load(save_weights(model, tmp_path / "w.pt"), weights_only=True)
    payload["config"].update(local_features=0, local_heads=4)  # as every file written before the branch went
    torch.save(payload, tmp_path / "old.pt")
    loaded, _ = load_weights(tmp_path / "old.pt")
    assert loaded.cfg == model.cfg
    payload["config"]["local_features"] = 64
    torch.save(payload, tmp_path / "branch.pt")
    with pytest.raises(WeightsError, match="local evidence branch"):
        load_weights(tmp_path / "branch.pt")


def test_training_configs_written_with_options_since_removed(tiny_data, tmp_path):
    stored = tiny_config(tiny_data, tmp_path).as_dict()
    assert TrainConfig.from_dict({**stored, "local_lr": None}) == TrainConfig.from_dict(stored)
    with pytest.raises(ValueError, match="local evidence branch"):
        TrainConfig.from_dict({**stored, "local_lr": 1e-3})
    # configs stored while 3D supervision by the true surface existed: off (the default then) loads, on is refused
    assert TrainConfig.from_dict({**stored, "surface_weight": 0.0, "surface_points": 256}) == TrainConfig.from_dict(stored)
    with pytest.raises(ValueError, match="surface_weight = 3.0, an option of 3D supervision by the true surface"):
        TrainConfig.from_dict({**stored, "surface_weight": 3.0, "surface_points": 16})
    # the shipped weights' own training config, which `softras average` validates an average with
    shipped = Path(__file__).resolve().parents[1] / "models" / "softras_generator.pt"
    model, metadata = load_weights(shipped)
    assert TrainConfig.from_dict(metadata["train_config"]).model == model.cfg


def test_evaluate_reports_every_category(tiny_data):
    shapes_path, views_path = tiny_data
    torch.manual_seed(0)
    model = Generator(GeneratorConfig(**TINY_MODEL))
    report = evaluate(model, ViewSet(views_path, None), Shapes.load(shapes_path), views_per_model=2)
    assert set(report.voxel_iou) == {"box", "ball"} and report.models == {"box": 4, "ball": 2}
    assert all(0 <= v <= 1 for v in report.voxel_iou.values())
    for c, iou in report.voxel_iou.items():  # IoU = I / (P + T - I) is at most I / P and I / T, model by model
        assert iou <= report.voxel_precision[c] + 1e-9 and iou <= report.voxel_recall[c] + 1e-9
        assert 0 < report.voxel_recall[c] <= 1
    assert set(report.voxel_iou_spread) == {"box", "ball"} and all(v >= 0 for v in report.voxel_iou_spread.values())
    low, high = report.voxel_iou_interval
    assert 0 <= low <= report.mean_voxel_iou <= high <= 1
    table = format_report(report).splitlines()
    assert table[0].split() == ["category", "models", "voxel", "IoU", "spread", "silhouette", "IoU", "precision", "recall"]
    mean_row = table[-2].split()  # the spread's column is blank there
    assert mean_row[:2] == ["mean", "6"] and float(mean_row[2]) == pytest.approx(report.mean_voxel_iou, abs=1e-4)
    assert float(mean_row[4]) == pytest.approx(sum(report.voxel_precision.values()) / 2, abs=1e-4)
    assert table[-1].endswith(f"[{low:.4f}, {high:.4f}]")
    refined = evaluate(model, ViewSet(views_path, None), Shapes.load(shapes_path), views_per_model=1, refine_steps=10)
    plain = evaluate(model, ViewSet(views_path, None), Shapes.load(shapes_path), views_per_model=1)
    assert refined.models == plain.models and refined.voxel_iou != plain.voxel_iou  # the refined meshes were scored


@pytest.mark.parametrize("steps, max_minutes", [(3, None), (100_000, 0.05)])
def test_distributed_training_with_two_gloo_processes(steps, max_minutes, tiny_data, tmp_path):
    """Two processes train together; with a time limit they agree on the last step and both exit cleanly."""
    shapes, views = tiny_data
    config = tmp_path / "tiny.toml"
    model_lines = "\n".join(f"{k} = {list(v) if isinstance(v, tuple) else v}" for k, v in TINY_MODEL.items())
    config.write_text(
        f'views = "{views}"\nshapes = "{shapes}"\nout_dir = "{tmp_path / "run"}"\nsteps = {steps}\nbatch_size = 4\n'
        f'sigma = 1e-4\ncheckpoint_every = 3\nvalidate_every = 0\ndevice = "cpu"\n\n[model]\n{model_lines}\n'
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "softras.cli", "train", "--config", str(config)]
    if max_minutes is not None:
        cmd += ["--max-minutes", str(max_minutes)]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    if max_minutes is None:
        assert state["step"] == steps
    else:
        assert 0 < state["step"] < steps


@pytest.mark.parametrize("use_views", [True, False])
def test_eval_command_prints_a_per_category_table(use_views, tiny_data, tiny_weights, capsys):
    from softras.cli import main

    shapes, views = tiny_data
    args = ["eval", "--weights", str(tiny_weights), "--data", str(shapes), "--split", "all", "--views-per-model", "2", "--json"]
    assert main(args + (["--views", str(views)] if use_views else [])) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"intake", "direct"}
    report = result["intake"]
    assert report["failures"] == 0 and result["direct"]["models"] == report["models"]
    assert set(report["voxel_iou"]) == {"box", "ball"} and report["models"] == {"box": 4, "ball": 2}
    assert 0 <= report["mean_voxel_iou"] <= 1 and 0 <= report["mean_silhouette_iou"] <= 1
    assert set(report["voxel_precision"]) == set(report["voxel_recall"]) == {"box", "ball"}


def test_training_starts_from_exported_weights_without_a_checkpoint(tiny_data, tmp_path):
    exported = tmp_path / "w.pt"
    train(tiny_config(tiny_data, tmp_path / "first", steps=2, export=str(exported)), log=lambda m: None)
    messages = []
    cfg = tiny_config(tiny_data, tmp_path / "second", steps=3, lr=1e-12, init_weights=str(exported))
    train(cfg, log=messages.append)
    assert any("starting from" in m and "step 2" in m for m in messages)
    state = torch.load(tmp_path / "second" / "checkpoint.pt", weights_only=True)
    assert state["step"] == 3 and [s["end_step"] for s in state["runs"]] == [2, 3]
    start, _ = load_weights(exported)
    for k, v in start.state_dict().items():  # a negligible learning rate: the weights are the exported ones
        if v.is_floating_point() and "running" not in k:
            assert torch.allclose(state["model"][k], v, atol=1e-6), k
    other = tiny_config(tiny_data, tmp_path / "third", init_weights=str(exported), model={**TINY_MODEL, "palette_size": 8})
    with pytest.raises(ValueError, match="another model config"):
        train(other, log=lambda m: None)


@pytest.mark.parametrize("native", [True, False])
def test_bf16_runs_only_where_the_device_has_native_bfloat16(tiny_data, tmp_path, monkeypatch, native):
    import softras.train

    monkeypatch.setattr(softras.train, "native_bfloat16", lambda device: native)
    autocast_dtypes = []
    real_autocast = torch.autocast

    def recording_autocast(device_type, dtype=None, enabled=True, **kwargs):
        autocast_dtypes.append(dtype if enabled else None)
        return real_autocast(device_type, dtype=dtype, enabled=enabled, **kwargs)

    monkeypatch.setattr(torch, "autocast", recording_autocast)
    messages = []
    train(tiny_config(tiny_data, tmp_path, steps=2, bf16=True), log=messages.append)
    assert autocast_dtypes == [torch.bfloat16 if native else None] * 2
    assert any("no native bfloat16" in m and "float32" in m for m in messages) != native
    checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert checkpoint["runs"][-1]["bf16"] is native and checkpoint["config"]["bf16"]


def test_native_bfloat16_reads_the_cpu_capabilities(monkeypatch):
    from softras.train import native_bfloat16

    for capabilities, expected in [({"avx2": True}, False), ({"avx512_bf16": True}, True), ({"amx_bf16": True}, True),
                                   ({"bf16": True, "architecture": "arm64"}, True), ({"avx512_bf16": False}, False)]:
        monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: capabilities)
        assert native_bfloat16(torch.device("cpu")) is expected, capabilities
    assert native_bfloat16(torch.device("meta")) is False
