"""Write the model card (models/README.md) from a weights file's own metadata, its evaluation and its recipe.

    softras eval --weights models/softras_generator.pt --data ../shared/data/shapes_train.npz \
        --views cache/views128_e0_30.npz --elevation 30 --robustness --camera-views cache/views_varied.npz \
        --json > models/eval.json
    softras eval --weights models/softras_generator.pt --data ../shared/data/shapes_train.npz \
        --views cache/views128_e0_30.npz --elevation 0 --json > models/eval_eye_level.json
    .venv/bin/python scripts/model_card.py models/softras_generator.pt --eval models/eval.json \
        --eye-level models/eval_eye_level.json > models/README.md

The card comes from the weights file (its version, training config, ledger of runs with device, steps and wall time,
the sources of a weight average, and the validation that training or `softras average` stored with it), from the
output of ``softras eval --json --robustness --camera-views`` (``--eval``) and of the same at eye level
(``--eye-level``), and from the recipe ``configs/<version>/recipe.toml`` (every stage that made the weights, as
committed configs and commands). Weights without a version (a training export) get a card without a recipe, their
ledger listed run by run.

A released weights file gets its version, a metadata-only rewrite that leaves every tensor as it is:

    .venv/bin/python scripts/model_card.py models/softras_generator.pt --set-version 2026.12.0
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import tomllib
from pathlib import Path

import torch

from softras.fileio import atomic_write
from softras.model import WEIGHTS_FORMAT, Generator, WeightsError, load_weights, sha256, upgrade_metadata

ROOT = Path(__file__).resolve().parents[1]
WIDTH = 120  # the card's prose lines, outside tables and code

EVAL_COMMAND = ("softras eval --weights models/softras_generator.pt --data ../shared/data/shapes_train.npz "
                "--views cache/views128_e0_30.npz --elevation 30 --robustness --camera-views cache/views_varied.npz "
                "--json")
EYE_LEVEL_COMMAND = ("softras eval --weights models/softras_generator.pt --data ../shared/data/shapes_train.npz "
                     "--views cache/views128_e0_30.npz --elevation 0 --json")

CITATION = """\
```bibtex
@inproceedings{liu2019softras,
  title     = {Soft Rasterizer: A Differentiable Renderer for Image-based 3D Reasoning},
  author    = {Liu, Shichen and Li, Tianye and Chen, Weikai and Li, Hao},
  booktitle = {IEEE/CVF International Conference on Computer Vision (ICCV)},
  year      = {2019}
}
@inproceedings{sun2018pix3d,
  title     = {Pix3D: Dataset and Methods for Single-Image 3D Shape Modeling},
  author    = {Sun, Xingyuan and Wu, Jiajun and Zhang, Xiuming and Zhang, Zhoutong and Zhang, Chengkai and
               Xue, Tianfan and Tenenbaum, Joshua B. and Freeman, William T.},
  booktitle = {IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2018}
}
@techreport{chang2015shapenet,
  title       = {{ShapeNet}: An Information-Rich 3D Model Repository},
  author      = {Chang, Angel X. and Funkhouser, Thomas and Guibas, Leonidas and Hanrahan, Pat and Huang, Qixing and
                 Li, Zimo and Savarese, Silvio and Savva, Manolis and Song, Shuran and Su, Hao and Xiao, Jianxiong and
                 Yi, Li and Yu, Fisher},
  number      = {arXiv:1512.03012},
  institution = {Stanford University, Princeton University, Toyota Technological Institute at Chicago},
  year        = {2015}
}
```"""


def para(text: str) -> list[str]:
    """A paragraph wrapped at the card's width, then a blank line."""
    return [*textwrap.wrap(text, WIDTH, break_on_hyphens=False, break_long_words=False), ""]


