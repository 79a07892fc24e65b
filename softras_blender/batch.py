"""Headless batch conversion: a folder of images to meshes (or .blend files), one per image.

Run with Blender from the installed extension (the extension's folder is
``<Blender user folder>/extensions/user_default/softras``, e.g. ``~/.config/blender/4.5/extensions/...`` on Linux,
``%APPDATA%\\Blender Foundation\\Blender\\4.5\\extensions\\...`` on Windows, ``~/Library/Application
Support/Blender/4.5/extensions/...`` on macOS), or from a checkout, with Blender or with the ``bpy`` module in the
project's virtual environment::

    blender --background --factory-startup --python-exit-code 1 --python <extension folder>/batch.py -- ARGS
    blender --background --factory-startup --python-exit-code 1 --python softras_blender/batch.py -- ARGS
    python -m softras_blender.batch ARGS

ARGS: ``--input DIR_OR_GLOB... --output DIR [--format blend|glb|obj|ply] [--refine STEPS] [--device auto|cpu|cuda]
[--weights W] [--overwrite] [--shard I/N] [--preview] [--texture | --no-texture] [--texture-size PX]``. Blender's own Python needs PyTorch and Pillow: install them
with the add-on's Install button, or point it at this project's environment, e.g.
``PYTHONPATH=.venv/lib/python3.11/site-packages`` (Blender 4.2-4.5 use Python 3.11). The installed extension
converts with its own copy of the engine and, by default, its shipped weights.

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
    ap.add_argument("--save-mask", action="store_true",
                    help="also write the foreground each picture's intake used as <name>_mask.png (white = object)")
    ap.add_argument("--texture", action=argparse.BooleanOptionalAction, default=True,
                    help="bake a texture from each picture (not for ply); bad cases keep the vertex colours")
    ap.add_argument("--texture-size", type=int, default=1024, metavar="PX", help="texture side in texels")
    return ap


def _stage(mesh, name: str):
    """A fresh file holding the mesh (Z-up, at the origin), the Cycles light set-up and a camera; returns the object."""
    import bpy

    from . import render, scene
    from .convert import y_up_to_z_up

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

    from . import render

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
    from . import deps, engine

    deps.activate()  # PyTorch and Pillow installed by the add-on's Install button, where the add-on is not enabled
    engine.load()  # the extension's own engine where it has one
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
                if args.save_mask:
                    from softras.imageio import write_image
                    from softras.intake import foreground_mask

                    record["mask"] = str(write_image(foreground_mask(done.intake) / 255.0, out / f"{name}_mask.png"))
                    record["foreground"] = done.intake.foreground_source
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
    except ImportError as e:  # the engine's dependencies
        print(f"softras batch: error: {e}; install PyTorch and Pillow with the add-on's Install button (Edit > "
              "Preferences > Add-ons > SoftRas) or put an environment that has them on PYTHONPATH", file=sys.stderr)
        return 2


def _script_package() -> str:
    """The package of this file when Blender runs it as a script (``--python .../batch.py``), made importable: the
    installed extension's module (``bl_ext.<repository>.softras``), or ``softras_blender`` of a checkout, whose
    folder and engine go on ``sys.path``."""
    here = Path(__file__).resolve().parent
    if not (here / "blender_manifest.toml").is_file():
        sys.path[:0] = [str(here.parent), str(here.parent / "engine")]
        return here.name
    import bpy

    for repo in bpy.context.preferences.extensions.repos:
        if repo.enabled and repo.directory and Path(repo.directory).resolve() == here.parent:
            return f"bl_ext.{repo.module}.{here.name}"
    print(f"softras batch: error: {here} is in no enabled extension repository of this Blender; install the "
          "extension (Edit > Preferences > Get Extensions > Install from Disk)", file=sys.stderr)
    raise SystemExit(2)


if __name__ == "__main__":
    if __package__:  # python -m softras_blender.batch
        sys.exit(main())
    # run as a script by Blender: this file's package has to be imported for its relative imports
    import importlib

    sys.exit(importlib.import_module(f"{_script_package()}.batch").main())
