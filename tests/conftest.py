"""Shared fixtures: a tiny synthetic shapes file and its views, so no test needs the real training data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from softras.data import Shapes, render_views, save_views
from softras.mesh import icosphere
from softras.voxelize import voxelize

SHARED_SHAPES = Path(__file__).resolve().parents[2] / "shared" / "data" / "shapes_train.npz"  # ../shared beside the clone


@pytest.fixture(autouse=True, scope="session")
def single_thread():
    """Tests use tiny tensors: one intra-op thread is as fast, reproducible, and never stalls on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _box(sx: float, sy: float, sz: float) -> tuple[np.ndarray, np.ndarray]:
    v = np.array([[x * sx, y * sy, z * sz] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)], np.float32)
    f = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                  [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]], np.int32)
    return v, f


def two_coloured_box() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A 0.8 x 0.5 x 0.4 box (symmetric about x = 0 and z = 0, so azimuths a and a + 180 see the same outline),
    its +z side red and its -z side blue, the rest grey: (vertices (24, 3), faces (12, 3), colours (24, 3))."""
    half = torch.tensor([0.4, 0.25, 0.2])
    red, blue, grey = (0.9, 0.1, 0.1), (0.1, 0.2, 0.9), (0.6, 0.6, 0.6)
    vertices, faces, colors = [], [], []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            u, w = [a for a in range(3) if a != axis]
            for du, dw in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
                corner = torch.zeros(3)
                corner[axis], corner[u], corner[w] = sign, du, dw
                vertices.append(corner * half)
                colors.append(torch.tensor(red if (axis, sign) == (2, 1.0) else blue if (axis, sign) == (2, -1.0) else grey))
            k = len(vertices) - 4
            faces += [[k, k + 1, k + 2], [k, k + 2, k + 3]]
    return torch.stack(vertices), torch.tensor(faces), torch.stack(colors)


def make_shapes_file(path) -> None:
    """Six small coloured shapes in two categories, saved in the shapes-file layout of shared/data."""
    sphere = icosphere(1, 0.5)
    meshes = [_box(1, 1, 1), _box(0.4, 1, 0.4), _box(1, 0.3, 0.7), _box(0.6, 0.6, 1),
              (sphere.vertices.numpy(), sphere.faces.numpy().astype(np.int32)),
              (sphere.vertices.numpy() * np.array([1, 0.5, 1], np.float32), sphere.faces.numpy().astype(np.int32))]
    categories = ["box", "box", "box", "box", "ball", "ball"]
    rng = np.random.default_rng(0)
    colors = [np.repeat(rng.integers(0, 256, (1, 3)), len(f), 0).astype(np.uint8) for _, f in meshes]
    shell = [np.packbits(voxelize(torch.from_numpy(v), torch.from_numpy(f.astype(np.int64))).numpy().ravel()) for v, f in meshes]
    np.savez_compressed(
        path,
        vertices=np.concatenate([v for v, _ in meshes]), faces=np.concatenate([f for _, f in meshes]),
        face_colors=np.concatenate(colors),
        vert_offsets=np.cumsum([0] + [len(v) for v, _ in meshes]), face_offsets=np.cumsum([0] + [len(f) for _, f in meshes]),
        voxels=np.stack(shell), voxels_shell=np.stack(shell), category=np.array(categories),
        model_id=np.array([f"m{i}" for i in range(len(meshes))]), source=np.array(["test"] * len(meshes)),
        has_color=np.ones(len(meshes), bool),
    )


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """(shapes path, views path): 6 shapes, 8 views each at 32 x 32; models 1 and 5 are the validation split."""
    root = tmp_path_factory.mktemp("data")
    shapes_path = root / "shapes.npz"
    make_shapes_file(shapes_path)
    shapes = Shapes.load(shapes_path)
    azimuths = np.arange(0, 360, 45, dtype=np.float32)
    elevations = np.full_like(azimuths, 30.0)
    index = np.arange(len(shapes))
    images = render_views(shapes, index, elevations, azimuths, size=32)
    split = np.array(["train", "val", "train", "train", "train", "val"])
    views_path = save_views(root / "views.npz", images=images, elevations=elevations, azimuths=azimuths, model_index=index,
                            category=shapes.category, model_id=shapes.model_id, split=split,
                            distance=np.float32(2.732), fov=np.float32(30.0))
    return shapes_path, views_path


TINY_MODEL = dict(image_size=32, template_level=1, conv_channels=(8, 16, 32), encoder_fc=(64, 64, 32),
                  decoder_fc=(64, 128), palette_size=4, color_hidden=16, color_sample_size=8)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """An untrained 32-px generator (42-vertex template) saved as a weights file."""
    from softras.model import Generator, GeneratorConfig, save_weights

    torch.manual_seed(0)
    return save_weights(Generator(GeneratorConfig(**TINY_MODEL)), tmp_path_factory.mktemp("weights") / "tiny.pt")
