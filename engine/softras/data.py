"""Training data: shapes with voxels, cached RGBA views, and batches of two views per object.

A *views file* (``.npz``) holds renders of a shapes file in the project camera convention:

- ``images`` uint8 (N, V, S, S, 4): straight sRGB colour and alpha, row 0 at the top;
- ``elevations``, ``azimuths`` float32 (V,), degrees; ``distance`` (object-frame units) and ``fov`` (degrees,
  full vertical angle) scalars shared by all views, or float32 (V,) per view;
- ``model_index`` int64 (N,) into the shapes file; ``category``, ``model_id``, ``split`` ('train' / 'val') str (N,).

Cycles renders come from ``python -m datagen.training_views``; :func:`render_views` makes the same file
with the engine's own rasterizer (no Blender needed: tests, quick experiments, evaluation without Cycles).
:func:`compact_views` writes a views file whose images are WebP-coded one by one (``webp`` uint8 bytes,
``webp_offsets`` int64 (N * V + 1,), ``image_shape`` int64 (5,)) instead of ``images``: a quarter of the size at
quality 90 (alpha lossless), to carry views to a GPU machine; :class:`ViewSet` reads both kinds. A views file
written without compression (:func:`save_views` with ``compress=False``, or streamed by :func:`write_views_stream`)
is memory-mapped: views of thousands of shapes are read from disk as batches need them, not held in memory.
"""

from __future__ import annotations

import copy
import hashlib
import io
import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from softras.camera import Camera
from softras.fileio import atomic_write
from softras.inputs import InputSettings, generator_inputs
from softras.intake import resize_rgba
from softras.mesh import Mesh
from softras.raster import RasterSettings, render_rgba

__all__ = ["Shapes", "ViewSet", "TwoViewBatch", "sample_two_views", "render_views", "split_by_model", "save_views",
           "write_views_stream", "compact_views"]


@dataclass
class Shapes:
    """The contents of a shapes file (see ``shared/data/README.md``), numpy arrays as stored."""

    vertices: np.ndarray
    faces: np.ndarray
    face_colors: np.ndarray
    vert_offsets: np.ndarray
    face_offsets: np.ndarray
    voxels_shell: np.ndarray
    category: np.ndarray
    model_id: np.ndarray

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Shapes":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"shapes file not found: {path}")
        try:
            with np.load(path) as z:
                return cls(**{k: z[k] for k in cls.__dataclass_fields__})
        except (KeyError, ValueError, OSError) as e:
            raise ValueError(f"{path}: not a shapes file ({e})") from None

    def __len__(self) -> int:
        return len(self.category)

    def mesh(self, i: int) -> tuple[Mesh, torch.Tensor]:
        """Model i as a Mesh (object frame) and its per-face sRGB colours (F, 3) float32 in [0, 1]."""
        v = self.vertices[self.vert_offsets[i] : self.vert_offsets[i + 1]]
        f = self.faces[self.face_offsets[i] : self.face_offsets[i + 1]]
        c = self.face_colors[self.face_offsets[i] : self.face_offsets[i + 1]]
        return Mesh(torch.from_numpy(v.copy()), torch.from_numpy(f.astype(np.int64))), torch.from_numpy(c.astype(np.float32) / 255)


def split_by_model(category: np.ndarray, model_id: np.ndarray, val_fraction: float = 0.1) -> np.ndarray:
    """Deterministic train/val split by model, stratified per category.

    Within each category the models are ordered by ``sha256(model_id)`` (hex digest; ties broken by index) and
    the first ``round(val_fraction * n)`` become ``'val'``; when ``val_fraction > 0`` every category with
    ``n >= 5`` models gets at least one and at most ``n - 1`` val models. The assignment of a model depends only
    on its category's member list, not on the order of the source file or on which models are rendered.

    Args:
        category, model_id: str (N,) arrays of the source npz.
        val_fraction: fraction of each category's models to hold out, in [0, 1).
    Returns:
        str (N,) array of ``'train'`` / ``'val'``.
    """
    category, model_id = np.asarray(category).astype(str), np.asarray(model_id).astype(str)
    if category.shape != model_id.shape or category.ndim != 1:
        raise ValueError("category and model_id must be 1-D arrays of the same length")
    if not (0.0 <= val_fraction < 1.0):
        raise ValueError("val_fraction must lie in [0, 1)")
    split = np.full(len(category), "train", dtype="<U5")
    for cat in np.unique(category):
        idx = np.flatnonzero(category == cat)
        keys = [hashlib.sha256(model_id[i].encode()).hexdigest() for i in idx]
        order = idx[np.lexsort((idx, np.array(keys)))]  # ties (duplicate ids) broken by index
        n = len(idx)
        n_val = int(round(val_fraction * n))
        if val_fraction > 0 and n >= 5:
            n_val = min(max(n_val, 1), n - 1)
        split[order[:n_val]] = "val"
    return split


