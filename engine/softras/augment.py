"""What real pictures vary in, applied to clean renders: for training inputs and for the robustness benchmark.

Every function maps a picture to a picture: ``uint8 (H, W, 4)`` straight sRGB RGBA with row 0 at the top (a
render, transparent background) or ``uint8 (H, W, 3)`` (a picture without alpha, after :func:`on_background`).
The generator never sees these pictures directly: they go through :mod:`softras.intake` like a user's file.

- :func:`reframe`: the object's size and position in the picture (scale about the picture centre, then shift;
  outside the source is transparent); :func:`place`: the picture as part of a larger canvas;
- :func:`low_resolution`: the picture taken at a lower resolution and scaled back up;
- :func:`blur`: Gaussian blur on premultiplied colour (no dark fringes);
- :func:`recolor`: exposure, white balance and contrast (gamma), a :class:`ColorChange`;
- :func:`on_background`: composite over a plain colour, dropping alpha (a photo on a backdrop);
- :func:`add_noise`: sensor noise; :func:`jpeg`: JPEG compression of a picture without alpha.

:func:`random_picture` draws a random combination of them (:class:`AugmentSettings`); :data:`PERTURBATIONS` names
the fixed ones that ``softras eval --robustness`` measures.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image, ImageFilter

__all__ = ["AugmentSettings", "ColorChange", "reframe", "low_resolution", "blur", "recolor", "on_background", "add_noise", "jpeg",
           "place", "random_picture", "PERTURBATIONS"]


def _check(picture: np.ndarray) -> np.ndarray:
    picture = np.asarray(picture)
    if picture.dtype != np.uint8 or picture.ndim != 3 or picture.shape[2] not in (3, 4):
        raise ValueError(f"expected a uint8 (H, W, 3) or (H, W, 4) picture, got {picture.dtype} {picture.shape}")
    return picture


def reframe(picture: np.ndarray, scale: float, shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Scale the picture's content by ``scale`` about its centre, then shift it by ``shift`` = (dx, dy) fractions
    of the picture's (width, height) (y down); the size stays. Uncovered pixels are transparent (RGBA) or black."""
    picture = _check(picture)
    h, w = picture.shape[:2]
    image = Image.fromarray(picture)
    sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
    resized = image.resize((sw, sh), Image.Resampling.BILINEAR)  # Pillow resamples RGBA premultiplied
    canvas = Image.new(image.mode, (w, h))
    canvas.paste(resized, (round((w - sw) / 2 + shift[0] * w), round((h - sh) / 2 + shift[1] * h)))
    return np.asarray(canvas).copy()


def place(picture: np.ndarray, canvas: tuple[int, int], side: int, centre: tuple[float, float]) -> np.ndarray:
    """Resize the square picture to ``side`` pixels and put its centre at ``centre`` = (x, y) fractions of a new
    transparent (or black) ``canvas`` = (width, height) picture: a render as part of a larger photo."""
    picture = _check(picture)
    image = Image.fromarray(picture).resize((side, side), Image.Resampling.BICUBIC)
    out = Image.new(image.mode, canvas)
    out.paste(image, (round(centre[0] * canvas[0] - side / 2), round(centre[1] * canvas[1] - side / 2)))
    return np.asarray(out).copy()


def low_resolution(picture: np.ndarray, factor: float) -> np.ndarray:
    """Downscale by ``factor`` in (0, 1] (box filter) and back up to the original size (bilinear)."""
    picture = _check(picture)
    h, w = picture.shape[:2]
    image = Image.fromarray(picture)
    small = image.resize((max(2, round(w * factor)), max(2, round(h * factor))), Image.Resampling.BOX)
    return np.asarray(small.resize((w, h), Image.Resampling.BILINEAR)).copy()


def blur(picture: np.ndarray, radius: float) -> np.ndarray:
    """Gaussian blur of standard deviation ``radius`` pixels, on premultiplied colour where there is alpha."""
    picture = _check(picture)
    image = Image.fromarray(picture)
    if image.mode == "RGBA":
        return np.asarray(image.convert("RGBa").filter(ImageFilter.GaussianBlur(radius)).convert("RGBA")).copy()
    return np.asarray(image.filter(ImageFilter.GaussianBlur(radius))).copy()


@dataclass(frozen=True)
class ColorChange:
    """Colour changes of a camera: each sRGB channel ``c`` (in [0, 1]) becomes
    ``clip(exposure * white_balance_c * c, 0, 1) ** gamma``."""

    exposure: float = 1.0
    white_balance: tuple[float, float, float] = (1.0, 1.0, 1.0)
    gamma: float = 1.0

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """rgb: float (..., 3) sRGB in [0, 1] -> float32 (..., 3) in [0, 1]."""
        gains = np.float32(self.exposure) * np.asarray(self.white_balance, np.float32)
        return np.clip(np.asarray(rgb, np.float32) * gains, 0, 1) ** np.float32(self.gamma)


def recolor(picture: np.ndarray, change: ColorChange) -> np.ndarray:
    """The picture with its colour changed by ``change``; alpha is kept."""
    picture = _check(picture)
    out = picture.copy()
    out[..., :3] = np.rint(change(picture[..., :3].astype(np.float32) / 255) * 255).astype(np.uint8)
    return out


