"""The CUDA path: the same results as the CPU, training, reconstruction and refinement on the GPU.

Every test here needs a CUDA GPU and is skipped cleanly without one (marker ``cuda``); ``scripts/gpu_check.sh``
runs them on a GPU machine (``pytest -m cuda``). The add-on's device choice is tested without a GPU in
``test_blender_addon.py`` (CUDA faked both ways).
"""

from __future__ import annotations

import pytest
import torch

from softras.camera import Camera
from softras.mesh import icosphere
from softras.model import Generator, GeneratorConfig, save_weights
from softras.raster import RasterSettings, render_rgba, render_silhouette
from softras.reconstruct import Reconstructor
from softras.refine import RefineSettings, refine

from conftest import TINY_MODEL

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _bumpy_sphere(level: int, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    sphere = icosphere(level, 0.4)
    vertices = sphere.vertices * (1 + 0.15 * torch.rand(batch, sphere.num_vertices, 1, generator=g))
    return vertices, sphere.faces, torch.rand(batch, sphere.num_vertices, 3, generator=g)


@pytest.mark.parametrize("level,size", [(3, 64), (5, 128)])
def test_images_and_gradients_agree_with_the_cpu(level, size):
    vertices, faces, colors = _bumpy_sphere(level, 4)
    camera = Camera.from_angles(elevation=30.0, azimuth=torch.arange(4) * 70.0)
    settings = RasterSettings(size, sigma=1e-4)
    weights = torch.rand(4, size, size, 4, generator=torch.Generator().manual_seed(1))
    results = {}
    for device in ("cpu", "cuda"):
        v = vertices.to(device).requires_grad_(True)
        c = colors.to(device).requires_grad_(True)
        sil = render_silhouette(v, faces.to(device), camera.to(device), settings)
        rgba = render_rgba(v, faces.to(device), camera.to(device), settings, vertex_colors=c)
        ((rgba * weights.to(device)).sum() + sil.sum()).backward()
        results[device] = [t.detach().cpu() for t in (sil, rgba, v.grad, c.grad)]
    (sil, rgba, gv, gc), (sil_gpu, rgba_gpu, gv_gpu, gc_gpu) = results["cpu"], results["cuda"]
    assert torch.allclose(sil, sil_gpu, atol=1e-5) and torch.allclose(rgba, rgba_gpu, atol=1e-4)
    for cpu, gpu in ((gv, gv_gpu), (gc, gc_gpu)):
        assert float((cpu - gpu).norm() / cpu.norm()) < 1e-3


def test_a_training_run_on_cuda(tiny_data, tmp_path):
    from test_generator import tiny_config

    from softras.train import train

    cfg = tiny_config(tiny_data, tmp_path, steps=3, device="cuda")
    checkpoint = train(cfg, log=lambda m: None)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert state["step"] == 3 and not state["runs"][-1]["device"].startswith("cpu")
    assert all(bool(torch.isfinite(v).all()) for v in state["model"].values() if v.is_floating_point())


def test_reconstructor_on_cuda_matches_the_cpu(tmp_path):
    torch.manual_seed(0)
    weights = save_weights(Generator(GeneratorConfig(**TINY_MODEL)), tmp_path / "tiny.pt", half=False)
    images = torch.rand(3, 4, 32, 32)
    cpu, gpu = Reconstructor(weights, "cpu"), Reconstructor(weights, "cuda")
    assert next(gpu.model.parameters()).is_cuda
    (v_cpu, c_cpu), (v_gpu, c_gpu) = cpu.predict(images), gpu.predict(images)
    assert v_gpu.device.type == "cpu" and torch.allclose(v_cpu, v_gpu, atol=1e-4) and torch.allclose(c_cpu, c_gpu, atol=1e-4)


def test_refine_on_cuda_raises_the_iou():
    box = icosphere(2, 0.35)
    target = box.vertices.sign() * box.vertices.abs().pow(0.5) * torch.tensor([0.5, 0.3, 0.35])
    camera = Camera.from_angles(elevation=30.0, azimuth=40.0, device="cuda")
    mask = (render_silhouette(target.cuda(), box.faces.cuda(), camera, RasterSettings(64)) > 0.5).float()
    result = refine(icosphere(3, 0.3).vertices.cuda(), icosphere(3).faces.cuda(), mask, camera, RefineSettings(steps=60))
    assert result.vertices.is_cuda and result.iou_after > result.iou_before + 0.05
