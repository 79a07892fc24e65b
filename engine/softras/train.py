"""Training the generator: two views per object per step, soft silhouette IoU + regularisers + colour.

Run ``softras train --config configs/generator.toml``; single process on CPU or CUDA, or several with
``torchrun --nproc-per-node N -m softras.cli train ...`` (DistributedDataParallel; gloo on CPU, NCCL on CUDA).
Checkpoints are written atomically to ``<out_dir>/checkpoint.pt`` and training resumes from them: the batch of
step ``s`` depends only on ``(seed, s, rank)``, so an interrupted run continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import io
import json
import multiprocessing
import os
import sys
import time
import tomllib
from collections import deque
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from datetime import datetime, timezone
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from softras.augment import AugmentSettings
from softras.camera import Camera
from softras.data import Shapes, TwoViewBatch, ViewSet, sample_two_views
from softras.evaluate import EvalReport, evaluate, format_report
from softras.inputs import InputSettings
from softras.fileio import atomic_write
from softras.losses import FlattenLoss, LaplacianLoss, azimuth_loss, soft_iou_loss
from softras.model import (Generator, GeneratorConfig, drop_retired_options, load_weights, save_weights, sha256,
                           upgrade_metadata)
from softras.progress import ProgressLine
from softras.raster import RasterSettings, blend_colors, rasterize, shade, soft_silhouette

__all__ = ["TrainConfig", "native_bfloat16", "train", "training_losses", "validate", "validate_and_export"]


RETIRED_OPTIONS = {
    # configs written before the local evidence branch went carry local_lr = None
    "local_lr": ("the local evidence branch (its learning rate)", (None,)),
    # 3D supervision by a Chamfer distance to the true surface, never in a shipped recipe
    # (docs/notes/2026-11-28-surface-supervision.md): configs written while it existed carry surface_weight = 0
    "surface_weight": ("3D supervision by the true surface", (0,)),
    "surface_points": ("3D supervision by the true surface", ()),
}
"""Training options that are gone: key -> (what it belonged to, the values that left it off)."""


@dataclass
class TrainConfig:
    """Everything a training run depends on; paths are relative to the working directory."""

    views: str
    shapes: str
    extra_views: list[str] = field(default_factory=list)  # views files of extra training shapes, never validated
    # a views file of the same shapes from varied cameras and lights (datagen/varied_views.py), split as ``views``;
    # ``varied_share`` of the steps (drawn per step) take their batch from its training models
    varied_views: str | None = None
    varied_share: float = 0.0
    # a views file of procedural shapes (datagen/procedural_views.py; every model trains, none validates):
    # procedural_share of each batch's objects come from it, the rest from ``views``
    procedural_views: str | None = None
    procedural_share: float = 0.0
    out_dir: str = "runs/generator"
    export: str | None = None  # weights file (half precision) written at every validation and at the end
    export_best: bool = False  # export only weights whose validation mean voxel IoU beats the export file's own
    init_weights: str | None = None  # without a checkpoint in out_dir, start from these weights (fresh optimizer)
    steps: int = 10000
    batch_size: int = 64  # objects per step over all processes; each contributes two views
    lr: float = 1e-4
    sigma: float = 3e-5
    gamma: float = 1e-4
    laplacian_weight: float = 0.01
    flatten_weight: float = 0.001
    color_weight: float = 1.0
    viewpoint_weight: float = 1.0  # the viewpoint head's azimuth loss
    viewpoint_encoder_share: float = 0.0  # its gradient into the encoder, scaled (0: the head reads the code detached)
    seed: int = 0
    checkpoint_every: int = 200
    validate_every: int = 1000
    validate_views: int = 2
    device: str = "auto"
    # elevations (degrees) of the views fed to the generator in training; None: all
    input_elevations: list[float] | None = None
    # elevations (degrees) of the validation input views; None: the input elevations
    validate_elevations: list[float] | None = None
    mirror: bool = False  # also train on the shapes' mirror images (x -> -x): flipped views, negated azimuths
    category_balance: float = 0.0  # 0: every model equally often; 1: every category equally often (ViewSet.model_weights)
    max_grad_norm: float = 10.0  # gradients are clipped to this norm; a step with a non-finite gradient is skipped
    # run the generator's layers under bfloat16 autocast (the rasterizer stays float32) where the device computes in
    # bfloat16 natively (native_bfloat16); elsewhere training runs in float32 and says so
    bf16: bool = False
    ema_decay: float = 0.0  # > 0: validate and export an exponential moving average of the weights (and BatchNorm statistics)
    # every input goes through the user's intake; on top, random framing and picture augmentation (softras.inputs)
    fill_jitter: float = 0.0  # the intake's fill times exp(u), u uniform in [-fill_jitter, fill_jitter]
    offset_jitter: float = 0.0  # largest change of the intake's offset, fractions of the input side
    augment: AugmentSettings | None = None  # TOML table [augment]; None: renders as they are
    # the inputs of upcoming steps are prepared beside training: 0 on one thread (enough beside a CPU step), N > 0
    # in N processes (a GPU step is faster than the intake on one core)
    input_workers: int = 0
    model: GeneratorConfig = field(default_factory=GeneratorConfig)

    @classmethod
    def from_toml(cls, path: str | os.PathLike) -> "TrainConfig":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        try:
            raw = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{path}: {e}") from None
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: dict) -> "TrainConfig":
        """A training config as written in TOML or stored with weights and checkpoints; options this version no
        longer has (:data:`RETIRED_OPTIONS`) are read as :func:`softras.model.drop_retired_options` says."""
        raw = drop_retired_options(raw, RETIRED_OPTIONS, "the training config")
        model = GeneratorConfig.from_dict(raw.pop("model", {}))
        if raw.get("augment") is not None:  # None (no augmentation) as written by as_dict
            raw["augment"] = AugmentSettings.from_dict(raw["augment"])
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown training config keys: {sorted(unknown)}")
        cfg = cls(**raw, model=model)
        if cfg.batch_size < 1 or cfg.steps < 0 or cfg.lr <= 0 or cfg.sigma <= 0 or cfg.gamma <= 0:
            raise ValueError("batch_size must be >= 1, steps >= 0, and lr, sigma, gamma positive")
        if not 0.0 <= cfg.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {cfg.ema_decay}")
        if cfg.input_workers < 0:
            raise ValueError(f"input_workers must be >= 0, got {cfg.input_workers}")
        if not 0.0 <= cfg.viewpoint_encoder_share <= 1.0:
            raise ValueError(f"viewpoint_encoder_share must be in [0, 1], got {cfg.viewpoint_encoder_share}")
        if not 0.0 <= cfg.varied_share <= 1.0 or (cfg.varied_share > 0) != (cfg.varied_views is not None):
            raise ValueError("varied_share must lie in [0, 1], and be > 0 exactly when varied_views is given")
        if not 0.0 <= cfg.procedural_share < 1.0 or (cfg.procedural_share > 0) != (cfg.procedural_views is not None):
            raise ValueError("procedural_share must lie in [0, 1), and be > 0 exactly when procedural_views is given")
        return cfg

    def as_dict(self) -> dict:
        return asdict(self)


def training_losses(
    model: torch.nn.Module, faces: torch.Tensor, batch: TwoViewBatch, settings: RasterSettings,
    laplacian: LaplacianLoss, flatten: FlattenLoss, cfg: TrainConfig,
) -> dict[str, torch.Tensor]:
    """Losses of one batch: the mesh predicted from the input (view a through the intake) is rendered from the
    cameras of views a and b and compared with their renders.

    Silhouette IoU trains the shape; the colour term (L1 over the target's foreground) trains the colours only:
    it sees the fragments detached from the vertices, so shading noise never pulls on the geometry. A generator with
    a viewpoint head also learns view a's azimuth (soft cross-entropy, :func:`softras.losses.azimuth_loss`), the
    head reading the code detached, or with ``cfg.viewpoint_encoder_share`` of its gradient reaching the encoder.
    """
    net = getattr(model, "module", model)  # under DistributedDataParallel
    head = net.viewpoint is not None
    with torch.autocast(batch.inputs.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
        outputs = (model(batch.inputs, with_viewpoint=True, viewpoint_encoder_share=cfg.viewpoint_encoder_share) if head
                   else model(batch.inputs))
    vertices, colors = outputs[0].float(), outputs[1].float()
    cameras = Camera.cat([batch.cameras_a, batch.cameras_b])
    fragments = rasterize(cameras.project(torch.cat([vertices, vertices])), faces, settings)
    alpha = soft_silhouette(fragments)
    detached = dataclasses.replace(fragments, logit=fragments.logit.detach(), bary=fragments.bary.detach(), depth=fragments.depth.detach())
    rgb = blend_colors(detached, shade(detached, faces, vertex_colors=torch.cat([colors, colors])), settings)
    target = torch.cat([batch.images_a, batch.images_b])
    t_alpha, t_rgb = target[:, 3], target[:, :3].permute(0, 2, 3, 1)
    losses = {
        "iou": soft_iou_loss(alpha, t_alpha),
        "laplacian": laplacian(vertices),
        "flatten": flatten(vertices),
        "color": ((rgb - t_rgb).abs().mean(-1) * t_alpha).sum() / t_alpha.sum().clamp(min=1.0),
    }
    losses["total"] = (losses["iou"] + cfg.laplacian_weight * losses["laplacian"] + cfg.flatten_weight * losses["flatten"]
                       + cfg.color_weight * losses["color"])
    if head:
        losses["viewpoint"] = azimuth_loss(outputs[2], batch.azimuths_a)
        losses["total"] = losses["total"] + cfg.viewpoint_weight * losses["viewpoint"]
    return losses


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` computes in bfloat16 natively: a CUDA GPU that supports it, or a CPU with AVX512-BF16 or
    AMX-BF16 (x86) or BF16 (ARM) instructions. Elsewhere autocast emulates bfloat16 and a training step takes several
    times as long as in float32 (11x on an AVX2-only CPU by `softras bench --suite pipeline`,
    docs/notes/2026-12-07-eye-level-averaged.md)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    capabilities = torch.cpu.get_capabilities()
    return any(bool(capabilities.get(name)) for name in ("avx512_bf16", "amx_bf16", "bf16"))


def _device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available")
    return device


def _save_checkpoint(path: Path, model: Generator, optimizer: torch.optim.Optimizer, ema: AveragedModel | None, step: int,
                     cfg: TrainConfig, runs: list[dict]) -> None:
    buffer = io.BytesIO()
    state = {"step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(), "config": cfg.as_dict(),
             "runs": runs}
    if ema is not None:
        state["ema"] = ema.state_dict()
    torch.save(state, buffer)
    atomic_write(path, lambda fh: fh.write(buffer.getvalue()))


def _load_checkpoint(path: Path, model: Generator, optimizer: torch.optim.Optimizer, ema: AveragedModel | None,
                     cfg: TrainConfig) -> tuple[int, list[dict]]:
    """Restore model, optimizer and the weight average; returns the step and the ledger of earlier runs.

    A checkpoint without a weight average (written with ``ema_decay = 0``) starts the average at its weights.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    if GeneratorConfig.from_dict(state["config"]["model"]) != cfg.model:  # fields added since take their defaults
        raise ValueError(f"{path}: checkpoint was trained with another model config; use a new out_dir")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if ema is not None:
        if "ema" in state:
            ema.load_state_dict(state["ema"])
        else:
            ema.update_parameters(model)
    for group in optimizer.param_groups:  # the config's rate applies to a resumed run
        group["lr"] = cfg.lr
    return int(state["step"]), list(upgrade_metadata(state).get("runs", []))


_OPTIONAL_PARTS = {"viewpoint.": ("viewpoint_bins", "viewpoint_hidden")}
"""Parts of the generator that initial weights may lack or have otherwise: state prefix -> their config fields."""


def _load_initial_weights(path: Path, model: Generator, cfg: TrainConfig) -> tuple[int, list[dict], dict]:
    """Copy exported weights into ``model``; returns their step, their ledger of runs, which training continues, and
    where they came from: ``{"file", "sha256"}``, with their ``average`` sources where they are a weight average
    (:func:`softras.weight_average.average_weight_files`), so that the ledger keeps a nested average's lineage.

    The optional part (the viewpoint head) may differ: weights without one (or with another) start the configured
    part afresh, and a part the config does not ask for is left out."""
    source, metadata = load_weights(path)
    fields = [f for names in _OPTIONAL_PARTS.values() for f in names]
    defaults = {f: getattr(GeneratorConfig, f) for f in fields}
    if dataclasses.replace(source.cfg, **defaults) != dataclasses.replace(cfg.model, **defaults):
        raise ValueError(f"{path}: weights have another model config than the training config's [model]")
    state, fresh = source.state_dict(), model.state_dict()
    for prefix, names in _OPTIONAL_PARTS.items():
        if any(getattr(source.cfg, f) != getattr(cfg.model, f) for f in names):
            state = {k: v for k, v in state.items() if not k.startswith(prefix)}
            state.update({k: v for k, v in fresh.items() if k.startswith(prefix)})
    model.load_state_dict(state)
    origin = {"file": str(path), "sha256": sha256(path)}
    if "average" in metadata:
        origin["average"] = metadata["average"]
    return int(metadata.get("step", 0)), list(metadata.get("runs", [])), origin


def train(cfg: TrainConfig, max_minutes: float | None = None, log: Callable[[str], None] | None = None) -> Path:
    """Train (or resume) until ``cfg.steps`` or ``max_minutes``; returns the checkpoint path."""
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _device(cfg.device, local_rank)
    if distributed:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} is not divisible by the {world} processes")
    _check_export(cfg)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = out_dir / "checkpoint.pt"

    torch.manual_seed(cfg.seed)
    model = Generator(cfg.model).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=True)  # one kernel per step: 0.2 of the time of the loop
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True) if cfg.ema_decay else None
    validated = model if ema is None else ema.module  # the weights that are validated and exported
    origin = None  # the initial weights this run started from, where it did
    if checkpoint.exists():
        step, runs = _load_checkpoint(checkpoint, model, optimizer, ema, cfg)
        if rank == 0:
            log(f"resuming from {checkpoint} at step {step}")
    elif cfg.init_weights:
        step, runs, origin = _load_initial_weights(Path(cfg.init_weights), model, cfg)
        if rank == 0:
            log(f"starting from {cfg.init_weights} (step {step}) with a fresh optimizer state")
    else:
        step, runs = 0, []
    if cfg.bf16 and not native_bfloat16(device):
        if rank == 0:
            log(f"bf16 is set, but this {device.type} has no native bfloat16 (emulated, it would take several times as "
                "long per step): training in float32")
        step_cfg = dataclasses.replace(cfg, bf16=False)
    else:
        step_cfg = cfg
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    run = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "device": device_name,
               "processes": world, "lr": cfg.lr, "views": cfg.views, "extra_views": cfg.extra_views,
               "varied_views": cfg.varied_views, "varied_share": cfg.varied_share,
               "input_elevations": cfg.input_elevations, "validate_elevations": cfg.validate_elevations,
               "mirror": cfg.mirror, "category_balance": cfg.category_balance, "ema_decay": cfg.ema_decay,
               "fill_jitter": cfg.fill_jitter, "offset_jitter": cfg.offset_jitter,
               "augment": None if cfg.augment is None else asdict(cfg.augment),
               "bf16": step_cfg.bf16, "start_step": step, "end_step": step, "seconds": 0.0,
               # inputs this process prepared, and those whose augmented picture the intake refused (they went in
               # unaugmented); in distributed training the first process's share
               "inputs": 0, "augment_fallbacks": 0}
    if origin is not None:
        run["init_weights"] = origin
    runs.append(run)
    run_start = time.monotonic()

    def save() -> None:
        run.update(end_step=step, seconds=round(time.monotonic() - run_start, 1))
        _save_checkpoint(checkpoint, model, optimizer, ema, step, cfg, runs)
    net = torch.nn.parallel.DistributedDataParallel(model) if distributed else model

    train_views = ViewSet(cfg.views, "train")
    for path in cfg.extra_views:
        train_views = train_views.concat(ViewSet(path, None))
    _check_size(train_views, cfg.views, cfg.model.image_size)
    inputs = InputSettings(cfg.fill_jitter, cfg.offset_jitter, cfg.augment)
    input_views = train_views.views_at(cfg.input_elevations)
    faces = model.faces
    settings = RasterSettings(cfg.model.image_size, sigma=cfg.sigma, gamma=cfg.gamma)
    laplacian = LaplacianLoss(faces.cpu(), model.shape_decoder.sign.shape[0]).to(device)
    flatten = FlattenLoss(faces.cpu()).to(device)
    progress = ProgressLine(cfg.steps, "steps", start=step) if rank == 0 else None
    deadline = None if max_minutes is None else time.monotonic() + 60 * max_minutes
    history = out_dir / "log.jsonl"

    def batches(views: ViewSet, input_views: torch.Tensor) -> _BatchSampler:
        weights = views.model_weights(cfg.category_balance) if cfg.category_balance else None
        return _BatchSampler(views, cfg.batch_size // world, cfg.seed, rank, cfg.model.image_size, input_views,
                             cfg.mirror, weights, inputs)

    sampler = batches(train_views, input_views)
    if cfg.procedural_views is not None:
        procedural = ViewSet(cfg.procedural_views, None)
        _check_size(procedural, cfg.procedural_views, cfg.model.image_size)
        count = round(cfg.procedural_share * sampler.batch_size)
        if not 0 < count < sampler.batch_size:
            raise ValueError(f"procedural_share {cfg.procedural_share} gives {count} of {sampler.batch_size} objects "
                             "per batch: it must leave at least one from each views file")
        sampler = _SplitSampler(dataclasses.replace(sampler, batch_size=sampler.batch_size - count),
                                dataclasses.replace(batches(procedural, procedural.views_at(cfg.input_elevations)),
                                                    batch_size=count, seed=cfg.seed + 104_729))
    if cfg.varied_views is not None:
        varied = _varied_training_views(cfg.varied_views, cfg.views, cfg.model.image_size)
        sampler = _MixedSampler(sampler, batches(varied, varied.views_at(None)), cfg.varied_share, cfg.seed, rank)
    # The batches of the next steps (intake and augmentation: Pillow and numpy) are prepared while this step trains.
    pool, depth = _input_pool(sampler, cfg.input_workers)
    upcoming: deque[Future] = deque(pool.submit(_sample, s) for s in range(step, step + depth))
    while step < cfg.steps and not _time_is_up(deadline, distributed, device):
        batch = upcoming.popleft().result().to(device)
        upcoming.append(pool.submit(_sample, step + depth))
        run["inputs"] += len(batch.models)
        run["augment_fallbacks"] += batch.augment_fallbacks
        losses = training_losses(net, faces, batch, settings, laplacian, flatten, step_cfg)
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        if torch.isfinite(grad_norm):
            optimizer.step()
            if ema is not None:
                ema.update_parameters(model)
        elif rank == 0:
            log(f"step {step + 1}: non-finite gradient, update skipped")
        step += 1
        values = {k: float(v.detach()) for k, v in losses.items()}
        if rank == 0:
            progress.update(step, f"loss {values['total']:.4f}  iou {1 - values['iou']:.3f}  color {values['color']:.3f}")
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                save()
                with open(history, "a") as fh:
                    fh.write(json.dumps({"step": step, **values, "augment_fallbacks": run["augment_fallbacks"]}) + "\n")
            if cfg.validate_every and step % cfg.validate_every == 0:
                validate_and_export(validated, cfg, step, runs, log)
    _close(pool)
    if rank == 0:
        if run["augment_fallbacks"]:
            log(f"the intake refused the augmented picture of {run['augment_fallbacks']} of this run's {run['inputs']} "
                "inputs: they went in unaugmented")
        save()
        if cfg.export and (not cfg.validate_every or step % cfg.validate_every):
            validate_and_export(validated, cfg, step, runs, log)
    if distributed:
        del net  # release DistributedDataParallel's hold on the process group before it is destroyed
        dist.barrier()
        dist.destroy_process_group()
    return checkpoint


