"""Stretched copies of the training models of a shapes file (the layout of ``shared/data/shapes_train.npz``).

    .venv/bin/python -m datagen.stretched_shapes --data ../shared/data/shapes_train.npz \\
        --out cache/stretched_shapes.npz --copies 3
    .venv/bin/python -m datagen.training_views --data cache/stretched_shapes.npz \\
        --out cache/views_stretched_e0_30.npz --elevations 0 30 --val-fraction 0

Shape augmentation for a small data set: every model of the training split (the split of
:func:`softras.data.split_by_model`, so no validation model leaks in) is scaled along x, y and z by independent
factors drawn log-uniformly from ``[1 / max_stretch, max_stretch]``, then centred and rescaled to a largest extent of
1 as in the data README. A table gets other proportions, never another orientation: the generator predicts the
object frame, so the copies keep it. Category, source and colours are the original's; the model id is
``<original id>~stretch<k>``. ``voxels`` (winding number at the voxel centres) and ``voxels_shell`` (plus the
voxels the surface touches) are recomputed for the stretched meshes.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
import torch

from softras.data import Shapes, split_by_model
from softras.fileio import atomic_write
from softras.voxelize import shapes_file_voxels


def stretch(vertices: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Vertices (V, 3) scaled by ``factors`` (3,), then centred and scaled to a largest bounding-box extent of 1."""
    v = vertices.astype(np.float64) * factors
    lo, hi = v.min(0), v.max(0)
    return ((v - (lo + hi) / 2) / (hi - lo).max()).astype(np.float32)


def make(path: Path, copies: int, max_stretch: float, seed: int) -> dict[str, np.ndarray]:
    """``copies`` stretched copies of every training-split model of the shapes file ``path``, as the arrays of a
    shapes file."""
    if copies < 1 or max_stretch < 1.0:
        raise ValueError("need copies >= 1 and max_stretch >= 1")
    rng = np.random.default_rng(seed)
    shapes = Shapes.load(path)
    train = np.flatnonzero(split_by_model(shapes.category, shapes.model_id) == "train")
    with np.load(path) as z:
        source, has_color = z["source"], z["has_color"]
    verts, faces, colors, vox, shell, index = [], [], [], [], [], []
    for i in train:
        v = shapes.vertices[shapes.vert_offsets[i] : shapes.vert_offsets[i + 1]]
        f = shapes.faces[shapes.face_offsets[i] : shapes.face_offsets[i + 1]]
        c = shapes.face_colors[shapes.face_offsets[i] : shapes.face_offsets[i + 1]]
        for _ in range(copies):
            s = stretch(v, np.exp(rng.uniform(-np.log(max_stretch), np.log(max_stretch), 3)))
            packed = shapes_file_voxels(torch.from_numpy(s), torch.from_numpy(f.astype(np.int64)))
            vox.append(packed[0]), shell.append(packed[1])
            verts.append(s), faces.append(f), colors.append(c), index.append(i)
    index = np.array(index)
    copy = np.tile(np.arange(copies), len(train))
    return dict(
        vertices=np.concatenate(verts), faces=np.concatenate(faces), face_colors=np.concatenate(colors),
        vert_offsets=np.cumsum([0] + [len(v) for v in verts]).astype(np.int64),
        face_offsets=np.cumsum([0] + [len(f) for f in faces]).astype(np.int64),
        voxels=np.stack(vox), voxels_shell=np.stack(shell), category=shapes.category[index],
        model_id=np.array([f"{shapes.model_id[i]}~stretch{k}" for i, k in zip(index, copy)]),
        source=source[index], has_color=has_color[index],
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=Path, help="shapes file, e.g. ../shared/data/shapes_train.npz")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--copies", type=int, default=3, help="stretched copies per training model (default 3)")
    ap.add_argument("--max-stretch", type=float, default=1.4, help="largest scale factor per axis (default 1.4)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    arrays = make(args.data, args.copies, args.max_stretch, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    print(atomic_write(args.out, lambda fh: fh.write(buffer.getvalue())))


if __name__ == "__main__":
    main()
