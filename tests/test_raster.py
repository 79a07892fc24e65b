import math

import pytest
import torch

from softras import Camera, icosphere
from softras.bench.dense_reference import dense_render
from softras.raster import RasterSettings, rasterize, render_rgba, render_silhouette, shade, soft_blend


def bumpy_sphere(level: int = 2, seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    m = icosphere(level, 0.4)
    v = m.vertices * (1 + 0.15 * torch.rand(m.num_vertices, 1, generator=g))
    return v.to(dtype), m.faces, torch.rand(m.num_vertices, 3, generator=g).to(dtype)


CAMERAS = dict(elevation=torch.tensor([30.0, -20.0, 75.0]), azimuth=torch.tensor([10.0, 100.0, 250.0]))


@pytest.mark.parametrize("size", [32, (24, 40)])
def test_silhouette_matches_dense_reference(size):
    v, f, _ = bumpy_sphere()
    cam = Camera.from_angles(**CAMERAS, aspect=(size if isinstance(size, int) else size[1] / size[0]) if not isinstance(size, int) else 1.0)
    settings = RasterSettings(size, sigma=1e-4)
    sparse = render_silhouette(v, f, cam, settings)
    dense = dense_render(cam.project(v.expand(3, -1, -1)), f, settings)
    assert sparse.shape == dense.shape
    assert (sparse - dense).abs().max().item() < 1e-5
    assert sparse.sum().item() > 100  # the comparison is not between two empty images


def test_rgba_matches_dense_reference():
    v, f, c = bumpy_sphere()
    cam = Camera.from_angles(**CAMERAS)
    settings = RasterSettings(32, sigma=1e-4, gamma=1e-3, background=(0.2, 0.3, 0.4))
    sparse = render_rgba(v, f, cam, settings, vertex_colors=c)
    dense = dense_render(cam.project(v.expand(3, -1, -1)), f, settings, vertex_colors=c.expand(3, -1, -1))
    assert (sparse - dense).abs().max().item() < 1e-5
    # background pixels show the background colour, covered ones the mesh's colours
    assert torch.allclose(sparse[0, 0, 0], torch.tensor([0.2, 0.3, 0.4, 0.0]), atol=1e-6)
    assert sparse[..., 3].amax().item() > 0.99


def test_face_colors_are_constant_per_face():
    tri = torch.tensor([[-0.3, -0.3, 0.0], [0.3, -0.3, 0.0], [0.0, 0.3, 0.0]])
    faces = torch.tensor([[0, 1, 2]])
    cam = Camera.from_angles(elevation=0.0)
    rgba = render_rgba(tri, faces, cam, RasterSettings(32), face_colors=torch.tensor([[1.0, 0.5, 0.0]]))
    covered = rgba[0, ..., 3] > 0.99
    assert covered.sum() > 50
    assert torch.allclose(rgba[0][covered][:, :3], torch.tensor([1.0, 0.5, 0.0]), atol=1e-4)


def test_front_face_wins_colour_blend():
    # two parallel squares, red in front of blue: the softmax over depth shows red
    quad = torch.tensor([[-0.3, -0.3], [0.3, -0.3], [0.3, 0.3], [-0.3, 0.3]])
    front = torch.cat([quad, torch.full((4, 1), -0.2)], 1)
    back = torch.cat([quad * 1.5, torch.full((4, 1), 0.2)], 1)
    v = torch.cat([front, back])
    f = torch.tensor([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    colors = torch.tensor([[1.0, 0, 0]] * 4 + [[0, 0, 1.0]] * 4)
    rgba = render_rgba(v, f, Camera.from_angles(elevation=0.0), RasterSettings(32), vertex_colors=colors)
    assert torch.allclose(rgba[0, 16, 16, :3], torch.tensor([1.0, 0.0, 0.0]), atol=1e-3)
    assert torch.allclose(rgba[0, 16, 7, :3], torch.tensor([0.0, 0.0, 1.0]), atol=1e-3)  # only the back square


def test_unit_square_covers_expected_pixels():
    # a 1 x 1 square facing the camera at distance 2.732 spans 2 * 0.5 / (2.732 tan 15) * 32 = 43.71 px;
    # pixel centres within it: columns 10..53, i.e. 44 x 44
    sq = torch.tensor([[-0.5, -0.5, 0.0], [0.5, -0.5, 0.0], [0.5, 0.5, 0.0], [-0.5, 0.5, 0.0]])
    f = torch.tensor([[0, 1, 2], [0, 2, 3]])
    sil = render_silhouette(sq, f, Camera.from_angles(elevation=0.0), RasterSettings(64))[0]
    assert int((sil > 0.5).sum()) == 44 * 44
    assert (sil > 0.5).nonzero()[:, 1].min().item() == 10
    side = 1.0 / (2.732 * math.tan(math.radians(15))) * 32
    assert sil.sum().item() == pytest.approx(side * side, rel=0.02)


def test_both_sides_are_drawn():
    tri = torch.tensor([[-0.3, -0.3, 0.0], [0.3, -0.3, 0.0], [0.0, 0.3, 0.0]])
    s = RasterSettings(32)
    front = render_silhouette(tri, torch.tensor([[0, 1, 2]]), Camera.from_angles(elevation=0.0), s)
    back = render_silhouette(tri, torch.tensor([[0, 2, 1]]), Camera.from_angles(elevation=0.0), s)
    assert front.sum() > 50 and torch.allclose(front, back)


def test_near_and_far_clip():
    tri = torch.tensor([[-0.3, -0.3, 0.0], [0.3, -0.3, 0.0], [0.0, 0.3, 0.0]])
    f = torch.tensor([[0, 1, 2]])
    cam = Camera.from_angles(elevation=0.0)
    assert render_silhouette(tri, f, cam, RasterSettings(32, near=3.0)).sum() == 0
    assert render_silhouette(tri, f, cam, RasterSettings(32, near=0.5, far=2.0)).sum() == 0
    assert render_silhouette(tri, f, cam, RasterSettings(32, near=0.5, far=3.0)).sum() > 50


def test_fragments_are_sparse():
    v, f, _ = bumpy_sphere(3)
    settings = RasterSettings(64)
    fr = rasterize(Camera.from_angles().project(v[None]), f, settings)
    assert fr.pixel.shape[0] < 64 * 64 * f.shape[0] / 100  # far fewer pairs than pixels x faces
    assert bool((torch.sigmoid(fr.logit) >= settings.eps * 0.999).all())


def test_gradcheck_float64():
    screen = torch.tensor([[[-0.5, -0.4, 2.0], [0.6, -0.3, 2.5], [0.1, 0.7, 3.0], [0.8, 0.6, 2.2]]], dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2], [1, 3, 2]])
    colors = torch.rand(1, 4, 3, dtype=torch.float64)
    settings = RasterSettings(6, sigma=0.05, gamma=0.05, background=(0.1, 0.2, 0.3))

    def render(s: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        fr = rasterize(s, faces, settings)
        return soft_blend(fr, shade(fr, faces, vertex_colors=c), settings)

    screen.requires_grad_(True)
    colors.requires_grad_(True)
    assert torch.autograd.gradcheck(render, (screen, colors), eps=1e-6, atol=1e-5)


def test_sparse_gradients_match_finite_differences_and_dense():
    v, f, c = bumpy_sphere(2, dtype=torch.float64)
    cam = Camera.from_angles(**CAMERAS, dtype=torch.float64)
    settings = RasterSettings(32, sigma=1e-4, gamma=1e-2)
    weights = torch.rand(3, 32, 32, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    def loss_sparse(vert: torch.Tensor) -> torch.Tensor:
        return (render_rgba(vert, f, cam, settings, vertex_colors=c) * weights).sum()

    vv = v.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss_sparse(vv), vv)
    vd = v.clone().requires_grad_(True)
    dense = dense_render(cam.project(vd.expand(3, -1, -1)), f, settings, vertex_colors=c.expand(3, -1, -1))
    (grad_dense,) = torch.autograd.grad((dense * weights).sum(), vd)
    assert torch.allclose(grad, grad_dense, rtol=1e-6, atol=1e-6 * grad.abs().max().item())

    picks = torch.randperm(v.numel(), generator=torch.Generator().manual_seed(2))[:12]
    h = 1e-6
    for k in picks.tolist():
        dv = torch.zeros_like(v).view(-1)
        dv[k] = h
        fd = (loss_sparse(v + dv.view_as(v)) - loss_sparse(v - dv.view_as(v))) / (2 * h)
        assert fd.item() == pytest.approx(grad.view(-1)[k].item(), rel=1e-3, abs=1e-4 * grad.abs().max().item())


@pytest.mark.parametrize(
    "vertices,faces,match",
    [
        (torch.zeros(10, 2), torch.tensor([[0, 1, 2]]), "vertices"),
        (torch.full((3, 3), float("nan")), torch.tensor([[0, 1, 2]]), "finite"),
        (torch.rand(3, 3), torch.tensor([[0, 1, 3]]), "faces"),
        (torch.rand(3, 3), torch.tensor([[0.0, 1.0, 2.0]]), "faces"),
        (torch.zeros(0, 3), torch.zeros(0, 3, dtype=torch.int64), "empty"),
        (torch.rand(3, 3), torch.tensor([0, 1, 2]), "faces"),
    ],
)
def test_bad_mesh_input(vertices, faces, match):
    with pytest.raises(ValueError, match=match):
        render_silhouette(vertices, faces, Camera.from_angles(), RasterSettings(16))


@pytest.mark.parametrize(
    "kwargs,match",
    [({"sigma": 0.0}, "sigma"), ({"sigma": -1e-4}, "sigma"), ({"image_size": 0}, "image_size"),
     ({"image_size": (16, -2)}, "image_size"), ({"gamma": 0.0}, "gamma"), ({"near": 2.0, "far": 1.0}, "near")],
)
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RasterSettings(**kwargs)


def test_color_arguments_are_checked():
    v, f, c = bumpy_sphere(1)
    cam = Camera.from_angles()
    with pytest.raises(ValueError, match="exactly one"):
        render_rgba(v, f, cam, RasterSettings(16))
    with pytest.raises(ValueError, match="background"):
        render_rgba(v, f, cam, RasterSettings(16, background=(0.0, 0.0)), vertex_colors=c)


@pytest.mark.parametrize("output", ["logit", "bary", "depth"])
def test_each_fragment_output_alone_has_exact_gradients(output):
    # the rasterizer's backward pass is written by hand and skips the outputs that a loss does not use (training
    # differentiates the silhouette through the logits only): check each output's gradient on its own
    screen = torch.tensor([[[-0.5, -0.4, 2.0], [0.6, -0.3, 2.5], [0.1, 0.7, 3.0], [0.8, 0.6, 2.2]]], dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2], [1, 3, 2]])
    settings = RasterSettings(6, sigma=0.05)
    weights = torch.rand(200, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))

    def loss(s: torch.Tensor) -> torch.Tensor:
        fr = rasterize(s, faces, settings)
        value = getattr(fr, output).reshape(fr.pixel.shape[0], -1)  # (P, 1) or (P, 3)
        return (value * weights[: value.shape[0], : value.shape[1]]).sum()

    assert rasterize(screen, faces, settings).pixel.shape[0] < 200
    screen.requires_grad_(True)
    assert torch.autograd.gradcheck(loss, (screen,), eps=1e-6, atol=1e-6)


