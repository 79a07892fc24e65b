"""A shape pack of procedural furniture and household objects from Infinigen, in the layout of ``shapes_train.npz``.

    python -m datagen.infinigen_shapes --out cache/infinigen_shapes.npz --count 5000 --workers 2

One command: it creates Infinigen's own virtual environment in ``.venv-infinigen`` the first time (``infinigen``
pins ``bpy==4.2.0``, so it cannot share the project's venv; a few minutes, git-ignored), spawns the assets there in
``--workers`` processes (:mod:`datagen.infinigen_worker`), and turns each into a shape of the pack here: the frame
of ``../shared/data/README.md`` (Y up, bounding box centred, largest extent 1, the front turned the way the real
models of its category face, :data:`FRONT_TURNS`), stray pieces dropped, ``voxels`` and ``voxels_shell`` by the same
protocol as the shared file (:func:`softras.voxelize.shapes_file_voxels`).

The plan is fixed by ``--count`` and ``--first-seed``: each factory gets its share (:data:`FACTORIES`) of the count
and the seeds ``first-seed, first-seed + 1, ...``; a shape is the pure function of its factory and seed, so the pack
does not depend on ``--workers`` or on interruptions. Everything is cached under ``--work`` (raw meshes, then shapes)
and an interrupted run resumes where it stopped. The pack is written atomically, in plan order, with a report
beside it (``<out>.report.json``): per factory the shapes kept, failed and dropped (and why), faces, the share of
faces whose colour came from the asset's own shader, and seconds per shape.

``model_id`` is ``<Factory>_<seed>``, ``source`` is ``"infinigen"``, ``has_color`` is True where at least half the
shape's faces (by area) got their colour from its shader.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from datagen.clock import format_duration
from softras.fileio import atomic_write
from softras.voxelize import shapes_file_voxels, unpack_voxels

ROOT = Path(__file__).resolve().parents[1]
INFINIGEN = "infinigen==1.15.5"  # pins bpy==4.2.0 and Python 3.11
WORKER = Path(__file__).resolve().with_name("infinigen_worker.py")


@dataclass(frozen=True)
class Factory:
    """An Infinigen asset factory, the category its shapes get and its share of the pack."""

    name: str
    category: str
    share: float


# Left out, as measured: BarChairFactory (bar stools: every one of a first sample failed the seat test, and the nearest
# real shape of such stools scores a voxel IoU of 0.065), KitchenCabinetFactory (rows of kitchen units, long and flat,
# unlike any real cabinet or wardrobe; a fifth of their faces coloured); BedFactory is built without its cloth
# simulations (datagen/infinigen_worker.py).
FACTORIES = (
    Factory("ChairFactory", "chair", 0.09), Factory("OfficeChairFactory", "chair", 0.04),
    Factory("ArmChairFactory", "chair", 0.03),
    Factory("TableDiningFactory", "table", 0.05), Factory("CoffeeTableFactory", "table", 0.03),
    Factory("SideTableFactory", "table", 0.03), Factory("TableCocktailFactory", "table", 0.03),
    Factory("SimpleDeskFactory", "desk", 0.06),
    Factory("BedFactory", "bed", 0.05), Factory("BedFrameFactory", "bed", 0.03),
    Factory("SofaFactory", "sofa", 0.07),
    Factory("SimpleBookcaseFactory", "bookcase", 0.03), Factory("LargeShelfFactory", "bookcase", 0.03),
    Factory("CellShelfFactory", "bookcase", 0.02),
    Factory("SingleCabinetFactory", "cabinet", 0.06),
    Factory("BathtubFactory", "bathtub", 0.05), Factory("ToiletFactory", "toilet", 0.05),
    Factory("StandingSinkFactory", "sink", 0.05),
    Factory("FloorLampFactory", "lamp", 0.03), Factory("DeskLampFactory", "lamp", 0.03),
    Factory("CupFactory", "cup", 0.04), Factory("BottleFactory", "bottle", 0.04), Factory("VaseFactory", "vase", 0.04),
)

# Quarter turns about +y (each takes x to -z) that bring an Infinigen asset's front (+X in Blender, +x here) to where
# the real models of its category face. Measured by `python -m datagen.infinigen_fronts` (category-mean occupancy
# under the four turns against the real training models'): one turn (front towards -z, facing the azimuth-0 camera)
# for chairs, sofas, beds, cabinets, toilets and cups; tables score best turned a quarter further (their long side
# along x, as the real tables'), and which of the two long sides is the front cannot be told. Desks, bookcases and
# bathtubs score alike front and back; bottles and vases alike from every side; lamps and sinks have no real
# counterpart: they take the real data's common convention, front towards -z.
FRONT_TURNS = defaultdict(lambda: 1, table=0)

MIN_SHELL_VOXELS = 100  # fewer occupied voxels (of 32^3; the largest extent alone spans 32): a line, a few sticks
STRAY_AREA = 0.01  # a connected piece with less than this share of the area, apart from the rest, is dropped


def plan(count: int, first_seed: int = 0) -> list[tuple[Factory, int]]:
    """The jobs of a pack of ``count`` shapes: each factory's share of it (largest remainders), seeds from
    ``first_seed``. Interleaved: the k-th of a factory's n jobs comes at (k + 1/2) / n of the list, so a run
    stopped part way has made every factory's share of what it made."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    shares = np.array([f.share for f in FACTORIES])
    exact = count * shares / shares.sum()
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: count - counts.sum()]:
        counts[i] += 1
    jobs = [((k + 0.5) / n, i, f, first_seed + k) for i, (f, n) in enumerate(zip(FACTORIES, counts)) for k in range(n)]
    return [(f, seed) for _, _, f, seed in sorted(jobs, key=lambda j: j[:2])]


