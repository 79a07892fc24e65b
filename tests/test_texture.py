"""Projected textures: the UV layout, the bake (picture, mirror and vertex-colour texels), seams, the bad cases, the
z-buffer and the re-render used by `softras eval --texture`."""

import dataclasses

import numpy as np
import pytest
import torch

from softras.camera import Camera
from softras.intake import prepare_array
from softras.mesh import Mesh, icosphere
from softras.raster import zbuffer
from softras.texture import (MIN_OBJECT_PIXELS, BakeSettings, UVLayout, _apply_sources, bake_texture, dilation_sources,
                             project_texture, template_layout)
from softras.texture_eval import render_hard, sample_texture

RED, BLUE = torch.tensor([0.9, 0.1, 0.1]), torch.tensor([0.1, 0.2, 0.9])


def test_template_layout_fits_every_face_in_its_own_cell_half():
    layout = template_layout(1280)
    assert (layout.cols, layout.rows) == (26, 25)
    uv = layout.uv()
    assert uv.shape == (1280, 3, 2) and uv.min() > 0 and uv.max() < 1
    # every face lies inside one cell: all three corners fall into the same cell
    cell = (uv * torch.tensor([layout.cols, layout.rows])).floor()
    assert (cell == cell[:, :1]).all()
    # no two triangles overlap: at most one face contains any sample point of a fine grid
    s = 200
    c = (torch.arange(s) + 0.5) / s
    points = torch.stack(torch.meshgrid(c, c, indexing="xy"), -1).reshape(-1, 2)  # (N, 2) u, v
    a, b, d = uv[:, 0], uv[:, 1], uv[:, 2]

    def side(p, q, r):  # sign of the cross product (q - p) x (r - p), points r (N, 2) against edges (F, 2)
        return (q[None, :, 0] - p[None, :, 0]) * (r[:, None, 1] - p[None, :, 1]) - (q[None, :, 1] - p[None, :, 1]) * (r[:, None, 0] - p[None, :, 0])

    s1, s2, s3 = side(a, b, points), side(b, d, points), side(d, a, points)
    inside = ((s1 >= 0) & (s2 >= 0) & (s3 >= 0)) | ((s1 <= 0) & (s2 <= 0) & (s3 <= 0))
    counts = inside.sum(1)
    assert counts.max() == 1 and counts.float().mean() > 0.5  # disjoint, and they cover most of the texture


def test_locate_inverts_the_uvs_and_leaves_gaps_between_triangles():
    layout = template_layout(1280)
    size = 128
    face, bary = layout.locate(size)
    inside = face >= 0
    c = (torch.arange(size) + 0.5) / size
    texel = torch.stack(torch.meshgrid(c, c, indexing="xy"), -1)  # (row, column) -> (u, v)
    rebuilt = (bary[..., None] * layout.uv()[face.clamp(min=0)]).sum(-2)
    assert torch.allclose(rebuilt[inside], texel[inside], atol=1e-5)
    assert (bary[inside] >= 0).all() and 0.4 < inside.float().mean() < 0.8
    assert set(face[inside].unique().tolist()) <= set(range(1280))


def test_a_layout_that_cannot_hold_its_faces_is_refused():
    with pytest.raises(ValueError):
        UVLayout(100, 5, 5)


def test_dilation_grows_filled_texels_by_the_given_steps():
    filled = torch.zeros(9, 9, dtype=torch.bool)
    filled[6, 3] = filled[0, 8] = True
    source = dilation_sources(filled, 2)
    near_seed = torch.zeros(9, 9, dtype=torch.bool)
    near_seed[4:9, 1:6] = True
    near_corner = torch.zeros(9, 9, dtype=torch.bool)
    near_corner[:3, 6:] = True
    assert (source[near_seed] == 6 * 9 + 3).all() and (source[near_corner] == 8).all()
    assert (source[~near_seed & ~near_corner] == -1).all()
    image = torch.zeros(9, 9, 3)
    image[6, 3], image[0, 8] = RED, BLUE
    grown = _apply_sources(image, source)
    assert torch.equal(grown[near_seed], RED.expand(25, 3)) and torch.equal(grown[near_corner], BLUE.expand(9, 3))
    assert (grown[source < 0] == 0).all()


# ---------------------------------------------------------------------------------------------- bake
def _scene(azimuth: float, picture_size: int = 160):
    """A sphere with blue vertex colours and a flat red picture of it from ``azimuth``: (mesh, picture uint8
    (H, W, 4), intake, the intake-frame camera that took the picture)."""
    sphere = icosphere(3, 0.4)
    mesh = Mesh(sphere.vertices, sphere.faces, BLUE.expand(642, 3).clone())
    camera = Camera.from_angles(elevation=20.0, azimuth=azimuth)
    red = Mesh(sphere.vertices, sphere.faces, RED.expand(642, 3).clone())
    picture = (render_hard(red, camera, picture_size, picture_size, textured=False) * 255).round().to(torch.uint8).numpy()
    intake = prepare_array(picture)
    left, top, right, bottom = intake.crop_box
    k = 64 / (right - left)  # the picture's frame in the intake's 64 px pixels
    frame = (-left * k, -top * k, (picture_size - left) * k, (picture_size - top) * k)
    return mesh, picture, intake, camera.widened(frame, 64, 64)