def set_version(path: Path, version: str) -> Path:
    """Write ``version`` into the weights' metadata (and the ledger under ``runs``), every tensor unchanged."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != WEIGHTS_FORMAT:
        raise WeightsError(f"{path}: not a softras generator weights file")
    payload["metadata"] = {**upgrade_metadata(payload.get("metadata") or {}), "version": version}
    return atomic_write(path, lambda fh: torch.save(payload, fh))


def read_recipe(version: str | None, root: Path = ROOT) -> dict | None:
    """``configs/<version>/recipe.toml`` under ``root``, or None where the weights have no version or no recipe."""
    path = root / "configs" / str(version) / "recipe.toml"
    return tomllib.loads(path.read_text()) if version and path.is_file() else None


def _millions(module: torch.nn.Module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


def views_per_model(command: str) -> int:
    """The input pictures per model of a `softras eval` command: its --views-per-model, else that option's default."""
    words = command.split()
    return int(words[words.index("--views-per-model") + 1]) if "--views-per-model" in words else 4


def _dated(dates: dict | None, path: str) -> str:
    """' (run DATE, written to PATH)' where the recipe's [evaluation] dates the output file, else ''."""
    return f" (run {dates[path]}, written to `{path}`)" if dates and path in dates else ""


def _interval(report: dict) -> str:
    low, high = report["voxel_iou_interval"]
    return f"[{low:.4f}, {high:.4f}]"


def _every_run(runs: list[dict]) -> list[dict]:
    """``runs`` and those of every weight average they started from, however nested."""
    every = list(runs)
    for run in runs:
        for part in run.get("init_weights", {}).get("average", []):
            every += _every_run(part["runs"])
    return every


def _all_runs(meta: dict) -> list[dict]:
    """Every run behind the weights: their ledger, an average's sources' own runs and the averages runs began from."""
    return _every_run(meta.get("runs", []) + [r for part in meta.get("average", []) for r in part["runs"]])


def _steps(meta: dict) -> str:
    if "average" not in meta:
        return f"step {meta['step']}"
    return "a weight average of steps " + ", ".join(str(part["step"]) for part in meta["average"])


def details(path: Path, model: Generator, meta: dict) -> list[str]:
    cfg = meta["train_config"]
    every = _all_runs(meta)
    hours = sum(r["seconds"] for r in every) / 3600
    devices = sorted({"CPU" if r["device"].startswith("cpu") else r["device"] for r in every})
    return [
        "## Model details",
        "",
        "| | |",
        "|---|---|",
        f"| file | `models/{path.name}` |",
        f"| version | {meta.get('version', 'unreleased (a training export)')} |",
        f"| sha256 | `{sha256(path)}` |",
        f"| size | {path.stat().st_size / 2**20:.1f} MiB, float16 |",
        f"| parameters | {_millions(model):.1f} M |",
        f"| training | {_steps(meta)}, batch {cfg['batch_size']} objects x 2 views; {hours:.1f} h over "
        f"{len(every)} run(s) on {', '.join(devices) or '?'} |",
        f"| framework | PyTorch {meta.get('torch', '?')}; `softras.model.load_weights(path)` "
        "(`torch.load(..., weights_only=True)`) |",
        "| licence | code GPL-3.0-or-later; the weights are learned from ShapeNet models: non-commercial research "
        "and education (see Training data) |",
        "| method | Soft Rasterizer (Liu et al., ICCV 2019), the single-view mesh generator of its paper |",
        "",
    ]


USES = """## Intended use

- Turn one picture of one object (a transparent PNG, a plain backdrop, or a picture with a mask) into a rough
  coloured mesh to start from: in Blender through the SoftRas add-on, from `softras reconstruct`, or over folders of
  pictures with the batch tool. Furniture and household objects (chairs, tables, sofas, beds, cabinets, bottles,
  vases) are what it has seen most.
- Research and teaching on differentiable rendering and single-view reconstruction: a small, CPU-trainable
  generator whose training, evaluation and recipe are all in this repository.

## Out-of-scope use

- Measurement, manufacturing, or anything that relies on the mesh's true dimensions or hidden sides: one picture
  says nothing certain about depth or the far side, and the mesh is a deformed sphere of 642 vertices.
- People, animals, vehicles on the road, scenes and rooms, and pictures with clutter around the object without a
  mask: the training data holds single objects of 19 categories, framed alone.
- Commercial use of the weights: they are learned from ShapeNet models, whose terms allow non-commercial research
  and education only.
"""


