"""Render the generator's training views of ``shapes_train.npz`` with Cycles and cache them in one npz.

Usage (from the repository root, with the venv that has the ``bpy`` module)::

    python -m datagen.training_views --data shared/data/shapes_train.npz --out cache/views_e30.npz
    # default: 64 x 64, elevation 30 deg, azimuths 0, 15, ..., 345 (24 views per model), 32 samples

    # the paper's 120-view setting (5 elevations x 24 azimuths; the elevation list is the user's choice):
    python -m datagen.training_views --data ... --out cache/views_120.npz --elevations -30 0 30 45 60

Views are ordered elevation-major: view ``k`` has elevation ``elevations[k // n_az]`` and azimuth
``(k % n_az) * azimuth_step``. Cameras follow the project convention (README "Camera convention", see
:mod:`softras_blender.render`): distance 2.732, full vertical FOV 30 deg, looking at the origin, up +Y (object frame).

Output (one ``np.savez_compressed`` file, written atomically via a temporary file + ``os.replace``; loads
without pickle):

=============== ======================== ==========================================================
key             dtype, shape             meaning
=============== ======================== ==========================================================
``images``      uint8 (N, V, S, S, 4)    RGBA renders, straight alpha, row 0 = top, sRGB colours
``elevations``  float32 (V,)             degrees, per view
``azimuths``    float32 (V,)             degrees, per view
``model_index`` int64 (N,)               index of the model in the source npz
``category``    str (N,)                 copied from the source
``model_id``    str (N,)                 copied from the source
``split``       str (N,)                 ``'train'`` / ``'val'``, by model (see :func:`split_by_model`)
``distance``    float32 ()               camera distance
``fov``         float32 ()               full vertical field of view, degrees
=============== ======================== ==========================================================

Models with no faces or with faces referencing out-of-range vertices are reported on stderr and left out
(so N can be smaller than the number of source models; ``model_index`` says which ones are present).

Resuming: finished models are kept as small per-model files in ``<out>.parts/`` while the run goes on; a run
killed half-way picks up where it stopped when started again with the same settings (``--no-resume`` starts
afresh). The folder is deleted after the final file is written.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from datagen.clock import format_duration
from softras.data import save_views, split_by_model
from softras.fileio import atomic_write
from softras_blender import render as R

__all__ = ["view_grid", "main"]

_PART_FORMAT = 1


def view_grid(elevations: Sequence[float], azimuth_step: float) -> tuple[np.ndarray, np.ndarray]:
    """Elevation-major view list.

    Returns:
        ``(elevations, azimuths)``, each float32 (V,) with ``V = len(elevations) * n_az`` and azimuths
        ``0, step, 2 step, ... < 360``.
    """
    if not (0 < azimuth_step <= 360):
        raise ValueError("azimuth_step must lie in (0, 360]")
    az = np.arange(0.0, 360.0 - 1e-9, float(azimuth_step))
    el = np.asarray(list(elevations), dtype=np.float64)
    if el.size == 0:
        raise ValueError("need at least one elevation")
    return np.repeat(el, len(az)).astype(np.float32), np.tile(az, len(el)).astype(np.float32)


def _clear_parts(parts: Path) -> None:
    for p in parts.glob("model_*.npz"):
        p.unlink()
    (parts / "meta.json").unlink(missing_ok=True)
    for p in parts.glob(".model_*.tmp-*"):
        p.unlink()


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m datagen.training_views",
        description="Render training views of shapes_train.npz with Cycles into one compressed npz.",
        epilog="Paper's 120-view setting: --elevations -30 0 30 45 60 (5 x 24 views; choose the list yourself).",
    )
    ap.add_argument("--data", required=True, type=Path, help="source npz (shapes_train.npz)")
    ap.add_argument("--out", required=True, type=Path, help="output npz, e.g. cache/views_e30.npz")
    ap.add_argument("--size", type=int, default=64, help="square image size in pixels (default 64)")
    ap.add_argument("--elevations", type=float, nargs="+", default=[30.0], help="elevations in degrees (default 30)")
    ap.add_argument("--azimuth-step", type=float, default=15.0, help="azimuth step in degrees (default 15 -> 24 azimuths)")
    ap.add_argument("--limit", type=int, default=None, help="render only the first N source models")
    ap.add_argument("--val-fraction", type=float, default=0.1, help="per-category fraction of val models (default 0.1)")
    ap.add_argument("--samples", type=int, default=R.DEFAULT_SAMPLES, help=f"Cycles samples (default {R.DEFAULT_SAMPLES})")
    ap.add_argument("--distance", type=float, default=R.DEFAULT_DISTANCE, help="camera distance (default 2.732)")
    ap.add_argument("--fov", type=float, default=R.DEFAULT_FOV, help="full vertical field of view, degrees (default 30)")
    ap.add_argument("--no-resume", action="store_true", help="ignore per-model files left by an interrupted run")
    args = ap.parse_args(argv)
    if args.size < 1 or args.samples < 1:
        ap.error("--size and --samples must be positive")
    if args.limit is not None and args.limit < 1:
        ap.error("--limit must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status (0 on success)."""
    args = _parse_args(argv)
    elevations, azimuths = view_grid(args.elevations, args.azimuth_step)
    n_views = len(elevations)

    src = np.load(args.data)
    category = src["category"].astype(str)
    model_id = src["model_id"].astype(str)
    n_src = len(category)
    split_all = split_by_model(category, model_id, args.val_fraction)
    vert_off, face_off = src["vert_offsets"], src["face_offsets"]
    vertices, faces, face_colors = src["vertices"], src["faces"], src["face_colors"]
    todo = range(n_src if args.limit is None else min(args.limit, n_src))

    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    parts = out.with_name(out.name + ".parts")
    st = args.data.stat()
    meta = {
        "format": _PART_FORMAT,
        "data": str(args.data.resolve()),
        "data_size": st.st_size,
        "data_mtime": int(st.st_mtime),
        "size": args.size,
        "samples": args.samples,
        "distance": args.distance,
        "fov": args.fov,
        "elevations": elevations.tolist(),
        "azimuths": azimuths.tolist(),
    }
    if parts.is_dir():
        try:
            old = json.loads((parts / "meta.json").read_text())
        except (OSError, ValueError):
            old = None
        if args.no_resume or old != meta:
            _clear_parts(parts)
    parts.mkdir(exist_ok=True)
    (parts / "meta.json").write_text(json.dumps(meta))

    scene = R.prepare_scene(size=args.size, samples=args.samples)
    print(
        f"rendering {len(todo)} models x {n_views} views at {args.size}x{args.size}, {args.samples} samples -> {out}",
        file=sys.stderr, flush=True,
    )
    kept: list[int] = []
    skipped: list[tuple[int, str]] = []
    t0 = time.perf_counter()
    rendered_time, rendered_views = 0.0, 0
    for k, i in enumerate(todo, 1):
        part = parts / f"model_{i:05d}.npz"
        label = f"{category[i]}/{model_id[i]}"
        v = vertices[vert_off[i]:vert_off[i + 1]]
        f = faces[face_off[i]:face_off[i + 1]]
        c = face_colors[face_off[i]:face_off[i + 1]]
        try:
            R.validate_mesh_arrays(v, f, c)
        except ValueError as exc:
            skipped.append((i, str(exc)))
            print(f"[{k}/{len(todo)}] SKIP #{i} {label}: {exc}", file=sys.stderr, flush=True)
            continue
        if part.exists():
            kept.append(i)
            print(f"[{k}/{len(todo)}] #{i} {label}: done earlier", file=sys.stderr, flush=True)
            continue
        t = time.perf_counter()
        images = R.render_views(v, f, c, elevations, azimuths, size=args.size, distance=args.distance,
                                fov=args.fov, scene=scene)
        atomic_write(part, lambda fh: np.savez(fh, images=images))
        kept.append(i)
        dt = time.perf_counter() - t
        rendered_time += dt
        rendered_views += n_views
        per_view = rendered_time / rendered_views
        eta = per_view * n_views * (len(todo) - k)
        print(
            f"[{k}/{len(todo)}] #{i} {label}: {len(f)} faces, {dt:.1f}s ({dt / n_views:.3f} s/view, "
            f"mean {per_view:.3f}), elapsed {format_duration(time.perf_counter() - t0)}, ETA {format_duration(eta)}",
            file=sys.stderr, flush=True,
        )

    idx = np.asarray(kept, dtype=np.int64)
    images = np.zeros((len(idx), n_views, args.size, args.size, 4), dtype=np.uint8)
    for j, i in enumerate(idx):
        with np.load(parts / f"model_{i:05d}.npz") as z:
            images[j] = z["images"]
    save_views(
        out,
        images=images,
        elevations=elevations,
        azimuths=azimuths,
        model_index=idx,
        category=category[idx],
        model_id=model_id[idx],
        split=split_all[idx],
        distance=np.float32(args.distance),
        fov=np.float32(args.fov),
    )
    _clear_parts(parts)
    try:
        parts.rmdir()
    except OSError:
        pass
    n_val = int((split_all[idx] == "val").sum())
    print(
        f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB): {len(idx)} models ({n_val} val), {n_views} views, "
        f"{len(skipped)} skipped, total {format_duration(time.perf_counter() - t0)}",
        file=sys.stderr, flush=True,
    )
    for i, why in skipped:
        print(f"  skipped #{i} {category[i]}/{model_id[i]}: {why}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
