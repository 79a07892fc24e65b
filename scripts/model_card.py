"""Write models/README.md (the model card) from a weights file's own metadata.

    softras eval --weights models/softras_generator.pt --data ../shared/data/shapes_train.npz \
        --views cache/views128_e0_30.npz --elevation 30 --robustness --camera-views cache/views_varied.npz \
        --json > models/eval.json
    .venv/bin/python scripts/model_card.py models/softras_generator.pt --eval models/eval.json --notes models/NOTES.md > models/README.md

The card comes from the weights file (the training config, the session ledger with device, steps and wall time,
and the validation report that `softras train` stored when it exported the weights) and, with ``--eval``, from the
output of ``softras eval --json --robustness`` on those weights: the figures through the intake (what users get)
beside the direct path, the robustness table and, with ``--camera-views``, the figure for other cameras and lights.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from softras.model import Generator, load_weights, sha256


EVAL_COMMAND = ("softras eval --weights models/softras_generator.pt --data ../shared/data/shapes_train.npz "
                "--views cache/views128_e0_30.npz --elevation 30 --robustness --camera-views cache/views_varied.npz "
                "--json")


def _elevations(values: list[float] | None) -> str:
    return "all" if values is None else ", ".join(f"{v:g}" for v in values) + " deg"


def _validated_at(record: dict) -> str:
    """The elevations whose inputs validated a config or session record (its input elevations unless it names others)."""
    chosen = record.get("validate_elevations")
    return _elevations(chosen if chosen is not None else record.get("input_elevations"))


def _files(paths: list[str]) -> str:
    return ", ".join(f"`{p}`" for p in paths) if paths else "none"


def evaluation(result: dict, command: str) -> list[str]:
    """The card's sections from ``softras eval --json --robustness``: per-category figures through the intake beside
    the direct path, and the robustness table."""
    intake, direct = result["intake"], result["direct"]
    lines = [
        "## Evaluation through the intake",
        "",
        f"`{command}`: every validation view is a picture that goes through the same intake as `softras reconstruct` "
        "(foreground, crop, resize) before the generator; the direct column feeds the renders to the generator as "
        "they are (a diagnostic, not what users get). Spread: the standard deviation of the voxel IoU over the "
        "category's input views (its models and their viewpoints).",
        "",
        "| category | models | voxel IoU (intake) | spread | voxel IoU (direct) | precision | recall | silhouette IoU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c, v in intake["voxel_iou"].items():
        lines.append(f"| {c} | {intake['models'][c]} | {v:.4f} | {intake['voxel_iou_spread'][c]:.2f} | {direct['voxel_iou'][c]:.4f} | "
                     f"{intake['voxel_precision'][c]:.2f} | {intake['voxel_recall'][c]:.2f} | {intake['silhouette_iou'][c]:.4f} |")
    mean = lambda d: sum(d.values()) / len(d)  # noqa: E731
    low, high = intake["voxel_iou_interval"]
    lines += [f"| **mean** | {sum(intake['models'].values())} | **{intake['mean_voxel_iou']:.4f}** | | "
              f"{direct['mean_voxel_iou']:.4f} | {mean(intake['voxel_precision']):.2f} | {mean(intake['voxel_recall']):.2f} | "
              f"{intake['mean_silhouette_iou']:.4f} |", "",
              f"The mean through the intake, with a 95% bootstrap interval over the validation models (whole models "
              f"resampled, `softras.evaluate.bootstrap_interval`): **{intake['mean_voxel_iou']:.4f}** [{low:.4f}, "
              f"{high:.4f}]. A difference between two generators smaller than this interval's width may still be "
              f"real: compare them on the same pictures (`scripts/compare_weights.py`, a paired interval).", ""]
    if "robustness" in result:
        lines += [
            "## Robustness",
            "",
            "The same views perturbed as real pictures are (`softras.augment.PERTURBATIONS`), through the intake. "
            "Agreement: mean voxel IoU between each prediction and the one from the clean picture.",
            "",
            "| input | voxel IoU | vs clean | agreement | refused by the intake |",
            "|---|---:|---:|---:|---:|",
        ]
        lines += [f"| {r['name']} | {r['mean_voxel_iou']:.4f} | {r['change']:+.4f} | {r['agreement']:.4f} | {r['failures']} |"
                  for r in result["robustness"]]
        lines.append("")
    if "other_cameras" in result:
        other = result["other_cameras"]
        lines += [
            "## Other cameras and lights",
            "",
            f"The validation models seen from the cameras of `{other['views']}` (elevation "
            f"{other['elevations'][0]:.0f}-{other['elevations'][1]:.0f} degrees, distance {other['distances'][0]:.1f}-"
            f"{other['distances'][1]:.1f}; `datagen/varied_views.py` renders such views under random lights), through "
            f"the intake: mean voxel IoU **{other['mean_voxel_iou']:.4f}** (the standard camera above: "
            f"{intake['mean_voxel_iou']:.4f}).",
            "",
        ]
    return lines


def _millions(module: torch.nn.Module) -> float:
    """Parameters of ``module``, in millions."""
    return sum(p.numel() for p in module.parameters()) / 1e6


def _architecture(model: Generator, meta: dict) -> list[str]:
    cfg = model.cfg
    side = cfg.image_size // 2 ** len(cfg.conv_channels)
    width = cfg.encoder_reduce or cfg.conv_channels[-1]
    reduce = (f", a 1x1 convolution to {cfg.encoder_reduce} channels (+ BatchNorm, ReLU)" if cfg.encoder_reduce else "")
    return [
        "## Architecture",
        "",
        f"Encoder ({_millions(model.encoder):.1f} M parameters): {len(cfg.conv_channels)} convolutions 5x5 stride 2 "
        f"({', '.join(map(str, cfg.conv_channels))} channels, BatchNorm, ReLU){reduce}, flattened "
        f"({width} x {side} x {side} = {width * side * side}) into fully connected layers "
        f"{', '.join(map(str, cfg.encoder_fc))}. Shape decoder ({_millions(model.shape_decoder):.1f} M): fully connected "
        f"{', '.join(map(str, cfg.decoder_fc))}, then a centroid and per-vertex offsets of the "
        f"{model.shape_decoder.sign.shape[0]}-vertex icosphere (level {cfg.template_level}, {model.faces.shape[0]} faces). "
        f"Colour decoder ({_millions(model.color_decoder):.1f} M): a palette of {cfg.palette_size} colours sampled from "
        f"the input and a per-vertex mixture of it." + _viewpoint_head(model, meta),
        "",
    ]


def _viewpoint_head(model: Generator, meta: dict) -> str:
    """The architecture sentence of the viewpoint head with its validation figures, or '' without one."""
    if model.viewpoint is None:
        return ""
    cfg = model.cfg
    text = (f" Viewpoint head ({_millions(model.viewpoint):.2f} M): fully connected {cfg.viewpoint_hidden}, then {cfg.viewpoint_bins} azimuth "
            f"bins of {360 / cfg.viewpoint_bins:g} degrees, first trained on the frozen encoder's codes "
            f"(`scripts/train_viewpoint_head.py`), then beside the generator (the training config's "
            f"`viewpoint_encoder_share` of its gradient reaching the encoder); the viewpoint estimates of textures and refinement weigh it")
    r = meta.get("viewpoint_head", {}).get("validation_elevation_30")
    if r:
        text += (f" (alone, on the validation views at elevation 30: the right bin {r['top1']:.0%}, within 45 degrees "
                 f"{r['within_45']:.0%}, more than 135 degrees off {r['over_135']:.0%})")
    return text + "."


def _steps(meta: dict) -> str:
    if "average" not in meta:
        return str(meta["step"])
    return "a weight average of steps " + ", ".join(str(part["step"]) for part in meta["average"])


def _session_table(sessions: list[dict], cfg: dict) -> list[str]:
    """The ledger of training sessions, a row each: device, learning rate, views and their settings, steps, time."""
    lines = ["| session start | device | processes | learning rate | views (+ extra; varied share), input elevations, "
             "mirrored, category balance, EMA decay | steps | wall time |",
             "|---|---|---|---|---|---|---|"]
    for s in sessions:
        extra = f" + {len(s['extra_views'])} extra" if s.get("extra_views") else ""
        if s.get("varied_views"):
            extra += f"; `{s['varied_views']}` for {s['varied_share']:.0%} of the batches"
        validated = f" (validated at {_validated_at(s)})" if s.get("validate_elevations") is not None else ""
        views = (f"`{s['views']}`{extra}, {_elevations(s.get('input_elevations'))}{validated}, {s.get('mirror', False)}, "
                 f"{s.get('category_balance', 0.0)}, {s.get('ema_decay', 0.0)}") if "views" in s else "?"
        lines.append(f"| {s['started']} | {s['device']} | {s['processes']} | {s.get('lr', cfg['lr'])} | {views} "
                     f"| {s['start_step']} -> {s['end_step']} | {s['seconds'] / 60:.1f} min |")
    return lines


def _sources(parts: list[dict], cfg: dict) -> list[str]:
    """A weight average's sources (a table) and, per source, the sessions it has beyond the first source's."""
    lines = ["| source | sha256 | coefficient | step |", "|---|---|---:|---:|"]
    lines += [f"| `{p['file']}` | `{p['sha256'][:16]}...` | {p['coefficient']:g} | {p['step']} |" for p in parts]
    for p in parts:
        if p["runs"]:
            lines += ["", f"Sessions of `{p['file']}` (coefficient {p['coefficient']:g}):", "", *_ledger(p["runs"], cfg)]
    return lines


def _ledger(sessions: list[dict], cfg: dict) -> list[str]:
    """The session table, then for each session that started from a weight average that average's sources."""
    lines = _session_table(sessions, cfg)
    for s in sessions:
        origin = s.get("init_weights", {})
        if "average" in origin:
            lines += ["", f"The session started {s['started']} began from `{origin['file']}` "
                      f"(`{origin['sha256'][:16]}...`), a weight average of:", "", *_sources(origin["average"], cfg)]
    return lines


