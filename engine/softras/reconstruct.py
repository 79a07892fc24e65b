"""Single-image reconstruction with a trained generator: the engine's main Python API."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from softras.camera import Camera
from softras.fileio import shipped_file
from softras.intake import IntakeResult, IntakeSettings, load_image, load_picture
from softras.mesh import Mesh
from softras.model import load_weights
from softras.refine import ProgressCallback, RefineResult, RefineSettings, StopCallback, refine_to_image
from softras.texture import BakeSettings, project_texture

__all__ = ["Reconstructor", "Reconstruction", "FileReconstruction", "default_weights_path", "refine_prediction", "WEIGHTS_FILENAME"]

WEIGHTS_FILENAME = "softras_generator.pt"
PREDICTION_REFINE_LR = 1e-3
"""Adam step (object-frame units) for polishing a prediction: a tenth of :class:`RefineSettings`'s default, which
suits fitting a template from afar but moves a prediction further than its errors
(``docs/notes/2026-11-26-renders-fed-directly.md``)."""


def default_weights_path() -> Path:
    """The shipped weights: ``$SOFTRAS_WEIGHTS`` if set, else ``models/softras_generator.pt`` beside the package
    (the repository root in a checkout, the extension folder in the Blender extension)."""
    return shipped_file(WEIGHTS_FILENAME, "SOFTRAS_WEIGHTS")


def refine_prediction(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    mask: torch.Tensor,
    steps: int,
    callback: ProgressCallback | None = None,
    should_stop: StopCallback | None = None,
    azimuth_prior: torch.Tensor | None = None,
) -> RefineResult:
    """Refine a generator's mesh to its own input's mask, estimating the viewpoint (the generator predicts in the
    object frame): :func:`softras.refine.refine_to_image` with ``PREDICTION_REFINE_LR``.

    Args:
        vertices: (V, 3) float32, object frame. faces: (F, 3) int64.
        mask: (H, W) float in [0, 1], the input's foreground; some but not all values >= 0.5.
        steps: Adam steps. callback, should_stop: as in :func:`softras.refine.refine`.
        azimuth_prior: (N,) the generator's azimuth probabilities for the input, or None (see
            :func:`softras.refine.estimate_viewpoint`).
    """
    return refine_to_image(vertices, faces, mask, settings=RefineSettings(steps=steps, lr=PREDICTION_REFINE_LR),
                           callback=callback, should_stop=should_stop, azimuth_prior=azimuth_prior)


@dataclass
class Reconstruction:
    """One reconstructed mesh (object frame, sRGB vertex colours); when refined, its silhouette IoU against the
    input's mask before and after refinement and the camera (batch 1, the intake's frame) it was refined from; and,
    from a generator with a viewpoint head, the azimuth probabilities (N,) of its input (bin k centred on
    k * 360 / N degrees), for estimating the viewpoint later (:func:`softras.texture.project_texture`)."""

    mesh: Mesh
    iou_before: float | None = None
    iou_after: float | None = None
    camera: Camera | None = None
    azimuth_prior: torch.Tensor | None = None


@dataclass
class FileReconstruction:
    """A picture file's reconstruction: ``reconstruction.mesh`` carries a texture when one was asked for and could
    be baked; ``texture_message`` says why it fell back to vertex colours (None otherwise)."""

    reconstruction: Reconstruction
    texture_message: str | None = None
    intake: IntakeResult | None = None
    """The intake's result (its foreground at the picture's size: :func:`softras.intake.foreground_mask`)."""


class Reconstructor:
    """Loads a generator once and turns batches of RGBA images into coloured meshes in the object frame.

    Args:
        weights: a weights file from ``softras train``; default :func:`default_weights_path`.
        device: torch device for inference.
    """

    def __init__(self, weights: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> None:
        self.weights = Path(weights) if weights is not None else default_weights_path()
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' requested but CUDA is not available")
        self.model, self.metadata = load_weights(self.weights, map_location=self.device)
        self.model.to(self.device)

    @property
    def image_size(self) -> int:
        return self.model.cfg.image_size

    @property
    def faces(self) -> torch.Tensor:
        """(F, 3) int64 template faces shared by every output."""
        return self.model.faces.cpu()

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images: (B, 4, S, S) float32 RGBA in [0, 1] (straight sRGB, alpha = foreground), S = ``image_size``.

        Returns ``(vertices (B, V, 3), colors (B, V, 3))`` float32 on the CPU; vertices in the object frame (Y-up,
        inside [-0.5, 0.5]^3), colours sRGB in [0, 1].
        """
        if images.dim() == 3:
            images = images.unsqueeze(0)
        if not bool(torch.isfinite(images).all()):
            raise ValueError("images must be finite")
        vertices, colors = self.model(images.to(self.device, torch.float32))
        return vertices.cpu(), colors.cpu()

    def reconstruct(self, images: torch.Tensor) -> list[Mesh]:
        """Like :meth:`predict`, as one :class:`~softras.mesh.Mesh` (with vertex colours) per image."""
        vertices, colors = self.predict(images)
        faces = self.faces
        return [Mesh(v, faces, c) for v, c in zip(vertices, colors)]

    def reconstruct_intake(
        self,
        intake: IntakeResult,
        refine_steps: int = 0,
        callback: ProgressCallback | None = None,
        should_stop: StopCallback | None = None,
    ) -> Reconstruction:
        """Reconstruct one prepared image (see :mod:`softras.intake`); with ``refine_steps > 0`` also fit the mesh
        to the image's own mask with :func:`refine_prediction`."""
        if intake.rgba.shape[-1] != self.image_size:
            raise ValueError(f"the image was prepared at {intake.rgba.shape[-1]} px but the generator expects {self.image_size} px")
        with torch.no_grad():
            images = intake.rgba[None].to(self.device, torch.float32)
            code = self.model.encode(images)
            vertices, colors = self.model.decode(code, images)
            prior = self.model.azimuth_probabilities(code)
        mesh = Mesh(vertices[0].cpu(), self.faces, colors[0].cpu())
        prior = None if prior is None else prior[0].cpu()
        if refine_steps <= 0:
            return Reconstruction(mesh, azimuth_prior=prior)
        result = refine_prediction(mesh.vertices.to(self.device), mesh.faces.to(self.device), intake.mask.to(self.device),
                                   refine_steps, callback=callback, should_stop=should_stop, azimuth_prior=prior)
        return Reconstruction(Mesh(result.vertices.cpu(), mesh.faces, mesh.vertex_colors), result.iou_before, result.iou_after,
                              result.cameras.to("cpu"), prior)

    def reconstruct_file(
        self,
        path: str | os.PathLike,
        mask_path: str | os.PathLike | None = None,
        refine_steps: int = 0,
        bake: BakeSettings | None = None,
    ) -> FileReconstruction:
        """What ``softras reconstruct`` and the batch tool do with one picture file: the intake
        (:func:`softras.intake.load_image`, with an optional mask file), :meth:`reconstruct_intake`, and with ``bake``
        a texture from the full-resolution picture (:func:`softras.texture.project_texture`, through the camera
        refinement ended with, else an estimated one). Raises what :func:`~softras.intake.load_image` raises."""
        intake = load_image(path, mask_path, IntakeSettings(size=self.image_size))
        result = self.reconstruct_intake(intake, refine_steps)
        if bake is None:
            return FileReconstruction(result, intake=intake)
        outcome = project_texture(result.mesh, intake, load_picture(path), result.camera, bake, result.azimuth_prior)
        return FileReconstruction(dataclasses.replace(result, mesh=outcome.mesh), outcome.message, intake)