def architecture(model: Generator, meta: dict) -> list[str]:
    cfg = model.cfg
    side = cfg.image_size // 2 ** len(cfg.conv_channels)
    width = cfg.encoder_reduce or cfg.conv_channels[-1]
    reduce = (f", a 1x1 convolution to {cfg.encoder_reduce} channels (+ BatchNorm, ReLU)" if cfg.encoder_reduce else "")
    text = (f"The input is the picture after the intake (foreground found, cropped, resized to {cfg.image_size}x"
            f"{cfg.image_size} RGBA). Encoder ({_millions(model.encoder):.1f} M parameters): "
            f"{len(cfg.conv_channels)} convolutions 5x5 stride 2 ({', '.join(map(str, cfg.conv_channels))} channels, "
            f"BatchNorm, ReLU){reduce}, flattened ({width} x {side} x {side} = {width * side * side}) into fully "
            f"connected layers {', '.join(map(str, cfg.encoder_fc))}. Shape decoder "
            f"({_millions(model.shape_decoder):.1f} M): fully connected {', '.join(map(str, cfg.decoder_fc))}, then a "
            f"centroid and per-vertex offsets of the {model.shape_decoder.sign.shape[0]}-vertex icosphere (level "
            f"{cfg.template_level}, {model.faces.shape[0]} faces), in the object frame (Y-up, inside [-0.5, 0.5]^3). "
            f"Colour decoder ({_millions(model.color_decoder):.1f} M): a palette of {cfg.palette_size} colours "
            f"sampled from the input and a per-vertex mixture of it (sRGB).")
    if model.viewpoint is not None:
        text += (f" Viewpoint head ({_millions(model.viewpoint):.2f} M): fully connected {cfg.viewpoint_hidden}, then "
                 f"{cfg.viewpoint_bins} azimuth bins of {360 / cfg.viewpoint_bins:g} degrees; it tells the texture bake "
                 "and refinement which side of the object the picture shows.")
    text += (" Training renders each predicted mesh with the soft rasterizer from its input's camera and another one "
             "and compares silhouettes (soft IoU) and colours (L1).")
    return ["## Architecture", "", *para(text)]


def training_data(cfg: dict, meta: dict) -> list[str]:
    protocol = meta.get("validation_protocol", {})
    validation_models = sum(meta["validation"]["models"].values())
    return ["## Training data", "", *para(
        f"`{cfg['shapes']}`: 419 coloured meshes of 19 categories (see `../shared/data/README.md`), split by model, "
        f"stratified per category, into {419 - validation_models} training and {validation_models} validation models; "
        "the validation models are never trained on. Sources and licences:"),
        "| source | models | licence |",
        "|---|---:|---|",
        "| Pix3D (Sun et al., CVPR 2018): chairs, tables, desks, beds, sofas, bookcases, wardrobes, tools, misc "
        "| 334 | CC BY 4.0 (credit Pix3D) |",
        "| ShapeNetCore v2 (Chang et al., 2015): aeroplanes, bathtubs, benches, bottles, chairs, cups, pianos, "
        "rifles, toilets, vases | 77 | ShapeNet terms of use: non-commercial research and education only |",
        "| classic test meshes (spot, cow, teapot, suzanne, bunny, ...) | 8 | each its source's terms "
        "(`../shared/data/README.md`) |",
        "",
        *para("Training pictures are renders of those meshes: Cycles views (`python -m datagen.training_views`, "
              "24 azimuths at elevations 0 and 30 degrees, distance 2.732, 30 degree field of view, 128 px) and "
              "views from 48 random cameras and lights (`python -m datagen.varied_views`, elevation 0-50 degrees, "
              "distance 2.2-6). Every input goes through the same intake as a user's picture, with random framing "
              "and picture augmentation (reframing, low resolution, blur, exposure and colour, no alpha on a plain "
              "backdrop, noise, JPEG); every other view of the object supervises the mesh. "
              f"Validation inputs: {protocol.get('views_per_model', cfg['validate_views'])} views per model at "
              f"elevation(s) {', '.join(f'{e:g}' for e in protocol.get('elevations') or [30])} degrees."),
    ]


