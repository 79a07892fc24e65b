"""Turn a user's picture into the generator's input: a centred, square, straight-sRGB RGBA tensor.

This is the generator's only way in: training and evaluation take their renders through :func:`prepare_array` too
(:mod:`softras.inputs`). The input is ``size`` x ``size`` RGBA: transparent background (alpha = foreground),
straight (non-premultiplied) sRGB colour, colour 0 outside the object, the object centred with its bounding box's
longer side ``fill`` of the frame. :func:`load_image` (a file) and :func:`prepare_array` (an array) bring any
picture into that form:

1. Foreground, in this order: a user mask if one is given (it overrides the image's own alpha), else the
   image's alpha channel if it is not fully opaque, else, for an opaque picture, an estimate chosen per picture
   by ``IntakeSettings.foreground`` (default 'auto'). Where the border strip's median colour is a light, neutral
   studio backdrop (luminance >= ``light_backdrop``, chroma <= ``neutral_backdrop``: white and light-grey product
   photos, with their contact shadows, gradients and vignetting) and the foreground network's weights exist
   (:mod:`softras.foreground`), ``light_method``: the network alone, or 'combined' (the border estimate's pixels
   the network does not reject, and those it is sure of). Elsewhere, and where the network finds nothing, the
   difference from a plain background estimated from a border strip (clearly different pixels, and faint ones
   connected to them).
2. Crop: the foreground's bounding box, made square around its centre (outside the image: transparent),
   scaled so that its longer side is ``fill * size`` and placed like the training renders.
3. Resampling with antialiasing on premultiplied colour, un-premultiplied at the end (no dark or white fringes).

Large pictures are never held as full-resolution floats: JPEGs are decoded reduced (``Image.draft``), the
foreground is found on a copy at most ``analysis_size`` pixels long, the crop is resampled in 8 bits to
``oversample * size`` pixels per side, and only that is converted to float.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import ExifTags, Image, ImageFilter, ImageOps, UnidentifiedImageError

__all__ = ["IntakeSettings", "IntakeResult", "load_image", "load_picture", "load_mask", "prepare_array", "resize_rgba",
           "foreground_mask"]


ESTIMATES = ("border", "net", "combined")
"""The ways an opaque picture's foreground is estimated (``IntakeSettings.foreground``, ``IntakeResult.foreground_source``)."""