def _every_session(sessions: list[dict]) -> list[dict]:
    """``sessions`` and those of every weight average they started from, however nested."""
    every = list(sessions)
    for s in sessions:
        for part in s.get("init_weights", {}).get("average", []):
            every += _every_session(part["runs"])
    return every


def _average(meta: dict) -> list[str]:
    """The card's section on a weight average (`softras average`): its sources and the sessions each adds."""
    if "average" not in meta:
        return []
    return ["", "## Weight average", "",
            "These weights are a weighted average of the tensors of generators fine-tuned from one start "
            "(`softras average`, a model soup), validated anew as the first source's training validates. "
            "The sessions above are the first source's; the others continue it with the sessions below.", "",
            *_sources(meta["average"], meta["train_config"])]


def card(path: Path, eval_result: dict | None = None, eval_command: str = "") -> str:
    model, meta = load_weights(path)
    cfg, val = meta["train_config"], meta["validation"]
    sessions = meta.get("runs", [])
    every = _every_session(sessions + [s for part in meta.get("average", []) for s in part["runs"]])
    hours = sum(s["seconds"] for s in every) / 3600
    lines = [
        "# SoftRas generator: model card",
        "",
        f"`{path.name}`: one RGBA image (64x64) to a coloured mesh (the {model.shape_decoder.sign.shape[0]}-vertex sphere "
        "deformed, per-vertex sRGB colours) in the object frame (Y-up, inside [-0.5, 0.5]^3).",
        "",
        "| | |",
        "|---|---|",
        f"| sha256 | `{sha256(path)}` |",
        f"| size | {path.stat().st_size / 2**20:.1f} MiB, float16 ({_millions(model):.1f} M parameters) |",
        f"| steps | {_steps(meta)} (batch {cfg['batch_size']} objects x 2 views) |",
        f"| training time | {hours:.2f} h over {len(every)} session(s) |",
        f"| torch | {meta.get('torch', '?')} |",
        "| load | `softras.model.load_weights(path)` (uses `torch.load(..., weights_only=True)`) |",
        "",
        *_architecture(model, meta),
        "## Data",
        "",
        "Views rendered with Cycles by `python -m datagen.training_views` from "
        f"`{cfg['shapes']}` (419 ShapeNet, Pix3D and classic test models; 24 azimuths per elevation, distance "
        "2.732, 30 deg field of view, RGBA at the views file's size); the views file of each session is in the table "
        "below. Split by model, stratified per category (10% validation).",
        f"Generator input views: elevations {_elevations(cfg.get('input_elevations'))}; every other view of the object "
        "supervises. In the last session: "
        + (f"extra training views {_files(cfg['extra_views'])} (procedural shapes from `datagen/procedural_shapes.py` "
           "and stretched copies of the training models from `datagen/stretched_shapes.py`; never validated), "
           if cfg.get("extra_views") else "no extra training views, ")
        + f"mirrored shapes {cfg.get('mirror', False)}, category balance {cfg.get('category_balance', 0.0)}, "
        + (f"every input through the intake with framing jitter (fill {cfg.get('fill_jitter', 0.0)}, offset "
           f"{cfg.get('offset_jitter', 0.0)}) and picture augmentation "
           f"{'on (`softras.augment.AugmentSettings` as in the config)' if cfg.get('augment') else 'off'}."
           if meta.get("validation_protocol", {}).get("input") == "intake" else "inputs fed to the generator directly."),
        "",
        "## Training",
        "",
        f"Command: `softras train --config C`, C holding the training config stored with these weights (the last "
        f"session's run directory: `{cfg['out_dir']}`); `configs/generator.toml` continues from the shipped weights.",
        f"Adam (learning rate per session below), sigma {cfg['sigma']}, gamma {cfg['gamma']}; loss = soft IoU + {cfg['laplacian_weight']} "
        f"Laplacian + {cfg['flatten_weight']} flatten + {cfg['color_weight']} colour L1; bf16 autocast: {cfg.get('bf16', False)}.",
        "Weights shipped: " + (f"an exponential moving average (decay {cfg['ema_decay']}) of the trained weights and their "
                                "BatchNorm statistics." if cfg.get("ema_decay") else "the trained weights themselves."),
        "",
        *_ledger(sessions, cfg),
        *_average(meta),
    ]
    lines += [
        "",
        f"## Validation ({'the average' if 'average' in meta else 'step ' + str(meta['step'])})",
        "",
        "Voxel IoU: the mesh reconstructed from one view, voxelised as surface plus interior at 32^3, against "
        f"`voxels_shell` (the paper's protocol); {cfg['validate_views']} input views per validation model, "
        f"elevations {_validated_at(cfg)}, each "
        + ("through the intake, as a user's picture. " if meta.get("validation_protocol", {}).get("input") == "intake"
           else "fed to the generator directly (weights exported before validation went through the intake). ")
        + "Silhouette IoU: the mesh's hard silhouette from the input view's camera against the view's alpha.",
        "",
        "| category | models | voxel IoU | silhouette IoU |",
        "|---|---:|---:|---:|",
    ]
    for c, v in val["voxel_iou"].items():
        lines.append(f"| {c} | {val['models'][c]} | {v:.4f} | {val['silhouette_iou'][c]:.4f} |")
    lines += [f"| **mean** | {sum(val['models'].values())} | **{val['mean_voxel_iou']:.4f}** | {val['mean_silhouette_iou']:.4f} |", ""]
    if eval_result is not None:
        lines += evaluation(eval_result, eval_command)
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", type=Path)
    ap.add_argument("--eval", type=Path, help="output of `softras eval --json --robustness` on these weights")
    ap.add_argument("--eval-command", default=EVAL_COMMAND, help="the command that wrote --eval, quoted in the card")
    ap.add_argument("--notes", type=Path, help="a Markdown file appended to the card (limitations, comparisons)")
    args = ap.parse_args()
    result = json.loads(args.eval.read_text()) if args.eval else None
    print(card(args.weights, result, args.eval_command) + ("\n" + args.notes.read_text() if args.notes else ""))


if __name__ == "__main__":
    main()
