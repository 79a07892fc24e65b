"""datagen.infinigen_shapes and datagen.infinigen_fronts: the plan, the frame, stray pieces, dropped shapes, the
pack's layout and its independence of the order shapes finish in; the Infinigen side where its venv exists."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import _box
from datagen import infinigen_fronts as fronts
from datagen import infinigen_shapes as gen
from softras.data import Shapes
from softras.voxelize import shapes_file_voxels, unpack_voxels

ROOT = Path(__file__).resolve().parents[1]


def test_plan_gives_each_factory_its_share_and_fixed_seeds():
    jobs = gen.plan(5000, first_seed=7)
    assert len(jobs) == 5000
    per_category = {}
    for factory, _ in jobs:
        per_category[factory.category] = per_category.get(factory.category, 0) + 1
    assert len(per_category) >= 12 and min(per_category.values()) >= 200
    assert max(per_category.values()) <= 0.25 * 5000
    chairs = [seed for f, seed in jobs if f.name == "ChairFactory"]
    assert chairs == list(range(7, 7 + len(chairs)))
    assert gen.plan(5000, 7) == jobs
    first = {f.category for f, _ in jobs[:250]}  # interleaved: a run stopped early has made every kind
    assert first == {f.category for f in gen.FACTORIES} and len(gen.plan(3)) == 3
    with pytest.raises(ValueError, match="count"):
        gen.plan(0)


def test_data_frame_is_y_up_unit_box_and_turns_the_front():
    # Blender frame: Z up, front along +X. A tall thin post at the front (+X) of a low slab.
    post = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 2.0]])
    slab = np.array([[-1.0, -0.5, 0.0], [1.0, 0.5, 0.2]])
    v = np.concatenate([post, slab]).astype(np.float32)
    out = gen.to_data_frame(v, turns=0)
    assert np.allclose(out.max(0) - out.min(0), [1.0, 1.0, 0.5]) and np.allclose(out.max(0) + out.min(0), 0)
    assert out[1, 1] == pytest.approx(0.5)  # the post's top (Blender +Z) is the top (+y)
    assert out[0, 0] == pytest.approx(0.5)  # the front (Blender +X) is +x without a turn
    turned = gen.to_data_frame(v, turns=1)
    assert turned[0, 2] == pytest.approx(-0.5)  # one quarter turn takes +x to -z, facing the azimuth-0 camera
    assert np.allclose(gen.to_data_frame(v, turns=4), out)
    with pytest.raises(ValueError, match="degenerate"):
        gen.to_data_frame(np.zeros((3, 3), np.float32), 0)


def test_quarter_turn_of_voxels_matches_turning_the_mesh():
    v, f = _box(0.9, 0.5, 0.3)
    v = v + np.array([0.05, 0.0, 0.1], np.float32)  # off-centre, so a wrong turn shows
    ref = unpack_voxels(shapes_file_voxels(torch.from_numpy(v), torch.from_numpy(f.astype(np.int64)))[1]).numpy()
    turned_v = np.stack([v[:, 2], v[:, 1], -v[:, 0]], 1)  # the turn of to_data_frame
    turned = unpack_voxels(shapes_file_voxels(torch.from_numpy(turned_v),
                                              torch.from_numpy(f.astype(np.int64)))[1]).numpy()
    assert np.array_equal(gen.quarter_turn(ref, 1), turned)
    assert np.array_equal(gen.quarter_turn(ref, 4), ref)


def test_a_made_shape_turns_exactly_as_if_made_turned(monkeypatch):
    raw = _table_raw()
    raw["vertices"] = raw["vertices"] * np.array([1.0, 0.6, 1.0], np.float32) + np.array([0.2, 0, 0], np.float32)
    monkeypatch.setitem(gen.FRONT_TURNS, "table", 1)
    once = gen.convert(raw, "table")
    monkeypatch.setitem(gen.FRONT_TURNS, "table", 3)
    direct = gen.convert(raw, "table")
    later = gen.turned(once, 2)
    assert int(later["turns"]) == 3
    assert np.allclose(later["vertices"], direct["vertices"], atol=1e-6)
    for key in ("voxels", "voxels_shell"):
        assert np.array_equal(later[key], direct[key]), key


def test_stray_pieces_apart_from_the_rest_are_dropped():
    big_v, big_f = _box(1.0, 1.0, 1.0)
    near_v, near_f = _box(0.05, 0.05, 0.05)
    far_v = near_v + np.array([5.0, 0.0, 0.0], np.float32)
    touching_v = near_v + np.array([0.5, 0.0, 0.0], np.float32)
    v = np.concatenate([big_v, far_v, touching_v])
    f = np.concatenate([big_f, near_f + 8, near_f + 16])
    keep = gen._drop_strays(v.astype(np.float64), f.astype(np.int64))
    assert keep[:12].all() and not keep[12:24].any() and keep[24:].all()


def test_exploded_faces_far_from_the_bulk_are_removed():
    raw = _table_raw()
    v = np.concatenate([raw["vertices"], np.array([[0, 0, 4000.0], [0.1, 0, -5000.0], [0, 0.1, 0]], np.float32)])
    n = len(v)
    raw["vertices"] = v
    raw["faces"] = np.concatenate([raw["faces"], np.array([[n - 3, n - 2, n - 1]], np.int32)])
    raw["face_colors"] = np.concatenate([raw["face_colors"], raw["face_colors"][:1]])
    raw["face_has_color"] = np.concatenate([raw["face_has_color"], raw["face_has_color"][:1]])
    shape = gen.convert(raw, "table")
    assert int(shape["removed_faces"]) == 1 and len(shape["faces"]) == len(raw["faces"]) - 1
    clean = gen.convert(_table_raw(), "table")
    assert np.allclose(shape["vertices"], clean["vertices"]) and np.array_equal(shape["voxels_shell"], clean["voxels_shell"])


def _raw(vertices: np.ndarray, faces: np.ndarray, colored: bool = True) -> dict[str, np.ndarray]:
    return {"vertices": vertices.astype(np.float32), "faces": faces.astype(np.int32),
            "face_colors": np.full((len(faces), 3), 120, np.uint8), "face_has_color": np.full(len(faces), colored),
            "seconds": np.zeros(4)}


def _table_raw() -> dict[str, np.ndarray]:
    """A table in Blender's frame (Z up): a top on four legs."""
    top_v, top_f = _box(1.2, 0.8, 0.05)
    parts_v, parts_f = [top_v + np.array([0, 0, 0.7], np.float32)], [top_f]
    for x in (-0.55, 0.55):
        for y in (-0.35, 0.35):
            leg_v, leg_f = _box(0.05, 0.05, 0.7)
            parts_v.append(leg_v + np.array([x, y, 0.35], np.float32))
            parts_f.append(leg_f + 8 * len(parts_f))
    return _raw(np.concatenate(parts_v), np.concatenate(parts_f))


