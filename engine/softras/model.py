"""The generator: one RGBA image to a deformed sphere with per-vertex colours, in the object frame.

Encoder and shape decoder follow the paper (3 strided 5x5 convolutions with BatchNorm and ReLU, fully connected
layers to a 512-d code; two fully connected layers to a centroid and per-vertex offsets of the template sphere).
The shape parametrisation keeps every vertex inside the unit box [-0.5, 0.5]^3: a vertex moves along its
template direction relative to a predicted centroid, through a sigmoid, so it can never leave the box.

Colours come from the input image itself: a colour head predicts a small palette by soft-sampling the input's
pixels and a per-vertex soft selection from that palette, so predicted colours are always mixtures of colours
the image really contains.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from softras.mesh import icosphere

__all__ = ["GeneratorConfig", "Generator", "ViewpointHead", "save_weights", "load_weights", "WeightsError",
           "read_torch_file", "generator_from_payload", "upgrade_metadata", "drop_retired_options"]

WEIGHTS_FORMAT = "softras-generator"
WEIGHTS_VERSION = 1


@dataclass(frozen=True)
class GeneratorConfig:
    """Architecture of a :class:`Generator`. Stored with the weights."""

    image_size: int = 64
    template_level: int = 3  # icosphere level: 3 -> 642 vertices, 1280 faces
    conv_channels: tuple[int, ...] = (64, 128, 256)
    encoder_reduce: int = 0  # > 0: a 1x1 convolution to this many channels before the first FC layer (lean encoder)
    encoder_fc: tuple[int, ...] = (1024, 1024, 512)
    decoder_fc: tuple[int, ...] = (1024, 2048)
    palette_size: int = 16  # colours sampled from the image
    color_hidden: int = 256
    color_sample_size: int = 16  # the image is sampled at this resolution for the palette
    template_rotation: tuple[float, float, float] = (1.22, 1.71, 0.47)  # radians, XYZ; keeps vertices off the axes
    viewpoint_bins: int = 0  # > 0: a head that classifies the input's azimuth into this many equal bins
    viewpoint_hidden: int = 256

    def __post_init__(self) -> None:
        if self.image_size % 2 ** len(self.conv_channels):
            raise ValueError("image_size must be divisible by 2 ** len(conv_channels)")

    @classmethod
    def from_dict(cls, d: dict) -> "GeneratorConfig":
        """The config stored with weights or written in a training config's ``[model]``; options this version no
        longer has are read as :func:`drop_retired_options` says (files written before the local evidence branch
        went carry ``local_features = 0`` and ``local_heads``)."""
        d = drop_retired_options(d, RETIRED_OPTIONS, "the generator config")
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown generator config keys: {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


RETIRED_OPTIONS = {
    "local_features": ("the local evidence branch (per-vertex features sampled from the image)", (0,)),
    "local_heads": ("the local evidence branch", ()),
}
"""Generator options that are gone: key -> (what it belonged to, the values that left it off); see
:func:`drop_retired_options`."""


def drop_retired_options(raw: dict, retired: dict[str, tuple[str, tuple]], what: str) -> dict:
    """A copy of the config ``raw`` without the options this version no longer has. ``retired`` maps each to what it
    belonged to and the values that left it off (``()``: any value, an option that mattered only while another one
    was on). Files written before an option went carry it at such a value: they load as they did. A file that used
    it is refused (ValueError), since this version cannot do what it says."""
    raw = dict(raw)
    for key, (feature, off) in retired.items():
        if key in raw:
            value = raw.pop(key)
            if off and value not in off:
                raise ValueError(f"{what} sets {key} = {value!r}, an option of {feature}, which this version no "
                                 "longer has")
    return raw


def _rotation(angles: tuple[float, float, float]) -> torch.Tensor:
    ax, ay, az = angles
    rx = torch.tensor([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = torch.tensor([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = torch.tensor([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return (rz @ ry @ rx).float()


class Encoder(nn.Module):
    """(B, 4, S, S) RGBA in [0, 1] -> (B, encoder_fc[-1]) code.

    Strided convolutions, then (with ``encoder_reduce``) a 1x1 convolution that narrows the channels while keeping
    the feature map's layout, flattened into fully connected layers: the first FC layer holds most of the paper's
    parameters (16384 x 1024 at 64 px), and the 1x1 reduction to 32 channels cuts it eightfold.
    """

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 4
        for c in cfg.conv_channels:
            layers += [nn.Conv2d(c_in, c, 5, stride=2, padding=2), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            c_in = c
        if cfg.encoder_reduce:
            layers += [nn.Conv2d(c_in, cfg.encoder_reduce, 1), nn.BatchNorm2d(cfg.encoder_reduce), nn.ReLU(inplace=True)]
            c_in = cfg.encoder_reduce
        self.conv = nn.Sequential(*layers)
        side = cfg.image_size // 2 ** len(cfg.conv_channels)
        dims = [c_in * side * side, *cfg.encoder_fc]
        self.fc = nn.Sequential(*[m for a, b in zip(dims, dims[1:]) for m in (nn.Linear(a, b), nn.ReLU(inplace=True))])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(images).flatten(1))


class ShapeDecoder(nn.Module):
    """Code (B, D) -> vertices (B, V, 3) inside [-0.5, 0.5]^3, object frame."""

    def __init__(self, cfg: GeneratorConfig, template: torch.Tensor) -> None:
        super().__init__()
        dims = [cfg.encoder_fc[-1], *cfg.decoder_fc]
        self.fc = nn.Sequential(*[m for a, b in zip(dims, dims[1:]) for m in (nn.Linear(a, b), nn.ReLU(inplace=True))])
        self.centroid = nn.Linear(dims[-1], 3)
        self.offsets = nn.Linear(dims[-1], template.shape[0] * 3)
        base = template * 0.5  # the template sphere of radius 0.5 in the normalised [-1, 1] box
        self.register_buffer("sign", torch.where(base >= 0, 1.0, -1.0))
        self.register_buffer("base_logit", torch.logit(base.abs().clamp(1e-4, 1 - 1e-4)))

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        h = self.fc(code)
        centroid = torch.tanh(0.1 * self.centroid(h))[:, None, :]
        offsets = self.offsets(h).view(h.shape[0], -1, 3)
        v = torch.sigmoid(self.base_logit + offsets) * self.sign  # in (-1, 1) around the centroid
        v = F.relu(v) * (1 - centroid) - F.relu(-v) * (1 + centroid) + centroid
        return 0.5 * v


class ColorDecoder(nn.Module):
    """Code (B, D) and image (B, 4, S, S) -> per-vertex sRGB colours (B, V, 3) in [0, 1].

    A palette of ``palette_size`` colours is soft-sampled from the image's foreground pixels (at
    ``color_sample_size``^2 resolution), then every vertex takes a softmax mixture of the palette.
    """

    def __init__(self, cfg: GeneratorConfig, num_vertices: int) -> None:
        super().__init__()
        self.cfg = cfg
        n_pix = cfg.color_sample_size**2
        self.hidden = nn.Sequential(nn.Linear(cfg.encoder_fc[-1], cfg.color_hidden), nn.ReLU(inplace=True))
        self.sampling = nn.Linear(cfg.color_hidden, cfg.palette_size * n_pix)
        self.selection = nn.Linear(cfg.color_hidden, num_vertices * cfg.palette_size)

    def forward(self, code: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        b, cfg = code.shape[0], self.cfg
        premultiplied = torch.cat([images[:, :3] * images[:, 3:4], images[:, 3:4]], dim=1)
        small = F.adaptive_avg_pool2d(premultiplied, cfg.color_sample_size).flatten(2)  # (B, 4, n_pix)
        alpha = small[:, 3:4]
        rgb = (small[:, :3] / alpha.clamp(min=1e-3)).clamp(0, 1)  # straight colour of covered pixels
        h = self.hidden(code)
        logits = self.sampling(h).view(b, cfg.palette_size, -1)
        logits = logits + torch.log(alpha.clamp(min=1e-6))  # sample foreground pixels only
        palette = torch.softmax(logits, dim=-1) @ rgb.transpose(1, 2)  # (B, P, 3)
        select = torch.softmax(self.selection(h).view(b, -1, cfg.palette_size), dim=-1)
        return (select @ palette).clamp(0, 1)


class ViewpointHead(nn.Module):
    """Code (B, D) -> (B, viewpoint_bins) logits of the input's azimuth in the object frame: bin k is centred on
    ``k * 360 / viewpoint_bins`` degrees (:meth:`softras.Camera.from_angles`'s azimuth). The shape is predicted in
    the object frame, so the code carries which side of the object the picture shows; the head reads it out. (Read
    from the convolutional features instead, a head with 1 M parameters finds the bin twice as often on its own, but
    it guided the viewpoint estimate no better: docs/notes/2026-11-27-viewpoint-head.md.)"""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(cfg.encoder_fc[-1], cfg.viewpoint_hidden), nn.ReLU(inplace=True),
                                 nn.Linear(cfg.viewpoint_hidden, cfg.viewpoint_bins))

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return self.mlp(code)


class Generator(nn.Module):
    """RGBA image -> coloured mesh in the object frame (Y-up, inside the unit box).

    ``forward(images)`` takes (B, 4, S, S) float32 RGBA in [0, 1] (straight sRGB colour, alpha = foreground) and
    returns ``(vertices (B, V, 3) float32, colors (B, V, 3) float32 sRGB in [0, 1])``; the faces are
    ``self.faces`` (F, 3) int64, shared by all outputs. ``forward`` is ``decode(encode(images), images)``; with
    ``cfg.viewpoint_bins`` the same code also gives :meth:`azimuth_probabilities`.
    """

    def __init__(self, cfg: GeneratorConfig = GeneratorConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        sphere = icosphere(cfg.template_level)
        template = sphere.vertices @ _rotation(cfg.template_rotation).T
        self.register_buffer("faces", sphere.faces, persistent=False)
        self.encoder = Encoder(cfg)
        self.shape_decoder = ShapeDecoder(cfg, template)
        self.color_decoder = ColorDecoder(cfg, template.shape[0])
        self.viewpoint = ViewpointHead(cfg) if cfg.viewpoint_bins else None

    def forward(self, images: torch.Tensor, with_viewpoint: bool = False,
                viewpoint_encoder_share: float = 0.0) -> tuple[torch.Tensor, ...]:
        """(vertices, colors), and with ``with_viewpoint`` also the viewpoint head's logits (B, viewpoint_bins)
        (training: one forward pass for every output, as DistributedDataParallel needs). The head reads the code
        with its gradient to the encoder scaled by ``viewpoint_encoder_share``: 0 (the default) detaches it, so the
        head's loss never shapes the encoder; 1 passes it unchanged."""
        code = self.encode(images)
        vertices, colors = self.decode(code, images)
        if not with_viewpoint:
            return vertices, colors
        if self.viewpoint is None:
            raise ValueError("this generator has no viewpoint head (GeneratorConfig.viewpoint_bins = 0)")
        detached = code.detach()
        head_input = detached if viewpoint_encoder_share == 0 else detached + viewpoint_encoder_share * (code - detached)
        return vertices, colors, self.viewpoint(head_input)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 4, S, S) RGBA -> code (B, encoder_fc[-1])."""
        s = self.cfg.image_size
        if images.dim() != 4 or images.shape[1:] != (4, s, s):
            raise ValueError(f"images must have shape (B, 4, {s}, {s}), got {tuple(images.shape)}")
        return self.encoder(images)

    def decode(self, code: torch.Tensor, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Code (B, D) and its images (B, 4, S, S) -> (vertices (B, V, 3), colors (B, V, 3)), as ``forward``."""
        return self.shape_decoder(code), self.color_decoder(code, images)

    def azimuth_probabilities(self, code: torch.Tensor) -> torch.Tensor | None:
        """Code (B, D) from :meth:`encode` -> (B, viewpoint_bins) float32 probabilities of the input's azimuth (bin k
        centred on ``k * 360 / viewpoint_bins`` degrees), or None for a generator without a viewpoint head."""
        return None if self.viewpoint is None else torch.softmax(self.viewpoint(code).float(), dim=-1)


