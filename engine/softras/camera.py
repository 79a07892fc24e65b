"""Pinhole cameras in the project convention (see README, "Conventions").

Object frame is Y-up. A camera looks from ``eye`` towards ``at`` with ``up`` as the approximate up vector.
Camera coordinates: ``right = normalize(fwd x up)``, ``cam_up = right x fwd``; a point ``p`` has depth
``(p - eye) . fwd`` (positive in front of the camera) and normalised device coordinates

    ndc_x = ((p - eye) . right) / depth / (tan(fov / 2) * aspect) + shift_x
    ndc_y = ((p - eye) . cam_up) / depth / tan(fov / 2) + shift_y

where ``fov`` is the full *vertical* field of view and ``aspect = width / height``. NDC spans [-1, 1] across
the image in both axes, +x to the right, +y up. Continuous pixel coordinates are
``column = (ndc_x + 1) / 2 * W`` and ``row = (1 - ndc_y) / 2 * H``; pixel (0, 0) is the top-left pixel and
its centre lies at (column, row) = (0.5, 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Camera", "DEFAULT_DISTANCE", "DEFAULT_ELEVATION", "DEFAULT_FOV"]

DEFAULT_DISTANCE = 2.732
DEFAULT_ELEVATION = 30.0
DEFAULT_FOV = 30.0


def _as_batch(value: torch.Tensor | float, batch: int, name: str, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=dtype, device=device)
    if t.dim() == 0:
        t = t.expand(batch)
    if t.shape != (batch,):
        raise ValueError(f"{name} must be a scalar or have shape ({batch},), got {tuple(t.shape)}")
    return t


@dataclass(frozen=True)
class Camera:
    """A batch of B perspective pinhole cameras.

    Attributes:
        eye: (B, 3) camera positions, object frame.
        at: (B, 3) points looked at, object frame.
        up: (B, 3) approximate up directions (need not be unit or orthogonal to the view direction).
        fov: (B,) full vertical field of view, degrees, in (0, 180).
        aspect: (B,) image width / height.
        shift: (B, 2) principal-point offset in NDC units (Blender's lens shift converted to NDC).
    """

    eye: torch.Tensor
    at: torch.Tensor
    up: torch.Tensor
    fov: torch.Tensor
    aspect: torch.Tensor
    shift: torch.Tensor

    def __post_init__(self) -> None:
        if self.eye.dim() != 2 or self.eye.shape[-1] != 3:
            raise ValueError(f"eye must have shape (B, 3), got {tuple(self.eye.shape)}")
        b = self.eye.shape[0]
        for name in ("at", "up"):
            if getattr(self, name).shape != (b, 3):
                raise ValueError(f"{name} must have shape ({b}, 3), got {tuple(getattr(self, name).shape)}")
        if self.fov.shape != (b,) or self.aspect.shape != (b,) or self.shift.shape != (b, 2):
            raise ValueError("fov and aspect must have shape (B,), shift (B, 2)")
        if not bool(((self.fov > 0) & (self.fov < 180)).all()):
            raise ValueError("fov must lie in (0, 180) degrees")
        if not bool((self.aspect > 0).all()):
            raise ValueError("aspect must be positive")
        if not bool(torch.isfinite(torch.cat([self.eye, self.at, self.up], dim=1)).all()):
            raise ValueError("eye, at and up must be finite")

    # ------------------------------------------------------------------ constructors
    @classmethod
    def look_at(
        cls,
        eye: torch.Tensor,
        at: torch.Tensor | None = None,
        up: torch.Tensor | None = None,
        fov: torch.Tensor | float = DEFAULT_FOV,
        aspect: torch.Tensor | float = 1.0,
        shift: torch.Tensor | None = None,
    ) -> "Camera":
        """Cameras at ``eye`` (B, 3) or (3,) looking at ``at`` (default origin) with ``up`` (default +Y)."""
        eye = torch.as_tensor(eye)
        if not eye.is_floating_point():
            eye = eye.float()
        if eye.dim() == 1:
            eye = eye.unsqueeze(0)
        b, dtype, device = eye.shape[0], eye.dtype, eye.device

        def vec(v: torch.Tensor | None, default: tuple[float, float, float], name: str) -> torch.Tensor:
            t = torch.tensor(default, dtype=dtype, device=device) if v is None else torch.as_tensor(v, dtype=dtype, device=device)
            if t.dim() == 1:
                t = t.unsqueeze(0).expand(b, 3)
            if t.shape != (b, 3):
                raise ValueError(f"{name} must have shape (3,) or ({b}, 3), got {tuple(t.shape)}")
            return t

        shift_t = torch.zeros(b, 2, dtype=dtype, device=device) if shift is None else torch.as_tensor(shift, dtype=dtype, device=device).reshape(-1, 2).expand(b, 2)
        return cls(
            eye=eye,
            at=vec(at, (0.0, 0.0, 0.0), "at"),
            up=vec(up, (0.0, 1.0, 0.0), "up"),
            fov=_as_batch(fov, b, "fov", dtype, device),
            aspect=_as_batch(aspect, b, "aspect", dtype, device),
            shift=shift_t,
        )

    @classmethod
    def from_angles(
        cls,
        distance: torch.Tensor | float = DEFAULT_DISTANCE,
        elevation: torch.Tensor | float = DEFAULT_ELEVATION,
        azimuth: torch.Tensor | float = 0.0,
        fov: torch.Tensor | float = DEFAULT_FOV,
        aspect: torch.Tensor | float = 1.0,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> "Camera":
        """Cameras orbiting the origin: ``eye = d (cos e sin a, sin e, -cos e cos a)``, up +Y.

        distance, elevation (degrees) and azimuth (degrees) are scalars or (B,) tensors; they broadcast.
        """
        d, e, a = (torch.as_tensor(x, dtype=dtype, device=device) for x in (distance, elevation, azimuth))
        d, e, a = torch.broadcast_tensors(d.reshape(-1), e.reshape(-1), a.reshape(-1))
        if not bool((d > 0).all()):
            raise ValueError("distance must be positive")
        e, a = torch.deg2rad(e), torch.deg2rad(a)
        eye = torch.stack([d * torch.cos(e) * torch.sin(a), d * torch.sin(e), -d * torch.cos(e) * torch.cos(a)], dim=-1)
        return cls.look_at(eye, fov=fov, aspect=aspect)

    @staticmethod
    def cat(cameras: "list[Camera]") -> "Camera":
        """Concatenate batches of cameras."""
        return Camera(*(torch.cat([getattr(c, f) for c in cameras]) for f in ("eye", "at", "up", "fov", "aspect", "shift")))

    # ------------------------------------------------------------------ geometry
    @property
    def batch_size(self) -> int:
        return self.eye.shape[0]

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "Camera":
        return Camera(*(t.to(device=device, dtype=dtype) for t in (self.eye, self.at, self.up, self.fov, self.aspect, self.shift)))

    def basis(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Unit vectors ``(right, cam_up, fwd)``, each (B, 3), object frame."""
        fwd = torch.nn.functional.normalize(self.at - self.eye, dim=-1)
        right = torch.linalg.cross(fwd, self.up, dim=-1)
        if bool((right.norm(dim=-1) < 1e-8).any()):
            raise ValueError("up must not be parallel to the viewing direction")
        right = torch.nn.functional.normalize(right, dim=-1)
        cam_up = torch.linalg.cross(right, fwd, dim=-1)
        return right, cam_up, fwd

    def widened(self, box: tuple[float, float, float, float], width: int, height: int) -> "Camera":
        """The cameras of a whole ``width`` x ``height`` picture of which this camera's image is the window ``box``.

        ``box`` = (left, top, right, bottom) in the picture's pixels (it may reach beyond the picture), e.g. the
        intake's crop box: a point that this camera puts at NDC (x, y) lands at picture column
        ``left + (x + 1) / 2 * (right - left)`` and row ``top + (1 - y) / 2 * (bottom - top)`` through the returned
        camera, which has the same eye, orientation and depth; only field of view, aspect and shift change.
        """
        left, top, right, bottom = (float(v) for v in box)
        if not (right > left and bottom > top and width > 0 and height > 0):
            raise ValueError(f"box {box} must have positive size, picture {width}x{height} too")
        sx, sy = (right - left) / width, (bottom - top) / height
        tan = torch.tan(torch.deg2rad(self.fov) / 2) / sy
        shift = torch.stack([self.shift[:, 0] * sx + (left + right) / width - 1,
                             self.shift[:, 1] * sy + 1 - (top + bottom) / height], dim=-1)
        return Camera(self.eye, self.at, self.up, torch.rad2deg(2 * torch.atan(tan)), self.aspect * sy / sx, shift)

    def project(self, points: torch.Tensor) -> torch.Tensor:
        """Project points to NDC and depth.

        Args:
            points: (B, N, 3) or (N, 3) object-frame points (an unbatched set is shared by all cameras).
        Returns:
            (B, N, 3): ``ndc_x``, ``ndc_y`` in [-1, 1] across the image (+y up) and ``depth`` (distance along the
            viewing direction, object-frame units; <= 0 behind the camera, where NDC is meaningless).
        """
        if points.dim() == 2:
            points = points.unsqueeze(0).expand(self.batch_size, -1, -1)
        if points.dim() != 3 or points.shape[-1] != 3 or points.shape[0] != self.batch_size:
            raise ValueError(f"points must have shape ({self.batch_size}, N, 3) or (N, 3), got {tuple(points.shape)}")
        rotation = torch.stack(self.basis(), dim=1)  # (B, 3, 3), rows: right, cam_up, fwd
        cam = torch.bmm(points - self.eye[:, None, :], rotation.transpose(1, 2))  # (B, N, 3) camera coordinates
        depth = cam[..., 2:]
        safe = torch.where(depth.abs() > 1e-12, depth, torch.full_like(depth, 1e-12))
        focal = torch.stack([1 / self.aspect, torch.ones_like(self.aspect)], dim=-1) / torch.tan(torch.deg2rad(self.fov) / 2)[:, None]
        ndc = cam[..., :2] / safe * focal[:, None, :] + self.shift[:, None, :]
        return torch.cat([ndc, depth], dim=-1)

    def to_pixels(self, points: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Continuous pixel coordinates (B, N, 2) as (column, row); pixel (i, j)'s centre is (j + 0.5, i + 0.5)."""
        p = self.project(points)
        col = (p[..., 0] + 1) / 2 * width
        row = (1 - p[..., 1]) / 2 * height
        return torch.stack([col, row], dim=-1)
