"""Silhouette refinement and viewpoint estimation (softras.refine) on small procedural shapes."""

import math

import pytest
import torch

from softras import Camera, icosphere
from softras.losses import soft_iou
from softras.raster import RasterSettings, render_silhouette
from softras.refine import RefineSettings, estimate_viewpoint, refine, refine_to_image
from softras.voxelize import voxel_iou, voxelize

from conftest import two_coloured_box

BOX_FACES = torch.tensor([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                          [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])


def boxes(*parts: tuple[tuple[float, float, float], tuple[float, float, float]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Union (as separate closed surfaces) of axis-aligned boxes given as (centre, size)."""
    corners = torch.tensor([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
    v = torch.cat([corners * torch.tensor(size) + torch.tensor(centre) for centre, size in parts])
    f = torch.cat([BOX_FACES + 8 * i for i in range(len(parts))])
    return v, f


def chair(arm: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Seat, back (towards +z) and four legs, 1 unit high; ``arm`` adds an armrest on the +x side only."""
    parts = [((0, 0, 0), (0.6, 0.06, 0.6)), ((0, 0.265, 0.27), (0.6, 0.47, 0.06))]
    parts += [((x, -0.265, z), (0.06, 0.47, 0.06)) for x in (-0.27, 0.27) for z in (-0.27, 0.27)]
    if arm:
        parts.append(((0.27, 0.2, 0.0), (0.06, 0.06, 0.5)))
    return boxes(*parts)


def silhouettes(v: torch.Tensor, f: torch.Tensor, cameras: Camera, size: int) -> torch.Tensor:
    return render_silhouette(v, f, cameras, RasterSettings(size, sigma=3e-5 * (64 / size) ** 2))


def measure(v: torch.Tensor, f: torch.Tensor, masks: torch.Tensor, cameras: Camera) -> float:
    """The measure of RefineResult.iou_* with default settings."""
    return soft_iou(silhouettes(v, f, cameras, masks.shape[-1]), masks).mean().item()


def angle_error(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


def test_one_view_reaches_iou_090():
    camera = Camera.from_angles(elevation=20.0, azimuth=40.0)
    mask = silhouettes(*chair(), camera, 64)
    sphere = icosphere(3, 0.35)
    steps = []
    result = refine(sphere.vertices, sphere.faces, mask, camera, callback=lambda s, n, iou: steps.append((s, n, iou)))
    assert result.iou_before < 0.6
    assert result.iou_after >= 0.9, result
    assert result.steps_run == 200 and [s for s, _, _ in steps] == list(range(1, 201)) and steps[-1][1] == 200
    assert result.vertices.shape == (642, 3) and result.vertices.dtype == torch.float32
    assert result.iou_after == pytest.approx(measure(result.vertices, sphere.faces, mask, camera), abs=1e-5)
    assert result.iou_after == steps[-1][2] and result.scale is None and result.translation is None


def test_four_views_improve_voxel_iou():
    cameras = Camera.from_angles(elevation=torch.tensor([30.0, 30.0, 10.0, 60.0]), azimuth=torch.tensor([30.0, 120.0, 210.0, 300.0]))
    cv, cf = chair()
    masks = silhouettes(cv, cf, cameras, 32)
    sphere = icosphere(2, 0.35)
    result = refine(sphere.vertices, sphere.faces, masks, cameras, RefineSettings(steps=100))
    target = voxelize(cv, cf)
    before, after = voxel_iou(voxelize(sphere.vertices, sphere.faces), target), voxel_iou(voxelize(result.vertices, sphere.faces), target)
    assert result.iou_after > result.iou_before + 0.2
    assert after > before + 0.1, (before, after)


def test_one_mask_moves_vertices_only_across_the_view():
    camera = Camera.from_angles(elevation=20.0, azimuth=40.0)
    mask = silhouettes(*chair(), camera, 32)
    sphere = icosphere(2, 0.35)
    result = refine(sphere.vertices, sphere.faces, mask, camera, RefineSettings(steps=30))
    _, _, forward = camera.basis()
    moved = result.vertices - sphere.vertices
    assert result.iou_after > result.iou_before + 0.1 and moved.norm(dim=1).max() > 0.05
    assert (moved @ forward[0]).abs().max() < 1e-5  # no vertex moved along the viewing direction
    two = Camera.cat([camera, Camera.from_angles(elevation=20.0, azimuth=130.0)])
    free = refine(sphere.vertices, sphere.faces, silhouettes(*chair(), two, 32), two, RefineSettings(steps=30))
    assert ((free.vertices - sphere.vertices) @ forward[0]).abs().max() > 0.01  # two views: depth moves as well


@pytest.mark.parametrize("steps, lr", [(0, 0.01), (1, 0.01), (3, 50.0)])
def test_never_worse_than_the_start(steps, lr):
    camera = Camera.from_angles(elevation=20.0, azimuth=40.0)
    sphere = icosphere(2, 0.3)
    mask = silhouettes(sphere.vertices * torch.tensor([1.0, 1.2, 1.0]), sphere.faces, camera, 32)  # already close
    result = refine(sphere.vertices, sphere.faces, mask, camera, RefineSettings(steps=steps, lr=lr, eval_every=1))
    assert result.iou_after >= result.iou_before
    assert result.iou_after == pytest.approx(measure(result.vertices, sphere.faces, mask, camera), abs=1e-5)
    if lr > 1:  # wild steps only make it worse, so the start comes back unchanged
        assert torch.equal(result.vertices, sphere.vertices) and result.iou_after == result.iou_before


def test_similarity_is_reported_and_applied():
    camera = Camera.from_angles(elevation=20.0, azimuth=40.0)
    sphere = icosphere(2, 0.25)
    mask = silhouettes(sphere.vertices * 1.4 + torch.tensor([0.1, 0.0, 0.0]), sphere.faces, camera, 32)
    result = refine(sphere.vertices, sphere.faces, mask, camera, RefineSettings(steps=40, lr=0.02, optimise_similarity=True))
    assert result.iou_after > result.iou_before + 0.2
    assert result.scale > 1.0 and result.translation.shape == (3,)


def test_should_stop_returns_best_so_far():
    camera = Camera.from_angles(elevation=20.0, azimuth=40.0)
    mask = silhouettes(*chair(), camera, 32)
    sphere = icosphere(2, 0.35)
    polls, reported = [], []
    result = refine(sphere.vertices, sphere.faces, mask, camera, RefineSettings(eval_every=4),
                    callback=lambda s, n, iou: reported.append(iou), should_stop=lambda: polls.append(1) or len(polls) > 6)
    assert result.steps_run == 6 and len(reported) == 6
    assert result.iou_after >= max(reported) and result.iou_after >= result.iou_before
    assert result.iou_after == pytest.approx(measure(result.vertices, sphere.faces, mask, camera), abs=1e-5)


@pytest.mark.parametrize("azimuth, elevation", [(60.0, 30.0), (235.0, 5.0)])
def test_estimate_viewpoint_recovers_angles(azimuth, elevation):
    v, f = chair(arm=True)
    mask = silhouettes(v, f, Camera.from_angles(elevation=elevation, azimuth=azimuth), 64)[0]
    camera = estimate_viewpoint(v, f, mask)
    eye = camera.eye[0]
    found_el = math.degrees(math.asin(eye[1] / eye.norm()))
    found_az = math.degrees(math.atan2(eye[0], -eye[2]))
    assert camera.batch_size == 1
    assert angle_error(found_az, azimuth) <= 15.0 and abs(found_el - elevation) <= 15.0, (found_az, found_el)


def test_refine_to_image_estimates_the_camera():
    v, f = chair(arm=True)
    mask = silhouettes(v, f, Camera.from_angles(elevation=30.0, azimuth=60.0), 32)[0]
    result = refine_to_image(v * torch.tensor([1.1, 0.9, 1.0]), f, mask, settings=RefineSettings(steps=20))
    assert result.cameras.batch_size == 1 and result.iou_after >= result.iou_before > 0.5
    assert result.iou_after == pytest.approx(measure(result.vertices, f, mask[None], result.cameras), abs=1e-5)


def test_bad_inputs_name_the_argument():
    sphere = icosphere(1, 0.3)
    v, f = sphere.vertices, sphere.faces
    camera = Camera.from_angles()
    mask = silhouettes(v, f, camera, 16)
    cases = [
        (dict(masks=mask[0]), "masks"),
        (dict(masks=torch.zeros(1, 16, 16)), "empty"),
        (dict(masks=torch.full((1, 16, 16), 0.99)), "full"),
        (dict(masks=mask * 2), "masks"),
        (dict(cameras=Camera.from_angles(azimuth=torch.tensor([0.0, 90.0]))), "cameras"),
        (dict(cameras=Camera.from_angles(aspect=2.0)), "cameras"),
        (dict(vertices=torch.where(torch.arange(v.shape[0])[:, None] == 3, float("nan"), v)), "vertices"),
        (dict(vertices=v[:, :2]), "vertices"),
        (dict(faces=f + 100), "faces"),
        (dict(faces=f.float()), "faces"),
        (dict(callback=3), "callback"),
    ]
    for change, word in cases:
        args = dict(vertices=v, faces=f, masks=mask, cameras=camera) | change
        with pytest.raises(ValueError, match=word):
            refine(**args)
    for kwargs, word in [(dict(steps=-1), "steps"), (dict(lr=0.0), "lr"), (dict(sigma_end=float("nan")), "sigma_end"),
                         (dict(laplacian_weight=-1.0), "laplacian_weight"), (dict(eval_every=0), "eval_every"),
                         (dict(optimise_similarity=1), "optimise_similarity")]:
        with pytest.raises(ValueError, match=word):
            RefineSettings(**kwargs)
    with pytest.raises(ValueError, match="mask"):
        estimate_viewpoint(v, f, mask)
    with pytest.raises(ValueError, match="elevations"):
        estimate_viewpoint(v, f, mask[0], elevations=(95.0,))
    with pytest.raises(ValueError, match="camera"):
        refine_to_image(v, f, mask[0], camera=Camera.from_angles(azimuth=torch.tensor([0.0, 90.0])))


# ---------------------------------------------------------------------------------------------- front or back
def picture(vertices: torch.Tensor, faces: torch.Tensor, colors: torch.Tensor, camera: Camera, size: int = 64) -> torch.Tensor:
    """A hard render as an intake-like image: (4, size, size) straight sRGB colour (0 outside), alpha."""
    from softras.mesh import Mesh
    from softras.texture_eval import render_hard

    return render_hard(Mesh(vertices, faces, colors), camera, size, size, textured=False).permute(2, 0, 1)


def azimuth_prior(azimuth: float, bins: int = 24, spread: float = 15.0) -> torch.Tensor:
    """(bins,) probabilities peaked at ``azimuth`` degrees, as a viewpoint head gives them."""
    centres = torch.arange(bins) * (360.0 / bins)
    diff = (azimuth - centres + 180.0) % 360.0 - 180.0
    p = torch.exp(-0.5 * (diff / spread) ** 2)
    return p / p.sum()


@pytest.mark.parametrize("azimuth", [30.0, 120.0, 210.0, 330.0])
def test_azimuth_prior_tells_front_from_back_where_the_silhouette_cannot(azimuth):
    v, f, colors = two_coloured_box()
    image = picture(v, f, colors, Camera.from_angles(elevation=20.0, azimuth=azimuth))
    mask = image[3]
    # the box is symmetric about x = 0 and z = 0: azimuths a and a + 180 see about the same outline
    turns = Camera.from_angles(elevation=20.0, azimuth=torch.tensor([azimuth, azimuth + 180.0]))
    sil = silhouettes(v, f, turns, 64)
    assert soft_iou(sil[:1], sil[1:]).item() > 0.95  # (perspective makes the nearer side a little larger)
    for believed in (azimuth, azimuth + 180.0):
        camera = estimate_viewpoint(v, f, mask, azimuth_prior=azimuth_prior(believed))
        eye = camera.eye[0]
        found = math.degrees(math.atan2(eye[0], -eye[2]))
        assert angle_error(found, believed) <= 15.0, (believed, found)  # the prior decides between equal outlines
        assert soft_iou(silhouettes(v, f, camera, 64), mask[None]).item() > 0.95


def test_refine_to_image_uses_the_prior_for_its_viewpoint():
    v, f, colors = two_coloured_box()
    image = picture(v, f, colors, Camera.from_angles(elevation=20.0, azimuth=30.0), size=128)  # searched at 64 px
    for believed in (30.0, 210.0):
        result = refine_to_image(v, f, image[3], settings=RefineSettings(steps=2), azimuth_prior=azimuth_prior(believed))
        eye = result.cameras.eye[0]
        assert angle_error(math.degrees(math.atan2(eye[0], -eye[2])), believed) <= 15.0


def test_azimuth_prior_is_checked():
    v, f, colors = two_coloured_box()
    mask = picture(v, f, colors, Camera.from_angles(elevation=20.0, azimuth=30.0))[3]
    for prior in (torch.ones(24, 2), torch.ones(1), -azimuth_prior(30.0), torch.zeros(24),
                  azimuth_prior(30.0) * float("nan"), torch.ones(24, dtype=torch.int64)):
        with pytest.raises(ValueError, match="azimuth_prior"):
            estimate_viewpoint(v, f, mask, azimuth_prior=prior)