def _step_generator(seed: int, s: int, rank: int, stream: int = 0) -> torch.Generator:
    """A random generator that depends only on (seed, step ``s``, rank) and ``stream`` (independent draws)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + s) * 4099 + rank + stream)


@dataclass(frozen=True)
class _BatchSampler:
    """The training batch of step ``s`` (``self(s)``), which depends only on (seed, s, rank)."""

    views: ViewSet
    batch_size: int
    seed: int
    rank: int
    size: int
    input_views: torch.Tensor
    mirror: bool
    model_weights: torch.Tensor | None
    inputs: InputSettings

    def __call__(self, s: int) -> TwoViewBatch:
        generator = _step_generator(self.seed, s, self.rank)
        return sample_two_views(self.views, self.batch_size, generator, self.size, self.input_views, self.mirror,
                                self.model_weights, self.inputs)


@dataclass(frozen=True)
class _SplitSampler:
    """Step ``s``'s batch: the objects of ``primary``'s batch, then those of ``procedural``'s (its own view set,
    drawn with its own seed)."""

    primary: _BatchSampler
    procedural: _BatchSampler

    def __call__(self, s: int) -> TwoViewBatch:
        return TwoViewBatch.cat([self.primary(s), self.procedural(s)])


@dataclass(frozen=True)
class _MixedSampler:
    """Step ``s``'s batch from ``varied`` with probability ``share`` (decided by (seed, s, rank)), else from ``primary``."""

    primary: _BatchSampler
    varied: _BatchSampler
    share: float
    seed: int
    rank: int

    def __call__(self, s: int) -> TwoViewBatch:
        generator = _step_generator(self.seed, s, self.rank, stream=7919)
        use_varied = float(torch.rand((), generator=generator)) < self.share
        return (self.varied if use_varied else self.primary)(s)


