"""Generator training on a GPU machine in one call, within what such a call can carry (64 MiB in, 8 files of
16 MiB back, 10 minutes).

    # here: the views of the training split, WebP-coded (softras.data.compact_views), the start weights and the
    # training config go into gpu_job/ (git-ignored; name it in the call's carry)
    python scripts/gpu_job.py prepare --config configs/generator.toml
    # there (PYTHONPATH=engine): train for N minutes, write the weight average in parts of 15 MiB with checksums
    python3 scripts/gpu_job.py train --minutes 7 --out $OUT
    # here: join and check the parts, validate through the intake on the full views file, export if better
    python scripts/gpu_job.py receive --parts <the call's files folder> --config configs/generator.toml

Validation needs the validation split and the shapes file, which stay here: the GPU run does not validate, the
received weights are validated exactly as `softras train` validates (and exported only when they beat the export).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import torch

from softras.data import compact_views
from softras.fileio import atomic_write
from softras.model import Generator, load_weights, save_weights
from softras.train import TrainConfig, train, validate_and_export

CARRY_LIMIT = 64 * 2**20
PART_SIZE = 15 * 2**20
JOB = Path("gpu_job")


def _tree_size() -> int:
    """Bytes of what a device call sends besides carried paths: tracked and untracked, not ignored files."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], capture_output=True,
                           check=True).stdout.split(b"\0")
    return sum(p.stat().st_size for p in map(Path, map(bytes.decode, filter(None, names))) if p.is_file())


def _tracked(path: Path) -> bool:
    return subprocess.run(["git", "ls-files", "--error-unmatch", str(path)], capture_output=True).returncode == 0


def prepare(config: Path, job: Path, quality: int, workers: int) -> dict:
    """Write ``job``/views.npz, varied.npz (the training split of the config's ``varied_views``, if any), init.pt
    (when the config starts from weights that git does not track) and train.json; returns the sizes of the job's
    files and of the tree that travels with them."""
    cfg = TrainConfig.from_toml(config)
    if cfg.extra_views:
        raise ValueError("extra views do not travel: use a config without extra_views")
    job.mkdir(parents=True, exist_ok=True)
    compact_views(cfg.views, job / "views.npz", split="train", quality=quality)
    varied = None
    if cfg.varied_views:
        varied = str(compact_views(cfg.varied_views, job / "varied.npz", split="train", quality=quality))
    init = None
    if cfg.init_weights and Path(cfg.init_weights).is_file():
        init = Path(cfg.init_weights)
        if not _tracked(init):  # tracked files travel with the tree anyway
            init = job / "init.pt"
            shutil.copyfile(cfg.init_weights, init)
    remote = dataclasses.replace(cfg, views=str(job / "views.npz"), varied_views=varied, shapes="",
                                 out_dir=str(job / "run"), export=None, export_best=False,
                                 init_weights=None if init is None else str(init), validate_every=0,
                                 checkpoint_every=500, device="cuda", input_workers=workers)
    atomic_write(job / "train.json", lambda fh: fh.write(json.dumps(remote.as_dict(), indent=1).encode()))
    sizes = {p.name: p.stat().st_size for p in job.iterdir() if p.is_file()}
    sizes["tree"] = _tree_size()
    return sizes


def _weight_average(checkpoint: Path, cfg: TrainConfig) -> tuple[Generator, dict]:
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model = Generator(cfg.model)
    if "ema" in state:
        model.load_state_dict({k.removeprefix("module."): v for k, v in state["ema"].items() if k.startswith("module.")})
    else:
        model.load_state_dict(state["model"])
    return model.eval(), state