def test_convert_keeps_a_table_and_drops_an_empty_or_topless_one():
    shape = gen.convert(_table_raw(), "table")
    assert shape["vertices"].dtype == np.float32 and np.abs(shape["vertices"]).max() <= 0.5 + 1e-6
    assert shape["voxels"].shape == (4096,) and shape["voxels_shell"].shape == (4096,)
    assert bool(shape["has_color"]) and shape["color_share"] == pytest.approx(1.0)
    legs_only = _table_raw()
    legs_only["faces"] = legs_only["faces"][12:]
    legs_only["face_colors"], legs_only["face_has_color"] = legs_only["face_colors"][12:], legs_only["face_has_color"][12:]
    with pytest.raises(ValueError, match="no top"):
        gen.convert(legs_only, "table")
    flat = _raw(np.array([[0, 0, 0], [1, 0, 0], [0, 1e-9, 0]], np.float32), np.array([[0, 1, 2]]))
    with pytest.raises(ValueError, match="degenerate"):
        gen.convert(flat, "vase")
    grey = gen.convert(_raw(*_box(0.5, 0.5, 0.5), colored=False), "cabinet")
    assert not bool(grey["has_color"]) and grey["color_share"] == 0.0


def test_pack_is_in_plan_order_whatever_order_shapes_finished(tmp_path):
    jobs = gen.plan(30)[:4]
    shape_dir = tmp_path / "shapes"
    shape_dir.mkdir()
    records = {}
    for k, (factory, seed) in enumerate(jobs):
        raw = _raw(*_box(0.3 + 0.1 * k, 0.5, 0.4))
        gen._save_npz(shape_dir / f"{gen.job_name(factory, seed)}.npz", gen.convert(raw, "vase"))
        records[gen.job_name(factory, seed)] = {"status": "ok", "faces": 12, "color_share": 1.0,
                                                "convert_seconds": 0.1, "stage_seconds": [0.1, 0.1, 0.1, 0.3]}
    records[gen.job_name(*jobs[2])] = {"status": "dropped", "error": "empty voxels"}
    reversed_records = dict(reversed(list(records.items())))
    a = gen.write_pack(tmp_path / "a.npz", jobs, records, shape_dir, 1)
    gen.write_pack(tmp_path / "b.npz", jobs, reversed_records, shape_dir, 2)
    za, zb = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    for key in za.files:
        assert np.array_equal(za[key], zb[key]), key
    assert list(za["model_id"]) == [gen.job_name(*j) for k, j in enumerate(jobs) if k != 2]
    assert set(za["source"]) == {"infinigen"}
    shapes = Shapes.load(tmp_path / "a.npz")
    assert len(shapes) == 3 and shapes.mesh(2)[0].faces.shape == (12, 3)
    assert a["shapes"] == 3 and a["factories"][jobs[2][0].name]["dropped"] == {"empty voxels": 1}
    report = json.loads((tmp_path / "a.report.json").read_text())
    expected = {}
    for k, (factory, _) in enumerate(jobs):
        if k != 2:
            expected[factory.category] = expected.get(factory.category, 0) + 1
    assert report["categories"] == expected


