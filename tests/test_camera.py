import math

import numpy as np
import pytest
import torch

from softras import Camera

TAN15 = math.tan(math.radians(15))


def readme_projection(points: np.ndarray, azimuth: float, elevation: float, distance: float, size: int) -> np.ndarray:
    """The data README's pinhole formula, written out independently of softras.Camera."""
    a, e = math.radians(azimuth), math.radians(elevation)
    eye = distance * np.array([math.cos(e) * math.sin(a), math.sin(e), -math.cos(e) * math.cos(a)])
    fwd = -eye / np.linalg.norm(eye)
    right = np.cross(fwd, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    cam_up = np.cross(right, fwd)
    rel = points - eye
    xc, yc, zc = rel @ right, rel @ cam_up, -(rel @ fwd)
    ndc = np.stack([xc / -zc, yc / -zc], -1) / TAN15
    return np.stack([(ndc[:, 0] + 1) / 2 * size, (1 - ndc[:, 1]) / 2 * size], -1)


def test_known_points_land_on_expected_pixels():
    cam = Camera.from_angles(distance=2.732, elevation=0.0, azimuth=0.0)
    pts = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.3, 0.0], [0.3, 0.0, 0.0]])
    px = cam.to_pixels(pts, 64, 64)[0]
    offset = 0.3 / (2.732 * TAN15) * 32  # 13.11 px from the centre
    # the origin is the image centre; +Y is up (smaller row); seen from azimuth 0, object +X is on the left
    expected = torch.tensor([[32.0, 32.0], [32.0, 32.0 - offset], [32.0 - offset, 32.0]])
    assert torch.allclose(px, expected, atol=1e-4)


@pytest.mark.parametrize("azimuth,elevation", [(0.0, 30.0), (75.0, 30.0), (200.0, -10.0), (330.0, 60.0)])
def test_projection_matches_data_convention(azimuth, elevation):
    pts = np.random.default_rng(0).uniform(-0.5, 0.5, (20, 3))
    cam = Camera.from_angles(elevation=elevation, azimuth=azimuth, dtype=torch.float64)
    got = cam.to_pixels(torch.from_numpy(pts), 64, 64)[0].numpy()
    np.testing.assert_allclose(got, readme_projection(pts, azimuth, elevation, 2.732, 64), atol=1e-9)


def test_depth_is_distance_along_view_axis():
    cam = Camera.from_angles(distance=3.0, elevation=30.0, azimuth=40.0)
    depth = cam.project(torch.zeros(1, 3))[0, 0, 2]
    assert depth.item() == pytest.approx(3.0, abs=1e-5)


def test_aspect_and_shift():
    cam = Camera.look_at(torch.tensor([0.0, 0.0, -2.0]), aspect=2.0, shift=torch.tensor([0.1, -0.2]))
    ndc = cam.project(torch.tensor([[-0.5, 0.5, 0.0]]))[0, 0]
    tan = math.tan(math.radians(15))
    assert ndc[0].item() == pytest.approx(0.5 / 2.0 / (tan * 2.0) + 0.1, abs=1e-6)
    assert ndc[1].item() == pytest.approx(0.5 / 2.0 / tan - 0.2, abs=1e-6)


def test_batched_angles_broadcast():
    cam = Camera.from_angles(azimuth=torch.arange(4.0) * 90)
    assert cam.batch_size == 4
    assert torch.allclose(cam.eye.norm(dim=1), torch.full((4,), 2.732))


@pytest.mark.parametrize(
    "kwargs,match",
    [({"distance": 0.0}, "distance"), ({"fov": 180.0}, "fov"), ({"aspect": -1.0}, "aspect")],
)
def test_bad_camera_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Camera.from_angles(**kwargs)


def test_up_parallel_to_view_is_rejected():
    cam = Camera.look_at(torch.tensor([0.0, 3.0, 0.0]))
    with pytest.raises(ValueError, match="up"):
        cam.project(torch.zeros(1, 3))


def test_widened_camera_puts_points_where_the_crop_box_maps_them():
    camera = Camera.from_angles(elevation=25.0, azimuth=40.0)
    points = torch.rand(100, 3) - 0.5
    box, width, height = (30, -10, 130, 90), 200, 150  # a square window reaching above the picture
    inner = camera.to_pixels(points, 64, 64)[0]
    outer = camera.widened(box, width, height).to_pixels(points, height, width)[0]
    expected = torch.stack([box[0] + inner[:, 0] / 64 * 100, box[1] + inner[:, 1] / 64 * 100], dim=1)
    assert torch.allclose(outer, expected, atol=1e-3)
    assert torch.allclose(camera.widened(box, width, height).project(points)[..., 2], camera.project(points)[..., 2])
    with pytest.raises(ValueError):
        camera.widened((10, 10, 10, 20), width, height)
