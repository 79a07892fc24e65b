"""sRGB transfer functions (IEC 61966-2-1). Engine colours are sRGB; glTF and Blender attributes are linear."""

from __future__ import annotations

import numpy as np

__all__ = ["srgb_to_linear", "linear_to_srgb"]


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """Decode sRGB values in [0, 1] (clipped) to linear light; any shape, float64 out."""
    c = np.clip(np.asarray(c, dtype=np.float64), 0.0, 1.0)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: np.ndarray) -> np.ndarray:
    """Encode linear values in [0, 1] (clipped) as sRGB; any shape, float64 out."""
    c = np.clip(np.asarray(c, dtype=np.float64), 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1 / 2.4) - 0.055)