def _check_size(views: ViewSet, path: str, image_size: int) -> None:
    if views.image_size < image_size:
        raise ValueError(f"{path}: views are {views.image_size} px, smaller than the model's {image_size} px")


def _varied_training_views(path: str, views: str, image_size: int) -> ViewSet:
    """The training models of the varied-camera views file ``path``, refusing any that ``views`` validates on."""
    varied = ViewSet(path, "train")
    _check_size(varied, path, image_size)
    with np.load(views) as z:
        validated = set(z["model_id"][z["split"] == "val"].tolist())
    leaked = sorted(validated.intersection(varied.model_id.tolist()))
    if leaked:
        raise ValueError(f"{path} trains on {len(leaked)} models that {views} validates on (e.g. {leaked[0]}): "
                         f"render both with the same split (softras.data.split_by_model)")
    return varied


_SAMPLER: Callable[[int], TwoViewBatch] | None = None
"""The sampler of this process's training run: input worker processes inherit it when they are forked."""


def _sample(s: int) -> TwoViewBatch:
    return _SAMPLER(s)


def _one_thread() -> None:
    torch.set_num_threads(1)


def _input_pool(sampler: Callable[[int], TwoViewBatch], workers: int) -> tuple[Executor, int]:
    """An executor that runs :func:`_sample` and how many steps ahead to keep it busy: one thread, or ``workers``
    forked processes (each on one torch thread) that inherit ``sampler`` without pickling the views."""
    global _SAMPLER
    _SAMPLER = sampler
    if workers == 0:
        return ThreadPoolExecutor(1), 1
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"), initializer=_one_thread), 2 * workers


