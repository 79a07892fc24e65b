"""How well the intake finds the object in a picture without alpha, against the same picture with alpha.

Every selected validation render goes through the intake twice: as it is (the foreground is its alpha) and composited
on white (optionally also JPEG-compressed), where the intake must estimate the background from the picture's
border. Prints, per intake setting tried, the mean IoU, 10th percentile IoU, precision and recall of the second mask
against the first (both 64 px, each in its own crop) and the mean largest move of the crop box in picture pixels.

    python scripts/research/background_masks.py --tolerance 0.1 0.06 0.04 --max-hole 0.05 0.3
"""

from __future__ import annotations

import argparse
import itertools
from dataclasses import replace

import numpy as np

from softras.augment import jpeg, on_background
from softras.data import ViewSet
from softras.evaluate import evaluation_views
from softras.intake import IntakeResult, IntakeSettings, prepare_array


def agreement(clean: list[IntakeResult], pictures: list[np.ndarray], settings: IntakeSettings) -> dict[str, float]:
    """Mask IoU (mean, 10th percentile), precision, recall and crop-box move of ``pictures`` through the intake
    with ``settings`` against ``clean`` (a refused picture scores 0)."""
    ious, precision, recall, moves = [], [], [], []
    for reference, picture in zip(clean, pictures):
        try:
            result = prepare_array(picture, settings=settings)
        except ValueError:
            for scores in (ious, precision, recall):
                scores.append(0.0)
            continue
        a, b = reference.mask > 0.5, result.mask > 0.5
        both = float((a & b).sum())
        ious.append(both / max(1.0, float((a | b).sum())))
        precision.append(both / max(1.0, float(b.sum())))
        recall.append(both / max(1.0, float(a.sum())))
        moves.append(float(np.abs(np.subtract(reference.crop_box, result.crop_box)).max()))
    return {"iou": float(np.mean(ious)), "iou_p10": float(np.percentile(ious, 10)), "precision": float(np.mean(precision)),
            "recall": float(np.mean(recall)), "box_move_px": float(np.mean(moves)) if moves else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--views", default="cache/views128_e0_30.npz")
    parser.add_argument("--elevation", type=float, default=30.0)
    parser.add_argument("--views-per-model", type=int, default=4)
    parser.add_argument("--tolerance", type=float, nargs="+", default=[IntakeSettings.background_tolerance])
    parser.add_argument("--max-hole", type=float, nargs="+", default=[IntakeSettings.max_hole])
    args = parser.parse_args()
    views = ViewSet(args.views, "val")
    models, view_ids = evaluation_views(views, args.views_per_model, [args.elevation])
    pictures = list(views.pictures(models, view_ids))
    clean = [prepare_array(p) for p in pictures]
    cases = {"white": [on_background(p) for p in pictures], "JPEG 50 on white": [jpeg(on_background(p), 50) for p in pictures]}
    for tolerance, hole in itertools.product(args.tolerance, args.max_hole):
        settings = replace(IntakeSettings(), background_tolerance=tolerance, max_hole=hole)
        for name, perturbed in cases.items():
            r = agreement(clean, perturbed, settings)
            print(f"tolerance {tolerance} max_hole {hole} {name:<17} mask IoU {r['iou']:.3f} (p10 {r['iou_p10']:.3f}) "
                  f"precision {r['precision']:.3f} recall {r['recall']:.3f} crop box moved {r['box_move_px']:.2f} px")


if __name__ == "__main__":
    main()