def job_name(factory: Factory, seed: int) -> str:
    return f"{factory.name}_{seed}"


def ensure_environment(venv: Path, log=print) -> Path:
    """The Python of Infinigen's own venv, created (``python3.11 -m venv`` + ``pip install infinigen``) if missing."""
    python = venv / "bin" / "python"
    if python.exists() and subprocess.run([str(python), "-c", "import infinigen, bpy"], capture_output=True).returncode == 0:
        return python
    log(f"setting up {venv} with {INFINIGEN} (a few minutes, once)")
    subprocess.run([os.environ.get("PYTHON", "python3.11"), "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", INFINIGEN], check=True)
    return python


def _components(faces: np.ndarray, vertex_count: int) -> np.ndarray:
    """Connected component label per face (faces sharing a vertex are connected): (F,) int64."""
    parent = np.arange(vertex_count)

    def find(x: np.ndarray) -> np.ndarray:
        while True:
            up = parent[x]
            if np.array_equal(up, x):
                return x
            parent[x] = parent[up]
            x = parent[x]

    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]]])
    for _ in range(64):  # union by repeated hooking of larger roots under smaller ones; converges in a few passes
        a, b = find(edges[:, 0]), find(edges[:, 1])
        differ = a != b
        if not differ.any():
            break
        lo, hi = np.minimum(a, b)[differ], np.maximum(a, b)[differ]
        np.minimum.at(parent, hi, lo)
    return find(faces[:, 0])


