"""Which way do a procedural pack's shapes face, against the real training models of their category?

    python -m datagen.infinigen_fronts --pack cache/infinigen_shapes.npz --data ../shared/data/shapes_train.npz

Fronts are not unified across sources (``../shared/data/README.md``), and a wrong one misleads the generator's
viewpoint head and teaches shapes turned away from the pictures. For each category of the pack, the mean occupancy
grid (``voxels_shell``) of its shapes is compared, under the four quarter turns about +y, with the mean grid of the
real training-split models of the matching category, separately for each source of the real data (Pix3D, ShapeNet).
The score is the soft IoU of the two mean grids: sum(min) / sum(max). A category is **ambiguous** when the best turn
beats the runner-up by less than ``--margin``: round tables, cups, vases and bottles look alike from every side.

Beside it, the median bounding-box extents (x, y, z) of both, i.e. their proportions (the largest extent is 1): where
the pack's lie outside the real models' the factories' parameters need widening or reweighting. Prints one line per
(category, source) and a JSON summary with the turn to add to
:data:`datagen.infinigen_shapes.FRONT_TURNS` (0 when the pack already faces like the real data).
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from datagen.infinigen_shapes import quarter_turn
from softras.data import Shapes, split_by_model

# pack category -> the real data's category it should face like
REAL_CATEGORY = {"chair": "chair", "table": "table", "desk": "desk", "bed": "bed", "sofa": "sofa",
                 "bookcase": "bookcase", "cabinet": "wardrobe", "bathtub": "bathtub", "toilet": "toilet",
                 "cup": "cup", "bottle": "bottle", "vase": "vase"}


def mean_grid(shapes: Shapes, rows: np.ndarray) -> np.ndarray:
    """Mean ``voxels_shell`` occupancy of the given rows: (32, 32, 32) float64."""
    bits = np.unpackbits(shapes.voxels_shell[rows], axis=1, count=32 ** 3)
    return bits.reshape(-1, 32, 32, 32).mean(0)


def median_extents(shapes: Shapes, rows: np.ndarray) -> list[float]:
    """Median bounding-box extents (x, y, z) of the given models: their proportions (the largest extent is 1)."""
    ext = [np.ptp(shapes.vertices[shapes.vert_offsets[i]:shapes.vert_offsets[i + 1]], axis=0) for i in rows]
    return [round(float(x), 3) for x in np.median(np.stack(ext), axis=0)]


def soft_iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.minimum(a, b).sum() / max(np.maximum(a, b).sum(), 1e-12))


def measure(pack: Shapes, real: Shapes, real_source: np.ndarray, margin: float) -> list[dict]:
    """Per (pack category, real source): the soft IoU under each turn, the best turn and whether it is ambiguous.

    ``real_source``: (N,) str, the ``source`` array of the real shapes file."""
    train = split_by_model(real.category, real.model_id) == "train"
    out = []
    for category in sorted(set(pack.category.tolist())):
        target = REAL_CATEGORY.get(category)
        if target is None:
            out.append({"category": category, "source": None, "note": "no real counterpart"})
            continue
        ours = mean_grid(pack, np.nonzero(pack.category == category)[0])
        for source in sorted(set(real_source[train & (real.category == target)].tolist())):
            rows = np.nonzero(train & (real.category == target) & (real_source == source))[0]
            theirs = mean_grid(real, rows)
            scores = [soft_iou(quarter_turn(ours, t), theirs) for t in range(4)]
            order = np.argsort(scores)[::-1]
            out.append({"category": category, "real": target, "source": source, "models": len(rows),
                        "scores": [round(s, 4) for s in scores], "best_turn": int(order[0]),
                        "ambiguous": bool(scores[order[0]] - scores[order[1]] < margin),
                        "extents_real": median_extents(real, rows),
                        "extents_pack": median_extents(pack, np.nonzero(pack.category == category)[0])})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pack", required=True, help="a procedural shape pack")
    parser.add_argument("--data", required=True, help="the real shapes file, e.g. ../shared/data/shapes_train.npz")
    parser.add_argument("--margin", type=float, default=0.02, help="best minus runner-up below this: ambiguous")
    args = parser.parse_args(argv)
    with np.load(args.data) as z:
        source = z["source"].astype(str)
    rows = measure(Shapes.load(args.pack), Shapes.load(args.data), source, args.margin)
    for r in rows:
        if r.get("source") is None:
            print(f"{r['category']:>10}: {r['note']}")
        else:
            turns = "  ".join(f"{t}: {s:.3f}" for t, s in enumerate(r["scores"]))
            flag = "  AMBIGUOUS" if r["ambiguous"] else ""
            print(f"{r['category']:>10} vs {r['source']:<12} ({r['models']:>3} models)  {turns}  -> turn "
                  f"{r['best_turn']}{flag}; median extents x, y, z: real {r['extents_real']}, "
                  f"pack {r['extents_pack']}")
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