def save_views(path: str | os.PathLike, compress: bool = True, **arrays: np.ndarray) -> Path:
    """Write a views file atomically: a compressed npz, or with ``compress=False`` a plain one that
    :class:`ViewSet` memory-maps."""
    buffer = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buffer, **arrays)
    return atomic_write(path, lambda fh: fh.write(buffer.getvalue()))


def write_views_stream(path: str | os.PathLike, images: np.ndarray, **arrays: np.ndarray) -> Path:
    """Write a views file atomically without holding its images in memory twice: ``images`` (N, V, S, S, 4) uint8,
    e.g. a memory-mapped ``.npy`` rendered in parts, is streamed into an uncompressed npz member (so that
    :class:`ViewSet` memory-maps it); ``arrays`` are the file's other keys."""
    def write(fh) -> None:
        with zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, value in arrays.items():
                with zf.open(f"{name}.npy", "w") as member:
                    np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)
            with zf.open("images.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, images, allow_pickle=False)

    return atomic_write(path, write)


def _mapped_member(path: Path, name: str) -> np.ndarray | None:
    """The npz member ``name`` memory-mapped (copy-on-write) where it is stored uncompressed; else None."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(f"{name}.npy")
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        local = fh.read(30)
        name_length, extra_length = struct.unpack("<HH", local[26:30])
        fh.seek(info.header_offset + 30 + name_length + extra_length)
        version = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(fh)
        offset = fh.tell()
    return np.memmap(path, dtype=dtype, mode="c", offset=offset, shape=shape, order="F" if fortran else "C")


def compact_views(path: str | os.PathLike, out: str | os.PathLike, split: str | None = None, quality: int | None = 90) -> Path:
    """Write the views file ``path`` (models of ``split``; all when None) to ``out`` with WebP-coded images: colour
    at ``quality`` (1-100; None: lossless), alpha always lossless. Returns ``out``."""
    from PIL import Image

    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    keep = np.ones(len(arrays["split"]), bool) if split is None else arrays["split"] == split
    if not keep.any():
        raise ValueError(f"{path}: no models in split {split!r}")
    for key in ("images", "model_index", "category", "model_id", "split"):
        arrays[key] = arrays[key][keep]
    images = arrays.pop("images")
    options = {"lossless": True, "exact": True} if quality is None else {"quality": int(quality), "alpha_quality": 100}
    coded, offsets = [], [0]
    for image in images.reshape(-1, *images.shape[2:]):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="WEBP", method=4, **options)
        coded.append(buffer.getvalue())
        offsets.append(offsets[-1] + len(coded[-1]))
    arrays.update(webp=np.frombuffer(b"".join(coded), np.uint8), webp_offsets=np.asarray(offsets, np.int64),
                  image_shape=np.asarray(images.shape, np.int64))
    return save_views(out, **arrays)


def _decode_webp(z, keep: np.ndarray) -> np.ndarray:
    """uint8 (K, V, S, S, 4) images of the kept models of a :func:`compact_views` file ``z``."""
    from PIL import Image

    _, v, *shape = (int(x) for x in z["image_shape"])
    data, offsets = z["webp"], z["webp_offsets"]
    models = np.nonzero(keep)[0]
    out = np.empty((len(models), v, *shape), np.uint8)
    for k, m in enumerate(models):
        for j in range(v):
            i = m * v + j
            out[k, j] = np.asarray(Image.open(io.BytesIO(data[offsets[i]:offsets[i + 1]].tobytes())).convert("RGBA"))
    return out


PLAIN_LIGHT = (0.4, 1.0, -0.6, 0.7)
"""The engine renders' default light: key-light direction (object frame, towards the light) and ambient share."""


def _lit_face_colors(vertices: torch.Tensor, faces: torch.Tensor, colors: torch.Tensor, eye: torch.Tensor,
                     light: tuple[float, float, float, float] | np.ndarray = PLAIN_LIGHT) -> torch.Tensor:
    """Face colours (F, 3) under ambient ``light[3]`` plus a key light from direction ``light[:3]`` (object frame),
    two-sided."""
    tri = vertices[faces]
    n = torch.nn.functional.normalize(torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), dim=-1)
    n = n * torch.sign((n * (eye - tri.mean(1))).sum(-1, keepdim=True) + 1e-12)  # face the camera
    direction = torch.nn.functional.normalize(torch.tensor(np.asarray(light[:3], np.float32)), dim=0)
    ambient = float(light[3])
    return (colors * (ambient + (1 - ambient) * (n @ direction).clamp(min=0))[:, None]).clamp(0, 1)