def _drop_strays(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Faces to keep: every connected piece but small ones (< STRAY_AREA of the area) lying apart from the rest
    (their bounding box does not touch the bounding box of the large pieces)."""
    tri = vertices[faces]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    label = _components(faces, len(vertices))
    ids, inverse = np.unique(label, return_inverse=True)
    piece_area = np.bincount(inverse, weights=area, minlength=len(ids))
    small = piece_area < STRAY_AREA * area.sum()
    big = ~small[inverse]
    if not big.any():
        return np.ones(len(faces), bool)
    lo, hi = tri[big].reshape(-1, 3).min(0), tri[big].reshape(-1, 3).max(0)
    keep = np.ones(len(faces), bool)
    margin = 0.02 * (hi - lo).max()
    for k in np.nonzero(small)[0]:
        members = inverse == k
        p = tri[members].reshape(-1, 3)
        if (p.max(0) < lo - margin).any() or (p.min(0) > hi + margin).any():
            keep[members] = False
    return keep


def _inside_bulk(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Faces to keep: all but those reaching far outside the bulk of the shape (2nd to 98th percentile of the
    vertices on each axis, widened by half the largest of those ranges): the few exploded vertices that some
    assets' geometry nodes leave thousands of metres away."""
    lo, hi = (np.percentile(vertices, q, axis=0, method="nearest") for q in (2, 98))
    margin = 0.5 * (hi - lo).max()
    inside = ((vertices >= lo - margin) & (vertices <= hi + margin)).all(1)
    return inside[faces].all(1)


def quarter_turn(grids: np.ndarray, turns: int) -> np.ndarray:
    """Occupancy grids (..., R, R, R) indexed [x, y, z] turned ``turns`` quarter turns about +y, each taking a
    point (x, y, z) to (z, y, -x) as :func:`to_data_frame` does. Exact: the grid is symmetric under these turns."""
    out = grids
    for _ in range(turns % 4):  # new[i, j, k] = old at the point (x, z) = (-z', x'): old[R - 1 - k, j, i]
        out = np.flip(out, axis=-3).swapaxes(-3, -1)
    return out


def turned(shape: dict[str, np.ndarray], turns: int) -> dict[str, np.ndarray]:
    """A converted shape turned ``turns`` more quarter turns about +y: vertices and both voxel grids, exactly."""
    out = dict(shape)
    v = shape["vertices"]
    for _ in range(turns % 4):
        v = np.stack([v[:, 2], v[:, 1], -v[:, 0]], 1)
    out["vertices"] = np.ascontiguousarray(v)
    for key in ("voxels", "voxels_shell"):
        grid = quarter_turn(unpack_voxels(shape[key]).numpy(), turns)
        out[key] = np.packbits(np.ascontiguousarray(grid).ravel())
    out["turns"] = np.int64((int(shape["turns"]) + turns) % 4)
    return out


def to_data_frame(vertices: np.ndarray, turns: int) -> np.ndarray:
    """Blender Z-up (front +X) -> the data's Y-up frame (x, y, z) = (X, Z, -Y), then ``turns`` quarter turns
    about +y (x -> -z each), then centred on its bounding box and scaled to a largest extent of 1. float32."""
    v = np.stack([vertices[:, 0], vertices[:, 2], -vertices[:, 1]], 1).astype(np.float64)
    for _ in range(turns % 4):
        v = np.stack([v[:, 2], v[:, 1], -v[:, 0]], 1)
    lo, hi = v.min(0), v.max(0)
    extent = (hi - lo).max()
    if not np.isfinite(extent) or extent <= 0:
        raise ValueError("degenerate bounding box")
    return ((v - (lo + hi) / 2) / extent).astype(np.float32)


def _has_support(shell: np.ndarray, category: str) -> bool:
    """Whether a seat, top or bed surface is there: some horizontal layer of the middle or upper part covers at
    least a third of the bounding box's footprint. Only for categories that have one; True otherwise."""
    bands = {"chair": (0.2, 0.7), "sofa": (0.15, 0.7), "table": (0.5, 1.0), "desk": (0.5, 1.0), "bed": (0.1, 0.7)}
    if category not in bands:
        return True
    grid = shell.reshape(32, 32, 32)  # [x, y, z]
    (x0, x1), (y0, y1), (z0, z1) = ((a.min(), a.max() + 1) for a in (np.nonzero(grid.any(axes))[0]
                                                                      for axes in ((1, 2), (0, 2), (0, 1))))
    footprint = (x1 - x0) * (z1 - z0)
    lo, hi = bands[category]
    layers = grid[:, y0 + int(lo * (y1 - y0)): y0 + max(int(np.ceil(hi * (y1 - y0))), 1)]
    return bool(layers.sum((0, 2)).max() >= footprint / 3)


def convert(raw: dict[str, np.ndarray], category: str) -> dict[str, np.ndarray]:
    """One raw Infinigen mesh -> one shape's arrays (vertices, faces, face_colors, voxels, voxels_shell, has_color,
    color_share). Raises ValueError naming why a shape is dropped."""
    vertices, faces = raw["vertices"].astype(np.float64), raw["faces"].astype(np.int64)
    tri = vertices[faces]
    keep = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1) > 1e-12  # not degenerate
    if not keep.any():
        raise ValueError("no faces")
    keep &= _inside_bulk(vertices, faces)
    if not keep.any():
        raise ValueError("no faces")
    keep[keep] = _drop_strays(vertices, faces[keep])
    faces, colors, has = faces[keep], raw["face_colors"][keep], raw["face_has_color"][keep]
    used, faces = np.unique(faces, return_inverse=True)
    faces = faces.reshape(-1, 3)
    v = to_data_frame(vertices[used], FRONT_TURNS[category])
    voxels, shell = shapes_file_voxels(torch.from_numpy(v), torch.from_numpy(faces))
    occupied = unpack_voxels(shell).numpy()
    if occupied.sum() < MIN_SHELL_VOXELS:
        raise ValueError(f"degenerate: fewer than {MIN_SHELL_VOXELS} occupied voxels")
    if not _has_support(occupied, category):
        raise ValueError(f"no {'top' if category in ('table', 'desk') else 'seat'} found")
    tri = v[faces]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    share = float(area[has].sum() / max(area.sum(), 1e-12))
    return {"vertices": v, "faces": faces.astype(np.int32), "face_colors": colors.astype(np.uint8),
            "voxels": voxels, "voxels_shell": shell, "turns": np.int64(FRONT_TURNS[category] % 4),
            "has_color": np.bool_(share >= 0.5),
            "color_share": np.float64(share), "removed_faces": np.int64((~keep).sum())}