def stage_runs(stage: dict, runs: list[dict], root: Path = ROOT) -> list[dict]:
    """The runs of the ledger that a `softras train` stage of the recipe made: within its steps, with its inputs."""
    config = tomllib.loads((root / stage["config"]).read_text())
    low, high = stage["steps"]
    return [r for r in runs if low <= r["start_step"] < r["end_step"] <= high
            and (r.get("varied_share") or 0.0) == config.get("varied_share", 0.0)
            and r.get("input_elevations") == config.get("input_elevations")]


def recipe_section(recipe: dict, meta: dict) -> list[str]:
    """The recipe's stages as a table (with each training stage's runs from the ledger), and the history before it,
    summarised from the ledger."""
    every = _all_runs(meta)
    start = recipe["start"]["step"]
    lines = ["## Training recipe", "", *para(
        f"Every stage since training moved onto the intake path at step {start}, as committed files: "
        f"`configs/{recipe['version']}/recipe.toml` lists the commands in order, each `softras train` stage has its "
        f"config beside it, and each stage links its training note. The start: {recipe['start']['what']} "
        f"(`{recipe['start']['commands'][-1]}`)."),
        "| stage | date | what | steps | runs, time | command |",
        "|---|---|---|---|---|---|"]
    for stage in recipe["stages"]:
        steps = f"{stage['steps'][0]} -> {stage['steps'][1]}" if "steps" in stage else ""
        if "coefficients" in stage:
            steps = " + ".join(f"{c:g}" for c in stage["coefficients"])
        ran = ""
        if "steps" in stage:
            runs = stage_runs(stage, every)
            ran = f"{len(runs)}, {sum(r['seconds'] for r in runs) / 60:.0f} min" if runs else "not in the ledger"
        what = stage["what"] + (f" ([note](../docs/notes/{stage['notes']}))" if "notes" in stage else "")
        commands = "<br>".join(f"`{c}`" for c in stage["commands"])
        lines.append(f"| {stage['stage']} | {stage['date']} | {what} | {steps} | {ran} | {commands} |")
    if any("steps" in stage and not stage_runs(stage, every) for stage in recipe["stages"]):
        lines += ["", *para("A stage not in the ledger ran before weight averages recorded their sources' runs; its "
                            "note has its figures.")][:-1]
    earlier = [r for r in every if r["end_step"] <= start]
    if earlier:
        views = sorted({r.get("views", "?") for r in earlier})
        extra = max(len(r.get("extra_views") or []) for r in earlier)
        rates = sorted({r.get("lr") for r in earlier if r.get("lr") is not None})
        lines += ["", *para(
            f"Before step {start} ({earlier[0]['started'][:10]} to {earlier[-1]['started'][:10]}, {len(earlier)} "
            f"runs, {sum(r['seconds'] for r in earlier) / 3600:.1f} h on 2 CPU threads, from random weights): the "
            f"same generator trained on renders fed to it directly (views {', '.join(f'`{v}`' for v in views)}, up "
            f"to {extra} packs of procedural and stretched shapes beside them, learning rates "
            f"{', '.join(f'{x:g}' for x in rates)}; mirrored shapes from step "
            f"{min(r['start_step'] for r in earlier if r.get('mirror'))}, a category balance from step "
            f"{min(r['start_step'] for r in earlier if r.get('category_balance'))}). The notes of those runs: "
            "[docs/notes/2026-11-26-renders-fed-directly.md](../docs/notes/2026-11-26-renders-fed-directly.md).")]
    cfg = meta["train_config"]
    lines += para(
        f"Every stage: Adam, batch {cfg['batch_size']} objects x 2 views, sigma {cfg['sigma']:g}, gamma "
        f"{cfg['gamma']:g}; loss = soft IoU + {cfg['laplacian_weight']:g} Laplacian + {cfg['flatten_weight']:g} "
        f"flatten + {cfg['color_weight']:g} colour L1 (+ the viewpoint head's azimuth loss); the exported weights are "
        f"an exponential moving average of the trained ones (decay {cfg.get('ema_decay', 0):g}). A weight average "
        "(`softras average`, a model soup: Wortsman et al., ICML 2022) mixes fine-tunes of one start. The whole "
        "history, run by run: [docs/notes/](../docs/notes/README.md).")
    return lines