@dataclass(frozen=True)
class IntakeSettings:
    """How a picture is turned into generator input.

    ``fill`` and ``offset`` default to the medians of the standard camera's renders, so that the intake moved the
    first generator's inputs (trained on renders as they were) least: measured on ``cache/views_e30.npz`` (419
    models x 24 views, 64 px; alpha > 0.5 bounding boxes), median longest side / 64 = 0.766 (quartiles 0.69 and
    0.81), median bounding-box centre offset dx = 0.0 px, dy = +1.5 px = 0.023 of the side.
    """

    size: int = 64
    """Output side S in pixels."""
    fill: float = 0.766
    """Longer side of the foreground bounding box as a fraction of the output side, in (0, 1]."""
    offset: tuple[float, float] = (0.0, 0.023)
    """(dx, dy): where the bounding-box centre lands relative to the output centre, as fractions of the output
    side (y down)."""
    analysis_size: int = 512
    """Longest side of the reduced copy on which the foreground and its bounding box are found."""
    oversample: int = 4
    """The crop is resampled to ``oversample * size`` pixels per side in 8 bits before the final float resize."""
    border: float = 0.03
    """Width of the border strip that samples the background, as a fraction of the shorter side (>= 2 px)."""
    background_tolerance: float = 0.1
    """Least RGB distance (Euclidean, sRGB in [0, 1]) from the background colour that counts as foreground on its
    own."""
    weak_tolerance: float = 0.012
    """Least luminance difference from the background (sRGB in [0, 1], after a 3 x 3 median) of pixels that count
    as foreground because they connect to pixels beyond ``background_tolerance``: the faint parts of a light object
    on a light backdrop (hysteresis). On a noisy background it is raised to ``noise_factor`` times the border
    strip's noise, never above ``background_tolerance``."""
    noise_factor: float = 3.0
    """How far above the border strip's noise (the 90th percentile of its median-filtered luminance difference)
    faint foreground must lie."""
    max_growth: float = 6.0
    """Largest area of the foreground with its faint parts as a multiple of the clearly different pixels' area;
    beyond it the faint pixels are taken for uneven lighting of the backdrop and dropped (at most 2.7 on the
    validation renders on white)."""
    border_outliers: float = 0.3
    """Largest fraction of border-strip pixels that may differ from the background colour (object touching the
    edge); above it the background is not plain enough to estimate."""
    min_component: float = 0.05
    """Foreground components smaller than this fraction of the largest one are dropped as specks."""
    max_hole: float = 0.05
    """Enclosed background holes smaller than this fraction of the foreground area are filled."""
    foreground: str = "auto"
    """How an opaque picture's foreground is found: 'border' (the border estimate), 'net' (the foreground network
    alone; its weights must exist), 'combined' (the border estimate's pixels that the network does not reject, and
    the pixels it is sure of: ``net_keep``, ``net_add``), or 'auto' (``light_method`` on a light, neutral backdrop
    where the network's weights exist, else the border estimate; the border estimate too where the network finds
    nothing)."""
    light_method: str = "shadow"
    """'auto': the method for light, neutral backdrops: 'net', 'combined', or 'shadow' ('combined' where the border
    estimate reaches more than ``shadow_drop`` of its height below the combined mask and what it has beyond it looks
    like a shadow on the backdrop, a darker neutral version of its colour; else the border estimate)."""
    shadow_drop: float = 0.03
    """'shadow': least drop of the mask's lowest row, as a fraction of the border estimate's height."""
    net_keep: float = 0.2
    """'combined': least network probability at which a pixel of the border estimate stays foreground."""
    net_add: float = 0.8
    """'combined': least network probability at which any pixel is foreground."""
    foreground_weights: str | None = None
    """The foreground network's weights file; None: the shipped ones (:func:`softras.foreground.default_foreground_path`)."""
    light_backdrop: float = 0.7
    """'auto': least luminance (sRGB in [0, 1]) of the border strip's median colour for the network to be used."""
    neutral_backdrop: float = 0.1
    """'auto': largest chroma (max - min channel, sRGB in [0, 1]) of the border strip's median colour for the
    network to be used (the backdrops it was trained on are white, grey and lightly tinted)."""

    def __post_init__(self) -> None:
        if self.size < 1 or self.analysis_size < 2 or self.oversample < 1 or not 0 < self.fill <= 1:
            raise ValueError(f"invalid intake settings: {self}")
        if self.foreground not in ("auto", *ESTIMATES) or self.light_method not in ("net", "combined", "shadow"):
            raise ValueError(f"foreground must be 'auto', 'border', 'net' or 'combined' and light_method 'net' or "
                             f"'combined' or 'shadow', got {self.foreground!r} and {self.light_method!r}")


@dataclass(frozen=True)
class IntakeResult:
    """The generator input and where it came from.

    ``rgba``: (4, S, S) float32 in [0, 1], straight sRGB colour (0 where alpha is 0), alpha = foreground;
    ``mask``: (S, S) float32, a copy of the alpha channel; ``crop_box``: (left, top, right, bottom) of the square
    crop in original-image pixels (after EXIF orientation; may extend beyond the image, padded transparent);
    ``foreground_source``: 'alpha', 'mask', 'border', 'net' or 'combined'; ``original_size``: (W, H) after EXIF orientation;
    ``foreground``: the foreground the intake used over the whole picture, (h, w) uint8 (0-255; the alpha, the mask
    or the estimate) at its working resolution (the picture's, or reduced for a large one): see
    :func:`foreground_mask` for it at the picture's size.
    """

    rgba: torch.Tensor
    mask: torch.Tensor
    crop_box: tuple[int, int, int, int]
    foreground_source: str
    original_size: tuple[int, int]
    foreground: np.ndarray | None = None


def load_image(
    path: str | os.PathLike, mask_path: str | os.PathLike | None = None, settings: IntakeSettings = IntakeSettings()
) -> IntakeResult:
    """Read any Pillow-readable picture (PNG, JPEG, WebP, TIFF, BMP, ...; 8/16-bit, palette, grey, CMYK) and
    prepare it (EXIF orientation applied). ``mask_path``: a mask file of the same size as the oriented image
    (its alpha if it has a non-opaque one, else its luminance; > 0.5 is foreground).

    Raises FileNotFoundError for a missing file and ValueError for empty, unreadable or unusable pictures.
    """
    path = Path(path)
    image, full = _open(path, settings.analysis_size)
    mask = None if mask_path is None else _open(Path(mask_path))[0]
    reopen = (lambda long_side: _open(path, long_side)[0]) if image.size != full else None
    return _prepare(image, full, mask, settings, str(path), reopen)