def test_fronts_finds_the_turn_that_matches_the_real_models(tmp_path):
    def pack(path, turns, category, source):
        v, f = _box(0.9, 0.6, 0.3)
        v = v.copy()
        v[v[:, 2] > 0, 1] += 0.35  # a back rising on the +z side, as the real chairs have it
        rows = []
        for k in range(3):
            w = v * np.float32(1 + 0.05 * k)
            for _ in range(turns):
                w = np.stack([w[:, 2], w[:, 1], -w[:, 0]], 1)
            w = w - (w.max(0) + w.min(0)) / 2
            w = w / (w.max(0) - w.min(0)).max()
            rows.append((w.astype(np.float32), f))
        shells = [shapes_file_voxels(torch.from_numpy(w), torch.from_numpy(f.astype(np.int64))) for w, f in rows]
        np.savez(path, vertices=np.concatenate([w for w, _ in rows]), faces=np.concatenate([f for _, f in rows]),
                 face_colors=np.zeros((36, 3), np.uint8), vert_offsets=np.arange(4) * 8, face_offsets=np.arange(4) * 12,
                 voxels=np.stack([s[0] for s in shells]), voxels_shell=np.stack([s[1] for s in shells]),
                 category=np.array([category] * 3), model_id=np.array([f"m{k}" for k in range(3)]),
                 source=np.array([source] * 3), has_color=np.ones(3, bool))
        return Shapes.load(path)

    real = pack(tmp_path / "real.npz", 0, "chair", "pix3d")
    ours = pack(tmp_path / "ours.npz", 1, "chair", "infinigen")
    rows = fronts.measure(ours, real, np.array(["pix3d"] * 3), margin=0.02)
    assert len(rows) == 1 and rows[0]["best_turn"] == 3 and not rows[0]["ambiguous"]


def _infinigen_python() -> Path | None:
    python = ROOT / ".venv-infinigen" / "bin" / "python"
    if not python.exists():
        return None
    ok = subprocess.run([str(python), "-c", "import infinigen"], capture_output=True).returncode == 0
    return python if ok else None


@pytest.mark.skipif(_infinigen_python() is None,
                    reason="Infinigen's venv is not set up (python -m datagen.infinigen_shapes creates it)")
def test_worker_makes_the_same_asset_whatever_ran_before_it(tmp_path):
    python = _infinigen_python()
    worker = ROOT / "datagen" / "infinigen_worker.py"

    def run(raw: Path, jobs: list[str]) -> list[dict]:
        out = subprocess.run([str(python), str(worker), "--raw", str(raw), "--jobs", *jobs], capture_output=True,
                             text=True, timeout=600, check=True)
        return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]

    alone = run(tmp_path / "a", ["ChairFactory:2"])  # a chair of several parts, each with its own material
    after = run(tmp_path / "b", ["SofaFactory:3", "ChairFactory:2"])
    assert alone[0]["status"] == "ok" and after[1]["status"] == "ok", (alone, after)
    a, b = np.load(tmp_path / "a" / "ChairFactory_2.npz"), np.load(tmp_path / "b" / "ChairFactory_2.npz")
    for key in ("vertices", "faces", "face_colors", "face_has_color"):
        assert np.array_equal(a[key], b[key]), key
    assert len(a["faces"]) <= 8000
    again = run(tmp_path / "a", ["ChairFactory:2", "NoSuchFactory:0"])
    assert again[0]["status"] == "skipped" and again[1]["status"] == "failed" and "unknown factory" in again[1]["error"]
