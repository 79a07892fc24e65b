
import numpy as np
import pytest
import torch
from PIL import Image

from softras import icosphere
from softras.bench.raster import BenchCase, format_table, measure_peaks, run_case
from softras.cli import main
from softras.meshio import write_mesh


@pytest.fixture
def sphere_file(tmp_path):
    m = icosphere(2, 0.4)
    m.vertex_colors = torch.tensor([1.0, 0.0, 0.0]).expand(m.num_vertices, 3).clone()
    return write_mesh(m, tmp_path / "sphere.ply")


def test_render_silhouette_npy(sphere_file, tmp_path):
    out = tmp_path / "s.npy"
    assert main(["render", str(sphere_file), "-o", str(out), "--size", "32", "--sigma", "1e-4"]) == 0
    image = np.load(out)
    assert image.shape == (32, 32) and image.dtype == np.float32
    assert image[16, 16] > 0.99 and image[0, 0] == 0.0


def test_render_rgba_png(sphere_file, tmp_path):
    out = tmp_path / "s.png"
    assert main(["render", str(sphere_file), "-o", str(out), "--mode", "rgba", "--size", "40", "--azimuth", "30"]) == 0
    image = np.asarray(Image.open(out))
    assert image.shape == (40, 40, 4) and image.dtype == np.uint8
    assert tuple(image[20, 20]) == (255, 0, 0, 255)
    assert image[0, 0, 3] == 0


@pytest.mark.parametrize(
    "args,message",
    [
        (["render", "{mesh}", "-o", "{tmp}/x.jpg"], "must end in"),
        (["render", "{tmp}/missing.obj", "-o", "{tmp}/x.png"], "missing.obj"),
        (["render", "{mesh}", "-o", "{tmp}/nodir/x.png"], "does not exist"),
    ],
)
def test_render_errors(args, message, sphere_file, tmp_path, capsys):
    args = [a.format(mesh=sphere_file, tmp=tmp_path) for a in args]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "x.jpg").exists()


@pytest.mark.parametrize("flag,value", [("--size", "0"), ("--sigma", "-1")])
def test_render_rejects_bad_numbers(flag, value, sphere_file, tmp_path):
    with pytest.raises(SystemExit):
        main(["render", str(sphere_file), "-o", str(tmp_path / "x.png"), flag, value])


def test_bench_case_measures_sparse_and_dense():
    case = BenchCase("tiny", 1, 16, 2, "rgba")
    result = run_case(case, torch.device("cpu"), dense_budget_mb=100, min_repeats=1, min_seconds=0)
    assert result.sparse_ms > 0 and result.dense_ms is not None and result.speedup > 0
    measure_peaks(result, case, torch.device("cpu"))
    assert result.sparse_peak_mb is not None and result.dense_peak_mb is not None
    assert "tiny" in format_table([result])
    skipped = run_case(BenchCase("tiny", 1, 16, 2, "silhouette"), torch.device("cpu"), dense_budget_mb=0, min_repeats=1, min_seconds=0)
    assert skipped.dense_ms is None and skipped.speedup is None


def test_pipeline_bench_training_step_runs_on_its_synthetic_batch():
    """``softras bench --suite pipeline`` times training steps on a synthetic batch; a tiny generator takes one, with
    and without bfloat16 autocast (the batch must keep up with TwoViewBatch's fields)."""
    import dataclasses

    import torch

    from conftest import TINY_MODEL
    from softras.bench.pipeline import synthetic_batch, train_step_ms
    from softras.model import Generator, GeneratorConfig
    from softras.train import TrainConfig

    model_cfg = GeneratorConfig(**TINY_MODEL)
    batch = synthetic_batch(4, model_cfg.image_size)
    assert batch.inputs.shape == (4, 4, model_cfg.image_size, model_cfg.image_size) and batch.azimuths_a.shape == (4,)
    cfg = TrainConfig(views="", shapes="")
    for step_cfg in (cfg, dataclasses.replace(cfg, bf16=True)):
        torch.manual_seed(0)
        assert train_step_ms(Generator(model_cfg), batch, step_cfg, 1) > 0
