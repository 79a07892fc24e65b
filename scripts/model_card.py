"""Write models/README.md (the model card) from a weights file's own metadata.

    .venv/bin/python scripts/model_card.py models/softras_generator.pt --notes models/NOTES.md > models/README.md

Everything in the card comes from the weights file: the training config, the session ledger (device, steps,
wall time) and the validation report that `softras train` stored when it exported the weights.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from softras.model import load_weights, sha256


def _elevations(values: list[float] | None) -> str:
    return "all" if values is None else ", ".join(f"{v:g}" for v in values) + " deg"


def _validated_at(record: dict) -> str:
    """The elevations whose inputs validated a config or session record (its input elevations unless it names others)."""
    chosen = record.get("validate_elevations")
    return _elevations(chosen if chosen is not None else record.get("input_elevations"))


def _files(paths: list[str]) -> str:
    return ", ".join(f"`{p}`" for p in paths) if paths else "none"


def card(path: Path) -> str:
    model, meta = load_weights(path)
    cfg, val = meta["train_config"], meta["validation"]
    params = sum(p.numel() for p in model.parameters())
    sessions = meta.get("sessions", [])
    hours = sum(s["seconds"] for s in sessions) / 3600
    lines = [
        "# SoftRas generator: model card",
        "",
        f"`{path.name}`: one RGBA image (64x64) to a coloured mesh (the {model.shape_decoder.sign.shape[0]}-vertex sphere "
        "deformed, per-vertex sRGB colours) in the object frame (Y-up, inside [-0.5, 0.5]^3).",
        "",
        "| | |",
        "|---|---|",
        f"| sha256 | `{sha256(path)}` |",
        f"| size | {path.stat().st_size / 2**20:.1f} MiB, float16 ({params / 1e6:.1f} M parameters) |",
        f"| steps | {meta['step']} (batch {cfg['batch_size']} objects x 2 views) |",
        f"| training time | {hours:.2f} h over {len(sessions)} session(s) |",
        f"| torch | {meta.get('torch', '?')} |",
        "| load | `softras.model.load_weights(path)` (uses `torch.load(..., weights_only=True)`) |",
        "",
        "## Data",
        "",
        "Views rendered with Cycles by `python -m softras_blender.training_views` from "
        f"`{cfg['shapes']}` (419 ShapeNet, Pix3D and classic test models; 24 azimuths per elevation, distance "
        "2.732, 30 deg field of view, 64x64 RGBA); the views file of each session is in the table below. "
        "Split by model, stratified per category (10% validation).",
        f"Generator input views: elevations {_elevations(cfg.get('input_elevations'))}; every other view of the object "
        f"supervises. In the last session: extra training views {_files(cfg.get('extra_views', []))} (procedural shapes "
        "from `scripts/procedural_shapes.py` and stretched copies of the training models from "
        "`scripts/stretched_shapes.py`, as `configs/generator.toml` says; never validated), "
        f"mirrored shapes {cfg.get('mirror', False)}, category balance {cfg.get('category_balance', 0.0)}.",
        "",
        "## Training",
        "",
        f"Command: `softras train --config configs/generator.toml` (resumes from `{cfg['out_dir']}/checkpoint.pt`).",
        f"Adam (learning rate per session below), sigma {cfg['sigma']}, gamma {cfg['gamma']}; loss = soft IoU + {cfg['laplacian_weight']} "
        f"Laplacian + {cfg['flatten_weight']} flatten + {cfg['color_weight']} colour L1; bf16 autocast: {cfg.get('bf16', False)}.",
        "Weights shipped: " + (f"an exponential moving average (decay {cfg['ema_decay']}) of the trained weights and their "
                                "BatchNorm statistics." if cfg.get("ema_decay") else "the trained weights themselves."),
        "",
        "| session start | device | processes | learning rate | views (+ extra), input elevations, mirrored, category balance, EMA decay | steps | wall time |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in sessions:
        extra = f" + {len(s['extra_views'])} extra" if s.get("extra_views") else ""
        validated = f" (validated at {_validated_at(s)})" if s.get("validate_elevations") is not None else ""
        views = (f"`{s['views']}`{extra}, {_elevations(s.get('input_elevations'))}{validated}, {s.get('mirror', False)}, "
                 f"{s.get('category_balance', 0.0)}, {s.get('ema_decay', 0.0)}") if "views" in s else "?"
        lines.append(f"| {s['started']} | {s['device']} | {s['processes']} | {s.get('lr', cfg['lr'])} | {views} "
                     f"| {s['start_step']} -> {s['end_step']} | {s['seconds'] / 60:.1f} min |")
    lines += [
        "",
        f"## Validation (step {meta['step']})",
        "",
        "Voxel IoU: the mesh reconstructed from one view, voxelised as surface plus interior at 32^3, against "
        f"`voxels_shell` (the paper's protocol); {cfg['validate_views']} input views per validation model, "
        f"elevations {_validated_at(cfg)}. Silhouette IoU: "
        "the mesh's hard silhouette from the input view against the input's alpha.",
        "",
        "| category | models | voxel IoU | silhouette IoU |",
        "|---|---:|---:|---:|",
    ]
    for c, v in val["voxel_iou"].items():
        lines.append(f"| {c} | {val['models'][c]} | {v:.4f} | {val['silhouette_iou'][c]:.4f} |")
    lines += [f"| **mean** | {sum(val['models'].values())} | **{val['mean_voxel_iou']:.4f}** | {val['mean_silhouette_iou']:.4f} |", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", type=Path)
    ap.add_argument("--notes", type=Path, help="a Markdown file appended to the card (limitations, comparisons)")
    args = ap.parse_args()
    print(card(args.weights) + ("\n" + args.notes.read_text() if args.notes else ""))


if __name__ == "__main__":
    main()