def render_views(
    shapes: Shapes, indices: list[int] | np.ndarray, elevations: list[float], azimuths: list[float], size: int = 64,
    distance: float | np.ndarray = 2.732, fov: float | np.ndarray = 30.0, lights: np.ndarray | None = None,
) -> np.ndarray:
    """Render views of shapes with the engine's rasterizer (nearly hard edges, one key light and ambient).

    ``elevations`` and ``azimuths`` (degrees) give one camera per view, both of length V; ``distance`` and ``fov``
    (degrees, full angle) are scalars or (V,) per view. ``lights``: float (len(indices), V, 4), each render's
    key-light direction (object frame) and ambient share; None: :data:`PLAIN_LIGHT` for all.
    Returns uint8 (len(indices), V, size, size, 4).
    """
    el, az = np.asarray(elevations, np.float32), np.asarray(azimuths, np.float32)
    if el.shape != az.shape or el.ndim != 1:
        raise ValueError("elevations and azimuths must be 1-d and of equal length")
    dist, fovs = (np.broadcast_to(np.asarray(x, np.float32), el.shape) for x in (distance, fov))
    if lights is not None and np.shape(lights) != (len(indices), el.size, 4):
        raise ValueError(f"lights must have shape ({len(indices)}, {el.size}, 4), got {np.shape(lights)}")
    settings = RasterSettings(size, sigma=1e-7 * (64 / size) ** 2, gamma=1e-5)
    out = np.zeros((len(indices), el.size, size, size, 4), dtype=np.uint8)
    for n, i in enumerate(indices):
        mesh, colors = shapes.mesh(int(i))
        for k in range(el.size):
            cam = Camera.from_angles(float(dist[k]), float(el[k]), float(az[k]), fov=float(fovs[k]))
            light = PLAIN_LIGHT if lights is None else lights[n, k]
            lit = _lit_face_colors(mesh.vertices, mesh.faces, colors, cam.eye[0], light)
            with torch.no_grad():
                rgba = render_rgba(mesh.vertices, mesh.faces, cam, settings, face_colors=lit)[0]
            out[n, k] = np.round(rgba.numpy() * 255).astype(np.uint8)
    return out