def _close(pool: Executor) -> None:
    global _SAMPLER
    pool.shutdown(cancel_futures=True)
    _SAMPLER = None


def _time_is_up(deadline: float | None, distributed: bool, device: torch.device) -> bool:
    """Whether ``deadline`` (``time.monotonic()`` seconds) has passed, agreed by all processes.

    Every process must stop after the same step, or the others would wait forever in the next all-reduce;
    so in distributed training the time is up for all as soon as it is up for one.
    """
    if deadline is None:
        return False
    up = time.monotonic() >= deadline
    if distributed:
        flag = torch.tensor([float(up)], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        up = bool(flag.item())
    return up


def validate(model: Generator, cfg: TrainConfig) -> tuple[EvalReport, dict]:
    """Training's validation of ``model``: ``cfg.validate_views`` views of every validation model of ``cfg.views``
    at the validation elevations, each through the intake; returns the report and the protocol that names it."""
    elevations = cfg.validate_elevations if cfg.validate_elevations is not None else cfg.input_elevations
    protocol = {"input": "intake", "views": cfg.views, "views_per_model": cfg.validate_views, "elevations": elevations}
    report = evaluate(model, ViewSet(cfg.views, "val"), Shapes.load(cfg.shapes), views_per_model=cfg.validate_views,
                      elevations=elevations)
    return report, protocol


def validate_and_export(model: Generator, cfg: TrainConfig, step: int, runs: list[dict],
                        log: Callable[[str], None]) -> None:
    """Validate ``model`` through the intake and export it, saying in the log why it was exported or not.

    With ``export_best`` it is exported only when it beats the export file, whose figure is taken from its metadata
    when measured the same way and measured anew otherwise. An export file that cannot be read or validated is
    kept, not replaced: the log says why, and that it has to be moved away (or another export path set)."""
    report, protocol = validate(model, cfg)
    log(f"validation at step {step} (through the intake):\n{format_report(report)}")
    with open(Path(cfg.out_dir) / "validation.jsonl", "a") as fh:
        fh.write(json.dumps({"step": step, **report.as_dict()}) + "\n")
    if not cfg.export:
        return
    if not cfg.export_best:
        why = "export_best is off, every validation exports"
    elif not Path(cfg.export).is_file():
        why = "no export there yet"
    else:
        try:
            best = _export_figure(cfg, protocol, next(model.parameters()).device)
        except (ValueError, OSError) as e:  # ValueError includes WeightsError
            log(f"not exported: the existing export {cfg.export} cannot be compared with step {step} ({e}), so it is "
                "kept; move it away or set another export path to export this run's weights")
            return
        if report.mean_voxel_iou <= best:
            log(f"mean voxel IoU {report.mean_voxel_iou:.4f} does not beat {best:.4f} of {cfg.export}: not exported")
            return
        why = f"mean voxel IoU {report.mean_voxel_iou:.4f} beats {best:.4f} of the export it replaces"
    save_weights(model, cfg.export, metadata={"step": step, "validation": report.as_dict(), "validation_protocol": protocol,
                                              "train_config": cfg.as_dict(), "runs": runs,
                                              "torch": str(torch.__version__)})
    log(f"exported step {step} to {cfg.export}: {why}")


def _export_figure(cfg: TrainConfig, protocol: dict, device: torch.device) -> float:
    """The validation mean voxel IoU of the weights in ``cfg.export`` by this run's ``protocol``: from their metadata
    where they were measured that way, else measured anew. Raises ValueError or OSError where the file cannot be
    read or validated."""
    exported, metadata = load_weights(cfg.export)
    if metadata.get("validation_protocol") == protocol:
        try:
            return float(metadata["validation"]["mean_voxel_iou"])
        except (KeyError, TypeError, ValueError):
            pass  # the figure is missing or malformed: measured anew
    return validate(exported.to(device), cfg)[0].mean_voxel_iou


def _check_export(cfg: TrainConfig) -> None:
    """Refuse a run with ``export_best`` whose existing export file cannot be read: it could never be compared, so
    the run would never export (see :func:`validate_and_export`)."""
    if cfg.export and cfg.export_best and Path(cfg.export).is_file():
        try:
            load_weights(cfg.export)
        except (ValueError, OSError) as e:
            raise ValueError(f"the existing export {cfg.export} cannot be read ({e}); with export_best a run never "
                             "replaces it: move it away or set another export path") from None