def prepare_array(
    rgba: np.ndarray, mask: np.ndarray | None = None, settings: IntakeSettings = IntakeSettings()
) -> IntakeResult:
    """Prepare an (H, W, 4) or (H, W, 3) array of straight sRGB colour, row 0 at the top: float in [0, 1] or
    uint8. ``mask``: (H, W) float in [0, 1], uint8 or bool. Values are quantised to 8 bits like the training
    renders. (Blender's ``Image.pixels`` has row 0 at the bottom: flip it first.)"""
    rgba = np.asarray(rgba)
    if rgba.ndim != 3 or rgba.shape[2] not in (3, 4):
        raise ValueError(f"expected an (H, W, 3) or (H, W, 4) array, got shape {rgba.shape}")
    _check_size(rgba.shape[1], rgba.shape[0], "the array")
    image, mask = Image.fromarray(_to_uint8(rgba)), None if mask is None else Image.fromarray(_to_uint8(mask))
    return _prepare(image, image.size, mask, settings, "the array")


def _to_uint8(a: np.ndarray) -> np.ndarray:
    """uint8 as is, bool as 0/255, float in [0, 1] (clipped) rounded to 0..255."""
    a = np.asarray(a)
    if a.dtype == np.uint8:
        return a
    if a.dtype == bool:
        return a.astype(np.uint8) * 255
    if a.dtype.kind != "f":
        raise ValueError(f"expected a float, uint8 or bool array, got {a.dtype}")
    return np.rint(np.clip(a, 0.0, 1.0) * 255).astype(np.uint8)


def _check_size(width: int, height: int, name: str) -> None:
    if min(width, height) < 2:
        raise ValueError(f"{name} is too small ({width}x{height}); need at least 2x2 pixels")


def _open(path: Path, long_side: float | None = None) -> tuple[Image.Image, tuple[int, int]]:
    """Decode ``path`` with EXIF orientation applied; a JPEG is decoded reduced (1/2, 1/4, 1/8) as long as its
    longest side stays >= ``long_side``. Returns the image and the full oriented size (W, H)."""
    if not path.exists():
        raise FileNotFoundError(f"no such image file: {path}")
    if path.is_file() and path.stat().st_size == 0:
        raise ValueError(f"empty file: {path}")
    try:
        with Image.open(path) as image:
            full = image.size
            if long_side and long_side < max(full):  # only JPEG (and MPO) decoders can reduce; others ignore it
                k = long_side / max(full)
                image.draft(None, (math.ceil(full[0] * k), math.ceil(full[1] * k)))
            if image.getexif().get(ExifTags.Base.Orientation, 1) in (5, 6, 7, 8):
                full = full[::-1]
            image = ImageOps.exif_transpose(image)
            image.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        raise ValueError(f"cannot read image {path}: {error}") from error
    return image, full


def _to_rgba8(image: Image.Image) -> Image.Image:
    """A new 8-bit RGBA copy of any image; 16/32-bit and float grey (modes I;16, I, F) are rescaled to 8 bits."""
    if image.mode in ("I", "F") or image.mode.startswith("I;"):
        a = np.asarray(image)
        if a.dtype.kind == "f":
            a = np.rint(a * 255) if a.max() <= 1 else a
        elif a.max() > 255:
            a = a >> 8
        image = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    return image.convert("RGBA")


def _mask_channel(mask: Image.Image) -> Image.Image:
    """The 'L' foreground of a mask image: its alpha channel where it has a non-trivial one, else its luminance."""
    mask = _to_rgba8(mask)
    return mask.getchannel("A") if mask.getextrema()[3][0] < 255 else mask.convert("L")


def load_mask(path: str | os.PathLike) -> torch.Tensor:
    """A silhouette mask file at full resolution: (H, W) float32, 1 where the alpha (or, without a non-trivial
    alpha, the luminance) exceeds 0.5, row 0 at the top. EXIF orientation is applied."""
    path = Path(path)
    image, _ = _open(path)
    _check_size(image.width, image.height, str(path))
    return torch.from_numpy(np.asarray(_binary(_mask_channel(image)), dtype=np.float32) / 255)


