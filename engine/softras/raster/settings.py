"""Settings of the soft rasterizer."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["RasterSettings"]


@dataclass(frozen=True)
class RasterSettings:
    """How faces become soft fragments and how fragments blend into images.

    Distances are measured in *height-normalised screen units*: the image height spans 2 units (for a square
    image these are exactly NDC units, the SoftRas convention), so ``sigma`` does not depend on the aspect ratio.

    Attributes:
        image_size: ``H`` for a square image or ``(H, W)``, pixels.
        sigma: sharpness of the face probability ``D = sigmoid(delta * d**2 / sigma)``, squared screen units.
            The paper uses 3e-5 at 64x64; scale it with the pixel area for larger images to keep the blur in pixels.
        gamma: temperature of the softmax over normalised depth in colour blending.
        eps: a face contributes to a pixel only where ``D >= eps``; outside the triangle this is the cull radius
            ``sqrt(sigma * ln(1 / eps - 1))``.
        near, far: depth range (object-frame units along the view direction). A face with a vertex nearer than
            ``near`` is dropped whole (no clipping); fragments whose interpolated depth lies beyond ``far`` are dropped.
        background_depth: normalised depth of the background in the colour softmax (SoftRas uses 1e-3).
        background: background colour, one value per colour channel (sRGB in [0, 1] for RGB).
    """

    image_size: int | tuple[int, int] = 64
    sigma: float = 3e-5
    gamma: float = 1e-4
    eps: float = 1e-4
    near: float = 0.1
    far: float = 100.0
    background_depth: float = 1e-3
    background: tuple[float, ...] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        h, w = self.height_width
        if h <= 0 or w <= 0:
            raise ValueError(f"image_size must be positive, got {self.image_size}")
        if not self.sigma > 0:
            raise ValueError(f"sigma must be positive, got {self.sigma}")
        if not self.gamma > 0:
            raise ValueError(f"gamma must be positive, got {self.gamma}")
        if not 0 < self.eps < 0.5:
            raise ValueError(f"eps must lie in (0, 0.5), got {self.eps}")
        if not 0 < self.near < self.far:
            raise ValueError(f"near and far must satisfy 0 < near < far, got near={self.near}, far={self.far}")

    @property
    def height_width(self) -> tuple[int, int]:
        if isinstance(self.image_size, int):
            return self.image_size, self.image_size
        h, w = self.image_size
        return int(h), int(w)

    @property
    def cull_radius(self) -> float:
        """Distance (screen units) beyond which a pixel outside a face gets ``D < eps``."""
        return math.sqrt(self.sigma * math.log(1.0 / self.eps - 1.0))