def _save_npz(path: Path, arrays: dict[str, np.ndarray], compressed: bool = False) -> Path:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return atomic_write(path, lambda fh: fh.write(buffer.getvalue()))


class _Progress:
    """One line per finished shape with the rate and the ETA of the shapes still to make."""

    def __init__(self, total: int, done: int) -> None:
        self.total, self.done, self.start, self.made = total, done, time.monotonic(), 0
        self.lock = threading.Lock()

    def step(self, message: str) -> None:
        with self.lock:
            self.done += 1
            self.made += 1
            elapsed = time.monotonic() - self.start
            rate = self.made / max(elapsed, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            print(f"[{self.done}/{self.total}] {message}, {rate * 60:.1f} shapes/min, elapsed {format_duration(elapsed)}, "
                  f"ETA {format_duration(eta)}", flush=True)


def _spawn(python: Path, raw_dir: Path, jobs: list[str], workers: int, on_record, minutes: float | None) -> None:
    """Run the jobs in ``workers`` Infinigen processes (round-robin shards); ``on_record(dict)`` per finished job.
    After ``minutes`` (None: no limit) the workers are stopped; the jobs they had not finished stay to do."""
    shards = [jobs[k::workers] for k in range(workers) if jobs[k::workers]]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH="")
    procs = [subprocess.Popen([str(python), str(WORKER), "--raw", str(raw_dir), "--jobs", *shard],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
             for shard in shards]

    def pump(proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            if line.startswith("{"):
                on_record(json.loads(line))

    threads = [threading.Thread(target=pump, args=(p,), daemon=True) for p in procs]
    for t in threads:
        t.start()
    stopped = threading.Event()
    if minutes is not None:
        def stop() -> None:
            stopped.set()
            for p in procs:
                p.terminate()

        timer = threading.Timer(60 * minutes, stop)
        timer.daemon = True
        timer.start()
    for p, t in zip(procs, threads):
        p.wait()
        t.join()
        if p.returncode != 0 and not stopped.is_set():
            raise RuntimeError(f"an Infinigen worker exited with code {p.returncode}")
    if minutes is not None:
        timer.cancel()
    if stopped.is_set():
        print(f"stopped after {minutes:g} minutes; the next run goes on where this one stopped", flush=True)


def generate(out: Path, count: int, first_seed: int, workers: int, work: Path, python: Path,
             minutes: float | None = None) -> dict:
    """Make (or resume) the shapes of the plan (for at most ``minutes``), write the pack of those made so far and
    its report; returns the report."""
    jobs = plan(count, first_seed)
    raw_dir, shape_dir = work / "raw", work / "shapes"
    raw_dir.mkdir(parents=True, exist_ok=True)
    shape_dir.mkdir(parents=True, exist_ok=True)
    log_path = work / "log.jsonl"
    records = {}
    if log_path.exists():
        for line in log_path.read_text().splitlines():
            rec = json.loads(line)
            records[rec["job"]] = rec
    by_name = {job_name(f, s): (f, s) for f, s in jobs}
    pending = [n for n in by_name if n not in records]
    progress = _Progress(len(jobs), len(jobs) - len(pending))
    log_lock = threading.Lock()

    def finish(name: str, rec: dict) -> None:
        records[name] = rec
        with log_lock, open(log_path, "a") as fh:
            fh.write(json.dumps(rec) + "\n")
        extra = f" ({rec['error']})" if rec.get("error") else ""
        progress.step(f"{name}: {rec['status']}{extra}")

    def on_raw(rec: dict) -> None:
        factory_name, _, seed = rec["job"].partition(":")
        name = f"{factory_name}_{seed}"
        factory = by_name[name][0]
        out_rec = {"job": name, "factory": factory.name, "status": rec["status"], "error": rec.get("error"),
                   "spawn_seconds": rec.get("seconds")}
        if rec["status"] in ("ok", "skipped"):
            start = time.perf_counter()
            try:
                raw = dict(np.load(raw_dir / f"{name}.npz"))
                shape = convert(raw, factory.category)
                _save_npz(shape_dir / f"{name}.npz", shape)
                out_rec.update(status="ok", faces=int(len(shape["faces"])), color_share=float(shape["color_share"]),
                               raw_faces=int(len(raw["faces"])), removed_faces=int(shape["removed_faces"]),
                               stage_seconds=[float(x) for x in raw["seconds"]])
            except ValueError as exc:
                out_rec.update(status="dropped", error=str(exc))
            out_rec["convert_seconds"] = time.perf_counter() - start
        finish(name, out_rec)

    if pending:
        torch.set_num_threads(1)
        _spawn(python, raw_dir, [f"{by_name[n][0].name}:{by_name[n][1]}" for n in pending], workers, on_raw, minutes)
    return write_pack(out, jobs, records, shape_dir, workers)


def write_pack(out: Path, jobs: list[tuple[Factory, int]], records: dict, shape_dir: Path, workers: int) -> dict:
    """Concatenate the kept shapes in plan order into ``out`` (compressed, atomic) and write ``<out>.report.json``."""
    keys = ("vertices", "faces", "face_colors", "voxels", "voxels_shell")
    parts = {k: [] for k in keys}
    category, model_id, has_color = [], [], []
    for factory, seed in jobs:
        name = job_name(factory, seed)
        if records.get(name, {}).get("status") != "ok":
            continue
        shape = dict(np.load(shape_dir / f"{name}.npz"))
        shape = turned(shape, FRONT_TURNS[factory.category] - int(shape["turns"]))  # fronts measured after making
        for k in keys:
            parts[k].append(shape[k])
        category.append(factory.category)
        model_id.append(name)
        has_color.append(bool(shape["has_color"]))
    if not model_id:
        raise RuntimeError("no shape was made: see the report for the errors")
    pack = {
        "vertices": np.concatenate(parts["vertices"]).astype(np.float32),
        "faces": np.concatenate(parts["faces"]).astype(np.int32),
        "face_colors": np.concatenate(parts["face_colors"]).astype(np.uint8),
        "vert_offsets": np.cumsum([0] + [len(v) for v in parts["vertices"]]).astype(np.int64),
        "face_offsets": np.cumsum([0] + [len(f) for f in parts["faces"]]).astype(np.int64),
        "voxels": np.stack(parts["voxels"]), "voxels_shell": np.stack(parts["voxels_shell"]),
        "category": np.array(category), "model_id": np.array(model_id),
        "source": np.array(["infinigen"] * len(model_id)), "has_color": np.array(has_color),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    _save_npz(out, pack, compressed=True)
    report = _report(jobs, records, category, workers)
    atomic_write(out.with_suffix(".report.json"), lambda fh: fh.write(json.dumps(report, indent=2).encode()))
    return report


def _report(jobs: list[tuple[Factory, int]], records: dict, category: list[str], workers: int) -> dict:
    per = {}
    for factory in FACTORIES:
        recs = [records[job_name(f, s)] for f, s in jobs if f == factory and job_name(f, s) in records]
        if not recs:
            continue
        ok = [r for r in recs if r["status"] == "ok"]
        dropped = defaultdict(int)
        for r in recs:
            if r["status"] == "dropped":
                dropped[r["error"]] += 1
        spawn = [r["stage_seconds"] for r in ok if r.get("stage_seconds")]
        per[factory.name] = {
            "category": factory.category, "planned": len(recs), "kept": len(ok),
            "failed": sum(r["status"] == "failed" for r in recs), "dropped": dict(dropped),
            "errors": sorted({r["error"] for r in recs if r["status"] == "failed"})[:5],
            "mean_faces": float(np.mean([r["faces"] for r in ok])) if ok else None,
            "color_share": float(np.mean([r["color_share"] for r in ok])) if ok else None,
            "seconds": {"spawn": float(np.mean([s[0] for s in spawn])) if spawn else None,
                        "mesh": float(np.mean([s[1] for s in spawn])) if spawn else None,
                        "bake": float(np.mean([s[2] for s in spawn])) if spawn else None,
                        "convert": float(np.mean([r["convert_seconds"] for r in ok])) if ok else None},
        }
    counts = defaultdict(int)
    for c in category:
        counts[c] += 1
    return {"shapes": len(category), "planned": len(jobs), "workers": workers, "categories": dict(counts),
            "factories": per}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the pack, e.g. cache/infinigen_shapes.npz")
    parser.add_argument("--count", type=int, default=5000, help="shapes planned (failed and dropped ones are left out)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", type=Path, default=ROOT / "cache" / "infinigen", help="cache of raw meshes and shapes")
    parser.add_argument("--venv", type=Path, default=ROOT / ".venv-infinigen", help="Infinigen's own environment")
    parser.add_argument("--max-minutes", type=float, help="stop making shapes after this long and pack those made")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    python = ensure_environment(args.venv)
    start = time.monotonic()
    report = generate(args.out, args.count, args.first_seed, args.workers, args.work, python, args.max_minutes)
    print(f"{report['shapes']} of {report['planned']} shapes in {args.out} ({format_duration(time.monotonic() - start)}); "
          f"report: {args.out.with_suffix('.report.json')}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