def load_picture(path: str | os.PathLike) -> np.ndarray:
    """A picture file at full resolution as :func:`load_image` orients it (EXIF applied), for looking up colours
    through its crop box: (H, W, 4) uint8 straight sRGB and alpha, row 0 at the top."""
    return np.asarray(_to_rgba8(_open(Path(path))[0]))


def _binary(image: Image.Image) -> Image.Image:
    """Threshold an 'L' image at 0.5: 0 or 255."""
    return image.point(lambda v: 255 if v > 127 else 0)


def _crop_box(
    foreground: Image.Image, frame: tuple[int, int, int, int], settings: IntakeSettings, why_empty: str, name: str
) -> tuple[int, int, int, int]:
    """Square crop (left, top, right, bottom) in original pixels around the > 0.5 bounding box of the 'L'
    ``foreground``, which covers ``frame`` of the original: the box's longer side becomes ``fill * size``
    output pixels and its centre lands ``offset`` (fractions of the output side) from the output's centre."""
    bbox = _binary(foreground).getbbox()
    if bbox is None:
        raise ValueError(f"no foreground found in {name}: {why_empty}")
    sx, sy = (frame[2] - frame[0]) / foreground.width, (frame[3] - frame[1]) / foreground.height
    left, right = frame[0] + bbox[0] * sx, frame[0] + bbox[2] * sx
    top, bottom = frame[1] + bbox[1] * sy, frame[1] + bbox[3] * sy
    side = max(right - left, bottom - top) / settings.fill
    x0 = round((left + right - side) / 2 - settings.offset[0] * side)
    y0 = round((top + bottom - side) / 2 - settings.offset[1] * side)
    return x0, y0, x0 + max(1, round(side)), y0 + max(1, round(side))


def _prepare(
    image: Image.Image,
    full: tuple[int, int],
    mask: Image.Image | None,
    settings: IntakeSettings,
    name: str,
    reopen: Callable[[float], Image.Image] | None = None,
) -> IntakeResult:
    """Core of the intake. ``image`` is the oriented picture, possibly decoded reduced from ``full`` (W, H);
    ``reopen(long_side)`` decodes it again with at least that longest side (reduced JPEGs only)."""
    width, height = full
    _check_size(width, height, name)
    rgba = _to_rgba8(image)
    backdrop = None
    if mask is not None:
        if mask.size != full:
            raise ValueError(f"mask size {mask.width}x{mask.height} differs from image size {width}x{height}")
        foreground = _mask_channel(mask)
        source, empty = "mask", "the mask is empty"
        if _binary(foreground).point(lambda v: 255 - v).getbbox() is None:
            raise ValueError(f"mask covers the whole image: it marks no background in {name}")
    elif rgba.getextrema()[3][0] < 255:
        foreground, source, empty = rgba.getchannel("A"), "alpha", "the alpha channel is fully transparent"
    else:
        foreground, backdrop, source, net = _opaque_foreground(rgba, settings, name)
        empty = "the image looks uniform"
    frame = (0, 0, width, height)  # the part of the original that `foreground` covers
    crop_box = _crop_box(foreground, frame, settings, empty, name)

    work = settings.oversample * settings.size  # the crop is resampled to work x work in 8 bits first
    n = crop_box[2] - crop_box[0]
    if reopen is not None and rgba.width < min(width, work * width / n):
        rgba = _to_rgba8(reopen(min(max(full), work * max(full) / n)))
    r = rgba.width / width
    if source in ESTIMATES and foreground.width * n < work * width and foreground.width < rgba.width:
        # The object is small in a large picture, found on a reduced copy: find it again, finer, on the crop region
        # (where the copy was not reduced, the crop would be analysed at the same resolution: nothing to gain).
        region = (max(0, crop_box[0]), max(0, crop_box[1]), min(width, crop_box[2]), min(height, crop_box[3]))
        picture = rgba.crop(tuple(round(v * r) for v in region))
        border = None
        if source != "net":
            try:
                border = _border_foreground(picture, backdrop, settings, name)[0]
            except ValueError:
                if net is None:
                    raise
        finer = border if net is None else _net_foreground(picture, net, settings, border)
        if finer is not None:  # (the network may find nothing on the region: the first mask stays)
            foreground, frame = finer, region
            crop_box = _crop_box(foreground, frame, settings, empty, name)
    if source != "alpha":  # put the foreground into the alpha channel at the working resolution
        box = tuple(round(v * r) for v in frame)
        alpha = Image.new("L", rgba.size)
        alpha.paste(foreground.resize((box[2] - box[0], box[3] - box[1]), Image.Resampling.BILINEAR), box[:2])
        rgba.putalpha(_binary(alpha) if source in ESTIMATES else alpha)
    x0, y0, side = round(crop_box[0] * r), round(crop_box[1] * r), max(1, round((crop_box[2] - crop_box[0]) * r))
    # Pillow pads outside the image with (0, 0, 0, 0) and resamples RGBA premultiplied.
    crop = rgba.crop((x0, y0, x0 + side, y0 + side)).resize((work, work), Image.Resampling.BILINEAR)

    x = torch.from_numpy(np.asarray(crop, dtype=np.float32) / 255).permute(2, 0, 1)
    y = resize_rgba(x[None], settings.size)[0]
    y = (y * (y[3:] >= 1 / 1024)).contiguous()  # drop the faintest alpha (and its colour)
    return IntakeResult(y, y[3].clone(), crop_box, source, (width, height), np.asarray(rgba.getchannel("A")).copy())


