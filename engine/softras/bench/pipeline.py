"""``softras bench --suite pipeline``: the product's end-to-end timings.

- one generator training step (batch 64 objects, two views each, forward + backward + Adam), paper-sized model,
  and the same with the lean encoder (``GeneratorConfig.encoder_reduce = 32``), also as a ratio to the first, and
  that lean step under bfloat16 autocast (``TrainConfig.bf16``) as a ratio to it, native or emulated as this machine
  has it (:func:`softras.train.native_bfloat16`);
- the inputs of one training batch: 64 renders of 128x128 perturbed (:mod:`softras.augment`) and taken through the
  intake, as training prepares them (on a thread, beside the step);
- weights loading, and one reconstruction of a prepared 64x64 image with the weights loaded;
- ``softras reconstruct`` on one 1024x1024 JPEG photo, image intake included, model load excluded;
- baking a 1024x1024 texture for that reconstruction from the photo (:func:`softras.texture.bake_texture`, viewpoint
  given), also as a ratio to the generator's forward pass measured in the same run, since the machine's load
  moves both alike;
- ``softras.refine`` with 200 steps at 64x64 on the 642-vertex template against one mask.

Inputs are synthetic (random images, a rendered box silhouette), so the benchmark needs no data files.
"""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from softras.augment import AugmentSettings
from softras.camera import Camera
from softras.data import TwoViewBatch
from softras.inputs import InputSettings, generator_inputs
from softras.intake import load_image, load_picture
from softras.losses import FlattenLoss, LaplacianLoss
from softras.mesh import icosphere
from softras.model import Generator, GeneratorConfig, save_weights
from softras.raster import RasterSettings, render_silhouette
from softras.reconstruct import Reconstructor
from softras.refine import RefineSettings, refine
from softras.texture import BakeSettings, bake_texture
from softras.train import TrainConfig, native_bfloat16, training_losses

__all__ = ["PipelineResult", "run_pipeline", "format_pipeline", "synthetic_renders", "synthetic_batch",
           "train_step_ms"]


@dataclass
class PipelineResult:
    name: str
    median_ms: float
    target_ms: float | None
    repeats: int
    ratio: float | None = None
    """median_ms over a reference row's median in the same run, where the machine's load moves both alike: the
    paper-sized training step for the lean one, the lean one for its bfloat16 variant, the generator's forward pass
    for the texture bake."""


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def _photo(path: Path, size: int = 1024) -> Path:
    """A 'product photo': a shaded red blob on a light grey background with mild noise, saved as JPEG."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size] / size
    inside = ((xx - 0.5) / 0.3) ** 2 + ((yy - 0.55) / 0.35) ** 2 <= 1
    img = np.full((size, size, 3), 235.0) + rng.normal(0, 2, (size, size, 3))
    img[inside] = np.array([190.0, 40, 40]) * (0.7 + 0.3 * (1 - yy[inside, None]))
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, quality=92)
    return path


def synthetic_renders(count: int, size: int) -> np.ndarray:
    """uint8 (count, size, size, 4): coloured ellipses of varied size on a transparent background, like renders."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size] / size
    out = np.zeros((count, size, size, 4), np.uint8)
    for k in range(count):
        rx, ry = rng.uniform(0.15, 0.4, 2)
        inside = ((xx - 0.5) / rx) ** 2 + ((yy - 0.5) / ry) ** 2 <= 1
        out[k][inside] = (*rng.integers(0, 256, 3), 255)
    return out


def _box_mask() -> tuple[torch.Tensor, Camera]:
    box = icosphere(2, 0.35)
    box.vertices = box.vertices.sign() * box.vertices.abs().pow(0.5) * torch.tensor([0.5, 0.3, 0.35])
    camera = Camera.from_angles(elevation=30.0, azimuth=40.0)
    return (render_silhouette(box.vertices, box.faces, camera, RasterSettings(64)) > 0.5).float(), camera


def synthetic_batch(count: int, size: int) -> TwoViewBatch:
    """A synthetic training batch: ``count`` objects, random binary RGBA pictures of ``size`` px, azimuths 15 degrees
    apart, view b a quarter turn from view a."""
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(2 * count, 4, size, size, generator=g) > 0.5).float()
    azimuths = torch.arange(count) * 15.0
    return TwoViewBatch(images[:count], images[:count], images[count:], Camera.from_angles(azimuth=azimuths),
                        Camera.from_angles(azimuth=azimuths + 90), torch.arange(count), torch.zeros(count, dtype=torch.bool),
                        azimuths)


