"""Train the foreground network (:mod:`softras.foreground`) on product-photo pictures with their true alpha.

    nice -n 10 .venv/bin/python scripts/train_foreground.py --pictures cache/foreground_pictures.npz \
        --run cache/foreground_run --max-minutes 30 --out models/softras_foreground.pt

Pictures come from ``python -m datagen.foreground_pictures`` (training-split models only). A twentieth of the
models (by model, never by picture) is held out and scored every ``--every`` steps (mean mask IoU at threshold
0.5). Each batch is resized to one random side of 128-256 px (the intake hands the network pictures of any size
up to ``net_size``) and flipped left-right at random; the loss is binary cross-entropy plus soft Dice on the
network's half-resolution output against the alpha averaged to that resolution.

The run folder holds ``checkpoint.pt`` (network, optimiser, step, random state), written atomically every
``--every`` steps and at the end; running the command again resumes from it (``--steps`` is the total). With
``--out`` the trained weights are written with their metadata (:func:`softras.foreground.save_foreground`).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))

from softras.fileio import atomic_write  # noqa: E402
from softras.foreground import ForegroundConfig, ForegroundNet, net_input, save_foreground  # noqa: E402


def load_pictures(paths: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pictures (N, S, S, 3) uint8, alpha (N, S, S) uint8 and model index (N,) of one or more pictures files."""
    pictures, alphas, models = [], [], []
    for path in paths:
        with np.load(path) as z:
            pictures.append(z["pictures"])
            alphas.append(z["alpha"])
            models.append(z["model_index"])
    sizes = {p.shape[1:] for p in pictures}
    if len(sizes) != 1:
        raise ValueError(f"pictures files of different sizes: {sorted(sizes)}")
    return np.concatenate(pictures), np.concatenate(alphas), np.concatenate(models)


def batch(pictures: np.ndarray, alphas: np.ndarray, ids: np.ndarray, side: int,
          flips: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Network inputs (B, 6, h, w) at ``side`` px and targets (B, 1, h/2, w/2) in [0, 1] (alpha, area-averaged)."""
    xs, ys = [], []
    for n, i in enumerate(ids):
        picture, alpha = pictures[i], alphas[i]
        if flips is not None and flips[n]:
            picture, alpha = picture[:, ::-1], alpha[:, ::-1]
        x, (h, w) = net_input(np.ascontiguousarray(picture), side)
        a = torch.from_numpy(np.ascontiguousarray(alpha)).float()[None, None] / 255
        a = F.interpolate(a, size=(h // 2, w // 2), mode="area")
        target = torch.zeros(1, 1, x.shape[2] // 2, x.shape[3] // 2)
        target[..., : h // 2, : w // 2] = a
        xs.append(x)
        ys.append(target)
    return torch.cat(xs), torch.cat(ys)


def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(logits)
    dice = 1 - (2 * (p * target).sum((1, 2, 3)) + 1) / ((p + target).sum((1, 2, 3)) + 1)
    return F.binary_cross_entropy_with_logits(logits, target) + dice.mean()


@torch.no_grad()
def validate(net: ForegroundNet, pictures: np.ndarray, alphas: np.ndarray, ids: np.ndarray, side: int) -> float:
    net.eval()
    ious = []
    for start in range(0, len(ids), 16):
        x, y = batch(pictures, alphas, ids[start:start + 16], side)
        p, t = net(x) > 0, y > 0.5
        ious += ((p & t).sum((1, 2, 3)).float() / (p | t).sum((1, 2, 3)).clamp_min(1).float()).tolist()
    net.train()
    return float(np.mean(ious))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pictures", nargs="+", required=True, help="pictures files (datagen.foreground_pictures)")
    parser.add_argument("--run", required=True, help="run folder (checkpoint; resumed when present)")
    parser.add_argument("--out", help="write the trained weights here at the end")
    parser.add_argument("--steps", type=int, default=3000, help="total steps")
    parser.add_argument("--batch-size", type=int, default=12)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--every", type=int, default=100, help="validate and checkpoint every this many steps")
    parser.add_argument("--max-minutes", type=float, help="stop (with a checkpoint) after this many minutes")
    parser.add_argument("--widths", type=int, nargs=5, default=list(ForegroundConfig.widths))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    pictures, alphas, models = load_pictures(args.pictures)
    held = np.random.default_rng(12345).permutation(np.unique(models))[: max(1, len(np.unique(models)) // 20)]
    val_ids, train_ids = np.flatnonzero(np.isin(models, held)), np.flatnonzero(~np.isin(models, held))
    cfg = ForegroundConfig(widths=tuple(args.widths))
    net = ForegroundNet(cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    run = Path(args.run)
    run.mkdir(parents=True, exist_ok=True)
    checkpoint = run / "checkpoint.pt"
    step, history = 0, []
    rng = np.random.default_rng(args.seed)
    if checkpoint.is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        step, history = state["step"], state["history"]
        rng.bit_generator.state = state["rng"]
        print(f"resumed at step {step}", flush=True)

    def save() -> None:
        state = {"net": net.state_dict(), "opt": opt.state_dict(), "step": step, "history": history,
                 "rng": rng.bit_generator.state, "args": vars(args)}
        atomic_write(checkpoint, lambda fh: torch.save(state, fh))

    start = time.monotonic()
    net.train()
    sides = (128, 160, 192, 224, 256)
    while step < args.steps:
        lr = args.lr * 0.5 * (1 + np.cos(np.pi * step / args.steps))  # cosine schedule over the total steps
        for group in opt.param_groups:
            group["lr"] = lr
        ids = rng.choice(train_ids, args.batch_size, replace=False)
        x, y = batch(pictures, alphas, ids, int(rng.choice(sides)), rng.random(args.batch_size) < 0.5)
        loss = loss_fn(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % args.every == 0 or step == args.steps:
            iou = validate(net, pictures, alphas, val_ids, cfg.net_size)
            history.append({"step": step, "loss": loss.item(), "val_iou": iou})
            save()
            print(f"step {step} loss {loss.item():.4f} held-out IoU {iou:.4f} "
                  f"({(time.monotonic() - start) / 60:.1f} min)", flush=True)
        if args.max_minutes and time.monotonic() - start > 60 * args.max_minutes:
            save()
            print(f"stopped after {args.max_minutes} minutes at step {step} (checkpoint saved)", flush=True)
            break
    if args.out:
        metadata = {"steps": step, "batch_size": args.batch_size, "lr": args.lr,
                    "pictures": [str(p) for p in args.pictures], "pictures_count": int(len(pictures)),
                    "held_out_models": int(len(held)), "held_out_iou": history[-1]["val_iou"] if history else None,
                    "trained": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
                    "data": "engine renders of training-split models of shapes_train.npz on synthetic studio backdrops"}
        print(save_foreground(args.out, net.eval(), metadata))
    return 0


if __name__ == "__main__":
    sys.exit(main())
