"""Headless batch conversion (softras_blender.batch): outputs, summary, resume, shards, and re-opening outputs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from softras.intake import IntakeSettings, load_image
from softras.meshio import read_mesh
from softras.reconstruct import Reconstructor
from softras_blender.batch import collect_inputs, main, output_names, shard

REPO = Path(__file__).resolve().parents[1]


def blob(path: Path, color=(200, 40, 40)) -> Path:
    yy, xx = np.mgrid[:60, :80]
    inside = ((xx - 40) / 25) ** 2 + ((yy - 30) / 18) ** 2 <= 1
    rgba = np.zeros((60, 80, 4), np.uint8)
    rgba[inside] = (*color, 255)
    Image.fromarray(rgba).save(path)
    return path


@pytest.fixture
def folder(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    blob(images / "red.png")
    blob(images / "green.png", (30, 190, 40))
    blob(images / "blue.png", (20, 40, 210))
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (images / "notes.txt").write_text("ignored: not an image suffix")
    return images


def test_batch_converts_reports_and_resumes(folder, tmp_path, tiny_weights, capsys):
    out = tmp_path / "out"
    args = ["--input", str(folder), "--output", str(out), "--format", "ply", "--weights", str(tiny_weights), "--device", "cpu"]
    assert main(args) == 1  # the broken file fails, the others convert
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("[") for line in lines) == 4 and "images/s" in lines[0] and "ETA" in lines[0]
    summary = {Path(r["input"]).name: r for r in json.loads((out / "summary.json").read_text())}
    assert set(summary) == {"red.png", "green.png", "blue.png", "broken.png"}
    assert summary["broken.png"]["status"] == "error" and "cannot read image" in summary["broken.png"]["error"]
    assert all(summary[n]["status"] == "ok" and summary[n]["seconds"] > 0 for n in ("red.png", "green.png", "blue.png"))
    assert sorted(p.name for p in out.glob("*.ply")) == ["blue.ply", "green.ply", "red.ply"]
    stamp = (out / "red.ply").stat().st_mtime_ns
    assert main(args) == 1  # second run: the good ones are skipped, the broken one fails again
    summary = {Path(r["input"]).name: r["status"] for r in json.loads((out / "summary.json").read_text())}
    assert summary == {"red.png": "skipped", "green.png": "skipped", "blue.png": "skipped", "broken.png": "error"}
    assert (out / "red.ply").stat().st_mtime_ns == stamp
    assert main(args + ["--overwrite"]) == 1 and (out / "red.ply").stat().st_mtime_ns != stamp


def test_shards_cover_every_input_exactly_once(folder, tmp_path):
    inputs = collect_inputs([str(folder), str(folder / "*.png")])
    assert len(inputs) == 4  # the folder and the glob name the same four images once
    parts = [shard(inputs, "1/2"), shard(inputs, "2/2")]
    assert sorted(parts[0] + parts[1]) == inputs and not set(parts[0]) & set(parts[1])
    assert [shard(inputs, f"{i}/3") for i in (1, 2, 3)] == [inputs[0::3], inputs[1::3], inputs[2::3]]
    for bad in ("0/2", "3/2", "x"):
        with pytest.raises(ValueError, match="shard"):
            shard(inputs, bad)


def test_negative_refine_steps_are_refused(folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--input", str(folder), "--output", str(out), "--refine", "-1"]) == 2
    assert "--refine must be 0 or more" in capsys.readouterr().err and not out.exists()


def test_output_names_are_unique():
    names = output_names([Path("a/chair.png"), Path("b/chair.png"), Path("a/sofa.jpg")])
    assert names == ["a_chair", "b_chair", "sofa"]


@pytest.mark.parametrize("fmt", ["glb", "obj", "ply"])
def test_mesh_outputs_reopen_with_the_reconstruction(fmt, folder, tmp_path, tiny_weights):
    out = tmp_path / fmt
    assert main(["--input", str(folder / "red.png"), "--output", str(out), "--format", fmt, "--weights", str(tiny_weights)]) == 0
    expected = Reconstructor(tiny_weights).reconstruct_intake(load_image(folder / "red.png", settings=IntakeSettings(size=32))).mesh
    mesh = read_mesh(out / f"red.{fmt}")
    assert mesh.num_vertices == expected.num_vertices == 42
    assert torch.allclose(mesh.vertices, expected.vertices, atol=1e-5)
    assert torch.allclose(mesh.vertex_colors, expected.vertex_colors, atol=1 / 255)


def test_blend_output_and_preview_in_a_separate_process(folder, tmp_path, tiny_weights):
    out = tmp_path / "blend"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "softras_blender.batch", "--input", str(folder / "red.png"), "--output", str(out),
           "--format", "blend", "--preview", "--no-texture", "--weights", str(tiny_weights)]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    preview = np.asarray(Image.open(out / "red_preview.png"))
    assert preview.shape == (160, 640, 3) and (preview[..., 0].astype(int) - preview[..., 1] > 60).sum() > 500  # red mesh
    check = ("import bpy, json, sys; bpy.ops.wm.open_mainfile(filepath=sys.argv[1]); o = bpy.data.objects['red']; "
             "a = o.data.color_attributes['Color']; print(json.dumps([len(o.data.vertices), a.data_type, a.domain, "
             "o.active_material.name, bpy.context.scene.camera is not None]))")
    opened = subprocess.run([sys.executable, "-c", check, str(out / "red.blend")], capture_output=True, text=True, timeout=120)
    assert opened.returncode == 0, opened.stderr[-2000:]
    assert json.loads(opened.stdout.strip().splitlines()[-1]) == [42, "FLOAT_COLOR", "POINT", "SoftRas Vertex Color", True]


def test_textured_blend_packs_its_image_and_the_preview_shows_it(folder, tmp_path, tiny_weights):
    out = tmp_path / "textured"
    args = ["--input", str(folder / "red.png"), "--output", str(out), "--format", "blend", "--preview",
            "--texture-size", "64", "--weights", str(tiny_weights)]
    # the tiny random generator's shapes match their silhouettes poorly: waive the viewpoint check
    run = ("import sys, softras.texture; softras.texture.MIN_VIEWPOINT_IOU = 0.0; "
           "from softras_blender.batch import main; sys.exit(main(sys.argv[1:]))")
    result = subprocess.run([sys.executable, "-c", run, *args], capture_output=True, text=True, timeout=300, cwd=REPO,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    record = json.loads((out / "summary.json").read_text())[0]
    assert record["texture"] is True and "warning" not in record
    preview = np.asarray(Image.open(out / "red_preview.png"))
    assert (preview[..., 0].astype(int) - preview[..., 1] > 60).sum() > 500  # the red picture on the mesh
    check = ("import bpy, json, sys; bpy.ops.wm.open_mainfile(filepath=sys.argv[1]); o = bpy.data.objects['red']; "
             "n = next(n for n in o.active_material.node_tree.nodes if n.bl_idname == 'ShaderNodeTexImage'); "
             "print(json.dumps([n.image.packed_file is not None, list(n.image.size), o['softras_texture'] == n.image.name, "
             "[s.material.name for s in o.material_slots], len(o.data.uv_layers)]))")
    opened = subprocess.run([sys.executable, "-c", check, str(out / "red.blend")], capture_output=True, text=True, timeout=120)
    assert opened.returncode == 0, opened.stderr[-2000:]
    assert json.loads(opened.stdout.strip().splitlines()[-1]) == [True, [64, 64], True, ["SoftRas Texture red", "SoftRas Vertex Color"], 1]


def test_runs_as_a_script_with_blender_style_arguments(folder, tmp_path, tiny_weights):
    # `blender --python softras_blender/batch.py -- ARGS` executes the file as a script and leaves ARGS after "--"
    out = tmp_path / "script"
    cmd = [sys.executable, str(REPO / "softras_blender" / "batch.py"), "--background", "--", "--input", str(folder / "*.png"),
           "--output", str(out), "--format", "obj", "--weights", str(tiny_weights), "--shard", "1/2"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert sorted(p.name for p in out.glob("*.obj")) == ["blue.obj", "green.obj"]  # shard 1/2 of blue, broken, green, red
