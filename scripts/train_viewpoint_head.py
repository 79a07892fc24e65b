"""Give a trained generator a viewpoint head: which azimuth of the object frame its input shows.

The generator's encoder stays frozen (its shape and colour outputs do not change); only the small head
(:class:`softras.model.ViewpointHead`) is trained, on the encoder's codes of training views taken through the
user's intake with the training augmentation (:func:`softras.inputs.generator_inputs`), at every elevation of the
views file, half of them mirrored (picture flipped, azimuth negated). The target of a view at azimuth ``a`` is a
wrapped Gaussian over the bins (standard deviation ``--label-spread`` bins) centred on ``a``.

Reports, on the validation split at elevation 30 through the clean intake: top-1 accuracy, the share within one bin
and within 45 degrees, and the share of front / back confusions (the most probable azimuth more than 135 degrees
off), and writes the generator with the head (the other tensors unchanged) to ``--out``.

    python scripts/train_viewpoint_head.py --weights models/softras_generator.pt --out cache/viewpoint.pt
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import torch

from softras.augment import AugmentSettings
from softras.data import ViewSet
from softras.inputs import InputSettings, generator_inputs
from softras.losses import azimuth_loss
from softras.model import Generator, GeneratorConfig, load_weights, save_weights


def codes(model: Generator, views: ViewSet, models: np.ndarray, view_ids: np.ndarray, mirrored: np.ndarray,
          settings: InputSettings | None, rng: np.random.Generator | None, batch: int = 256) -> torch.Tensor:
    """Encoder codes (N, D) float32 of the views through the intake (augmented when ``settings`` and ``rng``); a
    mirrored view's picture is flipped left-right first."""
    out = []
    for s in range(0, len(models), batch):
        pictures = np.stack(list(views.pictures(torch.as_tensor(models[s:s + batch]), torch.as_tensor(view_ids[s:s + batch]))))
        flip = mirrored[s:s + batch]
        pictures[flip] = pictures[flip][:, :, ::-1]
        inputs, _, _ = generator_inputs(pictures, model.cfg.image_size, settings, rng)
        with torch.no_grad():
            out.append(model.encode(inputs).float())
    return torch.cat(out)


def azimuths_of(views: ViewSet, view_ids: np.ndarray, mirrored: np.ndarray) -> torch.Tensor:
    """(N,) float32 degrees in [0, 360): the views' azimuths, negated where mirrored."""
    a = views.azimuths[torch.as_tensor(view_ids)].numpy()
    return torch.from_numpy(np.where(mirrored, -a, a) % 360.0).float()


def report(probabilities: torch.Tensor, azimuths: torch.Tensor) -> dict[str, float]:
    """Accuracy figures of (N, bins) probabilities against true azimuths (N,) degrees."""
    bins = probabilities.shape[1]
    predicted = probabilities.argmax(1).float() * (360.0 / bins)
    error = ((predicted - azimuths + 180.0) % 360.0 - 180.0).abs()
    return {"top1": float((error <= 180.0 / bins).float().mean()), "within_one_bin": float((error <= 1.5 * 360.0 / bins).float().mean()),
            "within_45": float((error <= 45.0).float().mean()), "over_135": float((error > 135.0).float().mean()),
            "mean_error_deg": float(error.mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", default="models/softras_generator.pt")
    parser.add_argument("--views", default="cache/views128_e0_30.npz")
    parser.add_argument("--out", required=True)
    parser.add_argument("--bins", type=int, default=24)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--copies", type=int, default=2, help="augmented copies of every training view")
    parser.add_argument("--label-spread", type=float, default=0.5)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    generator, metadata = load_weights(args.weights)
    cfg = replace(generator.cfg, viewpoint_bins=args.bins, viewpoint_hidden=args.hidden)
    model = Generator(cfg)
    model.load_state_dict(generator.state_dict(), strict=False)
    model.eval()

    t0 = time.perf_counter()
    train, val = ViewSet(args.views, "train"), ViewSet(args.views, "val")
    n_views = len(train.azimuths)
    models = np.repeat(np.arange(train.num_models), n_views * args.copies)
    view_ids = np.tile(np.arange(n_views), train.num_models * args.copies)
    mirrored = rng.random(len(models)) < 0.5
    settings = InputSettings(fill_jitter=0.1, offset_jitter=0.03, augment=AugmentSettings())
    x = codes(model, train, models, view_ids, mirrored, settings, rng)
    y = azimuths_of(train, view_ids, mirrored)
    val_ids = val.views_at([30.0]).numpy()
    val_models = np.repeat(np.arange(val.num_models), len(val_ids))
    val_views = np.tile(val_ids, val.num_models)
    no_flip = np.zeros(len(val_models), bool)
    xv, yv = codes(model, val, val_models, val_views, no_flip, None, None), azimuths_of(val, val_views, no_flip)
    print(f"codes: {len(x)} training, {len(xv)} validation views in {time.perf_counter() - t0:.0f} s", flush=True)

    head = model.viewpoint.train()
    optimiser = torch.optim.Adam(head.parameters(), lr=1e-3, weight_decay=1e-4)
    for epoch in range(args.epochs):
        order = torch.randperm(len(x))
        for s in range(0, len(x), 256):
            i = order[s:s + 256]
            loss = azimuth_loss(head(x[i]), y[i], args.label_spread)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        if (epoch + 1) % 10 == 0:
            head.eval()
            with torch.no_grad():
                r = report(torch.softmax(head(xv.float()), 1), yv)
            head.train()
            print(f"epoch {epoch + 1} loss {loss.item():.3f} validation " + " ".join(f"{k} {v:.3f}" for k, v in r.items()), flush=True)
    head.eval()
    with torch.no_grad():
        r = report(torch.softmax(head(xv.float()), 1), yv)
    metadata = dict(metadata, viewpoint_head={"trained_on": args.views, "copies": args.copies, "epochs": args.epochs,
                                              "label_spread": args.label_spread, "seed": args.seed, "validation_elevation_30": r})
    save_weights(model, args.out, metadata)
    print(f"wrote {args.out}; validation (elevation 30, clean intake): {r}")


if __name__ == "__main__":
    main()