def ledger_section(meta: dict) -> list[str]:
    """Weights without a recipe: their ledger, a row per run, and a weight average's sources."""
    lines = ["## Training runs", "", "| started | device | learning rate | views | input elevations | steps | time |",
             "|---|---|---:|---|---|---|---:|"]
    for r in _all_runs(meta):
        elevations = ", ".join(f"{e:g}" for e in r.get("input_elevations") or []) or "all"
        views = f"`{r.get('views', '?')}`" + (f" + {r['varied_share']:.0%} `{r['varied_views']}`"
                                                if r.get("varied_views") else "")
        lines.append(f"| {r['started']} | {r['device']} | {r.get('lr', '?')} | {views} | {elevations} | "
                     f"{r['start_step']} -> {r['end_step']} | {r['seconds'] / 60:.1f} min |")
    for r in meta.get("runs", []):
        origin = r.get("init_weights", {})
        if "average" in origin:
            lines += ["", f"The run started {r['started']} began from `{origin['file']}` "
                      f"(`{origin['sha256'][:16]}...`), a weight average of:", "", *_sources(origin["average"])]
    if "average" in meta:
        lines += ["", "## Weight average", "", *para(
            "These weights are a weighted average of the tensors of generators fine-tuned from one start (`softras "
            "average`), validated anew as the first source's training validates:"), *_sources(meta["average"])]
    return lines + [""]


def _sources(parts: list[dict]) -> list[str]:
    return ["| source | sha256 | coefficient | step |", "|---|---|---:|---:|",
            *[f"| `{p['file']}` | `{p['sha256'][:16]}...` | {p['coefficient']:g} | {p['step']} |" for p in parts]]