def run_training(job: Path, out: Path, minutes: float, device: str | None) -> dict:
    """Train from ``job``/train.json, then write the weights' parts and manifest.json to ``out``."""
    raw = json.loads((job / "train.json").read_text())
    cfg = TrainConfig.from_dict(raw)
    if device:
        cfg.device = device
    checkpoint = train(cfg, max_minutes=minutes)
    model, state = _weight_average(checkpoint, cfg)
    out.mkdir(parents=True, exist_ok=True)
    weights = save_weights(model, job / "weights.pt", metadata={
        "step": int(state["step"]), "runs": state["runs"], "train_config": cfg.as_dict(),
        "torch": str(torch.__version__)})
    data = weights.read_bytes()
    parts = []
    for k in range(0, len(data), PART_SIZE):
        name = f"weights.pt.part{k // PART_SIZE}"
        (out / name).write_bytes(data[k:k + PART_SIZE])
        parts.append({"name": name, "sha256": hashlib.sha256(data[k:k + PART_SIZE]).hexdigest()})
    manifest = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "parts": parts, "step": int(state["step"]),
                "run": state["runs"][-1]}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    shutil.copyfile(Path(cfg.out_dir) / "log.jsonl", out / "log.jsonl")
    return manifest


def join_parts(parts: Path, target: Path) -> Path:
    """Join the parts listed in ``parts``/manifest.json into ``target`` (atomically) after checking every checksum."""
    manifest = json.loads((parts / "manifest.json").read_text())
    chunks = []
    for part in manifest["parts"]:
        chunk = (parts / part["name"]).read_bytes()
        if hashlib.sha256(chunk).hexdigest() != part["sha256"]:
            raise ValueError(f"{part['name']}: checksum mismatch (damaged in transfer)")
        chunks.append(chunk)
    data = b"".join(chunks)
    if len(data) != manifest["size"] or hashlib.sha256(data).hexdigest() != manifest["sha256"]:
        raise ValueError("the joined weights do not match the manifest's checksum")
    return atomic_write(target, lambda fh: fh.write(data))


def receive(parts: Path, config: Path, target: Path, export: str | None) -> None:
    """Join, load (which checks every tensor), validate through the intake and export if better."""
    model, metadata = load_weights(join_parts(parts, target))
    cfg = TrainConfig.from_toml(config)
    if model.cfg != cfg.model:
        raise ValueError(f"the received weights have another model config than {config}'s [model]")
    # the validation is logged beside the joined weights, not in the home run's ledger
    cfg = dataclasses.replace(cfg, export=export if export is not None else cfg.export, export_best=True,
                              out_dir=str(target.parent))
    validate_and_export(model, cfg, int(metadata["step"]), list(metadata["runs"]), print)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="pack views, start weights and config into the job folder")
    p.add_argument("--config", type=Path, default=Path("configs/generator.toml"))
    p.add_argument("--job", type=Path, default=JOB)
    p.add_argument("--quality", type=int, default=90, help="WebP quality of the views' colour (alpha is lossless)")
    p.add_argument("--workers", type=int, default=12, help="input worker processes on the GPU machine")
    p = sub.add_parser("train", help="on the GPU machine: train, then write the weights in checked parts")
    p.add_argument("--job", type=Path, default=JOB)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--minutes", type=float, default=7.0)
    p.add_argument("--device", default=None, help="override the job's device (cpu to try the job here)")
    p = sub.add_parser("receive", help="join and check the parts, validate, export if better")
    p.add_argument("--parts", type=Path, required=True)
    p.add_argument("--config", type=Path, default=Path("configs/generator.toml"))
    p.add_argument("--weights", type=Path, default=Path("runs/gpu/weights.pt"), help="where the joined file goes")
    p.add_argument("--export", default=None, help="export target (default: the config's export)")
    args = parser.parse_args(argv)
    if args.command == "prepare":
        sizes = prepare(args.config, args.job, args.quality, args.workers)
        total = sum(sizes.values())
        print(json.dumps(sizes, indent=1))
        print(f"a device call would carry {total / 2**20:.1f} MiB of {CARRY_LIMIT / 2**20:.0f} MiB (carry: [\"{args.job}\"])")
        return 0 if total <= CARRY_LIMIT else 1
    if args.command == "train":
        print(json.dumps(run_training(args.job, args.out, args.minutes, args.device), indent=1))
        return 0
    receive(args.parts, args.config, args.weights, args.export)
    return 0


if __name__ == "__main__":
    sys.exit(main())