class ViewSet:
    """The views of one split, in memory as uint8; cameras per view (``elevations``, ``azimuths`` degrees,
    ``distances``, ``fovs`` degrees: (V,) float32)."""

    def __init__(self, path: str | os.PathLike, split: str | None = "train") -> None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"views file not found: {path} (render it with `python -m datagen.training_views`)")
        with np.load(path) as z:
            keep = np.ones(len(z["split"]), bool) if split is None else z["split"] == split
            if not keep.any():
                raise ValueError(f"{path}: no models in split {split!r}")
            if "images" not in z.files:
                images = _decode_webp(z, keep)
            else:
                mapped = _mapped_member(path, "images")
                if mapped is None:
                    images = z["images"][keep]
                else:  # read from disk as batches need them; a split of the file is a copy
                    images = mapped if keep.all() else np.ascontiguousarray(mapped[keep])
            self.images = torch.from_numpy(images)  # (N, V, S, S, 4) uint8
            self.elevations = torch.from_numpy(z["elevations"].astype(np.float32))
            self.azimuths = torch.from_numpy(z["azimuths"].astype(np.float32))
            self.model_index = z["model_index"][keep]
            self.category = z["category"][keep]
            self.model_id = z["model_id"][keep]
            views = len(self.elevations)  # distance and fov: one for all views or one per view
            self.distances = torch.from_numpy(np.broadcast_to(z["distance"], (views,)).astype(np.float32))
            self.fovs = torch.from_numpy(np.broadcast_to(z["fov"], (views,)).astype(np.float32))

    def concat(self, other: "ViewSet") -> "ViewSet":
        """The models of both sets in one, for training; ``other``'s models get ``model_index`` -1.

        Both must have the same cameras (elevations, azimuths, distance, fov) and image size.
        """
        same = (torch.equal(self.elevations, other.elevations) and torch.equal(self.azimuths, other.azimuths)
                and torch.equal(self.distances, other.distances) and torch.equal(self.fovs, other.fovs)
                and self.image_size == other.image_size)
        if not same:
            raise ValueError("view sets must have the same cameras and image size to be concatenated")
        merged = copy.copy(self)
        merged.images = torch.cat([self.images, other.images])
        merged.model_index = np.concatenate([self.model_index, np.full(other.num_models, -1)])
        merged.category = np.concatenate([self.category, other.category])
        merged.model_id = np.concatenate([self.model_id, other.model_id])
        return merged

    @property
    def num_models(self) -> int:
        return self.images.shape[0]

    @property
    def num_views(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> int:
        return self.images.shape[2]

    def views_at(self, elevations: list[float] | None) -> torch.Tensor:
        """Indices (K,) int64 of the views whose elevation (degrees) is in ``elevations``; all views for None."""
        if elevations is None:
            return torch.arange(self.num_views)
        chosen = torch.isclose(self.elevations[:, None], torch.tensor(elevations, dtype=torch.float32)[None], atol=1e-3).any(1)
        if not chosen.any():
            found = sorted({round(float(e), 3) for e in self.elevations})
            raise ValueError(f"no views at elevations {list(elevations)}; the views file has {found}")
        return torch.nonzero(chosen).flatten()

    def model_weights(self, category_balance: float) -> torch.Tensor:
        """Sampling weight (N,) float64 of each model: ``n ** -category_balance`` for a category of n models.

        0 draws every model equally often; 1 draws every category equally often.
        """
        if not 0.0 <= category_balance <= 1.0:
            raise ValueError("category_balance must lie in [0, 1]")
        _, inverse, counts = np.unique(self.category, return_inverse=True, return_counts=True)
        return torch.from_numpy(counts[inverse].astype(np.float64) ** -category_balance)

    def cameras(self, views: torch.Tensor, mirrored: torch.Tensor | None = None) -> Camera:
        """Cameras of view indices (B,) int64; where ``mirrored`` (B,) bool, the azimuth is negated.

        A view of a shape mirrored through its x = 0 plane at azimuth -a is the view at azimuth a flipped
        left-right, so flipped images with these cameras show the mirrored shape.
        """
        azimuths = self.azimuths[views]
        if mirrored is not None:
            azimuths = torch.where(mirrored, -azimuths, azimuths)
        return Camera.from_angles(self.distances[views], self.elevations[views], azimuths, fov=self.fovs[views])

    def images_chw(self, models: torch.Tensor, views: torch.Tensor, size: int | None = None) -> torch.Tensor:
        """(B, 4, S, S) float32 straight RGBA in [0, 1] for model and view indices (B,); resized to ``size`` when
        given and different (:func:`softras.intake.resize_rgba`, the intake's own resampling)."""
        images = self.images[models, views].permute(0, 3, 1, 2).float() / 255
        return images if size in (None, self.image_size) else resize_rgba(images, size)

    def pictures(self, models: torch.Tensor, views: torch.Tensor) -> np.ndarray:
        """uint8 (B, H, W, 4) renders as stored, row 0 at the top: pictures for the intake."""
        return self.images[models, views].numpy()


@dataclass
class TwoViewBatch:
    """Two views of each of B objects: ``inputs`` (view a through the intake) feed the generator; the renders of
    views a and b at the rasterizer's resolution supervise it from their cameras."""

    inputs: torch.Tensor  # (B, 4, S, S) float32, the generator's input
    images_a: torch.Tensor  # (B, 4, S, S) float32, supervision from cameras_a
    images_b: torch.Tensor
    cameras_a: Camera
    cameras_b: Camera
    models: torch.Tensor  # (B,) int64 into the view set
    mirrored: torch.Tensor  # (B,) bool: the object is the model's mirror image (x -> -x)
    azimuths_a: torch.Tensor  # (B,) float32 degrees: view a's azimuth (negated where mirrored), the input's viewpoint
    # inputs whose augmented picture the intake refused, so that the render went in unaugmented
    # (softras.inputs.generator_inputs); training counts them in its log and its run record
    augment_fallbacks: int = 0

    @staticmethod
    def cat(batches: "list[TwoViewBatch]") -> "TwoViewBatch":
        """One batch of the objects of several (each batch's ``models`` index its own view set)."""
        join = lambda name: torch.cat([getattr(b, name) for b in batches])  # noqa: E731
        return TwoViewBatch(join("inputs"), join("images_a"), join("images_b"),
                            Camera.cat([b.cameras_a for b in batches]), Camera.cat([b.cameras_b for b in batches]),
                            join("models"), join("mirrored"), join("azimuths_a"),
                            sum(b.augment_fallbacks for b in batches))

    def to(self, device: torch.device) -> "TwoViewBatch":
        return TwoViewBatch(self.inputs.to(device), self.images_a.to(device), self.images_b.to(device),
                            self.cameras_a.to(device), self.cameras_b.to(device), self.models.to(device),
                            self.mirrored.to(device), self.azimuths_a.to(device), self.augment_fallbacks)


def sample_two_views(views: ViewSet, batch_size: int, generator: torch.Generator, size: int,
                     input_views: torch.Tensor | None = None, mirror: bool = False,
                     model_weights: torch.Tensor | None = None, inputs: InputSettings | None = None) -> TwoViewBatch:
    """Random objects, each with two distinct random views; deterministic given the generator's state.

    Objects are drawn with replacement in proportion to ``model_weights`` (N,) (uniformly when None, see
    :meth:`ViewSet.model_weights`).
    View a is drawn from ``input_views`` (K,) int64 view indices (all views when None); view b, which only
    supervises, from all the other views. With ``mirror``, half of the objects (at random) are replaced by their
    mirror images through the x = 0 plane: both images flipped left-right, azimuths negated (exact for
    silhouettes; the light comes from the other side). View a's render becomes the generator's input through the
    intake (:func:`softras.inputs.generator_inputs`, with ``inputs``' jitter and augmentation when given); both
    renders are resized to ``size`` to supervise, their colours changed as the input's were (exposure, white
    balance, gamma), so that the colour term asks for the colours the input shows. The batch counts the inputs whose
    augmented picture the intake refused (``augment_fallbacks``: those went in unaugmented).
    """
    if model_weights is None:
        models = torch.randint(views.num_models, (batch_size,), generator=generator)
    else:
        models = torch.multinomial(model_weights, batch_size, replacement=True, generator=generator)
    if input_views is None:
        va = torch.randint(views.num_views, (batch_size,), generator=generator)
    else:
        va = input_views[torch.randint(len(input_views), (batch_size,), generator=generator)]
    vb = (va + torch.randint(1, views.num_views, (batch_size,), generator=generator)) % views.num_views
    images_a, images_b = views.images_chw(models, va, size), views.images_chw(models, vb, size)
    pictures = views.pictures(models, va)
    flip = torch.zeros(batch_size, dtype=torch.bool)
    if mirror:
        flip = torch.rand(batch_size, generator=generator) < 0.5
        images_a = torch.where(flip[:, None, None, None], images_a.flip(-1), images_a)
        images_b = torch.where(flip[:, None, None, None], images_b.flip(-1), images_b)
        pictures = np.where(flip.numpy()[:, None, None, None], pictures[:, :, ::-1], pictures)
    rng = None if inputs is None else np.random.default_rng(int(torch.randint(2**62, (1,), generator=generator)))
    prepared, changes, fallbacks = generator_inputs(pictures, size, inputs, rng)
    for k, change in enumerate(changes):  # the colour targets show the object's colours as its input shows them
        if change is not None:
            for images in (images_a, images_b):
                images[k, :3] = torch.from_numpy(change(images[k, :3].permute(1, 2, 0).numpy())).permute(2, 0, 1)
    azimuths = torch.where(flip, -views.azimuths[va], views.azimuths[va])
    return TwoViewBatch(prepared, images_a, images_b, views.cameras(va, flip), views.cameras(vb, flip), models, flip,
                        azimuths, fallbacks)
