"""Weight-space averages of generators fine-tuned from one start ("model soups"; WiSE-FT when one is the start).

Generators fine-tuned from the same weights stay in one basin of the loss, so a weighted average of their tensors
is itself a generator, often better than each: the shipped weights averaged half and half with a fine-tune on
other cameras keep the standard camera's figure and gain most of the fine-tune's elsewhere
(docs/notes/2026-11-28-other-cameras-averaged.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from softras.model import (Generator, GeneratorConfig, WeightsError, generator_from_payload, read_torch_file,
                           save_weights, sha256, upgrade_metadata)

__all__ = ["average_generators", "average_weight_files", "read_generator"]


def read_generator(path: str | Path) -> tuple[Generator, dict]:
    """A generator from a weights file (:func:`softras.model.load_weights`) or from a `softras train` checkpoint
    (its weight average where the run keeps one, else its weights); returns ``(model in eval mode, metadata)``.

    A checkpoint's metadata holds its ``step``, ``train_config`` and ``runs``, as an exported file's does.
    Raises FileNotFoundError for a missing file and :class:`WeightsError` for anything else that is wrong.
    """
    state = read_torch_file(path)
    if not (isinstance(state, dict) and {"model", "config", "step"} <= state.keys()):
        return generator_from_payload(path, state)
    try:
        model = Generator(GeneratorConfig.from_dict(state["config"]["model"]))
        if "ema" in state:  # torch.optim.swa_utils.AveragedModel: the module's tensors under "module.", and a counter
            weights = {k.removeprefix("module."): v for k, v in state["ema"].items() if k.startswith("module.")}
        else:
            weights = state["model"]
        model.load_state_dict(weights)
    except (TypeError, ValueError, KeyError, RuntimeError) as e:
        raise WeightsError(f"{path}: not a readable training checkpoint ({str(e).splitlines()[0][:200]})") from None
    metadata = {"step": int(state["step"]), "train_config": state["config"],
                "runs": list(upgrade_metadata(state).get("runs", []))}
    return model.eval(), metadata


def average_generators(models: Sequence[Generator], coefficients: Sequence[float]) -> Generator:
    """A new generator whose every floating tensor (parameters and BatchNorm statistics) is ``sum_i c_i * tensor_i``.

    models: generators of one :class:`GeneratorConfig`, e.g. fine-tunes of one start (weights of unrelated runs
    average to nonsense); coefficients: one per model, each >= 0, summing to 1. Integer buffers (BatchNorm's batch
    counters) are taken from the first model. The sums are formed in float64 and stored in float32.
    """
    if len(models) != len(coefficients) or not models:
        raise ValueError(f"need one coefficient per generator, got {len(coefficients)} for {len(models)}")
    if any(c < 0 for c in coefficients) or abs(sum(coefficients) - 1.0) > 1e-6:
        raise ValueError(f"coefficients must be >= 0 and sum to 1, got {list(coefficients)}")
    if any(m.cfg != models[0].cfg for m in models[1:]):
        raise ValueError("generators of different configs cannot be averaged")
    states = [m.state_dict() for m in models]
    averaged = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            total = sum(c * s[key].detach().cpu().double() for c, s in zip(coefficients, states))
            averaged[key] = total.to(first.dtype)
        else:
            averaged[key] = first.detach().cpu().clone()
    result = Generator(models[0].cfg)
    result.load_state_dict(averaged)
    return result.eval()


def average_weight_files(sources: Sequence[str | Path], coefficients: Sequence[float], out: str | Path) -> Path:
    """Average the generators in ``sources`` (weights files or checkpoints) and write the result to ``out``.

    The result is validated as the first source's training validates (its stored training config: views, shapes
    file, views per model, elevations, through the intake), so that its metadata and model card state a figure
    measured on it. The metadata is the first source's (training config, runs) with that validation, ``step``
    the largest of the sources', and ``average``: per source its path as given, sha256, coefficient, step and the
    training runs it has beyond the first source's. Written atomically, float16 like every weights file.
    """
    from softras.train import TrainConfig, validate

    loaded = [read_generator(p) for p in sources]
    model = average_generators([m for m, _ in loaded], coefficients)
    base = loaded[0][1]
    if "train_config" not in base:
        raise WeightsError(f"{sources[0]}: has no training config to validate the average with")
    report, protocol = validate(model, TrainConfig.from_dict(base["train_config"]))
    shared = base.get("runs", [])  # the first source's ledger, which the others continue
    parts = [{"file": str(p), "sha256": sha256(p), "coefficient": float(c), "step": int(meta.get("step", 0)),
              "runs": [r for r in meta.get("runs", []) if r not in shared]}
             for p, c, (_, meta) in zip(sources, coefficients, loaded)]
    metadata = {"step": max(part["step"] for part in parts), "validation": report.as_dict(),
                "validation_protocol": protocol, "train_config": base["train_config"],
                "runs": shared, "torch": str(torch.__version__), "average": parts}
    return save_weights(model, out, metadata=metadata)
