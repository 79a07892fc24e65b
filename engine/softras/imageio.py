"""Writing rendered images: 8-bit PNG or float32 .npy, atomically."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from softras.fileio import atomic_write

__all__ = ["write_image", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".npy")


def write_image(image: np.ndarray, path: str | os.PathLike) -> Path:
    """Write an (H, W) silhouette or (H, W, 4) RGBA image with values in [0, 1].

    ``.png`` stores 8-bit grey or RGBA (values rounded); ``.npy`` stores the float32 array unchanged. Row 0 is
    the top of the image. The write is atomic (see :func:`softras.fileio.atomic_write`).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ValueError(f"unsupported image format {path.suffix!r} for {path}; use one of {', '.join(IMAGE_SUFFIXES)}")
    image = np.asarray(image, dtype=np.float32)
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 4):
        raise ValueError(f"image must have shape (H, W) or (H, W, 4), got {image.shape}")
    if suffix == ".npy":
        return atomic_write(path, lambda fh: np.save(fh, image))
    pixels = np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L" if pixels.ndim == 2 else "RGBA").save(buffer, format="PNG")
    return atomic_write(path, lambda fh: fh.write(buffer.getvalue()))