def train_step_ms(model: Generator, batch: TwoViewBatch, cfg: TrainConfig, repeats: int) -> float:
    """Median time of one training step (forward, backward, Adam) of ``model`` on ``batch``."""
    settings = RasterSettings(model.cfg.image_size, sigma=cfg.sigma, gamma=cfg.gamma)
    laplacian, flatten = LaplacianLoss(model.faces, model.shape_decoder.sign.shape[0]), FlattenLoss(model.faces)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=True)  # as softras.train

    def step() -> None:
        losses = training_losses(model, model.faces, batch, settings, laplacian, flatten, cfg)
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimizer.step()

    return _median_ms(step, repeats)


def run_pipeline(repeats: int = 5, progress: Callable[[str], None] | None = None) -> list[PipelineResult]:
    say = progress or (lambda msg: None)
    results = []
    torch.manual_seed(0)
    cfg = TrainConfig(views="", shapes="")
    g = torch.Generator().manual_seed(0)
    batch = synthetic_batch(64, 64)
    steps = max(3, repeats // 2)
    say("training step ...")
    paper = PipelineResult("train step (batch 64 x 2 views)", train_step_ms(Generator(), batch, cfg, steps), 2000, steps)
    lean = GeneratorConfig(encoder_reduce=32)
    lean_ms = train_step_ms(Generator(lean), batch, cfg, steps)
    results += [paper, PipelineResult("  the same, lean encoder (1x1 conv to 32)", lean_ms, 1000, steps, lean_ms / paper.median_ms)]
    bf16_ms = train_step_ms(Generator(lean), batch, dataclasses.replace(cfg, bf16=True), steps)
    native = "native" if native_bfloat16(torch.device("cpu")) else "emulated"
    results.append(PipelineResult(f"  lean, bfloat16 autocast ({native} here)", bf16_ms, None, steps, bf16_ms / lean_ms))
    model = Generator()

    pictures = synthetic_renders(64, 128)
    settings = InputSettings(0.1, 0.03, AugmentSettings())
    say("training inputs ...")
    results.append(PipelineResult("training inputs (64 renders, augmented, intake)",
                                  _median_ms(lambda: generator_inputs(pictures, 64, settings, np.random.default_rng(0)), repeats),
                                  None, repeats))

    with tempfile.TemporaryDirectory() as tmp:
        weights = save_weights(model.eval(), Path(tmp) / "w.pt")
        say("weights load ...")
        results.append(PipelineResult("load weights", _median_ms(lambda: Reconstructor(weights), repeats), 1000, repeats))
        reconstructor = Reconstructor(weights)
        image = torch.rand(1, 4, 64, 64, generator=g)
        say("reconstruction ...")
        forward = PipelineResult("reconstruct 64x64 input", _median_ms(lambda: reconstructor.predict(image), repeats * 4), 50, repeats * 4)
        results.append(forward)
        photo = _photo(Path(tmp) / "photo.jpg")

        def photo_to_mesh() -> None:
            reconstructor.reconstruct_intake(load_image(photo))

        say("photo ...")
        results.append(PipelineResult("reconstruct 1024x1024 JPEG (intake incl.)", _median_ms(photo_to_mesh, repeats), 300, repeats))
        intake, picture = load_image(photo), load_picture(photo)
        mesh = reconstructor.reconstruct_intake(intake).mesh
        camera = Camera.from_angles(elevation=30.0, azimuth=30.0)
        say("texture bake ...")
        bake_ms = _median_ms(lambda: bake_texture(mesh, picture, camera, intake, BakeSettings(size=1024)), repeats)
        results.append(PipelineResult("bake 1024x1024 texture from the photo", bake_ms, 500, repeats, bake_ms / forward.median_ms))

    mask, camera = _box_mask()
    sphere = icosphere(3, 0.3)
    say("refine ...")
    run_refine = lambda: refine(sphere.vertices, sphere.faces, mask, camera, RefineSettings(steps=200))  # noqa: E731
    results.append(PipelineResult("refine 200 steps, 64x64, 642 vertices", _median_ms(run_refine, max(2, repeats // 2)), 3000, max(2, repeats // 2)))
    return results


def format_pipeline(results: list[PipelineResult]) -> str:
    rows = [f"{'task':<46}{'median ms':>11}{'target ms':>11}{'ratio':>11}", "-" * 79]
    for r in results:
        rows.append(f"{r.name:<46}{r.median_ms:>11.1f}{'-' if r.target_ms is None else f'< {r.target_ms:.0f}':>11}"
                    f"{'-' if r.ratio is None else f'{r.ratio:.1f}':>11}")
    return "\n".join(rows)
