"""The generator's inputs from rendered views, through the same intake as a user's picture.

Training, validation and ``softras eval`` never feed renders to the generator directly: each view goes through
:func:`softras.intake.prepare_array`, the function behind ``softras reconstruct``, the add-on and the batch tool,
so the generator learns and is measured on exactly the framing users get. Training adds, on top, random framing
jitter (the intake's ``fill`` and ``offset``, as a bounding box found on a real picture is never exact) and
picture augmentation (:mod:`softras.augment`). Training's augmented pictures without alpha take the border estimate
(:data:`TRAINING_FOREGROUND`), not the foreground network: on their plain shadowless backdrops the intake's rule
keeps the border estimate anyway, and the network's extra pass would make the inputs several times slower.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from softras.augment import AugmentSettings, ColorChange, random_picture
from softras.intake import IntakeSettings, prepare_array

__all__ = ["InputSettings", "generator_input", "generator_inputs", "TRAINING_FOREGROUND"]

TRAINING_FOREGROUND = "border"
"""``IntakeSettings.foreground`` of training's augmented inputs (evaluation's inputs use the default 'auto')."""


@dataclass(frozen=True)
class InputSettings:
    """How a rendered view becomes the generator's input in training.

    ``fill_jitter``: the intake's ``fill`` is multiplied by ``exp(u)``, u uniform in [-fill_jitter, fill_jitter]
    (capped at 1); ``offset_jitter``: largest change of each offset component (fractions of the output side);
    ``augment``: picture augmentation before the intake, or None.
    """

    fill_jitter: float = 0.0
    offset_jitter: float = 0.0
    augment: AugmentSettings | None = None


def generator_input(picture: np.ndarray, size: int) -> torch.Tensor:
    """One picture as the generator sees it from a user: uint8 (H, W, 4) or (H, W, 3) straight sRGB, row 0 at the
    top -> (4, size, size) float32 RGBA through :func:`softras.intake.prepare_array` with the default framing.
    Raises ValueError where the intake refuses the picture (no foreground found)."""
    return prepare_array(picture, settings=IntakeSettings(size=size)).rgba


def generator_inputs(pictures: np.ndarray, size: int, settings: InputSettings | None = None,
                     rng: np.random.Generator | None = None) -> tuple[torch.Tensor, list[ColorChange | None], int]:
    """Training inputs: each uint8 (H, W, 4) render of ``pictures`` (B, H, W, 4) perturbed and framed at random
    (``settings``, drawn from ``rng``), then prepared by the intake. Returns (B, 4, size, size) float32; per
    picture, the colour change the perturbation made (None: colours as rendered), for the colour targets; and how
    many pictures went in unperturbed because the intake refused their perturbed picture (its background no longer
    plain enough to find the object), which training reports. Without ``rng`` this is :func:`generator_input` of
    each picture.
    """
    out, changes, fallbacks = [], [], 0
    for picture in np.asarray(pictures):
        change = None
        if rng is None or settings is None:
            out.append(generator_input(picture, size))
            changes.append(change)
            continue
        fill = min(1.0, IntakeSettings.fill * float(np.exp(rng.uniform(-settings.fill_jitter, settings.fill_jitter))))
        dx, dy = rng.uniform(-settings.offset_jitter, settings.offset_jitter, 2)
        intake = replace(IntakeSettings(size=size), fill=fill, foreground=TRAINING_FOREGROUND,
                         offset=(IntakeSettings.offset[0] + dx, IntakeSettings.offset[1] + dy))
        perturbed = picture
        if settings.augment is not None:
            perturbed, change = random_picture(picture, rng, settings.augment)
        try:
            out.append(prepare_array(perturbed, settings=intake).rgba)
        except ValueError:
            out.append(prepare_array(picture, settings=intake).rgba)
            change = None
            fallbacks += 1
        changes.append(change)
    return torch.stack(out), changes, fallbacks