def test_collapsed_faces_give_finite_gradients():
    # two coincident vertices (a zero-length edge) and a face collapsed to a point next to a normal face
    v = torch.tensor([[-0.3, -0.3, 0.0], [0.3, -0.3, 0.0], [0.3, -0.3, 0.0], [0.0, 0.3, 0.0], [0.1, 0.1, 0.0]], requires_grad=True)
    f = torch.tensor([[0, 1, 3], [1, 2, 3], [4, 4, 4], [0, 2, 3]])
    image = render_rgba(v, f, Camera.from_angles(elevation=0.0), RasterSettings(32), vertex_colors=torch.rand(5, 3))
    image.sum().backward()
    assert torch.isfinite(image).all() and torch.isfinite(v.grad).all() and v.grad.abs().sum() > 0


def test_dense_reference_builds_every_tensor_on_its_inputs_device():
    """`softras bench --device cuda` crashed in the dense reference (tensors made on the CPU); the meta device
    finds any such tensor on a machine without a GPU, as mixing devices fails the same way."""
    sphere = icosphere(1, 0.4)
    screen = torch.rand(2, sphere.num_vertices, 3, device="meta")
    colors = torch.rand(2, sphere.num_vertices, 3, device="meta")
    settings = RasterSettings(8)
    assert dense_render(screen, sphere.faces.to("meta"), settings).shape == (2, 8, 8)
    assert dense_render(screen, sphere.faces.to("meta"), settings, vertex_colors=colors).shape == (2, 8, 8, 4)


def test_non_contiguous_faces_render_the_same():
    v, f, _ = bumpy_sphere(1)
    strided = f.t().contiguous().t()
    assert not strided.is_contiguous()
    cam, settings = Camera.from_angles(), RasterSettings(16)
    assert torch.equal(render_silhouette(v, strided, cam, settings), render_silhouette(v, f, cam, settings))
