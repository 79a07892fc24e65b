"""End-to-end: the rasterizer's gradients can deform a sphere into a cube from 4 silhouettes."""

import torch

from softras import Camera, icosphere
from softras.losses import FlattenLoss, LaplacianLoss, soft_iou, soft_iou_loss
from softras.raster import RasterSettings, render_silhouette


def cube() -> tuple[torch.Tensor, torch.Tensor]:
    v = torch.tensor([[x, y, z] for x in (-0.3, 0.3) for y in (-0.3, 0.3) for z in (-0.3, 0.3)])
    f = torch.tensor([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                      [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    return v, f


def test_sphere_fits_cube_silhouettes_from_four_views():
    torch.manual_seed(0)
    settings = RasterSettings(32, sigma=1e-4)
    cameras = Camera.from_angles(elevation=torch.tensor([30.0, 30.0, -20.0, 60.0]), azimuth=torch.tensor([0.0, 90.0, 45.0, 200.0]))
    cv, cf = cube()
    target = render_silhouette(cv, cf, cameras, settings)
    sphere = icosphere(2, 0.3)
    offsets = torch.zeros_like(sphere.vertices, requires_grad=True)
    lap, flat = LaplacianLoss(sphere.faces, sphere.num_vertices), FlattenLoss(sphere.faces)
    opt = torch.optim.Adam([offsets], lr=0.01)
    start = soft_iou(render_silhouette(sphere.vertices, sphere.faces, cameras, settings), target).mean().item()
    for _ in range(150):
        v = (sphere.vertices + offsets)[None]
        loss = soft_iou_loss(render_silhouette(v[0], sphere.faces, cameras, settings), target) + 0.01 * lap(v) + 0.001 * flat(v)
        opt.zero_grad()
        loss.backward()
        opt.step()
    final = soft_iou(render_silhouette(sphere.vertices + offsets.detach(), sphere.faces, cameras, settings), target)
    assert start < 0.85
    assert final.min().item() >= 0.9, (start, final)
