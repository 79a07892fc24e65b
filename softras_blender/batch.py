"""Headless batch conversion: a folder of images to meshes (or .blend files), one per image.

Run from the repository with Blender, or with the ``bpy`` module in the project's virtual environment::

    blender --background --factory-startup --python-exit-code 1 --python softras_blender/batch.py -- ARGS
    python -m softras_blender.batch ARGS

ARGS: ``--input DIR_OR_GLOB... --output DIR [--format blend|glb|obj|ply] [--refine STEPS] [--device auto|cpu|cuda]
[--weights W] [--overwrite] [--shard I/N] [--preview] [--texture | --no-texture] [--texture-size PX]``. Blender's own Python needs PyTorch and Pillow: install them
with the add-on's Install button, or point it at this project's environment, e.g.
``PYTHONPATH=.venv/lib/python3.11/site-packages`` (Blender 4.2-4.5 use Python 3.11).

Every image goes through the engine's reconstruction of a picture file
(:meth:`softras.reconstruct.Reconstructor.reconstruct_file`, as ``softras reconstruct``). ``blend`` inserts the mesh with :func:`softras_blender.scene.insert_mesh`, as the
operator does, into a fresh file with a camera and light that render it; ``glb``, ``obj`` and ``ply`` are written by
the engine's mesh writer in the engine's Y-up frame (as ``softras reconstruct``). ``--preview`` also renders a
four-view contact sheet ``<name>_preview.png`` with Cycles. Existing outputs are skipped unless ``--overwrite``, so
an interrupted run resumes; ``summary.json`` records every image (input, output, status, error, seconds).

``--texture`` (the default) bakes a texture from each picture (:func:`softras.texture.project_texture`): embedded in ``glb``, a ``.mtl`` and ``.png`` beside an ``obj``, a packed image in a
``blend`` (which the preview shows); ``ply`` keeps vertex colours only. Where the bake falls back to vertex colours
the record carries a ``warning``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
from pathlib import Path

if not __package__:  # run as a script by Blender: make the repository's packages importable
    _ROOT = Path(__file__).resolve().parents[1]
    sys.path[:0] = [str(_ROOT), str(_ROOT / "engine")]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")
FORMATS = ("blend", "glb", "obj", "ply")
PREVIEW_SIZE = 160
PREVIEW_AZIMUTHS = (30.0, 120.0, 210.0, 300.0)
VIEW = (2.732, 25.0, 30.0)  # distance, elevation, azimuth of the camera saved in .blend files


def collect_inputs(patterns: list[str]) -> list[Path]:
    """Image files named by directories (their images, not recursive), files, or glob patterns; sorted, unique."""
    found: set[Path] = set()
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            found.update(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            found.add(path)
        else:
            found.update(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
    return sorted(found, key=lambda p: str(p))


def shard(inputs: list[Path], spec: str | None) -> list[Path]:
    """The deterministic share ``I/N`` (1-based) of the sorted inputs: every N-th one starting at the I-th."""
    if spec is None:
        return inputs
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like I/N, got {spec!r}") from None
    if not 1 <= i <= n:
        raise ValueError(f"--shard {spec}: need 1 <= I <= N")
    return inputs[i - 1 :: n]


def output_names(inputs: list[Path]) -> list[str]:
    """A unique output stem per input: the file's stem, prefixed by its folder's name where stems collide."""
    stems = [p.stem for p in inputs]
    names = [f"{p.parent.name}_{p.stem}" if stems.count(p.stem) > 1 else p.stem for p in inputs]
    return [n if names.count(n) == 1 else f"{n}_{k}" for k, n in enumerate(names)]


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="softras_blender.batch", description="Convert images to meshes headless.")
    ap.add_argument("--input", nargs="+", required=True, metavar="DIR_OR_GLOB", help="folders, files or glob patterns")
    ap.add_argument("--output", required=True, help="output folder (created if missing)")
    ap.add_argument("--format", choices=FORMATS, default="glb")
    ap.add_argument("--refine", type=int, default=0, metavar="STEPS", help="refine each mesh to its image's silhouette")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ap.add_argument("--weights", help="generator weights (default: the shipped models/softras_generator.pt)")
    ap.add_argument("--overwrite", action="store_true", help="redo images whose outputs exist")
    ap.add_argument("--shard", metavar="I/N", help="process only the I-th of N deterministic shares of the inputs")
    ap.add_argument("--preview", action="store_true", help="also render <name>_preview.png (Cycles, four views)")
    ap.add_argument("--texture", action=argparse.BooleanOptionalAction, default=True,
                    help="bake a texture from each picture (not for ply); bad cases keep the vertex colours")
    ap.add_argument("--texture-size", type=int, default=1024, metavar="PX", help="texture side in texels")
    return ap


def _stage(mesh, name: str):
    """A fresh file holding the mesh (Z-up, at the origin), the Cycles light set-up and a camera; returns the object."""
    import bpy

    from softras_blender import render, scene
    from softras_blender.convert import y_up_to_z_up

    bpy.ops.wm.read_factory_settings(use_empty=True)
    target = bpy.context.scene
    render.prepare_scene(PREVIEW_SIZE, samples=16, scene=target)
    texture = None if mesh.texture is None else (mesh.texture.uv.numpy(), mesh.texture.image.numpy())
    obj = scene.insert_mesh(target, name, y_up_to_z_up(mesh.vertices.numpy()), mesh.faces.numpy(),
                            mesh.vertex_colors.numpy(), view_layer=target.view_layers[0], texture=texture)
    render.set_camera(target, *VIEW)
    return obj


def _save_blend(path: Path) -> None:
    import bpy

    tmp = path.with_name(f".{path.stem}.tmp.blend")
    try:
        bpy.ops.wm.save_as_mainfile(filepath=str(tmp), check_existing=False, copy=True, compress=True)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _render_preview(path: Path) -> None:
    import tempfile

    import bpy
    import numpy as np
    from PIL import Image

    from softras.fileio import atomic_write
    from softras_blender import render

    target = bpy.context.scene
    tiles = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, azimuth in enumerate(PREVIEW_AZIMUTHS):
            render.set_camera(target, VIEW[0], VIEW[1], azimuth)
            tiles.append(render.render_still(target, os.path.join(tmp, f"{k}.png")))
    render.set_camera(target, *VIEW)
    sheet = Image.new("RGBA", (PREVIEW_SIZE * len(tiles), PREVIEW_SIZE), (236, 236, 236, 255))
    for k, tile in enumerate(tiles):
        sheet.alpha_composite(Image.fromarray(np.asarray(tile)), (PREVIEW_SIZE * k, 0))

    def write(fh) -> None:
        sheet.convert("RGB").save(fh, format="PNG")

    atomic_write(path, write)


def run(args: argparse.Namespace) -> int:
    from softras.fileio import atomic_write
    from softras.meshio import write_mesh
    from softras.reconstruct import Reconstructor
    from softras.texture import BakeSettings

    if args.refine < 0:
        raise ValueError(f"--refine must be 0 or more steps, got {args.refine}")
    if not 8 <= args.texture_size <= 8192:
        raise ValueError(f"--texture-size must be from 8 to 8192, got {args.texture_size}")
    bake = BakeSettings(size=args.texture_size)
    texture = args.texture and args.format != "ply"
    inputs = shard(collect_inputs(args.input), args.shard)
    if not inputs:
        raise ValueError(f"no input images found in {' '.join(args.input)}")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    device = ("cuda" if _cuda_available() else "cpu") if args.device == "auto" else args.device
    reconstructor = Reconstructor(args.weights, device=device)
    records: list[dict] = []
    start = time.perf_counter()
    for k, (image, name) in enumerate(zip(inputs, output_names(inputs)), 1):
        t0 = time.perf_counter()
        target = out / f"{name}.{args.format}"
        preview = out / f"{name}_preview.png"
        record = {"input": str(image), "output": str(target), "status": "ok", "error": None}
        if not args.overwrite and target.exists() and (preview.exists() or not args.preview):
            record["status"] = "skipped"
        else:
            try:
                done = reconstructor.reconstruct_file(image, refine_steps=args.refine, bake=bake if texture else None)
                mesh = done.reconstruction.mesh
                if texture:
                    record["texture"] = mesh.texture is not None
                    if done.texture_message:
                        record["warning"] = done.texture_message
                if args.format == "blend" or args.preview:
                    _stage(mesh, name)
                if args.format == "blend":
                    _save_blend(target)
                else:
                    write_mesh(mesh, target)
                if args.preview:
                    _render_preview(preview)
                    record["preview"] = str(preview)
            except (ValueError, OSError, RuntimeError) as e:
                record.update(output=None, status="error", error=str(e).splitlines()[0] if str(e) else type(e).__name__)
        record["seconds"] = round(time.perf_counter() - t0, 3)
        records.append(record)
        elapsed = time.perf_counter() - start
        rate = k / elapsed
        print(f"[{k}/{len(inputs)}] {image.name}: {record['status']}"
              f"{' (' + record['error'] + ')' if record['error'] else ''} {record['seconds']:.2f} s, "
              f"{rate:.2f} images/s, ETA {(len(inputs) - k) / rate:.0f} s", flush=True)
        summary = json.dumps(records, indent=2).encode()
        atomic_write(out / "summary.json", lambda fh: fh.write(summary))
    failed = sum(r["status"] == "error" for r in records)
    print(f"done: {len(records) - failed} of {len(records)} images converted or present, {failed} failed; "
          f"summary in {out / 'summary.json'}", flush=True)
    return 1 if failed else 0


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]
    args = _parser().parse_args(argv)
    try:
        return run(args)
    except (ValueError, OSError) as e:
        print(f"softras batch: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
