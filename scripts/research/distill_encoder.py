"""Start a lean generator from a trained one: same layers, except a narrower encoder whose new layers are distilled.

The lean encoder (``GeneratorConfig.encoder_reduce``) puts a 1x1 convolution between the strided convolutions and
the first fully connected layer, which then reads ``encoder_reduce x 8 x 8`` features instead of 256 x 8 x 8. Every
other layer is copied from the teacher; the new 1x1 convolution (with its BatchNorm) and the new first FC layer
are fitted to reproduce the teacher's first FC layer's pre-activations (mean squared error relative to their
variance) on training inputs made exactly as training makes them (through the intake, with the config's framing
jitter and augmentation). The copied convolutions are frozen here, so their features are computed once for a bank
of inputs. The result is a weights file to fine-tune from (``init_weights`` in a training config).

    python scripts/research/distill_encoder.py --config configs/generator.toml --teacher models/softras_generator.pt \\
        --reduce 32 --out runs/lean/distilled.pt
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import nn

from softras.data import ViewSet, sample_two_views
from softras.inputs import InputSettings
from softras.model import Generator, load_weights, save_weights
from softras.train import TrainConfig


def feature_bank(teacher: Generator, cfg: TrainConfig, samples: int, seed: int, batch: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Conv features (N, C, h, w) of the teacher's frozen convolutions and its first FC layer's pre-activations
    (N, D) on ``samples`` training inputs drawn as training draws them."""
    views = ViewSet(cfg.views, "train")
    settings = InputSettings(cfg.fill_jitter, cfg.offset_jitter, cfg.augment)
    input_views = views.views_at(cfg.input_elevations)
    weights = views.model_weights(cfg.category_balance) if cfg.category_balance else None

    def inputs(k: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed * 1_000_003 + k)
        return sample_two_views(views, batch, g, cfg.model.image_size, input_views, cfg.mirror, weights, settings).inputs

    features, targets = [], []
    with ThreadPoolExecutor(1) as pool, torch.no_grad():
        upcoming = pool.submit(inputs, 0)
        for k in range(-(-samples // batch)):
            x = upcoming.result()
            upcoming = pool.submit(inputs, k + 1)
            f = teacher.encoder.conv(x)
            features.append(f)
            targets.append(teacher.encoder.fc[0](f.flatten(1)))
        upcoming.cancel()
    return torch.cat(features)[:samples], torch.cat(targets)[:samples]


def distill(teacher: Generator, reduce: int, features: torch.Tensor, targets: torch.Tensor, steps: int, batch: int,
            lr: float, log_every: int = 200) -> Generator:
    """A lean copy of ``teacher`` whose new layers map ``features`` to ``targets``; returns it in eval mode."""
    student = Generator(dataclasses.replace(teacher.cfg, encoder_reduce=reduce))
    own = student.state_dict()
    copied = {k: v for k, v in teacher.state_dict().items() if k in own and own[k].shape == v.shape and not k.startswith("encoder.fc.0.")}
    student.load_state_dict(copied, strict=False)
    n_conv = len(teacher.encoder.conv)
    new = nn.Sequential(*list(student.encoder.conv)[n_conv:], nn.Flatten(1), student.encoder.fc[0])
    optimizer = torch.optim.Adam(new.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    scale = targets.var(0).mean()
    g = torch.Generator().manual_seed(0)
    new.train()
    start = time.monotonic()
    for step in range(1, steps + 1):
        idx = torch.randint(len(features), (batch,), generator=g)
        loss = ((new(features[idx]) - targets[idx]) ** 2).mean() / scale
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % log_every == 0 or step == steps:
            print(f"step {step}: relative MSE {loss.item():.4f} ({time.monotonic() - start:.0f} s)", flush=True)
    return student.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/generator.toml", help="training config: views, input settings")
    parser.add_argument("--teacher", default="models/softras_generator.pt")
    parser.add_argument("--reduce", type=int, default=32, help="channels of the lean encoder's 1x1 convolution")
    parser.add_argument("--samples", type=int, default=24576, help="training inputs in the feature bank")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=7, help="inputs differ from those of training runs with seed 0")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    cfg = TrainConfig.from_toml(args.config)
    teacher, metadata = load_weights(args.teacher)
    start = time.monotonic()
    features, targets = feature_bank(teacher, cfg, args.samples, args.seed)
    print(f"feature bank: {tuple(features.shape)} in {time.monotonic() - start:.0f} s", flush=True)
    held_out = len(features) // 16
    student = distill(teacher, args.reduce, features[held_out:], targets[held_out:], args.steps, args.batch, args.lr)
    with torch.no_grad():
        n_conv = len(teacher.encoder.conv)
        predicted = student.encoder.fc[0](student.encoder.conv[n_conv:](features[:held_out]).flatten(1))
        error = float(((predicted - targets[:held_out]) ** 2).mean() / targets.var(0).mean())
    print(f"held-out relative MSE {error:.4f}")
    # the student continues the teacher's ledger (steps and training runs), which fine-tuning extends
    save_weights(student, args.out, metadata={
        "step": metadata.get("step", 0), "runs": metadata.get("runs", []),
        "distilled_from": {"teacher": args.teacher, "teacher_step": metadata.get("step"), "samples": args.samples,
                           "steps": args.steps, "held_out_relative_mse": round(error, 5)}})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