def on_background(picture: np.ndarray, color: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """Composite an RGBA picture over a plain sRGB ``color`` (in [0, 1]); returns (H, W, 3), no alpha."""
    picture = _check(picture)
    if picture.shape[2] == 3:
        return picture.copy()
    x = picture.astype(np.float32) / 255
    rgb = x[..., :3] * x[..., 3:] + np.asarray(color, np.float32) * (1 - x[..., 3:])
    return np.rint(rgb * 255).astype(np.uint8)


def add_noise(picture: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Add Gaussian noise of standard deviation ``sigma`` (sRGB units in [0, 1]) to the colour channels."""
    picture = _check(picture)
    out = picture.copy()
    noisy = picture[..., :3].astype(np.float32) + rng.normal(0.0, 255 * sigma, picture[..., :3].shape)
    out[..., :3] = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    return out


def jpeg(picture: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode as JPEG at ``quality`` (1-95); a picture without alpha only (JPEG has none)."""
    picture = _check(picture)
    if picture.shape[2] != 3:
        raise ValueError("JPEG has no alpha: composite the picture on a background first")
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB")).copy()


@dataclass(frozen=True)
class AugmentSettings:
    """How often and how strongly :func:`random_picture` perturbs a render. Probabilities in [0, 1]."""

    reframe: float = 0.5
    """Probability of moving and resizing the object in the picture."""
    scale: tuple[float, float] = (0.6, 1.15)
    """Range of the reframing scale (log-uniform)."""
    shift: float = 0.08
    """Largest reframing shift, as a fraction of the picture side."""
    low_resolution: float = 0.25
    """Probability of a low-resolution picture; ``resolution`` is the range of the downscale factor."""
    resolution: tuple[float, float] = (0.4, 0.9)
    blur: float = 0.25
    """Probability of blur; ``blur_radius`` is the range of its standard deviation in pixels."""
    blur_radius: tuple[float, float] = (0.3, 1.2)
    recolor: float = 0.5
    """Probability of a colour change: exposure, white balance and gamma within the ranges below."""
    exposure: tuple[float, float] = (0.7, 1.35)
    white_balance: float = 0.12
    """Largest relative change of each channel's gain."""
    gamma: tuple[float, float] = (0.8, 1.25)
    no_alpha: float = 0.5
    """Probability of dropping alpha: the picture is composited on a plain background (white with probability
    ``white``, else a random colour) and the intake must find the object itself."""
    white: float = 0.5
    noise: float = 0.2
    """Probability of sensor noise of standard deviation up to ``noise_sigma``."""
    noise_sigma: float = 0.02
    jpeg: float = 0.5
    """Probability of JPEG compression (pictures without alpha) at a quality in ``jpeg_quality``."""
    jpeg_quality: tuple[int, int] = (30, 95)

    @classmethod
    def from_dict(cls, d: dict) -> "AugmentSettings":
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown augmentation keys: {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def random_picture(picture: np.ndarray, rng: np.random.Generator, settings: AugmentSettings) -> tuple[np.ndarray, ColorChange | None]:
    """A random perturbation of an RGBA render (see :class:`AugmentSettings`): reframing, low resolution, blur,
    colour, background, noise and JPEG, in that order, each drawn independently. Deterministic given ``rng``.

    Returns the picture and its colour change (None when its colours were left as they were), so that a colour
    target can be changed alike: the picture is all the generator knows of the object's colours.
    """
    s, change = settings, None
    if rng.random() < s.reframe:
        scale = float(np.exp(rng.uniform(np.log(s.scale[0]), np.log(s.scale[1]))))
        picture = reframe(picture, scale, tuple(rng.uniform(-s.shift, s.shift, 2)))
    if rng.random() < s.low_resolution:
        picture = low_resolution(picture, rng.uniform(*s.resolution))
    if rng.random() < s.blur:
        picture = blur(picture, rng.uniform(*s.blur_radius))
    if rng.random() < s.recolor:
        balance = tuple(1 + rng.uniform(-s.white_balance, s.white_balance, 3))
        change = ColorChange(rng.uniform(*s.exposure), balance, rng.uniform(*s.gamma))
        picture = recolor(picture, change)
    if rng.random() < s.no_alpha:
        color = (1.0, 1.0, 1.0) if rng.random() < s.white else tuple(rng.uniform(0, 1, 3))
        picture = on_background(picture, color)
    if rng.random() < s.noise:
        picture = add_noise(picture, rng.uniform(0, s.noise_sigma), rng)
    if picture.shape[2] == 3 and rng.random() < s.jpeg:
        picture = jpeg(picture, int(rng.integers(s.jpeg_quality[0], s.jpeg_quality[1] + 1)))
    return picture, change


PERTURBATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "smaller (75%)": lambda p: reframe(p, 0.75),
    "larger (125%)": lambda p: reframe(p, 1.25),
    "shifted": lambda p: reframe(p, 1.0, (0.1, -0.06)),
    "blurred (1 px)": lambda p: blur(p, 1.0),
    "half resolution": lambda p: low_resolution(p, 0.5),
    "darker, warmer": lambda p: recolor(p, ColorChange(0.8, (1.08, 1.0, 0.9))),
    "no alpha, white": lambda p: on_background(p),
    "JPEG 50 on white": lambda p: jpeg(on_background(p), 50),
    "photo 768x576 JPEG": lambda p: jpeg(on_background(place(p, (768, 576), 500, (0.6, 0.45))), 85),
}
"""The fixed perturbations of the robustness benchmark, by name: RGBA render -> picture."""
