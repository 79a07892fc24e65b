"""Tests for softras.voxelize: exact cube counts, boundary ties, sphere vs analytic, IoU, robustness, real data."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from softras.mesh import icosphere
from softras.voxelize import (shapes_file_voxels, surface_voxels, unpack_voxels, voxel_iou, voxel_precision_recall,
                              voxelize, winding_number, winding_number_grid)

from conftest import SHARED_SHAPES as DATA
R = 32


def cube(h: float, centre=(0.0, 0.0, 0.0)) -> tuple[torch.Tensor, torch.Tensor]:
    """Axis-aligned cube [-h, h]^3 + centre, 12 outward (CCW) triangles."""
    v = torch.tensor([[x, y, z] for x in (-h, h) for y in (-h, h) for z in (-h, h)], dtype=torch.float32)
    f = torch.tensor([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                      [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    return v + torch.tensor(centre), f


def block(lo: int, hi: int, lo_x: int | None = None, hi_x: int | None = None) -> torch.Tensor:
    """Grid with voxels lo..hi (inclusive) set on every axis (x range optionally different)."""
    g = torch.zeros(R, R, R, dtype=torch.bool)
    g[(lo if lo_x is None else lo_x):(hi if hi_x is None else hi_x) + 1, lo:hi + 1, lo:hi + 1] = True
    return g


def centres() -> torch.Tensor:
    ax = -0.5 + (torch.arange(R, dtype=torch.float64) + 0.5) / R
    return torch.stack(torch.meshgrid(ax, ax, ax, indexing="ij"), -1)  # (R, R, R, 3)


def ball_and_shell(radius: float) -> torch.Tensor:
    """Analytic occupancy: centre inside the ball, or the closed voxel box meets the sphere."""
    c, h = centres().abs(), 0.5 / R
    near, far = (c - h).clamp_min(0).norm(dim=-1), (c + h).norm(dim=-1)
    return (c.norm(dim=-1) < radius) | ((near <= radius) & (far >= radius))


def test_cube_without_ties_is_exact():
    # [-0.24, 0.24] is [8.32, 23.68] in voxel units: centres 8.5..23.5 inside, surface only in voxels 8..23.
    v, f = cube(0.24)
    assert winding_number(v, f, torch.zeros(1, 3)).item() == pytest.approx(1.0)  # outward-oriented
    assert torch.equal(voxelize(v, f), block(8, 23)) and int(voxelize(v, f).sum()) == 16 ** 3
    assert int(surface_voxels(v, f).sum()) == 16 ** 3 - 14 ** 3
    # [-0.26, 0.26] is [7.68, 24.32]: interior centres 8..23, the surface adds the 18^3 - 16^3 shell around them.
    v, f = cube(0.26)
    assert torch.equal(voxelize(v, f), block(7, 24)) and int(voxelize(v, f).sum()) == 18 ** 3
    assert torch.equal(surface_voxels(v, f), block(7, 24) & ~block(8, 23))
    assert torch.equal(winding_number_grid(v, f).abs() >= 0.5, block(8, 23))


def test_cube_on_voxel_boundaries_marks_both_sides():
    # [-0.25, 0.25] is exactly [8, 24]: voxel boxes are closed, so each face marks the voxels on both sides of it.
    v, f = cube(0.25)
    assert torch.equal(surface_voxels(v, f), block(7, 24) & ~block(9, 22))  # 18^3 - 14^3 = 3088
    assert torch.equal(voxelize(v, f), block(7, 24))


def test_sphere_matches_analytic_ball_and_shell():
    m = icosphere(3, radius=0.4)
    occ = voxelize(m.vertices, m.faces)
    iou = voxel_iou(occ, ball_and_shell(0.4))
    assert iou >= 0.95, iou
    assert abs(int(occ.sum()) - int(ball_and_shell(0.4).sum())) < 0.03 * int(occ.sum())


def test_voxel_iou_basics():
    g = torch.rand(R, R, R) > 0.5
    assert voxel_iou(g, g) == 1.0
    assert voxel_iou(torch.zeros(4, 4, 4, dtype=torch.bool), torch.zeros(4, 4, 4, dtype=torch.bool)) == 1.0
    assert voxel_iou(g, ~g) == 0.0
    with pytest.raises(ValueError):
        voxel_iou(g, g[:-1])


def test_voxel_precision_and_recall():
    inner, outer = block(10, 19), block(5, 24)  # 10^3 voxels inside 20^3
    assert voxel_precision_recall(inner, outer) == (1.0, pytest.approx(1000 / 8000))
    assert voxel_precision_recall(outer, inner) == (pytest.approx(1000 / 8000), 1.0)
    shifted = block(7, 24, lo_x=11, hi_x=28)  # 18^3 shifted by 4 along x: 14 of 18 layers shared
    assert voxel_precision_recall(block(7, 24), shifted) == (pytest.approx(14 / 18), pytest.approx(14 / 18))
    empty = torch.zeros(R, R, R, dtype=torch.bool)
    assert voxel_precision_recall(empty, outer) == (1.0, 0.0)
    assert voxel_precision_recall(outer, empty) == (0.0, 1.0)
    with pytest.raises(ValueError):
        voxel_precision_recall(inner, inner[:-1])


def test_shapes_file_voxels_are_the_interior_and_the_shell():
    v, f = cube(0.26, centre=(0.01, 0.0, 0.0))  # faces off the voxel boundaries along x
    voxels, shell = shapes_file_voxels(v, f)
    assert voxels.dtype == shell.dtype == np.uint8 and voxels.shape == shell.shape == (R ** 3 // 8,)
    inside, whole = unpack_voxels(voxels), unpack_voxels(shell)
    assert torch.equal(inside, winding_number_grid(v, f).abs() >= 0.5)
    assert torch.equal(whole, voxelize(v, f)) and bool((whole >= inside).all()) and whole.sum() > inside.sum()


def test_known_ious():
    # Two 18^3 blocks shifted by 4 voxels along x: exactly 14 / 22.
    a, b = voxelize(*cube(0.26)), voxelize(*cube(0.26, centre=(0.125, 0.0, 0.0)))
    assert torch.equal(b, block(7, 24, lo_x=11, hi_x=28))
    assert voxel_iou(a, b) == pytest.approx(14 / 22, abs=1e-12)
    # Cube vs sphere, against the independently built analytic grids.
    m = icosphere(3, radius=0.4)
    expected = voxel_iou(block(7, 24), ball_and_shell(0.4))
    assert voxel_iou(a, voxelize(m.vertices, m.faces)) == pytest.approx(expected, abs=0.01)


def test_orientation_and_self_intersection():
    m = icosphere(2, radius=0.3)
    flipped = m.faces[:, [0, 2, 1]]
    assert torch.equal(voxelize(m.vertices, m.faces), voxelize(m.vertices, flipped))
    w = winding_number_grid(m.vertices, m.faces)
    assert torch.equal(winding_number_grid(m.vertices, flipped), -w)
    assert set(w.unique().tolist()) == {0.0, 1.0}  # closed mesh: exact integer ray counts, no strips
    # Two interpenetrating cubes as one self-intersecting mesh voxelise to the union (w = 2 in the overlap).
    (va, fa), (vb, fb) = cube(0.2), cube(0.2, centre=(0.13, 0.07, -0.05))
    both = voxelize(torch.cat([va, vb]), torch.cat([fa, fb + 8]))
    assert torch.equal(both, voxelize(va, fa) | voxelize(vb, fb))


def test_winding_grid_matches_direct_sum_on_open_meshes():
    torch.manual_seed(0)
    m = icosphere(2, radius=0.35)
    v = m.vertices + 0.04 * torch.randn_like(m.vertices)
    f = m.faces[torch.rand(m.faces.shape[0]) < 0.85]  # holes -> boundary strips
    # Tie stress: an open pyramid whose base corners and apex sit exactly on voxel-centre columns.
    q = -0.5 + 8.5 / R, -0.5 + 24.5 / R
    pv = torch.tensor([[q[0], q[0], -0.1], [q[1], q[0], -0.1], [q[1], q[1], -0.1], [q[0], q[1], -0.1],
                       [0.5 / R, 0.5 / R, 0.2]])
    pf = torch.tensor([[0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]])
    soup = icosphere(1, radius=0.3)  # 80 disjoint triangles: more boundary edges than faces -> direct sum
    sv, sf = soup.vertices[soup.faces].reshape(-1, 3), torch.arange(240).reshape(80, 3)
    for vv, ff in ((v, f), (pv, pf), (sv, sf)):
        free = ~surface_voxels(vv, ff)
        grid = winding_number_grid(vv, ff, mask=free)
        pick = free.reshape(-1).nonzero().squeeze(1)[::5]
        direct = winding_number(vv, ff, centres().reshape(-1, 3)[pick])
        assert torch.allclose(grid.reshape(-1)[pick], direct, atol=1e-9)


def test_clipping_outside_the_grid():
    assert bool(voxelize(*cube(0.75)).all())  # every centre inside, every surface triangle outside the grid
    assert not bool(voxelize(*cube(0.1, centre=(2.0, 0.0, 0.0))).any())
    half = voxelize(*cube(0.3, centre=(0.5, 0.0, 0.0)))  # x in [0.2, 0.8] = [22.4, 41.6] voxels, clipped at +x
    assert torch.equal(half, block(6, 25, lo_x=22, hi_x=31))


def test_input_validation():
    v, f = cube(0.2)
    for bad_v, bad_f in ((v[:, :2], f), (v, f[:, :2]), (v, f[:0]), (v, f.float()), (v, f + 8)):
        with pytest.raises(ValueError):
            voxelize(bad_v, bad_f)
    with pytest.raises(ValueError):
        voxelize(torch.where(torch.arange(8)[:, None] == 3, float("nan"), v), f)
    with pytest.raises(ValueError):
        voxelize(v, f, resolution=0)
    with pytest.raises(ValueError):
        unpack_voxels(np.zeros(100, np.uint8))


def test_unpack_voxels_layout():
    g = np.zeros((R, R, R), dtype=bool)
    g[1, 2, 3] = True  # bit 1*1024 + 2*32 + 3 = 1091: byte 136, value 1 << (7 - 1091 % 8) = 16
    packed = np.packbits(g.reshape(-1))
    assert packed[136] == 16 and packed.sum() == 16
    out = unpack_voxels(packed)
    assert out.dtype == torch.bool and out.shape == (R, R, R) and torch.equal(out, torch.from_numpy(g))
    assert torch.equal(unpack_voxels(torch.from_numpy(packed)), out)


def test_real_models_against_voxels_shell():
    if not DATA.exists():
        pytest.skip(f"{DATA} not found")
    z = np.load(DATA)
    ids = list(z["model_id"])
    vo, fo, verts, faces = z["vert_offsets"], z["face_offsets"], z["vertices"], z["faces"]
    ious = {}
    for model_id in ("18b41cb029cf7f6c2b151d8b52c53b90", "IKEA_INGOLF", "spot"):  # ShapeNet vase, Pix3D chair, spot
        if model_id not in ids:
            continue
        i = ids.index(model_id)
        v = torch.from_numpy(verts[vo[i]:vo[i + 1]])
        f = torch.from_numpy(faces[fo[i]:fo[i + 1]].astype(np.int64))
        ious[model_id] = voxel_iou(voxelize(v, f), unpack_voxels(z["voxels_shell"][i]))
    print("IoU vs voxels_shell:", ious)
    assert len(ious) == 3 and min(ious.values()) >= 0.85, ious
