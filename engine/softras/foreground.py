"""A learned foreground for opaque product photos: a small segmentation network (a tiny U-Net, pure PyTorch).

The border estimate of :mod:`softras.intake` finds an object by its difference from a plain backdrop. On the
white and light-grey studio backdrops of product photos that fails two ways: light parts of a light object are
as bright as the backdrop and vanish, and a soft contact shadow differs from the backdrop and is taken in. This
network sees the whole picture and tells object from backdrop and shadow by shape and shading.

Input: the picture's RGB (sRGB in [0, 1]) resized so that its longer side is ``ForegroundConfig.net_size``, and
its difference from the median colour of a border strip (what the border estimate knows), 6 channels; the
encoder halves the resolution four times (context across the whole object), the decoder comes back to half the
input resolution, and the logits are resized bilinearly to the caller's size. :func:`foreground_probability`
does all of it for one picture.

Weights: ``models/softras_foreground.pt`` (``$SOFTRAS_FOREGROUND`` overrides), a dict with ``format``
(:data:`FORMAT`), ``version`` (:data:`VERSION`), ``config`` (:class:`ForegroundConfig` fields), ``state_dict`` and
``metadata`` (how and on what they were trained). :func:`load_foreground` checks all of it and raises
:class:`ForegroundWeightsError` with a one-line reason. Training: ``scripts/train_foreground.py``; pictures:
``python -m datagen.foreground_pictures``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from softras.fileio import atomic_write, shipped_file

__all__ = ["ForegroundConfig", "ForegroundNet", "ForegroundWeightsError", "FORMAT", "VERSION", "FOREGROUND_FILENAME",
           "default_foreground_path", "save_foreground", "load_foreground", "shipped_foreground", "net_input",
           "foreground_probability"]

FORMAT = "softras-foreground"
VERSION = 1
FOREGROUND_FILENAME = "softras_foreground.pt"
BORDER = 0.03
"""Width of the border strip whose median colour the network gets as a second input, as a fraction of the shorter
side (the intake's default ``border``)."""


MIN_SIDE = 128
"""Pictures whose longer side is below this are enlarged to it for the network (smaller ones: as they are, up to
``net_size``)."""


class ForegroundWeightsError(ValueError):
    """A foreground weights file that cannot be used, with a one-line reason."""


@dataclass(frozen=True)
class ForegroundConfig:
    """The network's shape: channels at each of the five resolutions (1/2 .. 1/32 of the input) and the longer
    side, in pixels, that a picture is resized to before it goes in."""

    widths: tuple[int, ...] = (16, 24, 32, 48, 64)
    net_size: int = 256

    def __post_init__(self) -> None:
        if len(self.widths) != 5 or min(self.widths) < 1 or self.net_size < 32:
            raise ValueError(f"invalid foreground config: {self}")

    @classmethod
    def from_dict(cls, d: dict) -> "ForegroundConfig":
        names = {f.name for f in fields(cls)}
        if not isinstance(d, dict) or set(d) - names:
            raise ValueError(f"unknown foreground config keys: {sorted(set(d) - names) if isinstance(d, dict) else d!r}")
        return cls(**{k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in d.items()})


def _block(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ForegroundNet(nn.Module):
    """Tiny U-Net: (B, 6, H, W) with H, W multiples of 32 -> foreground logits (B, 1, H/2, W/2)."""

    def __init__(self, cfg: ForegroundConfig = ForegroundConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.widths
        self.down = nn.ModuleList([nn.Sequential(_block(6, w[0], 2), _block(w[0], w[0]))])
        self.down.extend(nn.Sequential(_block(w[i - 1], w[i], 2), _block(w[i], w[i])) for i in range(1, 5))
        self.context = nn.Sequential(_block(w[4], w[4], dilation=2), _block(w[4], w[4], dilation=4))
        self.up = nn.ModuleList(_block(w[i + 1] + w[i], w[i]) for i in reversed(range(4)))
        self.head = nn.Conv2d(w[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for stage in self.down:
            x = stage(x)
            skips.append(x)
        x = self.context(skips.pop())
        for up in self.up:
            skip = skips.pop()
            x = up(torch.cat([F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False), skip], 1))
        return self.head(x)


def net_input(rgb: np.ndarray | torch.Tensor, net_size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """The network's input for one picture: ``rgb`` (H, W, 3) uint8 or float sRGB in [0, 1] -> (1, 6, h', w')
    float32 (the picture resized so that its longer side is ``net_size``, padded by edge replication to multiples
    of 32) and the (h, w) of the unpadded part."""
    x = torch.from_numpy(np.array(rgb)) if isinstance(rgb, np.ndarray) else torch.as_tensor(rgb)
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    if x.dim() != 3 or x.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) picture, got shape {tuple(x.shape)}")
    x = x.permute(2, 0, 1)[None]
    height, width = x.shape[-2:]
    k = net_size / max(height, width)
    h, w = max(2, round(height * k)), max(2, round(width * k))
    if (h, w) != (height, width):
        x = F.interpolate(x, size=(h, w), mode="bilinear", antialias=k < 1, align_corners=False)
    b = max(2, round(BORDER * min(h, w)))
    strip = torch.cat([x[..., :b, :].flatten(2), x[..., -b:, :].flatten(2), x[..., :, :b].flatten(2),
                       x[..., :, -b:].flatten(2)], 2)
    color = strip.median(dim=2).values[..., None, None]
    x = torch.cat([x, x - color], 1)
    ph, pw = -h % 32, -w % 32
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, (h, w)


@torch.no_grad()
def foreground_probability(net: ForegroundNet, rgb: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """Probability (h, w) float32 that each pixel of ``rgb`` (H, W, 3) uint8 sRGB shows the object, at ``size`` =
    (h, w) (default the picture's own). The network sees the picture with its longer side ``net_size``, or its
    own size where that is smaller (down to :data:`MIN_SIDE`): a small picture is not enlarged for nothing."""
    x, (h, w) = net_input(rgb, min(net.cfg.net_size, max(MIN_SIDE, *np.shape(rgb)[:2])))
    logits = net(x)[0, 0, : (h + 1) // 2, : (w + 1) // 2].contiguous().numpy()
    out = size or tuple(np.shape(rgb)[:2])
    # Pillow's bilinear resize of a float image: 1 ms where torch's interpolate takes 20 ms on this CPU
    logits = np.asarray(Image.fromarray(logits).resize((out[1], out[0]), Image.Resampling.BILINEAR))
    return (1 / (1 + np.exp(-np.clip(logits, -30, 30)))).astype(np.float32)


def default_foreground_path() -> Path:
    """The shipped foreground weights: ``$SOFTRAS_FOREGROUND`` if set, else ``models/softras_foreground.pt`` beside
    the package (the repository root in a checkout, the extension folder in the Blender extension)."""
    return shipped_file(FOREGROUND_FILENAME, "SOFTRAS_FOREGROUND")


def save_foreground(path: str | os.PathLike, net: ForegroundNet, metadata: dict) -> Path:
    """Write ``net``'s weights with their format, version, config and ``metadata`` (atomically)."""
    payload = {"format": FORMAT, "version": VERSION, "config": asdict(net.cfg),
               "state_dict": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
               "metadata": dict(metadata)}
    return atomic_write(path, lambda fh: torch.save(payload, fh))


def load_foreground(path: str | os.PathLike) -> tuple[ForegroundNet, dict]:
    """The network saved by :func:`save_foreground` in eval mode, and its metadata. FileNotFoundError for a missing
    file; :class:`ForegroundWeightsError` for a file that is not such weights (unreadable, another format or
    version, a bad config, missing, extra or mis-shaped tensors, non-finite values)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"foreground weights not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt files
        raise ForegroundWeightsError(f"{path}: not a readable weights file ({type(e).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ForegroundWeightsError(f"{path}: not foreground weights (format {FORMAT!r} expected)")
    if payload.get("version") != VERSION:
        raise ForegroundWeightsError(f"{path}: foreground weights version {payload.get('version')!r}; this engine reads {VERSION}")
    try:
        net = ForegroundNet(ForegroundConfig.from_dict(payload.get("config")))
    except (TypeError, ValueError) as e:
        raise ForegroundWeightsError(f"{path}: bad config ({e})") from None
    state = payload.get("state_dict")
    expected = net.state_dict()
    if not isinstance(state, dict) or set(state) != set(expected):
        raise ForegroundWeightsError(f"{path}: the tensors do not match the network")
    for name, tensor in state.items():
        if not isinstance(tensor, torch.Tensor) or tensor.shape != expected[name].shape:
            raise ForegroundWeightsError(f"{path}: tensor {name} has the wrong shape")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ForegroundWeightsError(f"{path}: tensor {name} has non-finite values")
    net.load_state_dict(state)
    metadata = payload.get("metadata")
    return net.eval(), metadata if isinstance(metadata, dict) else {}


_CACHE: dict[tuple[str, int, int], ForegroundNet] = {}


def shipped_foreground(path: str | os.PathLike | None = None) -> ForegroundNet | None:
    """The network at ``path`` (default :func:`default_foreground_path`), loaded once per file version (path,
    size and modification time) and kept; None when the file does not exist. Errors of :func:`load_foreground`
    for a file that exists but is not usable."""
    path = Path(path) if path is not None else default_foreground_path()
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = load_foreground(path)[0]
    return _CACHE[key]
