"""Cycles training-view renders (softras_blender.render / .training_views) agree with the softras camera.

Needs the ``bpy`` module (Blender as a Python module, pinned in requirements.txt). Runs in a few seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from softras import Camera
from softras.colorspace import srgb_to_linear
from softras_blender.convert import y_up_to_z_up
from softras_blender import render as R
from datagen import training_views as TV

from conftest import SHARED_SHAPES

SIZE = 64


def unit_cube(half: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """(8, 3) float32 vertices of the cube [-half, half]^3 (Y-up frame) and (12, 3) int32 triangles.

    Triangles 2k, 2k+1 form quad k in the order -x, +x, -y, +y, -z, +z.
    """
    v = np.array([[x, y, z] for x in (-half, half) for y in (-half, half) for z in (-half, half)], np.float32)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    f = np.array([t for q in quads for t in ((q[0], q[1], q[2]), (q[0], q[2], q[3]))], np.int32)
    return v, f


def alpha_bbox(image: np.ndarray) -> np.ndarray:
    """Continuous bounding box (col_min, row_min, col_max, row_max) of the pixels with alpha >= 128."""
    mask = image[..., 3] >= 128
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    assert rows.size and cols.size, "empty silhouette"
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float64)


@pytest.fixture(scope="module")
def scene():
    return R.prepare_scene(size=SIZE, samples=16)


def test_y_up_to_z_up_and_srgb():
    p = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, -1.0]])
    np.testing.assert_array_equal(y_up_to_z_up(p), [[1.0, -3.0, 2.0], [0.0, 1.0, 0.0]])
    lin = srgb_to_linear(np.array([0, 10, 128, 255]) / 255)
    np.testing.assert_allclose(lin, [0.0, 10 / 255 / 12.92, ((128 / 255 + 0.055) / 1.055) ** 2.4, 1.0], rtol=1e-6)


def test_silhouette_matches_softras_camera(scene):
    v, f = unit_cube(0.3)  # (a full unit cube's corners leave the 30-degree frame at this distance)
    colors = np.full((len(f), 3), 180, np.uint8)
    elevations, azimuths = [30.0, 30.0], [0.0, 37.0]
    images = R.render_views(v, f, colors, elevations, azimuths, size=SIZE, scene=scene)
    assert images.shape == (2, SIZE, SIZE, 4) and images.dtype == np.uint8
    cam = Camera.from_angles(R.DEFAULT_DISTANCE, torch.tensor(elevations), torch.tensor(azimuths))
    px = cam.to_pixels(torch.from_numpy(v), SIZE, SIZE).numpy()  # (2, 8, 2) (column, row)
    for k in range(2):
        expected = np.array([px[k, :, 0].min(), px[k, :, 1].min(), px[k, :, 0].max(), px[k, :, 1].max()])
        np.testing.assert_allclose(alpha_bbox(images[k]), expected, atol=1.0)
        assert images[k, 0, 0, 3] == 0  # transparent background


def test_red_face_renders_red(scene):
    v, f = unit_cube(0.4)
    colors = np.full((len(f), 3), 128, np.uint8)
    colors[8:10] = (255, 0, 0)  # the -z quad, which faces the azimuth-0 camera
    image = R.render_views(v, f, colors, 30.0, 0.0, size=SIZE, scene=scene)[0]
    cam = Camera.from_angles(R.DEFAULT_DISTANCE, 30.0, 0.0)
    col, row = cam.to_pixels(torch.tensor([[0.0, -0.1, -0.4]]), SIZE, SIZE)[0, 0].numpy()  # on the red face
    r, g, b, a = (int(x) for x in image[int(row), int(col)])
    assert a == 255
    assert r >= 170 and g <= 40 and b <= 40, (r, g, b)
    # the top (+y) face is grey and lit: neutral and close to its albedo
    col, row = cam.to_pixels(torch.tensor([[0.0, 0.4, 0.0]]), SIZE, SIZE)[0, 0].numpy()
    r, g, b, a = (int(x) for x in image[int(row), int(col)])
    assert a == 255 and max(r, g, b) - min(r, g, b) <= 6 and 100 <= r <= 150, (r, g, b)


def _synthetic_source(path: Path) -> dict[str, np.ndarray]:
    """Six small coloured cubes of category 'box' (ids box0..box5) plus one broken model (index 2)."""
    verts, faces, colors, vo, fo = [], [], [], [0], [0]
    for i in range(7):
        v, f = unit_cube(0.2 + 0.04 * i)
        if i == 2:
            f = f.copy()
            f[0, 0] = 99  # out-of-range vertex -> must be skipped
        verts.append(v)
        faces.append(f)
        colors.append(np.tile(np.array([[40 * i, 200, 100]], np.uint8), (len(f), 1)))
        vo.append(vo[-1] + len(v))
        fo.append(fo[-1] + len(f))
    data = dict(
        vertices=np.concatenate(verts), faces=np.concatenate(faces), face_colors=np.concatenate(colors),
        vert_offsets=np.array(vo, np.int64), face_offsets=np.array(fo, np.int64),
        category=np.array(["box"] * 6 + ["ball"]), model_id=np.array([f"box{i}" for i in range(6)] + ["ball0"]),
    )
    np.savez_compressed(path, **data)
    return data


def _check_output(out: Path, n_models: int, n_views: int) -> dict[str, np.ndarray]:
    with np.load(out) as z:  # no pickle needed
        d = {k: z[k] for k in z.files}
    expected_keys = {"images", "elevations", "azimuths", "model_index", "category", "model_id", "split", "distance", "fov"}
    assert set(d) == expected_keys
    assert d["images"].dtype == np.uint8 and d["images"].shape == (n_models, n_views, SIZE, SIZE, 4)
    assert d["elevations"].dtype == np.float32 and d["elevations"].shape == (n_views,)
    assert d["azimuths"].dtype == np.float32 and d["azimuths"].shape == (n_views,)
    assert d["model_index"].dtype == np.int64 and d["model_index"].shape == (n_models,)
    for key in ("category", "model_id", "split"):
        assert d[key].dtype.kind == "U" and d[key].shape == (n_models,)
    assert set(d["split"]) <= {"train", "val"}
    assert d["distance"].shape == () and d["distance"].dtype == np.float32 and np.isclose(d["distance"], 2.732)
    assert d["fov"].shape == () and np.isclose(d["fov"], 30.0)
    assert (d["images"][..., 3].reshape(n_models * n_views, -1).max(1) == 255).all()  # every view shows the model
    assert not list(out.parent.glob("*.parts")) and not list(out.parent.glob(".*.tmp-*"))
    return d


def test_training_views_synthetic(tmp_path):
    src = tmp_path / "src.npz"
    data = _synthetic_source(src)
    out = tmp_path / "views.npz"
    assert TV.main(["--data", str(src), "--out", str(out), "--azimuth-step", "180", "--elevations", "30", "--samples", "8"]) == 0
    d = _check_output(out, n_models=6, n_views=2)
    np.testing.assert_array_equal(d["model_index"], [0, 1, 3, 4, 5, 6])  # broken model 2 skipped
    np.testing.assert_array_equal(d["azimuths"], [0.0, 180.0])
    np.testing.assert_array_equal(d["model_id"], data["model_id"][d["model_index"]])
    # by-model split, stratified per category: 'box' has 6 models -> exactly one val, recomputable
    expected = TV.split_by_model(data["category"], data["model_id"], 0.1)
    np.testing.assert_array_equal(d["split"], expected[d["model_index"]])
    assert (expected[data["category"] == "box"] == "val").sum() == 1
    assert expected[data["category"] == "ball"][0] == "train"  # categories with < 5 models: no val required


def _real_data() -> Path | None:
    return SHARED_SHAPES if SHARED_SHAPES.exists() else None


def test_training_views_limit2(tmp_path):
    src = _real_data()
    if src is None:  # fall back to the synthetic set rather than skipping
        src = tmp_path / "src.npz"
        _synthetic_source(src)
    out = tmp_path / "sub" / "views_e30.npz"
    rc = TV.main(["--data", str(src), "--out", str(out), "--limit", "2", "--azimuth-step", "120", "--samples", "8"])
    assert rc == 0
    d = _check_output(out, n_models=2, n_views=3)
    np.testing.assert_array_equal(d["model_index"], [0, 1])
    np.testing.assert_array_equal(d["elevations"], [30.0, 30.0, 30.0])
    with np.load(src) as z:
        full = TV.split_by_model(z["category"], z["model_id"], 0.1)
        np.testing.assert_array_equal(d["category"], z["category"][:2])
    np.testing.assert_array_equal(d["split"], full[:2])  # split is by model over the whole source