def _view(mesh, azimuth):
    camera = Camera.from_angles(elevation=20.0, azimuth=azimuth)
    return render_hard(mesh, camera, 64, 64)


def _share_near(render, color, tolerance=0.05):
    """Fraction of the covered pixels whose colour is within ``tolerance`` of ``color`` in every channel (the rim,
    seen edge-on from the input viewpoint, blends into the fallback)."""
    pixels = render[..., :3][render[..., 3] > 0]
    return float(((pixels - color).abs().max(1).values < tolerance).float().mean())


def test_bake_of_a_flat_picture_paints_the_seen_side_and_keeps_vertex_colours_behind():
    mesh, picture, intake, camera = _scene(azimuth=0.0)
    bake = bake_texture(mesh, picture, camera, intake, BakeSettings(size=256))
    textured = Mesh(mesh.vertices, mesh.faces, mesh.vertex_colors, bake.texture)
    assert bake.texture.image.shape == (256, 256, 3) and bake.texture.image.dtype == torch.uint8
    assert abs(bake.from_picture + bake.from_mirror + bake.from_vertices - 1) < 1e-6
    assert 0.25 < bake.from_picture < 0.6 and bake.from_vertices > 0.3
    # from the input viewpoint the re-render is the picture; from behind the vertex colours show
    assert _share_near(_view(textured, 0.0), RED) > 0.8
    assert _share_near(_view(textured, 180.0), BLUE) > 0.9


def test_hidden_texels_take_the_mirror_symmetric_colour():
    mesh, picture, intake, camera = _scene(azimuth=90.0)  # sees the +x side; the -x side is its mirror image
    bake = bake_texture(mesh, picture, camera, intake, BakeSettings(size=256))
    textured = Mesh(mesh.vertices, mesh.faces, mesh.vertex_colors, bake.texture)
    assert bake.from_mirror > 0.25
    assert _share_near(_view(textured, -90.0), RED) > 0.7  # the far side, painted by its mirror
    assert _share_near(_view(textured, 90.0), RED) > 0.8


def test_seams_are_padded_so_a_flat_colour_fills_the_whole_texture():
    mesh, picture, intake, camera = _scene(azimuth=0.0)
    mesh.vertex_colors = RED.expand(642, 3).clone()
    image = bake_texture(mesh, picture, camera, intake, BakeSettings(size=256)).texture.image.float() / 255
    assert (image - RED).abs().max() < 0.02  # margins dilated, unused cells filled: no black texel anywhere


# ---------------------------------------------------------------------------------------------- bad cases
def test_project_texture_textures_a_good_case():
    mesh, picture, intake, camera = _scene(azimuth=30.0)
    outcome = project_texture(mesh, intake, picture, camera, BakeSettings(size=64))
    assert outcome.message is None and outcome.mesh.texture is not None and outcome.iou > 0.9


def test_a_picture_too_small_keeps_vertex_colours_with_a_message():
    mesh, picture, _, camera = _scene(azimuth=0.0, picture_size=40)
    intake = prepare_array(picture)
    assert intake.crop_box[2] - intake.crop_box[0] < MIN_OBJECT_PIXELS
    outcome = project_texture(mesh, intake, picture, camera)
    assert outcome.mesh.texture is None and outcome.message.startswith("picture too small")
    assert "kept the vertex colours" in outcome.message


def test_an_empty_mask_keeps_vertex_colours_with_a_message():
    mesh, picture, intake, camera = _scene(azimuth=0.0)
    empty = dataclasses.replace(intake, mask=torch.zeros_like(intake.mask))
    outcome = project_texture(mesh, empty, picture, camera)
    assert outcome.mesh.texture is None and outcome.message.startswith("mask empty")


def test_a_failed_viewpoint_keeps_vertex_colours_with_a_message():
    mesh, picture, intake, _ = _scene(azimuth=0.0)
    needle = Mesh(mesh.vertices * torch.tensor([0.05, 1.0, 0.05]), mesh.faces, mesh.vertex_colors)  # a thin pole
    outcome = project_texture(needle, intake, picture, Camera.from_angles(elevation=20.0))
    assert outcome.mesh.texture is None and outcome.message.startswith("viewpoint estimate failed")
    assert outcome.iou < 0.5


def test_project_texture_refuses_a_malformed_picture():
    mesh, _, intake, camera = _scene(azimuth=0.0)
    with pytest.raises(ValueError, match="picture must be"):
        project_texture(mesh, intake, np.zeros((10, 10)), camera)