def evaluation(result: dict, command: str, eye_level: dict | None = None, eye_level_command: str = "",
               validation: dict | None = None, dates: dict | None = None) -> list[str]:
    """The card's evaluation: protocol, the headline figures with their intervals, robustness, per category."""
    intake, direct = result["intake"], result["direct"]
    other = result.get("other_cameras")
    models = sum(intake["models"].values())
    lines = ["## Evaluation", "", *para(
        f"Protocol: the {models} validation models, each seen in {views_per_model(command)} pictures (evenly spaced "
        "azimuths), each through the intake, as a user's picture: the same foreground, crop and resize as `softras "
        "reconstruct`. The mesh is voxelised as surface plus interior at 32^3 and compared with the model's "
        "`voxels_shell` (voxel IoU, the paper's measure), averaged per category, then over categories. Intervals: "
        "95% bootstrap over the validation models (whole models resampled, `softras.evaluate.bootstrap_interval`). "
        "With one model in most categories, two generators are told apart on the same pictures "
        "(`scripts/compare_weights.py`, a paired interval), not by these unpaired figures."),
        *para(f"Commands{_dated(dates, 'models/eval.json')}: `{command}`"
              + (f"; eye level{_dated(dates, 'models/eval_eye_level.json')}: `{eye_level_command}`" if eye_level else "")
              + "."),
        "| pictures | voxel IoU | 95% interval | silhouette IoU |",
        "|---|---:|---:|---:|",
        f"| standard camera (elevation 30 degrees, distance 2.732) | **{intake['mean_voxel_iou']:.4f}** | "
        f"{_interval(intake)} | {intake['mean_silhouette_iou']:.4f} |"]
    if eye_level:
        e = eye_level["intake"]
        lines.append(f"| eye level (elevation 0) | **{e['mean_voxel_iou']:.4f}** | {_interval(e)} | "
                     f"{e['mean_silhouette_iou']:.4f} |")
    if other:
        lines.append(f"| other cameras and lights (`{other['views']}`: elevation {other['elevations'][0]:.0f}-"
                     f"{other['elevations'][1]:.0f} degrees, distance {other['distances'][0]:.1f}-"
                     f"{other['distances'][1]:.1f}, random lights) | **{other['mean_voxel_iou']:.4f}** | "
                     f"{_interval(other)} | {other['mean_silhouette_iou']:.4f} |")
    lines.append(f"| standard camera, renders fed to the generator directly (a diagnostic, not what users get) | "
                 f"{direct['mean_voxel_iou']:.4f} | {_interval(direct)} | {direct['mean_silhouette_iou']:.4f} |")
    if validation:
        lines.append(f"| training's validation (2 pictures per model), stored in the weights | "
                     f"{validation['mean_voxel_iou']:.4f} | "
                     + (f"{_interval(validation)} |" if "voxel_iou_interval" in validation else "|")
                     + f" {validation['mean_silhouette_iou']:.4f} |")
    lines.append("")
    if "robustness" in result:
        lines += ["### Robustness", "", *para(
            "The standard camera's pictures perturbed as real pictures are (`softras.augment.PERTURBATIONS`), "
            "through the intake. Agreement: mean voxel IoU between each prediction and the one from the clean "
            "picture."),
            "| input | voxel IoU | vs clean | agreement | refused by the intake |",
            "|---|---:|---:|---:|---:|"]
        lines += [f"| {r['name']} | {r['mean_voxel_iou']:.4f} | {r['change']:+.4f} | {r['agreement']:.4f} | "
                  f"{r['failures']} |" for r in result["robustness"]]
        lines.append("")
    columns = [("standard camera", intake)] + ([("eye level", eye_level["intake"])] if eye_level else []) \
        + ([("other cameras", other)] if other else [])
    lines += ["### Per category", "", *para(
        "Voxel IoU through the intake; spread: the standard deviation over the category's pictures at the standard "
        "camera; precision and recall of its voxels; direct: renders fed directly."),
        "| category | models | " + " | ".join(name for name, _ in columns)
        + " | spread | precision | recall | direct | silhouette IoU |",
        "|---|---:|" + "---:|" * (len(columns) + 5)]
    for c, v in intake["voxel_iou"].items():
        cells = " | ".join(f"{report['voxel_iou'][c]:.4f}" for _, report in columns)
        lines.append(f"| {c} | {intake['models'][c]} | {cells} | {intake['voxel_iou_spread'][c]:.2f} | "
                     f"{intake['voxel_precision'][c]:.2f} | {intake['voxel_recall'][c]:.2f} | "
                     f"{direct['voxel_iou'][c]:.4f} | {intake['silhouette_iou'][c]:.4f} |")
    mean = lambda d: sum(d.values()) / len(d)  # noqa: E731
    cells = " | ".join(f"**{report['mean_voxel_iou']:.4f}**" for _, report in columns)
    lines += [f"| **mean** | {models} | {cells} | | {mean(intake['voxel_precision']):.2f} | "
              f"{mean(intake['voxel_recall']):.2f} | {direct['mean_voxel_iou']:.4f} | "
              f"{intake['mean_silhouette_iou']:.4f} |", ""]
    return lines


def limitations(result: dict | None, eye_level: dict | None) -> list[str]:
    lines = ["## Limitations", ""]
    if result is not None:
        intake = result["intake"]
        worst = sorted(intake["voxel_iou"].items(), key=lambda kv: kv[1])[:3]
        figures = (f"Its mean voxel IoU through the intake is {intake['mean_voxel_iou']:.2f} at the standard camera"
                   + (f", {eye_level['intake']['mean_voxel_iou']:.2f} at eye level" if eye_level else "")
                   + (f", {result['other_cameras']['mean_voxel_iou']:.2f} from other cameras"
                      if "other_cameras" in result else "")
                   + "; the paper reports 0.62 on renders fed directly, trained on about 43,000 ShapeNet models "
                   "(this generator: 374). Weakest categories: "
                   + ", ".join(f"{c} {v:.2f}" for c, v in worst) + ".")
        lines += [f"- {line}" if i == 0 else f"  {line}"
                  for i, line in enumerate(textwrap.wrap(figures, WIDTH - 2, break_on_hyphens=False))]
    for item in (
        "Thin parts (table legs, stretchers, slats, rifle barrels) come out thick, merged or missing; a deformed "
        "sphere has no holes and no separate parts.",
        "The far side is a guess: the mesh is plausible from the picture's side, and its colours there come from "
        "what the picture shows (the texture bake mirrors the visible side onto the hidden one).",
        "Pictures taken from about 30 degrees above the object work best; from eye level or unusual cameras the "
        "figure falls (above).",
        "The intake needs the object alone on a transparent or plain, roughly uniform backdrop, or a mask: on a "
        "cluttered or unevenly lit backdrop close to the object's colours it loses parts.",
        "Every figure is on 45 validation models of the same data; categories with one validation model (most of "
        "them) are noisy. Real photographs have not been measured beyond the robustness perturbations above.",
    ):
        lines += [f"- {line}" if i == 0 else f"  {line}"
                  for i, line in enumerate(textwrap.wrap(item, WIDTH - 2, break_on_hyphens=False))]
    return lines + [""]


