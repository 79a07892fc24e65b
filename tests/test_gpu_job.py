"""scripts/gpu_job.py: a GPU training run packed into one device call, tried end to end on the CPU."""

import json
import sys
from pathlib import Path

import pytest
import torch

from softras.model import load_weights

from conftest import TINY_MODEL

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import gpu_job  # noqa: E402


def _toml(tiny_data, tmp_path: Path, export: Path) -> Path:
    shapes, views = tiny_data
    model = "\n".join(f"{k} = {list(v) if isinstance(v, tuple) else v}" for k, v in TINY_MODEL.items())
    path = tmp_path / "tiny.toml"
    path.write_text(f'views = "{views}"\nshapes = "{shapes}"\nout_dir = "{tmp_path / "home_run"}"\nexport = "{export}"\n'
                    f"steps = 3\nbatch_size = 4\nsigma = 1e-4\nvalidate_views = 1\nema_decay = 0.5\nfill_jitter = 0.1\n"
                    f"[augment]\n[model]\n{model}\n")
    return path


def test_prepare_train_and_receive_round_trip(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_job, "PART_SIZE", 20_000)  # several parts, as a 29 MiB file would have in 15 MiB parts
    export = tmp_path / "exported.pt"
    config = _toml(tiny_data, tmp_path, export)
    sizes = gpu_job.prepare(config, tmp_path / "job", quality=90, workers=2)
    assert {"views.npz", "train.json", "tree"} <= set(sizes)
    remote = json.loads((tmp_path / "job" / "train.json").read_text())
    assert remote["validate_every"] == 0 and remote["device"] == "cuda" and remote["input_workers"] == 2

    manifest = gpu_job.run_training(tmp_path / "job", tmp_path / "out", minutes=5, device="cpu")
    assert manifest["step"] == 3 and len(manifest["parts"]) > 1
    assert all(p.stat().st_size <= 20_000 for p in (tmp_path / "out").glob("weights.pt.part*"))

    gpu_job.receive(tmp_path / "out", config, tmp_path / "joined.pt", None)
    received, meta = load_weights(tmp_path / "joined.pt")
    exported, exported_meta = load_weights(export)  # validated through the intake, then exported (nothing to beat)
    assert exported_meta["step"] == 3 and exported_meta["validation_protocol"]["input"] == "intake"
    assert all(torch.equal(a, b) for a, b in zip(received.state_dict().values(), exported.state_dict().values()))

    part = tmp_path / "out" / manifest["parts"][0]["name"]
    part.write_bytes(b"x" + part.read_bytes()[1:])
    with pytest.raises(ValueError, match="checksum"):
        gpu_job.join_parts(tmp_path / "out", tmp_path / "again.pt")


def test_varied_views_travel_with_the_job(tiny_data, tmp_path):
    from softras.data import ViewSet

    _, views = tiny_data
    varied = views  # any views file with both splits and the same split
    config = _toml(tiny_data, tmp_path, tmp_path / "exported.pt")
    config.write_text(config.read_text().replace("steps = 3", f'varied_views = "{varied}"\nvaried_share = 0.5\nsteps = 2'))
    sizes = gpu_job.prepare(config, tmp_path / "job", quality=90, workers=0)
    remote = json.loads((tmp_path / "job" / "train.json").read_text())
    assert "varied.npz" in sizes and remote["varied_views"] == str(tmp_path / "job" / "varied.npz")
    assert len(ViewSet(remote["varied_views"], None).model_id) == len(ViewSet(views, "train").model_id)
    manifest = gpu_job.run_training(tmp_path / "job", tmp_path / "out", minutes=5, device="cpu")
    assert manifest["step"] == 2