# ---------------------------------------------------------------------------------------------- z-buffer, re-render
def test_zbuffer_keeps_the_nearest_face():
    # two squares facing the camera, the red one nearer, covering the centre of the image
    near = torch.tensor([[-0.3, -0.3, 0.2], [0.3, -0.3, 0.2], [0.3, 0.3, 0.2], [-0.3, 0.3, 0.2]])
    vertices = torch.cat([near, near * torch.tensor([2.0, 2.0, 1.0]) + torch.tensor([0.0, 0.0, 0.4])])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    camera = Camera.look_at(torch.tensor([0.0, 0.0, -2.0]))
    z = zbuffer(camera.project(vertices[None]), faces, 32, 32)
    assert z.face[0, 16, 16] in (0, 1) and z.face[0, 16, 2] in (2, 3) and z.face[0, 0, 0] == -1
    assert torch.isclose(z.depth[0, 16, 16], torch.tensor(2.2), atol=1e-4) and torch.isinf(z.depth[0, 0, 0])
    assert torch.allclose(z.bary[z.covered].sum(-1), torch.ones(int(z.covered.sum())), atol=1e-5)


def test_sample_texture_reads_texel_centres_exactly():
    image = torch.randint(0, 256, (4, 6, 3), dtype=torch.uint8)
    uv = torch.tensor([[(2 + 0.5) / 6, (1 + 0.5) / 4], [(5 + 0.5) / 6, (3 + 0.5) / 4]])
    assert torch.allclose(sample_texture(image, uv) * 255, image[[1, 3], [2, 5]].float(), atol=1e-3)


def test_evaluate_texture_measures_the_textured_re_render_against_the_vertex_colours(tiny_data, tiny_weights, tmp_path, monkeypatch):
    import softras.texture
    from softras.data import Shapes, ViewSet, render_views, save_views
    from softras.reconstruct import Reconstructor
    from softras.texture_eval import evaluate_texture, format_texture_report

    monkeypatch.setattr(softras.texture, "MIN_VIEWPOINT_IOU", 0.0)  # the tiny random generator's shapes fit badly
    shapes = Shapes.load(tiny_data[0])
    chosen, azimuths = np.array([0, 4]), np.array([30.0], np.float32)
    images = render_views(shapes, chosen, np.full_like(azimuths, 30.0), azimuths, size=128)
    path = save_views(tmp_path / "views.npz", images=images, elevations=np.full_like(azimuths, 30.0), azimuths=azimuths,
                      model_index=chosen, category=shapes.category[chosen], model_id=shapes.model_id[chosen],
                      split=np.array(["val", "val"]), distance=np.float32(2.732), fov=np.float32(30.0))
    report = evaluate_texture(Reconstructor(tiny_weights), ViewSet(path, "val"), views_per_model=1, texture_size=128)
    assert report.pictures == 2 and report.fallbacks == 0 and len(report.viewpoint_iou) == len(report.wrong_viewpoint_iou) == len(report.viewpoint_error) == 2
    assert 0 <= report.mae_textured < report.mae_vertex and 0 < report.coverage <= 1
    # through the true camera: the honest figure, measured for both and never better than the bake's own camera
    # for the texture (a random generator's shapes fit the picture nowhere as well as where they were baked)
    assert report.mae_textured_true > report.mae_textured and 0 < report.mae_vertex_true <= 1 and 0 < report.coverage_true <= 1
    record = report.as_dict()
    assert record["off_45"] == sum(e > 45 for e in report.viewpoint_error) >= record["off_90"] == report.off_90
    assert {"mae_textured_true", "mae_vertex_true", "coverage_true"} <= set(record)
    text = format_texture_report(report)
    assert "through the true camera" in text and "> 90 degrees" in text
    # with a viewpoint head its probabilities weigh the estimate, unless asked not to
    import softras.texture_eval
    from softras.model import Generator, GeneratorConfig, save_weights

    from conftest import TINY_MODEL

    head = save_weights(Generator(GeneratorConfig(**TINY_MODEL, viewpoint_bins=8)), tmp_path / "head.pt")
    project, priors = softras.texture_eval.project_texture, []
    monkeypatch.setattr(softras.texture_eval, "project_texture", lambda *a: priors.append(a[5]) or project(*a))
    for use in (True, False):
        priors.clear()
        r = evaluate_texture(Reconstructor(head), ViewSet(path, "val"), views_per_model=1, texture_size=128, viewpoint_prior=use)
        assert r.pictures == 2 and len(r.viewpoint_error) == 2 and 0 <= r.mae_textured_true <= 1
        assert [p is not None and p.shape == (8,) for p in priors] == [use, use]


def test_eval_texture_needs_rendered_views(tiny_weights, capsys):
    from softras.cli import main

    assert main(["eval", "--texture", "--weights", str(tiny_weights), "--data", "d.npz"]) == 2
    assert "--texture needs --views" in capsys.readouterr().err