def card(path: Path, eval_result: dict | None = None, eval_command: str = EVAL_COMMAND, eye_level: dict | None = None,
         eye_level_command: str = EYE_LEVEL_COMMAND, recipe: dict | None = None) -> str:
    """The model card of the weights at ``path``; ``recipe``: read from ``configs/<version>/recipe.toml`` when None."""
    model, meta = load_weights(path)
    cfg = meta["train_config"]
    recipe = recipe if recipe is not None else read_recipe(meta.get("version"))
    version = meta.get("version")
    title = f"# SoftRas generator {version}: model card" if version else "# SoftRas generator: model card"
    lines = [title, "", *para(
        f"`{path.name}` turns one picture of an object into a coloured triangle mesh: the "
        f"{model.shape_decoder.sign.shape[0]}-vertex sphere deformed, with per-vertex sRGB colours, in the object "
        "frame (Y-up, inside [-0.5, 0.5]^3). Written by `scripts/model_card.py` from the weights' own metadata, "
        "their evaluation (`models/eval.json`" + (", `models/eval_eye_level.json`" if eye_level else "") + ") and "
        "the recipe, so that other weights get their own card the same way."),
        *details(path, model, meta), *USES.splitlines(), "", *architecture(model, meta), *training_data(cfg, meta)]
    lines += recipe_section(recipe, meta) if recipe else ledger_section(meta)
    if eval_result is not None:
        lines += evaluation(eval_result, eval_command, eye_level, eye_level_command, meta.get("validation"),
                            (recipe or {}).get("evaluation"))
    else:
        val = meta["validation"]
        lines += ["## Evaluation", "", *para(
            f"Training's validation (stored in the weights): mean voxel IoU {val['mean_voxel_iou']:.4f}, silhouette "
            f"IoU {val['mean_silhouette_iou']:.4f}, over {sum(val['models'].values())} validation models "
            f"({_steps(meta)}). Run `softras eval ... --json` for the full evaluation.")]
    lines += limitations(eval_result, eye_level)
    lines += ["## Training history", "", *para(
        "What each run measured, what shipped and why, by date and run name: "
        "[docs/notes/README.md](../docs/notes/README.md). Training your own: [docs/training.md](../docs/training.md)."),
        "## Citation", "", "The method, and the data the weights learned from:", "", CITATION]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", type=Path)
    ap.add_argument("--eval", type=Path, help="output of `softras eval --json --robustness --camera-views` on these weights")
    ap.add_argument("--eval-command", default=EVAL_COMMAND, help="the command that wrote --eval, quoted in the card")
    ap.add_argument("--eye-level", type=Path, help="output of `softras eval --elevation 0 --json` on these weights")
    ap.add_argument("--eye-level-command", default=EYE_LEVEL_COMMAND)
    ap.add_argument("--set-version", metavar="VERSION",
                    help="write VERSION into the weights' metadata (tensors unchanged) instead of printing the card")
    args = ap.parse_args(argv)
    if args.set_version:
        set_version(args.weights, args.set_version)
        print(f"{args.weights}: version {args.set_version}", file=sys.stderr)
        return 0
    result = json.loads(args.eval.read_text()) if args.eval else None
    eye = json.loads(args.eye_level.read_text()) if args.eye_level else None
    sys.stdout.write(card(args.weights, result, args.eval_command, eye, args.eye_level_command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