class WeightsError(ValueError):
    """A weights file is missing, corrupt, or does not match this version of the generator."""


def save_weights(model: Generator, path: str | Path, metadata: dict | None = None, half: bool = True) -> Path:
    """Write the generator's config and state (float16 when ``half``) atomically, loadable with weights_only."""
    from softras.fileio import atomic_write

    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone() for k, v in model.state_dict().items()}
    payload = {"format": WEIGHTS_FORMAT, "version": WEIGHTS_VERSION, "config": asdict(model.cfg),
               "metadata": metadata or {}, "state_dict": state}
    return atomic_write(path, lambda fh: torch.save(payload, fh))


def load_weights(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[Generator, dict]:
    """Load a generator saved by :func:`save_weights`; returns ``(model in eval mode, metadata)``.

    Raises FileNotFoundError for a missing file and :class:`WeightsError` with a one-line reason for anything
    else that is wrong (not a torch file, truncated, another format, mismatched tensors).
    """
    return generator_from_payload(path, read_torch_file(path, map_location))


def read_torch_file(path: str | Path, map_location: str | torch.device = "cpu") -> object:
    """The object saved in ``path`` (``torch.load(..., weights_only=True)``): FileNotFoundError for a missing file,
    :class:`WeightsError` with a one-line reason for one torch cannot read."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for corrupt files
        raise WeightsError(f"{path}: not a readable weights file ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None


def generator_from_payload(path: str | Path, payload: object) -> tuple[Generator, dict]:
    """The generator of a :func:`save_weights` payload read from ``path`` (named in errors); see :func:`load_weights`."""
    if not isinstance(payload, dict) or payload.get("format") != WEIGHTS_FORMAT:
        raise WeightsError(f"{path}: not a softras generator weights file")
    if payload.get("version") != WEIGHTS_VERSION:
        raise WeightsError(f"{path}: weights format version {payload.get('version')} is not supported (expected {WEIGHTS_VERSION})")
    try:
        model = Generator(GeneratorConfig.from_dict(payload["config"]))
    except (TypeError, ValueError, KeyError) as e:
        raise WeightsError(f"{path}: invalid generator config ({e})") from None
    state = payload.get("state_dict")
    expected = model.state_dict()
    if not isinstance(state, dict) or set(state) != set(expected):
        raise WeightsError(f"{path}: weights do not match the generator's layers")
    for k, v in state.items():
        if not isinstance(v, torch.Tensor) or v.shape != expected[k].shape:
            raise WeightsError(f"{path}: tensor {k} has the wrong shape")
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise WeightsError(f"{path}: tensor {k} contains NaN or inf")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
    return model.eval(), upgrade_metadata(payload.get("metadata") or {})


def upgrade_metadata(metadata: dict) -> dict:
    """A copy of ``metadata`` (a weights file's, or a training checkpoint's state) with its ledger of training runs
    under ``runs``, as this version writes it. Files written before weights version 2026.12.0 keep that ledger under
    ``sessions``: read here as ``runs``, at the top, in a weight average's sources and in the weight average a run
    started from, however nested."""
    meta = dict(metadata)
    if "sessions" in meta:
        meta["runs"] = meta.pop("sessions")
    if "runs" in meta:
        meta["runs"] = [_upgrade_run(run) for run in meta["runs"]]
    if "average" in meta:
        meta["average"] = [upgrade_metadata(part) for part in meta["average"]]
    return meta


def _upgrade_run(run: dict) -> dict:
    """A ledger entry whose initial weights, where they were a weight average, list their sources as
    :func:`upgrade_metadata` reads them."""
    origin = run.get("init_weights")
    if isinstance(origin, dict) and "average" in origin:
        return {**run, "init_weights": {**origin, "average": [upgrade_metadata(p) for p in origin["average"]]}}
    return run


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
