"""The ``softras`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

__all__ = ["main"]


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def _texture_size(text: str) -> int:
    value = int(text)
    if not 8 <= value <= 8192:
        raise argparse.ArgumentTypeError(f"must be an integer from 8 to 8192, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _cmd_render(args: argparse.Namespace) -> int:
    from softras.camera import Camera
    from softras.imageio import IMAGE_SUFFIXES, write_image
    from softras.meshio import read_mesh
    from softras.raster import RasterSettings, render_rgba, render_silhouette

    if Path(args.output).suffix.lower() not in IMAGE_SUFFIXES:
        raise ValueError(f"output must end in {' or '.join(IMAGE_SUFFIXES)}, got {args.output}")
    mesh = read_mesh(args.mesh)
    camera = Camera.from_angles(args.distance, args.elevation, args.azimuth, fov=args.fov)
    settings = RasterSettings(args.size, sigma=args.sigma, gamma=args.gamma, background=(1.0, 1.0, 1.0))
    with torch.no_grad():
        if args.mode == "silhouette":
            image = render_silhouette(mesh.vertices, mesh.faces, camera, settings)[0]
        else:
            colors = mesh.vertex_colors if mesh.vertex_colors is not None else torch.full_like(mesh.vertices, 0.7)
            image = render_rgba(mesh.vertices, mesh.faces, camera, settings, vertex_colors=colors)[0]
    path = write_image(image.numpy(), args.output)
    print(path)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from softras.bench import raster

    device = torch.device(args.device)
    log = None if args.json else (lambda msg: print(msg, file=sys.stderr, flush=True))
    report: dict = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads()}
    if args.suite in ("raster", "all"):
        cases = [c for c in raster.default_cases() if args.mode in ("both", c.mode)]
        results = raster.run(cases, device, args.dense_budget_mb, progress=log)
        report["raster"] = [dict(asdict(r), speedup=r.speedup) for r in results]
        if not args.json:
            print(raster.format_table(results), flush=True)
    if args.suite in ("pipeline", "all"):
        from softras.bench.pipeline import format_pipeline, run_pipeline

        pipeline = run_pipeline(progress=log)
        report["pipeline"] = [asdict(r) for r in pipeline]
        if not args.json:
            print(("\n" if args.suite == "all" else "") + format_pipeline(pipeline))
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from softras.train import TrainConfig, train

    cfg = TrainConfig.from_toml(args.config)
    if args.steps is not None:
        cfg.steps = args.steps
    if args.device is not None:
        cfg.device = args.device
    print(train(cfg, max_minutes=args.max_minutes))
    return 0


def _cmd_average(args: argparse.Namespace) -> int:
    from softras.weight_average import average_weight_files

    coefficients = args.coefficients or [1.0 / len(args.sources)] * len(args.sources)
    out = average_weight_files(args.sources, coefficients, args.output)
    print(out)
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    import numpy as np

    from softras.data import Shapes, ViewSet, render_views, save_views, split_by_model
    from softras.evaluate import evaluate, evaluate_robustness, format_report, format_robustness
    from softras.model import load_weights

    if args.texture:
        return _eval_texture(args)
    model, _ = load_weights(args.weights, map_location=args.device)
    shapes = Shapes.load(args.data)
    split = None if args.split == "all" else args.split
    if args.views:
        views = ViewSet(args.views, split)
    else:
        import tempfile

        chosen = np.flatnonzero(split_by_model(shapes.category, shapes.model_id) == split) if split else np.arange(len(shapes))
        azimuths = np.arange(0, 360, 15, dtype=np.float32)
        log = (lambda m: print(m, file=sys.stderr, flush=True))
        log(f"rendering {len(chosen)} models x {len(azimuths)} views with the engine's rasterizer ...")
        # at twice the input size, so that the intake downsamples them as it does a user's larger picture
        images = render_views(shapes, chosen, np.full_like(azimuths, 30.0), azimuths, size=2 * model.cfg.image_size)
        with tempfile.TemporaryDirectory() as tmp:
            path = save_views(Path(tmp) / "views.npz", images=images, elevations=np.full_like(azimuths, 30.0), azimuths=azimuths,
                              model_index=chosen, category=shapes.category[chosen], model_id=shapes.model_id[chosen],
                              split=np.full(len(chosen), split or "all"), distance=np.float32(2.732), fov=np.float32(30.0))
            views = ViewSet(path, None)
    model.to(args.device)
    common = dict(views_per_model=args.views_per_model, elevations=args.elevation)
    report = evaluate(model, views, shapes, refine_steps=args.refine, **common)
    direct = evaluate(model, views, shapes, refine_steps=args.refine, path="direct", **common)
    rows = evaluate_robustness(model, views, shapes, **common) if args.robustness else None
    cameras = camera_views = None
    if args.camera_views:  # every view of that file is a candidate: its cameras are not the standard one
        camera_views = ViewSet(args.camera_views, split)
        cameras = evaluate(model, camera_views, shapes, views_per_model=args.views_per_model)
    if args.json:
        result = {"intake": report.as_dict(), "direct": direct.as_dict()}
        if rows is not None:
            result["robustness"] = [asdict(r) for r in rows]
        if cameras is not None:
            spans = {k: [float(v.min()), float(v.max())] for k, v in
                     (("elevations", camera_views.elevations), ("distances", camera_views.distances))}
            result["other_cameras"] = {"views": args.camera_views, **spans, **cameras.as_dict()}
        print(json.dumps(result, indent=2))
        return 0
    print(f"through the intake (what users get):\n{format_report(report)}")
    if report.failures:
        print(f"{report.failures} input pictures refused by the intake (scored 0)")
    print(f"\ndirect, renders fed to the generator as they are (diagnostic): mean voxel IoU "
          f"{direct.mean_voxel_iou:.4f}, silhouette IoU {direct.mean_silhouette_iou:.4f}")
    if rows is not None:
        print(f"\nrobustness (refine steps not applied):\n{format_robustness(rows)}")
    if cameras is not None:
        print(f"\nviews of {args.camera_views} through the intake: mean voxel IoU {cameras.mean_voxel_iou:.4f}")
    return 0


def _cmd_foreground_bench(args: argparse.Namespace) -> int:
    import json

    from softras.data import Shapes
    from softras.product_photos import format_mask_benchmark, mask_benchmark

    scores = mask_benchmark(Shapes.load(args.data), args.split, args.views_per_model, args.size,
                            weights=args.foreground_weights, max_models=args.max_models, seed=args.seed,
                            progress=None if args.json else (lambda m: print(m, file=sys.stderr, flush=True)))
    print(json.dumps(scores.as_dict(), indent=2) if args.json else format_mask_benchmark(scores))
    return 0


def _eval_texture(args: argparse.Namespace) -> int:
    import json

    from softras.data import ViewSet
    from softras.reconstruct import Reconstructor
    from softras.texture_eval import evaluate_texture, format_texture_report

    if not args.views:
        raise ValueError("--texture needs --views (rendered pictures, e.g. cache/views128_e0_30.npz)")
    views = ViewSet(args.views, None if args.split == "all" else args.split)
    report = evaluate_texture(Reconstructor(args.weights, device=args.device), views, args.views_per_model,
                              args.elevation, args.texture_size, not args.no_viewpoint_prior)
    print(json.dumps(report.as_dict(), indent=2) if args.json else format_texture_report(report))
    return 0


MESH_FORMATS = ("obj", "ply", "glb")


def _writable_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot create output directory {path}: {e.strerror}") from None
    if not os.access(path, os.W_OK):
        raise PermissionError(f"output directory {path} is not writable")
    return path


def _cmd_reconstruct(args: argparse.Namespace) -> int:
    import json
    import time

    from softras.meshio import write_mesh
    from softras.progress import ProgressLine
    from softras.reconstruct import Reconstructor
    from softras.texture import BakeSettings

    if args.mask and len(args.images) != 1:
        raise ValueError("--mask applies to a single image; give one IMAGE with it")
    out_dir = _writable_dir(Path(args.output))
    reconstructor = Reconstructor(args.weights, device=args.device)
    progress = ProgressLine(len(args.images), "images")
    bake = BakeSettings(size=args.texture_size)
    texture = args.texture and args.format != "ply"  # PLY holds no texture
    failures = 0
    for n, image in enumerate(args.images, 1):
        start = time.perf_counter()
        target = out_dir / f"{Path(image).stem}.{args.format}"
        record = {"input": image, "output": str(target), "status": "ok", "error": None}
        try:
            done = reconstructor.reconstruct_file(image, args.mask, args.refine, bake if texture else None)
            result = done.reconstruction
            if texture:
                record["texture"] = result.mesh.texture is not None
                if done.texture_message:
                    record["warning"] = done.texture_message
                    print(f"softras reconstruct: {image}: {done.texture_message}", file=sys.stderr, flush=True)
            write_mesh(result.mesh, target)
            if args.save_mask:  # the foreground the intake used, at the picture's size
                from softras.imageio import write_image
                from softras.intake import foreground_mask

                mask_path = write_image(foreground_mask(done.intake) / 255.0, out_dir / f"{Path(image).stem}_mask.png")
                record.update(mask=str(mask_path), foreground=done.intake.foreground_source)
            if result.iou_before is not None:
                record.update(iou_before=round(result.iou_before, 4), iou_after=round(result.iou_after, 4))
        except (ValueError, OSError) as e:
            failures += 1
            record.update(output=None, status="error", error=str(e))
        record["seconds"] = round(time.perf_counter() - start, 3)
        print(json.dumps(record), flush=True)
        progress.update(n, f"{failures} failed" if failures else "")
    return 1 if failures else 0


def _cmd_refine(args: argparse.Namespace) -> int:
    import numpy as np

    from softras.camera import Camera
    from softras.intake import load_mask
    from softras.mesh import Mesh
    from softras.meshio import read_mesh, write_mesh
    from softras.refine import RefineSettings, refine

    n = len(args.masks)
    azimuths = args.azimuth if args.azimuth is not None else list(np.arange(n) * 360.0 / n)
    elevations = args.elevation if args.elevation is not None else [30.0]
    if len(azimuths) != n or len(elevations) not in (1, n):
        raise ValueError(f"give one --azimuth per mask ({n}) and one --elevation per mask or a single one")
    mesh = read_mesh(args.mesh)
    masks = torch.stack([load_mask(m) for m in args.masks])
    cameras = Camera.from_angles(args.distance, torch.tensor(elevations * (n if len(elevations) == 1 else 1)),
                                 torch.tensor(azimuths), fov=args.fov)
    result = refine(mesh.vertices, mesh.faces, masks, cameras, RefineSettings(steps=args.steps))
    write_mesh(Mesh(result.vertices, mesh.faces, mesh.vertex_colors), args.output)
    print(f"IoU before {result.iou_before:.4f}  after {result.iou_after:.4f}  ({result.steps_run} steps) -> {args.output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="softras", description="Soft Rasterizer: render, reconstruct and benchmark meshes.")
    sub = parser.add_subparsers(dest="command", required=True)

    render = sub.add_parser("render", help="render a mesh file to a soft silhouette or RGBA image")
    render.add_argument("mesh", help="input mesh (.obj, .ply or .glb), object frame Y-up")
    render.add_argument("-o", "--output", required=True, help="output image: .png (8-bit) or .npy (float32)")
    render.add_argument("--mode", choices=("silhouette", "rgba"), default="silhouette")
    render.add_argument("--size", type=_positive_int, default=64, help="image height and width in pixels")
    render.add_argument("--sigma", type=_positive_float, default=3e-5, help="edge sharpness (squared NDC units)")
    render.add_argument("--gamma", type=_positive_float, default=1e-4, help="depth softmax temperature")
    render.add_argument("--distance", type=_positive_float, default=2.732)
    render.add_argument("--elevation", type=float, default=30.0, help="degrees")
    render.add_argument("--azimuth", type=float, default=0.0, help="degrees")
    render.add_argument("--fov", type=float, default=30.0, help="full vertical field of view, degrees")
    render.set_defaults(func=_cmd_render)

    bench = sub.add_parser("bench", help="time the rasterizer against a dense reference")
    bench.add_argument("--json", action="store_true", help="print JSON instead of a table")
    bench.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    bench.add_argument("--suite", choices=("raster", "pipeline", "all"), default="all",
                       help="raster: rasterizer vs dense reference; pipeline: training step, reconstruction, refinement")
    bench.add_argument("--mode", choices=("silhouette", "rgba", "both"), default="both", help="raster suite only")
    bench.add_argument("--dense-budget-mb", type=float, default=3000,
                       help="run the dense reference only where its estimated peak memory is below this (MB)")
    bench.set_defaults(func=_cmd_bench)

    rec = sub.add_parser("reconstruct", help="reconstruct a coloured mesh from each image")
    rec.add_argument("images", nargs="+", metavar="IMAGE", help="input images (PNG, JPEG, WebP, TIFF, BMP)")
    rec.add_argument("-o", "--output", required=True, help="output directory; meshes are named after the images")
    rec.add_argument("--mask", help="foreground mask for a single IMAGE (white = object)")
    rec.add_argument("--save-mask", action="store_true",
                     help="also write the foreground the intake used as <name>_mask.png (white = object, the picture's "
                          "size; edit it and give it back with --mask)")
    rec.add_argument("--refine", type=_non_negative_int, default=0, metavar="STEPS", help="refine each mesh to its image's silhouette")
    rec.add_argument("--format", choices=MESH_FORMATS, default="obj")
    rec.add_argument("--texture", action=argparse.BooleanOptionalAction, default=True,
                     help="bake a texture from the picture through the estimated viewpoint (obj: .mtl and .png beside "
                          "it; glb: embedded; ply: never); bad cases keep the vertex colours with a warning")
    rec.add_argument("--texture-size", type=_texture_size, default=1024, metavar="PX", help="texture side in texels")
    rec.add_argument("--weights", help="generator weights (default: the shipped models/softras_generator.pt)")
    rec.add_argument("--device", default="cpu", help="cpu or cuda")
    rec.set_defaults(func=_cmd_reconstruct)

    ref = sub.add_parser("refine", help="fit a mesh to silhouette masks seen from known cameras")
    ref.add_argument("mesh", help="input mesh (.obj, .ply or .glb), object frame Y-up")
    ref.add_argument("masks", nargs="+", metavar="MASK", help="mask images (white or opaque = object)")
    ref.add_argument("-o", "--output", required=True, help="output mesh (.obj, .ply or .glb)")
    ref.add_argument("--azimuth", type=float, nargs="+", help="degrees, one per mask (default: evenly spaced)")
    ref.add_argument("--elevation", type=float, nargs="+", help="degrees, one per mask or one for all (default 30)")
    ref.add_argument("--distance", type=_positive_float, default=2.732)
    ref.add_argument("--fov", type=float, default=30.0, help="full vertical field of view, degrees")
    ref.add_argument("--steps", type=int, default=200)
    ref.set_defaults(func=_cmd_refine)

    train = sub.add_parser("train", help="train the generator (resumes from the run's checkpoint)")
    train.add_argument("--config", required=True, help="TOML training config, e.g. configs/generator.toml")
    train.add_argument("--steps", type=_positive_int, help="override the total number of steps")
    train.add_argument("--max-minutes", type=_positive_float, help="stop (with a checkpoint) after this many minutes")
    train.add_argument("--device", help="cpu, cuda, cuda:N or auto (overrides the config)")
    train.set_defaults(func=_cmd_train)

    avg = sub.add_parser("average", help="average the weights of generators fine-tuned from one start (a model soup), "
                                         "validated as the first one's training validates")
    avg.add_argument("sources", nargs="+", metavar="WEIGHTS",
                     help="weights files or `softras train` checkpoints (their weight average), of one model config")
    avg.add_argument("--coefficients", type=float, nargs="+", metavar="C",
                     help="one per source, >= 0, summing to 1 (default: equal)")
    avg.add_argument("-o", "--output", required=True, help="weights file to write")
    avg.set_defaults(func=_cmd_average)

    ev = sub.add_parser("eval", help="voxel IoU (with precision and recall) and silhouette IoU per category of a "
                                     "generator on a shapes file")
    ev.add_argument("--weights", required=True, help="generator weights, e.g. models/softras_generator.pt")
    ev.add_argument("--data", required=True, help="shapes file (.npz) with meshes and voxels_shell")
    ev.add_argument("--views", help="views file rendered from --data (default: render with the engine's rasterizer)")
    ev.add_argument("--split", choices=("val", "train", "all"), default="val")
    ev.add_argument("--views-per-model", type=_positive_int, default=4)
    ev.add_argument("--elevation", type=float, nargs="+", help="input views only at these elevations, degrees (default: all)")
    ev.add_argument("--refine", type=_non_negative_int, default=0, metavar="STEPS",
                    help="refine each mesh to its input's mask first, viewpoint estimated (as `reconstruct --refine`)")
    ev.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ev.add_argument("--robustness", action="store_true",
                    help="also score the views perturbed as real pictures are (rescaled, shifted, blurred, JPEG, ...)")
    ev.add_argument("--camera-views", metavar="VIEWS",
                    help="also score the views of this views file through the intake, e.g. other cameras and lights "
                         "(datagen/varied_views.py); all of its elevations")
    ev.add_argument("--texture", action="store_true",
                    help="instead: how well projected textures reproduce the input pictures (re-render MAE, textured "
                         "vs vertex colours); needs --views")
    ev.add_argument("--texture-size", type=_texture_size, default=1024, metavar="PX", help="texture side for --texture")
    ev.add_argument("--no-viewpoint-prior", action="store_true",
                    help="with --texture: estimate the viewpoint from the mask alone, without the generator's azimuth "
                         "probabilities (a diagnostic; the product uses them where the weights have a viewpoint head)")
    ev.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ev.set_defaults(func=_cmd_eval)

    fg = sub.add_parser("foreground-bench", help="how well the intake finds the object in product photos of held-out "
                                                 "models (white, light grey, ground shadow, high-key, coloured "
                                                 "backdrops) by the border estimate, the network and the rule")
    fg.add_argument("--data", required=True, help="shapes file (.npz), e.g. ../shared/data/shapes_train.npz")
    fg.add_argument("--split", choices=("val", "train"), default="val")
    fg.add_argument("--views-per-model", type=_positive_int, default=3)
    fg.add_argument("--size", type=_positive_int, default=256, help="photo side in pixels")
    fg.add_argument("--max-models", type=_positive_int, help="only the first N models of the split")
    fg.add_argument("--foreground-weights", help="foreground network weights (default: the shipped ones)")
    fg.add_argument("--seed", type=int, default=0, help="cameras and shadow lights")
    fg.add_argument("--json", action="store_true", help="print JSON instead of a table")
    fg.set_defaults(func=_cmd_foreground_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as e:  # ValueError includes WeightsError
        print(f"softras {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