def foreground_mask(result: IntakeResult) -> np.ndarray:
    """The foreground ``result`` was made from, at the picture's own size: (H, W) uint8, 255 on the object and 0
    off it (thresholded at 0.5 after a bilinear resize), row 0 at the top; what ``--save-mask`` writes and what the
    add-on shows. Given back as a mask it reproduces the crop."""
    if result.foreground is None:
        raise ValueError("this intake result carries no foreground")
    image = Image.fromarray(result.foreground)
    if image.size != result.original_size:
        image = image.resize(result.original_size, Image.Resampling.BILINEAR)
    return np.asarray(_binary(image)).copy()


def resize_rgba(rgba: torch.Tensor, size: int) -> torch.Tensor:
    """Resize straight RGBA (B, 4, H, W) float32 in [0, 1] to (B, 4, size, size): antialiased bilinear on
    premultiplied colour, un-premultiplied after (no dark fringes; colour 0 where alpha is 0). The intake's last
    step, and how renders become supervision targets at the rasterizer's size."""
    premultiplied = torch.cat([rgba[:, :3] * rgba[:, 3:], rgba[:, 3:]], 1)
    y = F.interpolate(premultiplied, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    alpha = y[:, 3:].clamp(0, 1)
    rgb = torch.where(alpha > 0, y[:, :3] / alpha.clamp_min(1e-6), 0.0).clamp(0, 1)
    return torch.cat([rgb, alpha], 1)


class _Backdrop(NamedTuple):
    """A plain background estimated from a picture's border: its colour (3,) sRGB in [0, 1] and the least distance
    from it of faint foreground pixels (see ``IntakeSettings.weak_tolerance``)."""

    color: np.ndarray
    weak_tolerance: float


def _analysis_copy(rgba: Image.Image, settings: IntakeSettings) -> np.ndarray:
    """The picture's RGB reduced (box filter) to at most ``settings.analysis_size`` pixels long: (h, w, 3) uint8."""
    w, h = rgba.size
    k = min(1.0, settings.analysis_size / max(w, h))
    small = rgba.convert("RGB")
    if k < 1:
        small = small.resize((max(2, round(w * k)), max(2, round(h * k))), Image.Resampling.BOX)
    return np.asarray(small)


def _strip(a: np.ndarray, settings: IntakeSettings) -> np.ndarray:
    """The border strip of an (h, w, ...) array, ``settings.border`` of the shorter side wide (>= 2 px): (n, ...)."""
    b = max(2, round(settings.border * min(a.shape[:2])))
    return np.concatenate([a[:b], a[-b:], a[:, :b].swapaxes(0, 1), a[:, -b:].swapaxes(0, 1)], 1).reshape(-1, *a.shape[2:])


def _foreground_net(settings: IntakeSettings):
    """The foreground network the settings name (None where 'auto' finds no shipped weights)."""
    from softras.foreground import default_foreground_path, shipped_foreground

    path = settings.foreground_weights or default_foreground_path()
    net = shipped_foreground(path)
    if net is None and (settings.foreground in ("net", "combined") or settings.foreground_weights is not None):
        raise FileNotFoundError(f"foreground weights not found: {path}")
    return net


def _opaque_foreground(
    rgba: Image.Image, settings: IntakeSettings, name: str
) -> tuple[Image.Image, _Backdrop | None, str, object | None]:
    """Foreground of an opaque picture by the rule of ``settings.foreground`` (see :class:`IntakeSettings`): an 'L'
    image (0 or 255) at most ``analysis_size`` long, the backdrop the border estimate found (None where it was not
    used), the method that made the mask ('border', 'net' or 'combined') and the network (None for 'border')."""
    method = settings.foreground
    net = None if method == "border" else _foreground_net(settings)
    if net is not None and method == "auto":
        color = np.median(_strip(_analysis_copy(rgba, settings), settings), axis=0) / 255
        luma = float(color @ np.asarray([0.299, 0.587, 0.114]))
        light = luma >= settings.light_backdrop and float(color.max() - color.min()) <= settings.neutral_backdrop
        method = settings.light_method if light else "border"
    if net is not None and method in ("net", "combined", "shadow"):
        border, backdrop = None, None
        if method != "net":
            try:
                border, backdrop = _border_foreground(rgba, None, settings, name)
            except ValueError:  # no plain border or nothing clearly different: the network alone
                method = "net"
        found = _net_foreground(rgba, net, settings, border)
        if method == "shadow":  # the combined mask only where the border estimate takes in a shadow under it
            if found is None or not _shadow_below(rgba, border, found, backdrop, settings):
                return border, backdrop, "border", None
            method = "combined"
        if found is not None:
            return found, backdrop, method, net
        if settings.foreground in ("net", "combined"):
            raise ValueError(f"no foreground found in {name}: the foreground network found no object")
    return (*_border_foreground(rgba, None, settings, name), "border", None)


def _shadow_below(rgba: Image.Image, border: Image.Image, combined: Image.Image, backdrop: _Backdrop,
                  settings: IntakeSettings) -> bool:
    """Whether the border estimate ``border`` took in a shadow that the ``combined`` mask leaves out: it reaches more
    than ``shadow_drop`` of its height below it, and the pixels it has beyond it look like shadow on the backdrop
    (median luminance 0.4-0.98 of the backdrop's, colour a darker backdrop colour: chroma within 0.04)."""
    if _bottom(border) - _bottom(combined) <= settings.shadow_drop * _height(border):
        return False
    extra = (np.asarray(border) > 127) & ~(np.asarray(combined) > 127)
    x = _analysis_copy(rgba, settings).astype(np.float32)[extra] / 255
    weights = np.asarray([0.299, 0.587, 0.114], np.float32)
    ratio = (x @ weights) / max(float(backdrop.color @ weights), 1e-3)
    chroma = np.abs(x - ratio[:, None] * backdrop.color[None]).max(1)
    return 0.4 <= float(np.median(ratio)) <= 0.98 and float(np.median(chroma)) <= 0.04


def _bottom(mask: Image.Image) -> int:
    """One past the lowest row of an 'L' mask's > 0.5 pixels (0 for an empty one)."""
    box = _binary(mask).getbbox()
    return 0 if box is None else box[3]


def _height(mask: Image.Image) -> int:
    box = _binary(mask).getbbox()
    return 0 if box is None else box[3] - box[1]


def _net_foreground(rgba: Image.Image, net, settings: IntakeSettings, border: Image.Image | None = None) -> Image.Image | None:
    """The foreground network's mask of a picture, cleaned as the border estimate's: an 'L' image (0 or 255) at
    most ``analysis_size`` long, or None where it finds nothing. Alone: probability > 0.5. With the border
    estimate's mask ``border`` (same size): its pixels where the probability exceeds ``settings.net_keep``, and any
    pixel where it exceeds ``settings.net_add``."""
    from softras.foreground import foreground_probability

    p = foreground_probability(net, _analysis_copy(rgba, settings))
    if border is None:
        fg = p > 0.5
    else:
        fg = ((np.asarray(border) > 127) & (p > settings.net_keep)) | (p > settings.net_add)
    return _clean(fg, settings) if fg.any() else None


def _clean(fg: np.ndarray, settings: IntakeSettings) -> Image.Image:
    """A boolean foreground closed by a pixel, without specks and with its small enclosed holes filled ('L' 0/255)."""
    closed = Image.fromarray(fg).convert("L").filter(ImageFilter.MaxFilter(3)).filter(ImageFilter.MinFilter(3))
    fg = np.asarray(closed) > 127
    labels = _label(fg)  # drop specks
    ids, counts = np.unique(labels[fg], return_counts=True)
    fg &= np.isin(labels, ids[counts >= settings.min_component * counts.max()])
    labels = _label(~fg)  # fill small enclosed holes
    ids, counts = np.unique(labels[~fg], return_counts=True)
    edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    holes = ids[(counts < settings.max_hole * fg.sum()) & ~np.isin(ids, edge)]
    return Image.fromarray((fg | np.isin(labels, holes)).astype(np.uint8) * 255)


def _border_foreground(
    rgba: Image.Image, backdrop: _Backdrop | None, settings: IntakeSettings, name: str
) -> tuple[Image.Image, _Backdrop]:
    """Foreground of an opaque picture on a plain background: an 'L' image (0 or 255) at most
    ``settings.analysis_size`` pixels long, and the backdrop: ``backdrop`` if given, else estimated from a border
    strip (which must be mostly one colour)."""
    x = _analysis_copy(rgba, settings).astype(np.float32) / 255  # (h, w, 3) sRGB

    def border(a: np.ndarray) -> np.ndarray:
        return _strip(a, settings)

    color = np.median(border(x), axis=0) if backdrop is None else backdrop.color
    distance = np.linalg.norm(x - color, axis=2)
    strong = distance > settings.background_tolerance
    # Hysteresis: faint pixels join the foreground where they connect to clearly different ones. They are tested
    # on luminance (JPEG and WebP keep it at full resolution, but halve the colour's) after a 3 x 3 median (no
    # JPEG ringing, less noise), and eroded by a pixel (no halo of colour bleeding around saturated edges).
    luma = np.abs((x - color) @ np.asarray([0.299, 0.587, 0.114], np.float32))
    smooth = np.asarray(Image.fromarray(luma).filter(ImageFilter.MedianFilter(3)))
    if backdrop is None:
        outliers = float(np.mean(border(strong)))
        if outliers > settings.border_outliers:
            raise ValueError(
                f"cannot estimate a plain background for {name}: {outliers:.0%} of the border differs from its "
                "median colour; give a mask or an image with transparency"
            )
        noise = settings.noise_factor * float(np.percentile(border(smooth), 90))
        backdrop = _Backdrop(color, min(settings.background_tolerance, max(settings.weak_tolerance, noise)))
    if not strong.any():
        raise ValueError(f"no foreground found in {name}: the image looks uniform")
    weak = np.asarray(Image.fromarray(smooth > backdrop.weak_tolerance).convert("L").filter(ImageFilter.MinFilter(3))) > 127
    labels = _label(strong | weak)
    fg = np.isin(labels, np.unique(labels[strong]))
    if fg.sum() > settings.max_growth * strong.sum():  # uneven lighting of the backdrop, not faint parts
        fg, backdrop = strong, backdrop._replace(weak_tolerance=settings.background_tolerance)
    return _clean(fg, settings), backdrop


def _label(m: np.ndarray) -> np.ndarray:
    """4-connected components of a boolean (h, w) array: int64 labels (each component's smallest flat index;
    ``m.size`` off the mask).

    The nodes are the mask's row runs (maximal horizontal segments), joined where runs of neighbouring rows overlap;
    vectorised union-find on them (hook roots onto smaller roots, then compress paths) needs a few passes over a few
    hundred runs instead of many over every pixel.
    """
    h, w = m.shape
    flat = m.ravel()
    start = m.copy()
    start[:, 1:] &= ~m[:, :-1]  # the first pixel of each run
    run = np.cumsum(start.ravel()) - 1  # every mask pixel's run, numbered in raster order
    first = np.flatnonzero(start)  # each run's first pixel: the smallest flat index of its component is one
    below = m[:-1] & m[1:]
    below[:, 1:] &= ~below[:, :-1]  # one pixel per overlap of a run with a run of the next row
    top = np.flatnonzero(below)
    a, b = run[top], run[top + w]
    parent = np.arange(first.size)
    while True:
        pa, pb = parent[a], parent[b]
        differ = pa != pb
        if not differ.any():
            break
        np.minimum.at(parent, np.maximum(pa, pb)[differ], np.minimum(pa, pb)[differ])
        while not np.array_equal(up := parent[parent], parent):
            parent = up
    labels = np.full(m.size, m.size, dtype=np.int64)
    labels[flat] = first[parent[run[flat]]]
    return labels.reshape(h, w)
