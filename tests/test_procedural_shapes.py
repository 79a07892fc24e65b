"""datagen/procedural_shapes.py: box furniture in the shapes-file layout, usable as extra training views."""


import numpy as np
import pytest
import torch

from softras.data import Shapes, ViewSet, render_views, save_views
from softras.train import train

from test_generator import tiny_config

from datagen.procedural_shapes import make


@pytest.fixture(scope="module")
def procedural(tmp_path_factory):
    root = tmp_path_factory.mktemp("procedural")
    path = root / "shapes.npz"
    np.savez_compressed(path, **make(8, seed=1))
    return path


def test_shapes_follow_the_data_conventions(procedural):
    shapes = Shapes.load(procedural)
    assert len(shapes) == 8 and set(shapes.category) == {"procedural"}
    assert all(m.startswith("procedural_") for m in shapes.model_id) and len(set(shapes.model_id)) == 8
    with np.load(procedural) as z:
        voxels, shell = np.unpackbits(z["voxels"], axis=1), np.unpackbits(z["voxels_shell"], axis=1)
    assert (shell >= voxels).all() and (voxels.sum(1) > 0).all()
    for i in range(len(shapes)):
        mesh, colors = shapes.mesh(i)
        lo, hi = mesh.vertices.min(0).values, mesh.vertices.max(0).values
        assert torch.allclose((lo + hi) / 2, torch.zeros(3), atol=1e-6) and abs(float((hi - lo).max()) - 1) < 1e-6
        assert colors.shape == (mesh.faces.shape[0], 3) and mesh.faces.max() < mesh.vertices.shape[0]
    assert make(3, seed=5)["vertices"].tobytes() == make(3, seed=5)["vertices"].tobytes()


def test_extra_views_join_the_training_set(procedural, tiny_data, tmp_path):
    shapes = Shapes.load(procedural)
    azimuths = np.arange(0, 360, 45, dtype=np.float32)
    elevations = np.full_like(azimuths, 30.0)
    extra = save_views(tmp_path / "extra.npz", images=render_views(shapes, range(8), elevations, azimuths, size=32),
                       elevations=elevations, azimuths=azimuths, model_index=np.arange(8), category=shapes.category,
                       model_id=shapes.model_id, split=np.full(8, "train"), distance=np.float32(2.732), fov=np.float32(30.0))
    base = ViewSet(tiny_data[1], "train")
    merged = base.concat(ViewSet(extra, None))
    assert merged.num_models == base.num_models + 8 and (merged.model_index[base.num_models:] == -1).all()
    assert torch.equal(merged.images[: base.num_models], base.images) and base.num_models == 4
    other = save_views(tmp_path / "other.npz", images=np.zeros((1, 8, 32, 32, 4), np.uint8), elevations=elevations,
                       azimuths=azimuths + 1, model_index=np.arange(1), category=np.array(["x"]), model_id=np.array(["x"]),
                       split=np.array(["train"]), distance=np.float32(2.732), fov=np.float32(30.0))
    with pytest.raises(ValueError, match="same cameras"):
        base.concat(ViewSet(other, None))
    cfg = tiny_config(tiny_data, tmp_path / "run", steps=2, extra_views=[str(extra)], category_balance=1.0)
    train(cfg, log=lambda m: None)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["runs"][-1]["extra_views"] == [str(extra)]


@pytest.mark.parametrize("kinds", [None, ["vessel"], ["rifle", "tool"], ["stool", "round_table", "frame_table", "pan"],
                                   ["aeroplane"], ["sofa", "bathtub", "toilet", "piano"]])
def test_every_part_is_closed_and_wound_outwards(kinds):
    """Closed, consistently wound parts make the winding-number voxels meaningful: every directed edge occurs once
    (so each edge is shared by two faces that traverse it in opposite directions) and the enclosed volume is positive."""
    arrays = make(8, seed=2, kinds=kinds)
    for i in range(8):
        f = arrays["faces"][arrays["face_offsets"][i] : arrays["face_offsets"][i + 1]].astype(np.int64)
        v = arrays["vertices"][arrays["vert_offsets"][i] : arrays["vert_offsets"][i + 1]].astype(np.float64)
        directed = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
        _, counts = np.unique(directed, axis=0, return_counts=True)
        _, undirected = np.unique(np.sort(directed, axis=1), axis=0, return_counts=True)
        assert (counts == 1).all() and (undirected == 2).all()
        t = v[f]
        assert np.einsum("ij,ij->i", t[:, 0], np.cross(t[:, 1], t[:, 2])).sum() > 0
    assert (np.unpackbits(arrays["voxels"], axis=1).sum(1) > 0).all()
    if kinds:
        prefixes = set(np.char.rpartition(arrays["model_id"].astype(str), "_")[:, 0])
        assert prefixes <= {f"procedural_{k}" for k in kinds}


def test_new_kinds_are_what_they_claim():
    """Pans and pots lie on the floor with their handles along x; stools stand on legs (a nearly empty floor layer);
    aeroplanes point their nose to -z."""
    pans = make(6, seed=4, kinds=["pan"])
    for i in range(6):
        v = pans["vertices"][pans["vert_offsets"][i] : pans["vert_offsets"][i + 1]]
        extent = v.max(0) - v.min(0)
        assert extent[1] < extent[0] and extent[2] <= extent[0]
    stools = make(6, seed=4, kinds=["stool"])
    for i in range(6):
        shell = np.unpackbits(stools["voxels_shell"][i]).reshape(32, 32, 32)
        # Legs leave the floor mostly empty: the lowest four layers together hold less than two seat layers.
        occupancy = shell.sum(axis=tuple(j for j in range(3) if j != 1))
        assert occupancy[: 4].sum() < occupancy.max() * 2
    planes = make(6, seed=4, kinds=["aeroplane"])
    for i in range(6):
        v = planes["vertices"][planes["vert_offsets"][i] : planes["vert_offsets"][i + 1]]
        # Like the data's aeroplanes: fuselage along z with the fin (the highest point) at the tail, +z.
        assert v[v[:, 1].argmax(), 2] > 0.2 and abs(v[v[:, 1].argmax(), 0]) < 0.05


def test_room_kinds_face_like_the_data():
    """Sofa backs, toilet cisterns and piano bodies rise at the +z end (the data's sofas, toilets and pianos face -z);
    bathtubs are open basins: the winding-number voxels above the floor slab at their centre are empty."""
    for kind in ("sofa", "toilet", "piano"):
        arrays = make(6, seed=6, kinds=[kind])
        for i in range(6):
            v = arrays["vertices"][arrays["vert_offsets"][i] : arrays["vert_offsets"][i + 1]]
            back, front = v[v[:, 2] > v[:, 2].max() - 0.05, 1].max(), v[v[:, 2] < v[:, 2].min() + 0.05, 1].max()
            assert back > front, (kind, i)
    tubs = make(6, seed=6, kinds=["bathtub"])
    for i in range(6):
        solid = np.unpackbits(tubs["voxels"][i]).reshape(32, 32, 32).astype(bool)  # [x, y, z]
        height = np.flatnonzero(solid.any(axis=(0, 2)))  # the layers the tub occupies
        centre = np.flatnonzero(solid[16, :, 16])  # the floor slab under the basin's centre
        assert centre.size and centre.max() - height.min() < 0.5 * (height.max() - height.min())
