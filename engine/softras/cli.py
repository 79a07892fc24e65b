"""The ``softras`` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

__all__ = ["main"]


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
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
    from softras import bench

    device = torch.device(args.device)
    cases = [c for c in bench.default_cases() if args.mode in ("both", c.mode)]
    log = None if args.json else (lambda msg: print(msg, file=sys.stderr, flush=True))
    results = bench.run(cases, device, args.dense_budget_mb, progress=log)
    print(bench.to_json(results, device) if args.json else bench.format_table(results))
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
    bench.add_argument("--mode", choices=("silhouette", "rgba", "both"), default="both")
    bench.add_argument("--dense-budget-mb", type=float, default=6000, help="largest dense-reference case to run")
    bench.set_defaults(func=_cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, PermissionError, IsADirectoryError) as e:
        print(f"softras {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
